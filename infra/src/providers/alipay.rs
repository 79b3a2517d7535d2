//! Alipay asynchronous notifications (form-urlencoded): RSA2 (SHA256withRSA) over every parameter but
//! `sign` and `sign_type`, values decoded, empty values left out, sorted by name, joined `k=v` with `&`.

use super::RsaPublicKey;
use domain::callback::{EventId, EventSource, PaymentEvent, ReportedStatus};
use domain::{Money, PaymentId, Timestamp};

use super::{env, rsa_public_key, rsa_sha256_verifies, ConfigError, Rejection, TryError, Verdict};

/// The app's Alipay settings.
pub struct Alipay {
    app_id: String,
    public_key: RsaPublicKey,
}

impl std::fmt::Debug for Alipay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Alipay {{ app_id: {} }}", self.app_id)
    }
}

/// The string Alipay signs on a notification: the parameters other than `sign` and `sign_type`, with
/// empty values left out, sorted by name, as `k=v` joined by `&`.
pub fn signing_string(params: &[(String, String)]) -> String {
    sorted_pairs(params, &["sign", "sign_type"])
}

/// Every parameter with a non-empty value but those `left_out`, sorted by name, as `k=v` joined by `&`,
/// values as they are (not URL-encoded): the one canonical form of both directions.
fn sorted_pairs(params: &[(String, String)], left_out: &[&str]) -> String {
    let mut signed: Vec<&(String, String)> = params
        .iter()
        .filter(|(k, v)| !left_out.contains(&k.as_str()) && !v.is_empty())
        .collect();
    signed.sort_by(|a, b| a.0.cmp(&b.0));
    signed
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// Alipay's times are Beijing time, `yyyy-MM-dd HH:mm:ss`.
fn beijing_time(text: &str) -> Option<Timestamp> {
    let local = chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S").ok()?;
    let offset = chrono::FixedOffset::east_opt(8 * 3600)?;
    let at = local.and_local_timezone(offset).single()?;
    Some(Timestamp::from_datetime(at.with_timezone(&chrono::Utc)))
}

impl Alipay {
    /// From the app id and Alipay's public key (PEM, bare base64 as the console shows it, or a path).
    pub fn new(app_id: &str, public_key: &str) -> Result<Self, ConfigError> {
        Ok(Alipay {
            app_id: app_id.to_owned(),
            public_key: rsa_public_key(public_key)?,
        })
    }

    /// From `ALIPAY_APP_ID` and `ALIPAY_PUBLIC_KEY`; `None` when neither is set.
    pub fn from_env() -> Result<Option<Self>, ConfigError> {
        match (env("ALIPAY_APP_ID"), env("ALIPAY_PUBLIC_KEY")) {
            (None, None) => Ok(None),
            (Some(app_id), Some(key)) => Self::new(&app_id, &key).map(Some),
            _ => Err(ConfigError(
                "Alipay needs both ALIPAY_APP_ID and ALIPAY_PUBLIC_KEY".into(),
            )),
        }
    }

    /// Verifies a notification's form body and reads the trade.
    pub fn verify(&self, body: &[u8]) -> Result<Verdict, Rejection> {
        let params: Vec<(String, String)> = form_urlencoded::parse(body)
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        let get = |name: &str| {
            params
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
                .filter(|v| !v.is_empty())
        };
        let mut names: Vec<&str> = params.iter().map(|(k, _)| k.as_str()).collect();
        names.sort_unstable();
        if names.windows(2).any(|w| w[0] == w[1]) {
            return Err(Rejection::Signature("a parameter appears twice"));
        }
        if let Some(charset) = get("charset") {
            if !charset.eq_ignore_ascii_case("utf-8") && !charset.eq_ignore_ascii_case("utf8") {
                return Err(Rejection::Signature("charset other than utf-8"));
            }
        }
        let signature = get("sign").ok_or(Rejection::Signature("no sign"))?;
        if get("sign_type").is_some_and(|t| t != "RSA2") {
            return Err(Rejection::Signature("sign_type other than RSA2"));
        }
        if !rsa_sha256_verifies(&self.public_key, signing_string(&params).as_bytes(), signature) {
            return Err(Rejection::Signature("signature does not verify"));
        }

        let refused = |why: &str| Rejection::Refused(why.to_owned());
        if get("app_id") != Some(self.app_id.as_str()) {
            return Err(refused("app_id is not ours"));
        }
        let status = match get("trade_status") {
            Some("TRADE_SUCCESS" | "TRADE_FINISHED") => ReportedStatus::Succeeded,
            Some("WAIT_BUYER_PAY") => ReportedStatus::Processing,
            Some("TRADE_CLOSED") => ReportedStatus::Failed,
            _ => return Err(refused("trade_status missing or unknown")),
        };
        let payment_id = get("out_trade_no")
            .and_then(|id| PaymentId::parse(id).ok())
            .ok_or_else(|| refused("out_trade_no is not a payment id"))?;
        let event_id = get("notify_id")
            .and_then(|id| EventId::parse(id).ok())
            .ok_or_else(|| refused("notify_id missing or malformed"))?;
        let amount = get("total_amount")
            .and_then(|a| Money::parse(a).ok())
            .ok_or_else(|| refused("total_amount is not an amount in yuan"))?;
        let occurred_at = get("gmt_payment")
            .or(get("notify_time"))
            .and_then(beijing_time)
            .ok_or_else(|| refused("no readable notify_time"))?;
        Ok(Verdict::Event(PaymentEvent {
            event_id,
            payment_id,
            provider_txn_id: get("trade_no").unwrap_or_default().to_owned(),
            status,
            amount,
            occurred_at,
            source: EventSource::Alipay,
        }))
    }
}

/// The app's side of Alipay OpenAPI requests: who we are, the key that signs, where Alipay sends the
/// shopper back and its notifications. The private key never appears in `Debug` output.
#[derive(Debug, Clone)]
pub struct AlipayApp {
    /// `app_id`.
    pub app_id: String,
    /// The app's private key (RSA2).
    pub key: super::signing::MerchantKey,
    /// Where Alipay posts notifications (the receiver's `/api/payments/callback/alipay/`).
    pub notify_url: String,
    /// Where a page payment sends the shopper back, if anywhere.
    pub return_url: Option<String>,
    /// The gateway, `https://openapi.alipay.com/gateway.do` unless configured.
    pub gateway: String,
}

/// Alipay's production gateway.
pub const DEFAULT_GATEWAY: &str = "https://openapi.alipay.com/gateway.do";

/// A time as Alipay's requests carry it (`timestamp`, `time_expire`): `yyyy-MM-dd HH:mm:ss` in China
/// Standard Time.
pub fn china_time(at: Timestamp) -> String {
    at.in_china().format("%Y-%m-%d %H:%M:%S").to_string()
}

/// The string Alipay verifies on a request: every parameter with a non-empty value but `sign` itself
/// (`sign_type` included, unlike a notification's), sorted by name, joined as `k=v` with `&`, values
/// as they are (not URL-encoded).
pub fn request_signing_string(params: &[(String, String)]) -> String {
    sorted_pairs(params, &["sign"])
}

impl AlipayApp {
    /// A request to `method` with `biz_content`, as its common parameters (`app_id`, `method`,
    /// `format=JSON`, `charset=utf-8`, `sign_type=RSA2`, `timestamp` in China time, `version=1.0`,
    /// `notify_url`, and `return_url` when given) and `biz_content`, then `sign`.
    pub fn signed_params(
        &self,
        method: &str,
        biz_content: &serde_json::Value,
        now: Timestamp,
        return_url: Option<&str>,
    ) -> Vec<(String, String)> {
        let mut params: Vec<(String, String)> = [
            ("app_id", self.app_id.as_str()),
            ("method", method),
            ("format", "JSON"),
            ("charset", "utf-8"),
            ("sign_type", "RSA2"),
            ("version", "1.0"),
            ("notify_url", self.notify_url.as_str()),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
        params.push(("timestamp".into(), china_time(now)));
        if let Some(url) = return_url {
            params.push(("return_url".into(), url.to_owned()));
        }
        params.push(("biz_content".into(), biz_content.to_string()));
        let sign = self.key.sign(request_signing_string(&params).as_bytes());
        params.push(("sign".into(), sign));
        params
    }

    /// The gateway URL carrying `params` (a page payment's link, or a request's target), URL-encoded.
    pub fn url(&self, params: &[(String, String)]) -> String {
        let query = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(params.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .finish();
        format!("{}?{query}", self.gateway)
    }
}

impl Alipay {
    /// Verifies Alipay's answer to a request of `method` and returns its response object: the `sign`
    /// must be Alipay's RSA2 signature over the exact text of `<method with _>_response` (or
    /// `error_response`) as it stands in the body, byte for byte; nothing in it is believed before.
    pub fn verify_answer(&self, method: &str, body: &[u8]) -> Result<serde_json::Value, Rejection> {
        let envelope: std::collections::HashMap<String, Box<serde_json::value::RawValue>> =
            serde_json::from_slice(body).map_err(|_| Rejection::Signature("answer is not a JSON object"))?;
        let key = format!("{}_response", method.replace('.', "_"));
        let response = envelope
            .get(&key)
            .or_else(|| envelope.get("error_response"))
            .ok_or(Rejection::Signature("answer holds no response"))?;
        let sign: String = envelope
            .get("sign")
            .and_then(|s| serde_json::from_str(s.get()).ok())
            .ok_or(Rejection::Signature("answer is not signed"))?;
        if !rsa_sha256_verifies(&self.public_key, response.get().as_bytes(), &sign) {
            return Err(Rejection::Signature("answer's signature does not verify"));
        }
        serde_json::from_str(response.get()).map_err(|_| Rejection::Refused("response is not an object".into()))
    }
}

/// The app's Alipay OpenAPI client: requests signed with the app key, every answer verified with
/// Alipay's public key over its exact text before it is believed, one jittered retry on a transient
/// failure, and a circuit breaker of its own.
pub struct AlipayClient {
    /// Who we are and the key that signs.
    pub app: AlipayApp,
    /// Alipay's public key, which verifies answers (as it verifies notifications).
    pub alipay: Alipay,
    http: reqwest::Client,
    breaker: crate::breaker::Breaker,
}

impl std::fmt::Debug for AlipayClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AlipayClient")
            .field("app", &self.app)
            .finish_non_exhaustive()
    }
}

impl AlipayClient {
    /// A client with its own connection pool (rustls), `timeout` per try.
    pub fn new(app: AlipayApp, alipay: Alipay, timeout: std::time::Duration) -> Result<Self, ConfigError> {
        let http = crate::tls::client(timeout).map_err(|e| ConfigError(format!("Alipay HTTP client: {e}")))?;
        Ok(AlipayClient {
            app,
            alipay,
            http,
            breaker: crate::breaker::Breaker::new("alipay", 5, std::time::Duration::from_secs(30)),
        })
    }

    /// The same client with its breaker opening after `failures` failed calls for `cool_down`.
    pub fn with_breaker(mut self, failures: u32, cool_down: std::time::Duration) -> Self {
        self.breaker = crate::breaker::Breaker::new("alipay", failures, cool_down);
        self
    }

    /// Calls `method` with `biz_content`; the verified response object of a successful call (`code`
    /// `10000`).
    pub async fn call(
        &self,
        method: &str,
        biz_content: &serde_json::Value,
    ) -> Result<serde_json::Value, domain::ports::ProviderError> {
        self.call_accepting(method, biz_content, &[]).await
    }

    /// [`call`](Self::call), with a business failure whose `sub_code` is in `accept` returned as an
    /// answer for the caller to judge.
    pub async fn call_accepting(
        &self,
        method: &str,
        biz_content: &serde_json::Value,
        accept: &[&str],
    ) -> Result<serde_json::Value, domain::ports::ProviderError> {
        super::call_provider(&self.breaker, "alipay", method, || {
            self.try_once(method, biz_content, accept)
        })
        .await
    }

    async fn try_once(
        &self,
        method: &str,
        biz_content: &serde_json::Value,
        accept: &[&str],
    ) -> Result<serde_json::Value, TryError> {
        use domain::ports::ProviderError;
        let params = self.app.signed_params(method, biz_content, Timestamp::now(), None);
        let form = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(params.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .finish();
        let response = self
            .http
            .post(&self.app.gateway)
            .header("Content-Type", "application/x-www-form-urlencoded;charset=utf-8")
            .body(form)
            .send()
            .await
            .map_err(|e| TryError::Transient(format!("Alipay request failed: {e}")))?;
        let status = response.status().as_u16();
        let text = response
            .bytes()
            .await
            .map_err(|e| TryError::Transient(format!("Alipay answer unreadable: {e}")))?;
        if status >= 500 || status == 429 {
            return Err(TryError::Transient(format!("Alipay answered {status}")));
        }
        let answer = self
            .alipay
            .verify_answer(method, &text)
            .map_err(|why| TryError::Transient(format!("Alipay answer not verified: {why}")))?;
        let code = answer["code"].as_str().unwrap_or("").to_owned();
        let sub_code = answer["sub_code"].as_str().unwrap_or("").to_owned();
        match (code.as_str(), sub_code.as_str()) {
            ("10000", _) => Ok(answer),
            ("40004", sub_code) if accept.contains(&sub_code) => Ok(answer),
            (_, "ACQ.TRADE_HAS_SUCCESS") => Err(TryError::Final(ProviderError::AlreadyPaid)),
            ("20000", _) | (_, "ACQ.SYSTEM_ERROR") => {
                Err(TryError::Transient(format!("Alipay answered {code} {sub_code}")))
            }
            _ => {
                tracing::error!(code, sub_code, "Alipay refused our request");
                Err(TryError::Final(ProviderError::Refused(
                    format!("Alipay answered {code} {sub_code}").into(),
                )))
            }
        }
    }

    /// A QR trade for `request` (`alipay.trade.precreate`): `out_trade_no` = the payment id,
    /// `total_amount` in yuan, `time_expire` = the payment's expiry in China time. Its `qr_code`.
    pub async fn precreate(
        &self,
        request: &domain::checkout::CheckoutRequest,
    ) -> Result<serde_json::Map<String, serde_json::Value>, domain::ports::ProviderError> {
        let biz = serde_json::json!({
            "out_trade_no": request.payment_id,
            "total_amount": request.amount.to_string(),
            "subject": request.description,
            "time_expire": china_time(request.expires_at),
        });
        let answer = self.call("alipay.trade.precreate", &biz).await?;
        let qr_code = answer["qr_code"]
            .as_str()
            .ok_or_else(|| domain::ports::ProviderError::Unavailable("Alipay answer has no qr_code".into()))?;
        let mut out = serde_json::Map::new();
        out.insert("qr_code".into(), qr_code.into());
        Ok(out)
    }

    /// Closes the trade `out_trade_no` (`alipay.trade.close`). A trade Alipay does not know (a page
    /// payment never opened), already closed or already paid is no error here: the query that follows
    /// says which.
    pub async fn close(&self, out_trade_no: &str) -> Result<(), domain::ports::ProviderError> {
        let biz = serde_json::json!({ "out_trade_no": out_trade_no });
        let settled = [
            "ACQ.TRADE_NOT_EXIST",
            "ACQ.TRADE_STATUS_ERROR",
            "ACQ.TRADE_HAS_CLOSE",
            "ACQ.TRADE_HAS_SUCCESS",
        ];
        self.call_accepting("alipay.trade.close", &biz, &settled)
            .await
            .map(|_| ())
    }

    /// The trade `out_trade_no` as Alipay reports it (`alipay.trade.query`): `TRADE_SUCCESS` or
    /// `TRADE_FINISHED` is paid, with its `trade_no`, `total_amount` in yuan and `send_pay_date` (China
    /// time); `TRADE_CLOSED` and a trade it does not know (`ACQ.TRADE_NOT_EXIST`) are closed;
    /// `WAIT_BUYER_PAY` is open.
    pub async fn query(&self, out_trade_no: &str) -> Result<domain::closing::TradeState, domain::ports::ProviderError> {
        use domain::closing::TradeState;
        use domain::ports::ProviderError;
        let biz = serde_json::json!({ "out_trade_no": out_trade_no });
        let answer = self
            .call_accepting("alipay.trade.query", &biz, &["ACQ.TRADE_NOT_EXIST"])
            .await?;
        if answer["code"] != "10000" {
            return Ok(TradeState::Closed);
        }
        let unreadable = |what: &str| ProviderError::Unavailable(format!("Alipay query answer: {what}").into());
        if answer["out_trade_no"] != out_trade_no {
            return Err(unreadable("not this trade"));
        }
        match answer["trade_status"].as_str() {
            Some("TRADE_SUCCESS" | "TRADE_FINISHED") => {
                let provider_txn_id = answer["trade_no"]
                    .as_str()
                    .ok_or_else(|| unreadable("no trade_no"))?
                    .to_owned();
                let amount = answer["total_amount"]
                    .as_str()
                    .and_then(|yuan| domain::Money::parse(yuan).ok())
                    .ok_or_else(|| unreadable("no total_amount"))?;
                let paid_at = answer["send_pay_date"]
                    .as_str()
                    .and_then(beijing_time)
                    .unwrap_or_else(Timestamp::now);
                Ok(TradeState::Paid {
                    provider_txn_id,
                    amount,
                    paid_at,
                })
            }
            Some("TRADE_CLOSED") => Ok(TradeState::Closed),
            Some(_) => Ok(TradeState::Open),
            None => Err(unreadable("no trade_status")),
        }
    }

    /// Asks for the refund of `request` (`alipay.trade.refund` with `out_trade_no`, `refund_amount` in
    /// yuan, `out_request_no` = the refund number, `refund_reason`): Alipay refunds one `out_request_no`
    /// once. `fund_change` `Y` is refunded (its answer checked to be this trade's, its `refund_fee` this
    /// amount); `N` (no money moved by this request: done before, or not yet) is settled by the refund query.
    /// A final refusal (`ACQ.TRADE_NOT_ALLOW_REFUND`, `ACQ.TRADE_HAS_FINISHED`, ...) is a refusal with
    /// its `sub_code`.
    pub async fn refund(
        &self,
        request: &domain::refund::RefundRequest,
    ) -> Result<domain::refund::RefundState, domain::ports::ProviderError> {
        use domain::refund::RefundState;
        let biz = serde_json::json!({
            "out_trade_no": request.payment_id,
            "refund_amount": request.amount.to_string(),
            "out_request_no": request.out_refund_no,
            "refund_reason": request.reason,
        });
        let answer = self
            .call_accepting("alipay.trade.refund", &biz, REFUND_REFUSALS)
            .await?;
        if answer["code"] != "10000" {
            return Ok(RefundState::Refused {
                code: answer["sub_code"].as_str().unwrap_or("40004").to_owned(),
                message: answer["sub_msg"].as_str().unwrap_or("").to_owned(),
            });
        }
        let unreadable =
            |what: &str| domain::ports::ProviderError::Unavailable(format!("Alipay refund answer: {what}").into());
        if answer["out_trade_no"] != request.payment_id.as_str() {
            return Err(unreadable("not this trade"));
        }
        if answer["fund_change"] == "Y" {
            // `refund_fee` is what the trade has had refunded: the whole payment, nothing else.
            let refunded = answer["refund_fee"]
                .as_str()
                .and_then(|yuan| domain::Money::parse(yuan).ok());
            if refunded != Some(request.amount) {
                return Err(unreadable("another amount"));
            }
            let trade_no = answer["trade_no"].as_str().ok_or_else(|| unreadable("no trade_no"))?;
            return Ok(RefundState::Succeeded {
                refund_id: format!("{trade_no}/{}", request.out_refund_no),
            });
        }
        Ok(self.lookup_refund(request).await?.unwrap_or(RefundState::Pending {
            refund_id: None,
            status: "NOT_REFUNDED".into(),
        }))
    }

    /// The refund as Alipay reports it; one it has not made (its request never arrived, or failed) is
    /// asked for again under the same number.
    pub async fn query_refund(
        &self,
        request: &domain::refund::RefundRequest,
    ) -> Result<domain::refund::RefundState, domain::ports::ProviderError> {
        match self.lookup_refund(request).await? {
            Some(refunded) => Ok(refunded),
            None => self.refund(request).await,
        }
    }

    /// The refund `out_request_no` as Alipay reports it (`alipay.trade.fastpay.refund.query`):
    /// `refund_status` `REFUND_SUCCESS` for this amount is refunded; without it (or for a trade it does
    /// not know) Alipay has not refunded it: `None`.
    async fn lookup_refund(
        &self,
        request: &domain::refund::RefundRequest,
    ) -> Result<Option<domain::refund::RefundState>, domain::ports::ProviderError> {
        use domain::refund::RefundState;
        let biz = serde_json::json!({
            "out_trade_no": request.payment_id,
            "out_request_no": request.out_refund_no,
        });
        let answer = self
            .call_accepting("alipay.trade.fastpay.refund.query", &biz, &["ACQ.TRADE_NOT_EXIST"])
            .await?;
        let unreadable = |what: &str| {
            domain::ports::ProviderError::Unavailable(format!("Alipay refund query answer: {what}").into())
        };
        let refunded = answer["code"] == "10000" && answer["refund_status"] == "REFUND_SUCCESS";
        if !refunded {
            return Ok(None);
        }
        if answer["out_request_no"] != request.out_refund_no.as_str() {
            return Err(unreadable("not this refund"));
        }
        let amount = answer["refund_amount"]
            .as_str()
            .and_then(|yuan| domain::Money::parse(yuan).ok());
        if amount != Some(request.amount) {
            return Err(unreadable("another amount"));
        }
        let trade_no = answer["trade_no"].as_str().ok_or_else(|| unreadable("no trade_no"))?;
        Ok(Some(RefundState::Succeeded {
            refund_id: format!("{trade_no}/{}", request.out_refund_no),
        }))
    }
}

/// The `sub_code`s of `alipay.trade.refund` that are Alipay's final word on a refund: `refund_failed`,
/// for an operator.
const REFUND_REFUSALS: &[&str] = &[
    "ACQ.TRADE_NOT_EXIST",
    "ACQ.TRADE_STATUS_ERROR",
    "ACQ.TRADE_NOT_ALLOW_REFUND",
    "ACQ.TRADE_HAS_FINISHED",
    "ACQ.TRADE_HAS_CLOSE",
    "ACQ.REFUND_AMT_NOT_EQUAL_TOTAL",
    "ACQ.REFUND_FEE_ERROR",
    "ACQ.REASON_TRADE_REFUND_FEE_ERR",
    "ACQ.BUYER_ERROR",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signing_string_drops_sign_and_empty_values_and_sorts() {
        let params: Vec<(String, String)> = [
            ("b", "2"),
            ("sign", "x"),
            ("a", "1"),
            ("empty", ""),
            ("sign_type", "RSA2"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(signing_string(&params), "a=1&b=2");
    }

    #[test]
    fn beijing_time_is_utc_plus_eight() {
        assert_eq!(
            beijing_time("2026-11-25 15:00:00"),
            Some(Timestamp::parse("2026-11-25T07:00:00Z").unwrap())
        );
    }
}
