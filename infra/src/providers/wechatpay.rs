//! WeChat Pay APIv3 payment notifications: the platform's SHA256-RSA signature over
//! `<timestamp>\n<nonce>\n<body>\n` with the public key named by `Wechatpay-Serial`, the timestamp
//! within five minutes, then the `resource` decrypted with AEAD_AES_256_GCM under the merchant's APIv3 key.

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};

use super::RsaPublicKey;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use domain::callback::{EventId, EventSource, PaymentEvent, ReportedStatus, MAX_CLOCK_SKEW_SECONDS};
use domain::{Money, PaymentId, Timestamp};
use serde::Deserialize;

use super::{env, rsa_public_key, rsa_sha256_verifies, ConfigError, Rejection, TryError, Verdict};

/// The merchant's WeChat Pay settings. Keys never appear in `Debug` output.
pub struct WechatPay {
    mchid: String,
    appid: String,
    apiv3_key: LessSafeKeyBytes,
    /// Platform public keys by id (`Wechatpay-Serial`); several during a rotation.
    public_keys: Vec<(String, RsaPublicKey)>,
}

/// The 32-byte APIv3 key, kept as bytes so that a key per notification is cheap to make.
struct LessSafeKeyBytes([u8; 32]);

impl std::fmt::Debug for WechatPay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ids: Vec<&str> = self.public_keys.iter().map(|(id, _)| id.as_str()).collect();
        write!(
            f,
            "WechatPay {{ mchid: {}, appid: {}, public_keys: {ids:?} }}",
            self.mchid, self.appid
        )
    }
}

#[derive(Deserialize)]
struct Notification {
    id: String,
    create_time: Option<String>,
    #[serde(default)]
    event_type: String,
    resource: Resource,
}

#[derive(Deserialize)]
struct Resource {
    algorithm: String,
    ciphertext: String,
    #[serde(default)]
    associated_data: String,
    nonce: String,
}

#[derive(Deserialize)]
struct Transaction {
    mchid: String,
    appid: String,
    out_trade_no: String,
    #[serde(default)]
    transaction_id: String,
    trade_state: String,
    success_time: Option<String>,
    amount: Amount,
}

#[derive(Deserialize)]
struct Amount {
    total: u64,
}

/// The decrypted resource of a refund notification (`REFUND.SUCCESS`, `REFUND.ABNORMAL`,
/// `REFUND.CLOSED`): no `appid` in it, the amounts in fen.
#[derive(Deserialize)]
struct RefundResource {
    mchid: String,
    out_trade_no: String,
    out_refund_no: String,
    refund_id: String,
    refund_status: String,
    amount: RefundAmount,
}

#[derive(Deserialize)]
struct RefundAmount {
    refund: u64,
}

impl WechatPay {
    /// From its parts: the APIv3 key must be exactly 32 bytes; `public_keys` pairs a key id with a
    /// PEM/base64 key or a path to one.
    pub fn new(
        mchid: &str,
        appid: &str,
        apiv3_key: &str,
        public_keys: &[(String, String)],
    ) -> Result<Self, ConfigError> {
        let apiv3_key: [u8; 32] = apiv3_key
            .as_bytes()
            .try_into()
            .map_err(|_| ConfigError("WECHATPAY_APIV3_KEY must be 32 bytes".into()))?;
        if public_keys.is_empty() {
            return Err(ConfigError("WECHATPAY_PUBLIC_KEYS names no key".into()));
        }
        let public_keys = public_keys
            .iter()
            .map(|(id, key)| Ok((id.clone(), rsa_public_key(key)?)))
            .collect::<Result<_, ConfigError>>()?;
        Ok(WechatPay {
            mchid: mchid.to_owned(),
            appid: appid.to_owned(),
            apiv3_key: LessSafeKeyBytes(apiv3_key),
            public_keys,
        })
    }

    /// From `WECHATPAY_MCHID`, `WECHATPAY_APPID`, `WECHATPAY_APIV3_KEY` and `WECHATPAY_PUBLIC_KEYS`
    /// (comma-separated `<key id>=<path to PEM, or the key itself>`); `None` when none is set.
    pub fn from_env() -> Result<Option<Self>, ConfigError> {
        let names = [
            "WECHATPAY_MCHID",
            "WECHATPAY_APPID",
            "WECHATPAY_APIV3_KEY",
            "WECHATPAY_PUBLIC_KEYS",
        ];
        let values: Vec<Option<String>> = names.iter().map(|n| env(n)).collect();
        if values.iter().all(Option::is_none) {
            return Ok(None);
        }
        let [Some(mchid), Some(appid), Some(key), Some(keys)] =
            <[Option<String>; 4]>::try_from(values).map_err(|_| ConfigError("WeChat Pay settings".into()))?
        else {
            return Err(ConfigError(format!("WeChat Pay needs all of {}", names.join(", "))));
        };
        let keys = keys
            .split(',')
            .map(|pair| {
                pair.split_once('=')
                    .map(|(id, key)| (id.trim().to_owned(), key.trim().to_owned()))
                    .ok_or_else(|| ConfigError("WECHATPAY_PUBLIC_KEYS entries are <key id>=<key or path>".into()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Self::new(&mchid, &appid, &key, &keys).map(Some)
    }

    /// The merchant id notifications and answers must name.
    pub fn mchid(&self) -> &str {
        &self.mchid
    }

    /// The app id notifications and answers must name.
    pub fn appid(&self) -> &str {
        &self.appid
    }

    /// Verifies a notification (headers by lower-case name, the raw body) and reads the transaction.
    pub fn verify(
        &self,
        header: &dyn Fn(&str) -> Option<String>,
        body: &[u8],
        now: Timestamp,
    ) -> Result<Verdict, Rejection> {
        self.verify_signed(header, body, now)?;
        self.read_notification(body, now)
    }

    /// Verifies a message WeChat Pay signed, a notification or an answer to one of our requests alike:
    /// the platform's SHA256-RSA signature in `Wechatpay-Signature` over `<Wechatpay-Timestamp>\n
    /// <Wechatpay-Nonce>\n<body>\n`, under the configured key named by `Wechatpay-Serial`, with the
    /// timestamp within 300 s of `now`. Nothing in an answer is believed before this passes.
    pub fn verify_signed(
        &self,
        header: &dyn Fn(&str) -> Option<String>,
        body: &[u8],
        now: Timestamp,
    ) -> Result<(), Rejection> {
        let required = |name: &'static str| header(name).ok_or(Rejection::Signature("missing Wechatpay header"));
        let timestamp = required("wechatpay-timestamp")?;
        let nonce = required("wechatpay-nonce")?;
        let signature = required("wechatpay-signature")?;
        let serial = required("wechatpay-serial")?;
        let key = self
            .public_keys
            .iter()
            .find(|(id, _)| *id == serial)
            .map(|(_, key)| key)
            .ok_or(Rejection::Signature("unknown Wechatpay-Serial"))?;
        let mut message = Vec::with_capacity(timestamp.len() + nonce.len() + body.len() + 3);
        for part in [timestamp.as_bytes(), b"\n", nonce.as_bytes(), b"\n", body, b"\n"] {
            message.extend_from_slice(part);
        }
        if !rsa_sha256_verifies(key, &message, &signature) {
            return Err(Rejection::Signature("signature does not verify"));
        }
        let signed_at: i64 = timestamp
            .parse()
            .ok()
            .filter(|_| timestamp.bytes().all(|b| b.is_ascii_digit()))
            .ok_or(Rejection::Signature("timestamp is not a number"))?;
        if (now.unix_seconds() - signed_at).abs() > MAX_CLOCK_SKEW_SECONDS {
            return Err(Rejection::Signature("timestamp more than 300 s away"));
        }
        Ok(())
    }

    /// Reads a verified notification: the transaction decrypted, checked to be ours, as an event.
    fn read_notification(&self, body: &[u8], now: Timestamp) -> Result<Verdict, Rejection> {
        let refused = |why: &str| Rejection::Refused(why.to_owned());
        let notification: Notification =
            serde_json::from_slice(body).map_err(|_| refused("body is not a WeChat Pay notification"))?;
        if notification.event_type.starts_with("REFUND.") {
            return self.read_refund(&notification, now);
        }
        let transaction: Transaction = self.decrypt(&notification.resource)?;
        if transaction.mchid != self.mchid || transaction.appid != self.appid {
            return Err(refused("mchid or appid is not ours"));
        }
        let status = match transaction.trade_state.as_str() {
            "SUCCESS" => ReportedStatus::Succeeded,
            "USERPAYING" => ReportedStatus::Processing,
            "CLOSED" | "PAYERROR" | "REVOKED" => ReportedStatus::Failed,
            "NOTPAY" => return Ok(Verdict::Acknowledge("NOTPAY: nothing happened yet")),
            _ => return Ok(Verdict::Acknowledge("a trade state this service does not act on")),
        };
        let payment_id =
            PaymentId::parse(&transaction.out_trade_no).map_err(|_| refused("out_trade_no is not a payment id"))?;
        let event_id = EventId::parse(&notification.id).map_err(|_| refused("notification id is malformed"))?;
        let amount = Money::from_fen(transaction.amount.total).map_err(|_| refused("amount.total is out of range"))?;
        let occurred_at = transaction
            .success_time
            .or(notification.create_time)
            .and_then(|t| Timestamp::parse(&t).ok())
            .unwrap_or(now);
        Ok(Verdict::Event(PaymentEvent {
            event_id,
            payment_id,
            provider_txn_id: transaction.transaction_id,
            status,
            amount,
            occurred_at,
            source: EventSource::Wechatpay,
        }))
    }

    /// A verified refund notification, decrypted and checked to be this merchant's refund of one of our
    /// payments under the number derived from it, as an event in the payment's queue group.
    fn read_refund(&self, notification: &Notification, now: Timestamp) -> Result<Verdict, Rejection> {
        let refused = |why: &str| Rejection::Refused(why.to_owned());
        let refund: RefundResource = self.decrypt(&notification.resource)?;
        if refund.mchid != self.mchid {
            return Err(refused("mchid is not ours"));
        }
        let payment_id =
            PaymentId::parse(&refund.out_trade_no).map_err(|_| refused("out_trade_no is not a payment id"))?;
        if refund.out_refund_no != domain::refund::out_refund_no(&payment_id) {
            return Ok(Verdict::Acknowledge("a refund this service did not ask for"));
        }
        let status = match (notification.event_type.as_str(), refund.refund_status.as_str()) {
            ("REFUND.SUCCESS", "SUCCESS") => ReportedStatus::Refunded,
            ("REFUND.ABNORMAL", "ABNORMAL") => ReportedStatus::RefundAbnormal,
            ("REFUND.CLOSED", "CLOSED") => ReportedStatus::RefundClosed,
            _ => return Err(refused("event_type and refund_status disagree")),
        };
        let event_id = EventId::parse(&notification.id).map_err(|_| refused("notification id is malformed"))?;
        let amount = Money::from_fen(refund.amount.refund).map_err(|_| refused("amount.refund is out of range"))?;
        let occurred_at = notification
            .create_time
            .as_deref()
            .and_then(|t| Timestamp::parse(t).ok())
            .unwrap_or(now);
        Ok(Verdict::Event(PaymentEvent {
            event_id,
            payment_id,
            provider_txn_id: refund.refund_id,
            status,
            amount,
            occurred_at,
            source: EventSource::Wechatpay,
        }))
    }

    fn decrypt<T: serde::de::DeserializeOwned>(&self, resource: &Resource) -> Result<T, Rejection> {
        let refused = |why: &str| Rejection::Refused(why.to_owned());
        if resource.algorithm != "AEAD_AES_256_GCM" {
            return Err(refused("resource algorithm is not AEAD_AES_256_GCM"));
        }
        let key = UnboundKey::new(&AES_256_GCM, &self.apiv3_key.0).map_err(|_| refused("APIv3 key rejected"))?;
        let nonce = Nonce::try_assume_unique_for_key(resource.nonce.as_bytes())
            .map_err(|_| refused("resource nonce is not 12 bytes"))?;
        let mut sealed = STANDARD
            .decode(&resource.ciphertext)
            .map_err(|_| refused("resource ciphertext is not base64"))?;
        let plain = LessSafeKey::new(key)
            .open_in_place(nonce, Aad::from(resource.associated_data.as_bytes()), &mut sealed)
            .map_err(|_| refused("resource does not decrypt under our APIv3 key"))?;
        serde_json::from_slice(plain).map_err(|_| refused("decrypted resource is not what its event_type says"))
    }
}

/// The error codes of a refund request that are WeChat Pay's final word on it (the trade unknown, fully
/// refunded or past its refund window, the payer's account closed): `refund_failed`, for an operator.
const REFUND_REFUSALS: &[&str] = &[
    "INVALID_REQUEST",
    "USER_ACCOUNT_ABNORMAL",
    "RESOURCE_NOT_EXISTS",
    "ORDER_NOT_EXIST",
];

/// A verified refund answer (or refusal) for `request`: `SUCCESS` is refunded with its `refund_id`;
/// `CLOSED` and the final error codes are refusals; `PROCESSING` and `ABNORMAL` are not final. An answer
/// about another refund, or for another amount, is not believed.
fn refund_state(
    request: &domain::refund::RefundRequest,
    answer: &serde_json::Value,
) -> Result<domain::refund::RefundState, domain::ports::ProviderError> {
    use domain::refund::RefundState;
    if let Some(code) = answer["code"].as_str() {
        return Ok(RefundState::Refused {
            code: code.to_owned(),
            message: answer["message"].as_str().unwrap_or("").to_owned(),
        });
    }
    let unreadable =
        |what: &str| domain::ports::ProviderError::Unavailable(format!("WeChat Pay refund answer: {what}").into());
    if answer["out_refund_no"] != request.out_refund_no.as_str() {
        return Err(unreadable("not this refund"));
    }
    if answer["amount"]["refund"].as_u64() != Some(request.amount.to_fen()) {
        return Err(unreadable("another amount"));
    }
    let refund_id = answer["refund_id"].as_str().map(str::to_owned);
    match answer["status"].as_str() {
        Some("SUCCESS") => Ok(RefundState::Succeeded {
            refund_id: refund_id.ok_or_else(|| unreadable("no refund_id"))?,
        }),
        Some("CLOSED") => Ok(RefundState::Refused {
            code: "CLOSED".into(),
            message: "WeChat Pay closed the refund".into(),
        }),
        Some(status @ ("PROCESSING" | "ABNORMAL")) => Ok(RefundState::Pending {
            refund_id,
            status: status.to_owned(),
        }),
        _ => Err(unreadable("no known status")),
    }
}

/// The merchant's side of WeChat Pay APIv3 requests: who we are, the key that signs, where answers and
/// notifications go. The private key never appears in `Debug` output.
#[derive(Debug)]
pub struct WechatPayMerchant {
    /// `mchid`.
    pub mchid: String,
    /// `appid`.
    pub appid: String,
    /// The serial number of the merchant certificate whose key signs (`serial_no`).
    pub serial: String,
    /// The merchant's private key.
    pub key: super::signing::MerchantKey,
    /// Where WeChat Pay posts notifications (the receiver's `/api/payments/callback/wechatpay/`).
    pub notify_url: String,
    /// The API's base URL, `https://api.mch.weixin.qq.com` unless configured.
    pub base_url: String,
}

/// WeChat Pay's production API.
pub const DEFAULT_BASE_URL: &str = "https://api.mch.weixin.qq.com";

impl WechatPayMerchant {
    /// The `Authorization` header of a request: `WECHATPAY2-SHA256-RSA2048` with `mchid`, `nonce_str`,
    /// `timestamp`, `serial_no` and the `signature` (SHA256withRSA under the merchant key, base64) of
    /// `<METHOD>\n<path and query>\n<timestamp>\n<nonce>\n<body>\n` (an empty body for a GET).
    pub fn authorization(&self, method: &str, path_and_query: &str, body: &str, timestamp: i64, nonce: &str) -> String {
        let message = format!("{method}\n{path_and_query}\n{timestamp}\n{nonce}\n{body}\n");
        let signature = self.key.sign(message.as_bytes());
        format!(
            "WECHATPAY2-SHA256-RSA2048 mchid=\"{}\",nonce_str=\"{nonce}\",timestamp=\"{timestamp}\",serial_no=\"{}\",signature=\"{signature}\"",
            self.mchid, self.serial
        )
    }
}

/// A time as WeChat Pay's `time_expire` wants it: RFC 3339 in China Standard Time (`+08:00`), whole
/// seconds.
pub fn time_expire(at: Timestamp) -> String {
    at.in_china().to_rfc3339_opts(chrono::SecondsFormat::Secs, false)
}
/// How long one request to WeChat Pay may take, connect and read (`PROVIDER_TIMEOUT_MS`, default 3 s).
pub const DEFAULT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

/// The merchant's WeChat Pay APIv3 client: requests signed with the merchant key, every answer verified
/// with the platform's keys before it is believed, one jittered retry on a transient failure, and a
/// circuit breaker of its own.
pub struct WechatPayClient {
    /// Who we are and the key that signs.
    pub merchant: WechatPayMerchant,
    /// The platform's keys, which verify answers (as they verify notifications).
    pub platform: WechatPay,
    http: reqwest::Client,
    breaker: crate::breaker::Breaker,
}

impl std::fmt::Debug for WechatPayClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WechatPayClient")
            .field("merchant", &self.merchant)
            .finish_non_exhaustive()
    }
}

impl WechatPayClient {
    /// A client with its own connection pool (rustls), `timeout` per try.
    pub fn new(
        merchant: WechatPayMerchant,
        platform: WechatPay,
        timeout: std::time::Duration,
    ) -> Result<Self, ConfigError> {
        let http = crate::tls::client(timeout).map_err(|e| ConfigError(format!("WeChat Pay HTTP client: {e}")))?;
        Ok(WechatPayClient {
            merchant,
            platform,
            http,
            breaker: crate::breaker::Breaker::new("wechatpay", 5, std::time::Duration::from_secs(30)),
        })
    }

    /// The same client with its breaker opening after `failures` failed calls for `cool_down`.
    pub fn with_breaker(mut self, failures: u32, cool_down: std::time::Duration) -> Self {
        self.breaker = crate::breaker::Breaker::new("wechatpay", failures, cool_down);
        self
    }

    /// `POST path` with `body`, signed; the verified answer's JSON.
    pub async fn post(
        &self,
        path: &str,
        body: &serde_json::Value,
    ) -> Result<serde_json::Value, domain::ports::ProviderError> {
        Ok(self.request("POST", path, Some(body), &[]).await?.1)
    }

    /// `method path` (with its query) and `body`, signed; the verified answer: its status and JSON
    /// (`null` for an empty one, as a `204`). An error answer whose `code` is in `accept` is returned as
    /// an answer for the caller to judge; any other is a provider error.
    pub async fn request(
        &self,
        method: &'static str,
        path: &str,
        body: Option<&serde_json::Value>,
        accept: &[&str],
    ) -> Result<(u16, serde_json::Value), domain::ports::ProviderError> {
        let body = body.map(serde_json::Value::to_string).unwrap_or_default();
        super::call_provider(&self.breaker, "wechatpay", path, || {
            self.try_once(method, path, &body, accept)
        })
        .await
    }

    async fn try_once(
        &self,
        method: &'static str,
        path: &str,
        body: &str,
        accept: &[&str],
    ) -> Result<(u16, serde_json::Value), TryError> {
        use domain::ports::ProviderError;
        let now = Timestamp::now();
        let nonce = uuid::Uuid::new_v4().simple().to_string().to_uppercase();
        let authorization = self
            .merchant
            .authorization(method, path, body, now.unix_seconds(), &nonce);
        let url = format!("{}{path}", self.merchant.base_url);
        let request = match method {
            "GET" => self.http.get(url),
            _ => self
                .http
                .post(url)
                .header("Content-Type", "application/json")
                .body(body.to_owned()),
        };
        let response = request
            .header("Authorization", authorization)
            .header("Accept", "application/json")
            .send()
            .await
            .map_err(|e| TryError::Transient(format!("WeChat Pay request failed: {e}")))?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response
            .bytes()
            .await
            .map_err(|e| TryError::Transient(format!("WeChat Pay answer unreadable: {e}")))?;
        if status >= 500 || status == 429 {
            return Err(TryError::Transient(format!("WeChat Pay answered {status}")));
        }
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
        self.platform
            .verify_signed(&header, &text, Timestamp::now())
            .map_err(|why| TryError::Transient(format!("WeChat Pay answer not verified: {why}")))?;
        let answer: serde_json::Value = if text.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_slice(&text).map_err(|_| TryError::Transient("WeChat Pay answer is not JSON".into()))?
        };
        if (200..300).contains(&status) {
            return Ok((status, answer));
        }
        let code = answer["code"].as_str().unwrap_or("").to_owned();
        let message = answer["message"].as_str().unwrap_or("").to_owned();
        if accept.contains(&code.as_str()) {
            return Ok((status, answer));
        }
        Err(match code.as_str() {
            "ORDERPAID" => TryError::Final(ProviderError::AlreadyPaid),
            "SYSTEM_ERROR" | "FREQUENCY_LIMITED" | "BANK_ERROR" | "NOT_ENOUGH" => {
                TryError::Transient(format!("WeChat Pay answered {status} {code}"))
            }
            _ => {
                tracing::error!(status, code, message, "WeChat Pay refused our request");
                TryError::Final(ProviderError::Refused(
                    format!("WeChat Pay answered {status} {code}").into(),
                ))
            }
        })
    }

    /// Closes the trade `out_trade_no` (`POST /v3/pay/transactions/out-trade-no/{out_trade_no}/close`,
    /// body `{"mchid"}`, answered `204`). A trade already paid, closed or never opened is no error here:
    /// the query that follows says which.
    pub async fn close(&self, out_trade_no: &str) -> Result<(), domain::ports::ProviderError> {
        let path = format!("/v3/pay/transactions/out-trade-no/{out_trade_no}/close");
        let body = serde_json::json!({ "mchid": self.merchant.mchid });
        let settled = [
            "ORDERPAID",
            "ORDER_CLOSED",
            "ORDERNOTEXIST",
            "ORDER_NOT_EXIST",
            "TRADE_ERROR",
        ];
        self.request("POST", &path, Some(&body), &settled).await.map(|_| ())
    }

    /// The trade `out_trade_no` as WeChat Pay reports it (`GET
    /// /v3/pay/transactions/out-trade-no/{out_trade_no}?mchid=…`): `SUCCESS` (or `REFUND`, paid and since
    /// refunded) is paid, with its `transaction_id`, `amount.total` in fen and `success_time`;
    /// `CLOSED`, `REVOKED`, `PAYERROR` and a trade it does not know are closed; `NOTPAY`, `USERPAYING`
    /// are open.
    pub async fn query(&self, out_trade_no: &str) -> Result<domain::closing::TradeState, domain::ports::ProviderError> {
        use domain::closing::TradeState;
        use domain::ports::ProviderError;
        let path = format!(
            "/v3/pay/transactions/out-trade-no/{out_trade_no}?mchid={}",
            self.merchant.mchid
        );
        let (status, answer) = self
            .request("GET", &path, None, &["ORDER_NOT_EXIST", "ORDERNOTEXIST"])
            .await?;
        if status == 404 || answer["code"].is_string() {
            return Ok(TradeState::Closed);
        }
        let unreadable = |what: &str| ProviderError::Unavailable(format!("WeChat Pay query answer: {what}").into());
        if answer["out_trade_no"] != out_trade_no || answer["mchid"] != self.merchant.mchid.as_str() {
            return Err(unreadable("not this merchant's trade"));
        }
        match answer["trade_state"].as_str() {
            Some("SUCCESS" | "REFUND") => {
                let provider_txn_id = answer["transaction_id"]
                    .as_str()
                    .ok_or_else(|| unreadable("no transaction_id"))?
                    .to_owned();
                let amount = answer["amount"]["total"]
                    .as_u64()
                    .and_then(|fen| domain::Money::from_fen(fen).ok())
                    .ok_or_else(|| unreadable("no amount.total"))?;
                let paid_at = answer["success_time"]
                    .as_str()
                    .and_then(|t| Timestamp::parse(t).ok())
                    .unwrap_or_else(Timestamp::now);
                Ok(TradeState::Paid {
                    provider_txn_id,
                    amount,
                    paid_at,
                })
            }
            Some("CLOSED" | "REVOKED" | "PAYERROR") => Ok(TradeState::Closed),
            Some(_) => Ok(TradeState::Open),
            None => Err(unreadable("no trade_state")),
        }
    }

    /// Asks for the refund of `request` (`POST /v3/refund/domestic/refunds` with `out_trade_no`,
    /// `out_refund_no`, `reason`, `notify_url` and `amount{refund,total,currency}` in fen): WeChat Pay
    /// refunds one number once, however often it is asked. Its answer judged by [`refund_state`].
    pub async fn refund(
        &self,
        request: &domain::refund::RefundRequest,
    ) -> Result<domain::refund::RefundState, domain::ports::ProviderError> {
        let body = serde_json::json!({
            "out_trade_no": request.payment_id,
            "out_refund_no": request.out_refund_no,
            "reason": request.reason,
            "notify_url": self.merchant.notify_url,
            "amount": {
                "refund": request.amount.to_fen(),
                "total": request.total.to_fen(),
                "currency": "CNY",
            },
        });
        let (_, answer) = self
            .request("POST", "/v3/refund/domestic/refunds", Some(&body), REFUND_REFUSALS)
            .await?;
        refund_state(request, &answer)
    }

    /// The refund `request.out_refund_no` as WeChat Pay reports it (`GET
    /// /v3/refund/domestic/refunds/{out_refund_no}`); one it does not know (`RESOURCE_NOT_EXISTS`: our
    /// earlier request never reached it) is asked for again, under the same number.
    pub async fn query_refund(
        &self,
        request: &domain::refund::RefundRequest,
    ) -> Result<domain::refund::RefundState, domain::ports::ProviderError> {
        let path = format!("/v3/refund/domestic/refunds/{}", request.out_refund_no);
        let (status, answer) = self.request("GET", &path, None, &["RESOURCE_NOT_EXISTS"]).await?;
        if status == 404 || answer["code"] == "RESOURCE_NOT_EXISTS" {
            return self.refund(request).await;
        }
        refund_state(request, &answer)
    }

    /// A prepay for `request` (native or JSAPI): the trade opened under `out_trade_no` = the payment
    /// id, the amount in fen, `time_expire` = the payment's expiry (`+08:00`), notifications to ours.
    /// What the shopper pays with: a `code_url`, or the JSAPI `params` signed with the merchant key.
    pub async fn prepay(
        &self,
        request: &domain::checkout::CheckoutRequest,
    ) -> Result<serde_json::Map<String, serde_json::Value>, domain::ports::ProviderError> {
        use domain::checkout::Scene;
        use domain::ports::ProviderError;
        let mut body = serde_json::json!({
            "appid": self.merchant.appid,
            "mchid": self.merchant.mchid,
            "description": request.description,
            "out_trade_no": request.payment_id,
            "time_expire": time_expire(request.expires_at),
            "notify_url": self.merchant.notify_url,
            "amount": {"total": request.amount.to_fen(), "currency": "CNY"},
        });
        let path = match (request.scene, &request.payer_openid) {
            (Scene::Native, _) => "/v3/pay/transactions/native",
            (Scene::Jsapi, Some(openid)) => {
                body["payer"] = serde_json::json!({ "openid": openid });
                "/v3/pay/transactions/jsapi"
            }
            _ => return Err(ProviderError::Refused("not a WeChat Pay scene".into())),
        };
        let answer = self.post(path, &body).await?;
        let mut out = serde_json::Map::new();
        if request.scene == Scene::Native {
            let code_url = answer["code_url"]
                .as_str()
                .ok_or_else(|| ProviderError::Unavailable("WeChat Pay answer has no code_url".into()))?;
            out.insert("code_url".into(), code_url.into());
        } else {
            let prepay_id = answer["prepay_id"]
                .as_str()
                .ok_or_else(|| ProviderError::Unavailable("WeChat Pay answer has no prepay_id".into()))?;
            out.insert("params".into(), self.jsapi_params(prepay_id, Timestamp::now()));
        }
        Ok(out)
    }

    /// The parameters `WeixinJSBridge.invoke('getBrandWCPayRequest', …)` takes: `paySign` is the
    /// merchant key's SHA256-RSA signature of `appId\ntimeStamp\nnonceStr\npackage\n`.
    pub fn jsapi_params(&self, prepay_id: &str, now: Timestamp) -> serde_json::Value {
        let time_stamp = now.unix_seconds().to_string();
        let nonce = uuid::Uuid::new_v4().simple().to_string().to_uppercase();
        let package = format!("prepay_id={prepay_id}");
        let message = format!("{}\n{time_stamp}\n{nonce}\n{package}\n", self.merchant.appid);
        serde_json::json!({
            "appId": self.merchant.appid,
            "timeStamp": time_stamp,
            "nonceStr": nonce,
            "package": package,
            "signType": "RSA",
            "paySign": self.merchant.key.sign(message.as_bytes()),
        })
    }
}
