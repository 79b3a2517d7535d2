//! The payment gateway (docs/api.md §16): each method's checkout from configuration. Bank transfer
//! needs no provider call (the account from `BANK_ACCOUNT`, the payment id as the reference to quote);
//! an Alipay page payment is a link to the gateway signed with the app's key, with no call either.
//! Configuration is read once per cold start and never logged.

use async_trait::async_trait;
use domain::checkout::{CheckoutRequest, Scene};
use domain::closing::{Trade, TradeProvider, TradeState};
use domain::ports::{PaymentGateway, ProviderError};
use domain::refund::{RefundRequest, RefundState};
use domain::Timestamp;
use serde_json::{json, Map, Value};

use crate::providers::alipay::{china_time, AlipayApp, AlipayClient, DEFAULT_GATEWAY};
use crate::providers::signing::MerchantKey;
use crate::providers::wechatpay::{WechatPay, WechatPayClient, WechatPayMerchant, DEFAULT_BASE_URL, DEFAULT_TIMEOUT};
use crate::providers::ConfigError;
use std::time::Duration;

/// Every checkout the configuration allows.
#[derive(Debug, Default)]
pub struct Providers {
    /// `BANK_ACCOUNT`: the account shoppers transfer to (payee, bank, account number, as given).
    pub bank: Option<Map<String, Value>>,
    /// The Alipay app that signs page-payment links.
    pub alipay: Option<AlipayApp>,
    /// The Alipay OpenAPI client: QR trades (`alipay.trade.precreate`), close and query. It signs with
    /// the same app key, and needs Alipay's public key to verify the answers.
    pub alipay_api: Option<AlipayClient>,
    /// The WeChat Pay merchant client (native and JSAPI prepay).
    pub wechatpay: Option<WechatPayClient>,
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

impl Providers {
    /// From the environment: `BANK_ACCOUNT` (a JSON object); `ALIPAY_APP_ID`, `ALIPAY_APP_PRIVATE_KEY`
    /// (PEM, base64 or a path), `ALIPAY_NOTIFY_URL`, and optionally `ALIPAY_RETURN_URL` and
    /// `ALIPAY_GATEWAY`. A method left unconfigured answers `503 PROVIDER_UNAVAILABLE`; a setting
    /// given but unreadable is a start-up error.
    pub fn from_env() -> Result<Self, ConfigError> {
        let bank = match env("BANK_ACCOUNT") {
            None => None,
            Some(text) => match serde_json::from_str::<Value>(&text) {
                Ok(Value::Object(account)) if !account.is_empty() => Some(account),
                _ => return Err(ConfigError("BANK_ACCOUNT must be a JSON object".into())),
            },
        };
        let alipay = match (
            env("ALIPAY_APP_PRIVATE_KEY"),
            env("ALIPAY_APP_ID"),
            env("ALIPAY_NOTIFY_URL"),
        ) {
            (None, _, _) => None,
            (Some(key), Some(app_id), Some(notify_url)) => Some(AlipayApp {
                app_id,
                key: MerchantKey::parse(&key)?,
                notify_url,
                return_url: env("ALIPAY_RETURN_URL"),
                gateway: env("ALIPAY_GATEWAY").unwrap_or_else(|| DEFAULT_GATEWAY.to_owned()),
            }),
            _ => {
                return Err(ConfigError(
                    "Alipay checkout needs ALIPAY_APP_ID, ALIPAY_APP_PRIVATE_KEY and ALIPAY_NOTIFY_URL".into(),
                ))
            }
        };
        // A QR trade is a call: it also needs Alipay's public key, which verifies the answer.
        let alipay_api = match (&alipay, crate::providers::alipay::Alipay::from_env()?) {
            (Some(app), Some(verifier)) => Some(AlipayClient::new(
                AlipayApp {
                    return_url: None,
                    ..app.clone()
                },
                verifier,
                provider_timeout()?,
            )?),
            _ => None,
        };
        Ok(Providers {
            bank,
            alipay,
            alipay_api,
            wechatpay: wechatpay_from_env()?,
        })
    }
}

/// `PROVIDER_TIMEOUT_MS`, or 3 s.
fn provider_timeout() -> Result<Duration, ConfigError> {
    match env("PROVIDER_TIMEOUT_MS") {
        None => Ok(DEFAULT_TIMEOUT),
        Some(ms) => ms
            .parse()
            .map(Duration::from_millis)
            .map_err(|_| ConfigError("PROVIDER_TIMEOUT_MS must be a number of milliseconds".into())),
    }
}

/// The WeChat Pay client from `WECHATPAY_MERCHANT_PRIVATE_KEY` (PEM or a path), `WECHATPAY_MERCHANT_SERIAL`,
/// `WECHATPAY_NOTIFY_URL`, `WECHATPAY_BASE_URL` (optional), `PROVIDER_TIMEOUT_MS` (optional), and the
/// platform settings the receiver verifies notifications with (`WECHATPAY_MCHID`, `WECHATPAY_APPID`,
/// `WECHATPAY_APIV3_KEY`, `WECHATPAY_PUBLIC_KEYS`), which verify answers too. `None` without a merchant key.
fn wechatpay_from_env() -> Result<Option<WechatPayClient>, ConfigError> {
    let Some(key) = env("WECHATPAY_MERCHANT_PRIVATE_KEY") else {
        return Ok(None);
    };
    let (Some(serial), Some(notify_url)) = (env("WECHATPAY_MERCHANT_SERIAL"), env("WECHATPAY_NOTIFY_URL")) else {
        return Err(ConfigError(
            "WeChat Pay checkout needs WECHATPAY_MERCHANT_SERIAL and WECHATPAY_NOTIFY_URL".into(),
        ));
    };
    let platform = WechatPay::from_env()?
        .ok_or_else(|| ConfigError("WeChat Pay checkout needs the platform settings (WECHATPAY_MCHID, ...)".into()))?;
    let timeout = provider_timeout()?;
    let merchant = WechatPayMerchant {
        mchid: platform.mchid().to_owned(),
        appid: platform.appid().to_owned(),
        serial,
        key: MerchantKey::parse(&key)?,
        notify_url,
        base_url: env("WECHATPAY_BASE_URL").unwrap_or_else(|| DEFAULT_BASE_URL.to_owned()),
    };
    WechatPayClient::new(merchant, platform, timeout).map(Some)
}

fn unconfigured(what: &str) -> ProviderError {
    ProviderError::Unavailable(format!("{what} is not configured").into())
}

/// An Alipay page payment's link: `alipay.trade.page.pay` with the amount in yuan, the product as the
/// subject, the payment's expiry as `time_expire` (China time), signed with the app key.
fn alipay_page(app: &AlipayApp, request: &CheckoutRequest, now: Timestamp) -> Map<String, Value> {
    let biz = json!({
        "out_trade_no": request.payment_id,
        "total_amount": request.amount.to_string(),
        "subject": request.description,
        "product_code": "FAST_INSTANT_TRADE_PAY",
        "time_expire": china_time(request.expires_at),
    });
    // The shopper's own return page if the request named one, else the configured one.
    let return_url = request.return_url.as_deref().or(app.return_url.as_deref());
    let params = app.signed_params("alipay.trade.page.pay", &biz, now, return_url);
    let mut out = Map::new();
    out.insert("url".into(), Value::String(app.url(&params)));
    out
}

#[async_trait]
impl PaymentGateway for Providers {
    async fn checkout(&self, request: &CheckoutRequest) -> Result<Map<String, Value>, ProviderError> {
        match request.scene {
            Scene::Transfer => {
                let account = self.bank.as_ref().ok_or_else(|| unconfigured("BANK_ACCOUNT"))?;
                let mut out = Map::new();
                out.insert("reference".into(), json!(request.payment_id));
                out.insert("account".into(), Value::Object(account.clone()));
                out.insert("amount".into(), json!(request.amount));
                Ok(out)
            }
            Scene::Page => {
                let app = self.alipay.as_ref().ok_or_else(|| unconfigured("Alipay checkout"))?;
                Ok(alipay_page(app, request, request.requested_at))
            }
            Scene::Native | Scene::Jsapi => self.wechatpay()?.prepay(request).await,
            Scene::Qr => self.alipay_api()?.precreate(request).await,
        }
    }

    async fn close(&self, trade: &Trade) -> Result<(), ProviderError> {
        match trade.provider {
            TradeProvider::Wechatpay => self.wechatpay()?.close(trade.payment_id.as_str()).await,
            TradeProvider::Alipay => self.alipay_api()?.close(trade.payment_id.as_str()).await,
        }
    }

    async fn query(&self, trade: &Trade) -> Result<TradeState, ProviderError> {
        match trade.provider {
            TradeProvider::Wechatpay => self.wechatpay()?.query(trade.payment_id.as_str()).await,
            TradeProvider::Alipay => self.alipay_api()?.query(trade.payment_id.as_str()).await,
        }
    }

    async fn refund(&self, request: &RefundRequest) -> Result<RefundState, ProviderError> {
        match request.provider {
            TradeProvider::Wechatpay => self.wechatpay()?.refund(request).await,
            TradeProvider::Alipay => self.alipay_api()?.refund(request).await,
        }
    }

    async fn query_refund(&self, request: &RefundRequest) -> Result<RefundState, ProviderError> {
        match request.provider {
            TradeProvider::Wechatpay => self.wechatpay()?.query_refund(request).await,
            TradeProvider::Alipay => self.alipay_api()?.query_refund(request).await,
        }
    }
}

impl Providers {
    /// The WeChat Pay client (prepay, close, query).
    fn wechatpay(&self) -> Result<&WechatPayClient, ProviderError> {
        self.wechatpay.as_ref().ok_or_else(|| unconfigured("WeChat Pay"))
    }

    /// The Alipay OpenAPI client (QR trades, close, query).
    fn alipay_api(&self) -> Result<&AlipayClient, ProviderError> {
        self.alipay_api
            .as_ref()
            .ok_or_else(|| unconfigured("Alipay (ALIPAY_PUBLIC_KEY)"))
    }
}
