//! Payment callbacks: the one normalized event every provider format becomes, the generic signed format
//! (docs/api.md §8) and its HMAC signature check.

use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::Sha256;

use crate::field::FieldError;
use crate::ids::{PaymentId, PaymentMethod};
use crate::money::Money;
use crate::time::Timestamp;

/// How far a callback's signing time may be from ours, either way.
pub const MAX_CLOCK_SKEW_SECONDS: i64 = 300;

/// What the provider says happened to the payment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReportedStatus {
    /// The shopper is paying.
    Processing,
    /// The money was taken.
    Succeeded,
    /// The provider refused or closed the payment.
    Failed,
    /// The payment's refund succeeded (WeChat Pay `REFUND.SUCCESS`): `provider_txn_id` is the
    /// provider's refund id, `amount` the amount refunded.
    Refunded,
    /// The payment's refund is stuck at the provider (`REFUND.ABNORMAL`): not final.
    #[serde(rename = "refund_abnormal")]
    RefundAbnormal,
    /// The payment's refund was closed for good (`REFUND.CLOSED`).
    #[serde(rename = "refund_closed")]
    RefundClosed,
}

impl ReportedStatus {
    /// What a refund notification says of the refund; `None` for a payment's own statuses.
    pub fn refund_state(self, provider_refund_id: &str) -> Option<crate::refund::RefundState> {
        use crate::refund::RefundState;
        match self {
            Self::Refunded => Some(RefundState::Succeeded {
                refund_id: provider_refund_id.to_owned(),
            }),
            Self::RefundAbnormal => Some(RefundState::Pending {
                refund_id: Some(provider_refund_id.to_owned()),
                status: "ABNORMAL".into(),
            }),
            Self::RefundClosed => Some(RefundState::Refused {
                code: "CLOSED".into(),
                message: "the provider closed the refund".into(),
            }),
            Self::Processing | Self::Succeeded | Self::Failed => None,
        }
    }
}

/// Which format (and so which provider) a callback came in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventSource {
    /// The generic HMAC-signed format; any payment method, amounts within the seed's 0.01 tolerance.
    Generic,
    /// WeChat Pay's APIv3 notification; wechat payments only, exact amounts.
    Wechatpay,
    /// Alipay's asynchronous notification; alipay payments only, exact amounts.
    Alipay,
}

impl EventSource {
    /// Whether a callback in this format may speak for a payment made with `method`.
    pub fn speaks_for(self, method: PaymentMethod) -> bool {
        match self {
            Self::Generic => true,
            Self::Wechatpay => method == PaymentMethod::Wechat,
            Self::Alipay => method == PaymentMethod::Alipay,
        }
    }

    /// Whether `reported` is the payment's `expected` amount: within 0.01 for the generic format (the
    /// seed's tolerance for floating-point rounding), to the fen for providers that send exact figures.
    pub fn amount_matches(self, expected: Money, reported: Money) -> bool {
        match self {
            Self::Generic => expected.matches(reported),
            Self::Wechatpay | Self::Alipay => expected == reported,
        }
    }
}

/// A provider's event id: what the queue deduplicates on and what the payment remembers as applied.
/// 1..=128 visible ASCII characters (the SQS deduplication id's alphabet).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct EventId(String);

impl EventId {
    /// Accepts 1..=128 visible ASCII characters.
    pub fn parse(text: &str) -> Result<Self, String> {
        if (1..=128).contains(&text.len()) && text.bytes().all(|b| b.is_ascii_graphic()) {
            Ok(EventId(text.to_owned()))
        } else {
            Err("must be 1 to 128 visible ASCII characters".into())
        }
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for EventId {
    type Error = String;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        EventId::parse(&value)
    }
}

impl From<EventId> for String {
    fn from(id: EventId) -> String {
        id.0
    }
}

impl std::fmt::Display for EventId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// One verified provider notification, in the form every format is turned into and the queue carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentEvent {
    /// The provider's id for this notification.
    pub event_id: EventId,
    /// Our payment id, as the provider echoes it.
    pub payment_id: PaymentId,
    /// The provider's transaction id.
    pub provider_txn_id: String,
    /// What happened.
    pub status: ReportedStatus,
    /// The amount the provider reports.
    pub amount: Money,
    /// When the provider says it happened.
    pub occurred_at: Timestamp,
    /// The format it arrived in.
    pub source: EventSource,
}

/// Why a generic callback's body is not an event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GenericBodyError {
    /// Every other field is fine, but the amount is not an amount (`INVALID_AMOUNT_FORMAT`).
    #[error("amount is not an amount of money")]
    Amount,
    /// These fields are missing or malformed (`VALIDATION_ERROR`).
    #[error("fields missing or malformed")]
    Fields(Vec<FieldError>),
}

impl GenericBodyError {
    fn field(field: &str, message: &str) -> Self {
        GenericBodyError::Fields(vec![FieldError::new(field, message)])
    }
}

/// A callback signature that does not verify (`401 INVALID_SIGNATURE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("callback signature or timestamp not verified")]
pub struct InvalidSignature;

impl PaymentEvent {
    /// Parses the generic format's body: `{"event_id", "payment_id", "provider_txn_id", "status",
    /// "amount", "occurred_at"}`. A malformed amount is `INVALID_AMOUNT_FORMAT`; any other bad field is
    /// a `VALIDATION_ERROR` naming every bad field.
    pub fn parse_generic(body: &[u8]) -> Result<PaymentEvent, GenericBodyError> {
        let obj = match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(obj)) => obj,
            Ok(_) => return Err(GenericBodyError::field("body", "must be a JSON object")),
            Err(_) => return Err(GenericBodyError::field("body", "is not valid JSON")),
        };
        let mut errors = Vec::new();
        let mut text = |key: &str| -> Option<String> {
            match obj.get(key) {
                Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
                Some(Value::String(_)) | None | Some(Value::Null) => {
                    errors.push(FieldError::new(key, "is required"));
                    None
                }
                Some(_) => {
                    errors.push(FieldError::new(key, "must be a string"));
                    None
                }
            }
        };
        let event_id = text("event_id");
        let payment_id = text("payment_id");
        let provider_txn_id = text("provider_txn_id");
        let status = text("status");
        let occurred_at = text("occurred_at");
        let mut bad = |field: &str, message: String| errors.push(FieldError::new(field, message));
        let event_id = event_id.and_then(|t| EventId::parse(&t).map_err(|m| bad("event_id", m)).ok());
        let payment_id =
            payment_id.and_then(|t| PaymentId::parse(&t).map_err(|e| bad("payment_id", e.to_string())).ok());
        let provider_txn_id = provider_txn_id.and_then(|t| {
            if t.len() <= 128 && t.bytes().all(|b| b.is_ascii_graphic()) {
                Some(t)
            } else {
                bad("provider_txn_id", "must be at most 128 visible ASCII characters".into());
                None
            }
        });
        // A payment's own statuses only: refund outcomes come from a provider's refund notification
        // (docs/api.md §8, §17), never from the generic format.
        let status = status.and_then(|t| {
            serde_json::from_value::<ReportedStatus>(Value::String(t))
                .ok()
                .filter(|s| s.refund_state("").is_none())
                .or_else(|| {
                    bad("status", "must be one of processing, succeeded, failed".into());
                    None
                })
        });
        let occurred_at = occurred_at.and_then(|t| {
            Timestamp::parse(&t)
                .map_err(|_| bad("occurred_at", "must be an RFC 3339 time".into()))
                .ok()
        });
        let amount = parse_amount(&obj, &mut errors);
        if !errors.is_empty() {
            return Err(GenericBodyError::Fields(errors));
        }
        let amount = amount?;
        match (event_id, payment_id, provider_txn_id, status, occurred_at) {
            (Some(event_id), Some(payment_id), Some(provider_txn_id), Some(status), Some(occurred_at)) => {
                Ok(PaymentEvent {
                    event_id,
                    payment_id,
                    provider_txn_id,
                    status,
                    amount,
                    occurred_at,
                    source: EventSource::Generic,
                })
            }
            _ => Err(GenericBodyError::field("body", "is incomplete")),
        }
    }
}

/// The `amount` field: a missing one is a field error; a present but malformed one is the catalogue's
/// `INVALID_AMOUNT_FORMAT` (reported only when every other field is fine).
fn parse_amount(obj: &Map<String, Value>, errors: &mut Vec<FieldError>) -> Result<Money, GenericBodyError> {
    match obj.get("amount") {
        None | Some(Value::Null) => {
            errors.push(FieldError::new("amount", "is required"));
            Err(GenericBodyError::Amount)
        }
        Some(value) => Money::from_json(value).map_err(|_| GenericBodyError::Amount),
    }
}

/// Checks the generic format's `X-Payment-Signature: t=<unix seconds>,v1=<hex>[,v1=<hex>…]`, where
/// `v1 = HMAC-SHA256(secret, "<t>.<raw body>")`. Any configured secret (rotation) and any `v1` may
/// match; tags are compared in constant time. The secrets never appear in `Debug` output.
#[derive(Clone)]
pub struct SignatureVerifier {
    secrets: Vec<Vec<u8>>,
}

impl std::fmt::Debug for SignatureVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SignatureVerifier({} secret(s))", self.secrets.len())
    }
}

/// Why a verifier could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("no callback secret configured")]
pub struct NoSecrets;

impl SignatureVerifier {
    /// A verifier accepting any of `secrets` (blank ones are ignored); at least one is required.
    pub fn new<S: AsRef<[u8]>>(secrets: impl IntoIterator<Item = S>) -> Result<Self, NoSecrets> {
        let secrets: Vec<Vec<u8>> = secrets
            .into_iter()
            .map(|s| s.as_ref().to_vec())
            .filter(|s| !s.is_empty())
            .collect();
        if secrets.is_empty() {
            return Err(NoSecrets);
        }
        Ok(SignatureVerifier { secrets })
    }

    /// From a comma-separated list, as `PAYMENT_CALLBACK_SECRETS` holds it.
    pub fn from_list(list: &str) -> Result<Self, NoSecrets> {
        Self::new(list.split(',').map(str::trim))
    }

    /// `Ok` when the header is well-formed, its time within five minutes of `now`, and one of its tags
    /// is the HMAC of `"<t>.<body>"` under one of the secrets.
    pub fn verify(&self, header: Option<&str>, body: &[u8], now: Timestamp) -> Result<(), InvalidSignature> {
        let header = header.ok_or(InvalidSignature)?;
        let mut t = None;
        let mut tags = Vec::new();
        for part in header.split(',') {
            let (key, value) = part.trim().split_once('=').ok_or(InvalidSignature)?;
            match key {
                "t" if t.is_none() => t = Some(value),
                "t" => return Err(InvalidSignature),
                "v1" => tags.push(hex::decode(value).map_err(|_| InvalidSignature)?),
                _ => {}
            }
        }
        let t = t.ok_or(InvalidSignature)?;
        let signed_at: i64 = match t.parse() {
            Ok(seconds) if t.bytes().all(|b| b.is_ascii_digit()) => seconds,
            _ => return Err(InvalidSignature),
        };
        if (now.unix_seconds() - signed_at).abs() > MAX_CLOCK_SKEW_SECONDS || tags.is_empty() {
            return Err(InvalidSignature);
        }
        for secret in &self.secrets {
            for tag in &tags {
                let mut mac = mac(secret);
                mac.update(t.as_bytes());
                mac.update(b".");
                mac.update(body);
                if mac.verify_slice(tag).is_ok() {
                    return Ok(());
                }
            }
        }
        Err(InvalidSignature)
    }
}

fn mac(secret: &[u8]) -> Hmac<Sha256> {
    // HMAC accepts keys of any length.
    <Hmac<Sha256> as KeyInit>::new_from_slice(secret).expect("HMAC takes keys of any length")
}

/// The hex `v1` tag of `body` signed at `t` with `secret` (the verifier's own tests sign with it).
#[cfg(test)]
fn sign_with(secret: &[u8], t: i64, body: &[u8]) -> String {
    let mut mac = mac(secret);
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &[u8] = br#"{"event_id":"evt_1","payment_id":"pay_1","provider_txn_id":"tx_1","status":"succeeded","amount":"199.00","occurred_at":"2026-11-25T07:00:00Z"}"#;

    fn now() -> Timestamp {
        Timestamp::from_unix_seconds(1_790_000_000)
    }

    fn verifier() -> SignatureVerifier {
        SignatureVerifier::from_list("new-secret, old-secret").unwrap()
    }

    fn header(secret: &str, t: i64, body: &[u8]) -> String {
        format!("t={t},v1={}", sign_with(secret.as_bytes(), t, body))
    }

    fn refused(result: Result<(), InvalidSignature>) -> bool {
        result == Err(InvalidSignature)
    }

    #[test]
    fn a_valid_signature_under_either_rotated_secret_is_accepted() {
        let t = now().unix_seconds();
        for secret in ["new-secret", "old-secret"] {
            assert!(
                verifier().verify(Some(&header(secret, t, BODY)), BODY, now()).is_ok(),
                "{secret}"
            );
        }
    }

    #[test]
    fn a_wrong_secret_or_tampered_body_is_refused() {
        let t = now().unix_seconds();
        assert!(refused(verifier().verify(Some(&header("guess", t, BODY)), BODY, now())));
        let good = header("new-secret", t, BODY);
        let tampered = String::from_utf8(BODY.to_vec()).unwrap().replace("199.00", "1.00");
        assert!(refused(verifier().verify(Some(&good), tampered.as_bytes(), now())));
    }

    #[test]
    fn timestamps_more_than_five_minutes_away_are_refused_either_way() {
        let t = now().unix_seconds();
        for (skew, ok) in [(-301, false), (-300, true), (300, true), (301, false)] {
            let signed = header("new-secret", t + skew, BODY);
            assert_eq!(verifier().verify(Some(&signed), BODY, now()).is_ok(), ok, "skew {skew}");
        }
    }

    #[test]
    fn missing_empty_and_garbled_headers_are_refused() {
        let t = now().unix_seconds();
        let tag = sign_with(b"new-secret", t, BODY);
        for bad in [
            None,
            Some(String::new()),
            Some("garbage".into()),
            Some(format!("v1={tag}")),
            Some(format!("t={t}")),
            Some(format!("t={t},v1=zz{tag}")),
            Some(format!("t=+{t},v1={tag}")),
            Some(format!("t={t},t={t},v1={tag}")),
            Some(format!("t={t};v1={tag}")),
        ] {
            assert!(refused(verifier().verify(bad.as_deref(), BODY, now())), "{bad:?}");
        }
    }

    #[test]
    fn one_right_tag_among_several_is_enough() {
        let t = now().unix_seconds();
        let right = sign_with(b"old-secret", t, BODY);
        let wrong = sign_with(b"nope", t, BODY);
        let header = format!("t={t},v1={wrong},v1={right}");
        assert!(verifier().verify(Some(&header), BODY, now()).is_ok());
    }

    #[test]
    fn no_secret_no_verifier_and_debug_hides_secrets() {
        assert_eq!(SignatureVerifier::from_list(" , ").unwrap_err(), NoSecrets);
        assert!(!format!("{:?}", verifier()).contains("secret-"));
    }

    #[test]
    fn the_generic_body_parses_into_the_normalized_event() {
        let event = PaymentEvent::parse_generic(BODY).unwrap();
        assert_eq!(event.event_id.as_str(), "evt_1");
        assert_eq!(event.status, ReportedStatus::Succeeded);
        assert_eq!(event.amount, Money::parse("199.00").unwrap());
        assert_eq!(event.source, EventSource::Generic);
    }

    #[test]
    fn bad_amounts_and_bad_fields_are_named() {
        let with = |amount: Value| {
            let mut body: Value = serde_json::from_slice(BODY).unwrap();
            body["amount"] = amount;
            PaymentEvent::parse_generic(body.to_string().as_bytes())
        };
        for amount in ["12.345", "abc", "-1", "1e3", ""] {
            assert!(
                matches!(with(Value::String(amount.into())), Err(GenericBodyError::Amount)),
                "{amount}"
            );
        }
        assert!(with(Value::String("199".into())).is_ok());
        let err = PaymentEvent::parse_generic(br#"{"status": "paid", "amount": "1.00"}"#).unwrap_err();
        let GenericBodyError::Fields(fields) = err else {
            panic!("expected a validation error")
        };
        let names: Vec<_> = fields.iter().map(|f| f.field.as_str()).collect();
        assert_eq!(
            names,
            ["event_id", "payment_id", "provider_txn_id", "occurred_at", "status"]
        );
    }

    #[test]
    fn the_generic_format_carries_a_payments_own_statuses_only() {
        let with = |status: &str| {
            let mut body: Value = serde_json::from_slice(BODY).unwrap();
            body["status"] = Value::String(status.into());
            PaymentEvent::parse_generic(body.to_string().as_bytes())
        };
        for status in ["processing", "succeeded", "failed"] {
            assert!(with(status).is_ok(), "{status}");
        }
        // Refund outcomes come only from a provider's refund notification (found by the hostile-input
        // table: a signed generic "refunded" was enqueued).
        for status in ["refunded", "refund_abnormal", "refund_closed"] {
            let Err(GenericBodyError::Fields(fields)) = with(status) else {
                panic!("{status} accepted")
            };
            assert_eq!(fields[0].field, "status", "{status}");
        }
    }

    #[test]
    fn provider_formats_are_exact_and_speak_only_for_their_method() {
        let a = Money::parse("10.00").unwrap();
        let b = Money::parse("10.01").unwrap();
        assert!(EventSource::Generic.amount_matches(a, b));
        assert!(!EventSource::Wechatpay.amount_matches(a, b));
        assert!(EventSource::Alipay.speaks_for(PaymentMethod::Alipay));
        assert!(!EventSource::Wechatpay.speaks_for(PaymentMethod::Alipay));
        assert!(EventSource::Generic.speaks_for(PaymentMethod::Bank));
    }
}
