//! The payment providers' own notification formats (docs/api.md §8a), each verified the provider's way
//! and turned into the same normalized [`PaymentEvent`] the generic format becomes.

pub mod alipay;
pub mod signing;
pub mod wechatpay;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use domain::PaymentEvent;
use ring::signature::{UnparsedPublicKey, RSA_PKCS1_2048_8192_SHA256};

/// What a verified notification asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Enqueue this event.
    Event(PaymentEvent),
    /// Verified, nothing to apply (for example WeChat Pay's `NOTPAY`): acknowledge it.
    Acknowledge(&'static str),
}

/// Why a notification was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// Signature, signing key or timestamp wrong: not from the provider.
    #[error("signature not verified: {0}")]
    Signature(&'static str),
    /// Verified, but it cannot be read or is not for this merchant.
    #[error("notification refused: {0}")]
    Refused(String),
}

/// Why provider configuration could not be read.
#[derive(Debug, thiserror::Error)]
#[error("provider configuration: {0}")]
pub struct ConfigError(pub String);

/// A provider's RSA public key, ready to verify SHA256withRSA (PKCS#1 v1.5) signatures with ring.
pub type RsaPublicKey = UnparsedPublicKey<Vec<u8>>;

/// An RSA public key from a PEM `PUBLIC KEY` block (SubjectPublicKeyInfo), or the bare base64 of its
/// DER as the providers' consoles show it, or a file holding either. ring verifies with the key's
/// PKCS#1 `RSAPublicKey`, which is taken out of the SubjectPublicKeyInfo here (checked to be an
/// `rsaEncryption` key of 2048 to 8192 bits).
pub fn rsa_public_key(text_or_path: &str) -> Result<RsaPublicKey, ConfigError> {
    let text = match std::fs::read_to_string(text_or_path) {
        Ok(contents) => contents,
        Err(_) => text_or_path.to_owned(),
    };
    let body: String = text
        .lines()
        .filter(|line| !line.starts_with("-----"))
        .flat_map(|line| line.split_whitespace())
        .collect();
    let der = STANDARD
        .decode(body)
        .map_err(|_| ConfigError("an RSA public key is neither PEM nor base64 DER (nor a readable file)".into()))?;
    let not_rsa = || ConfigError("not an RSA public key of 2048 to 8192 bits".into());
    let info = spki::SubjectPublicKeyInfoRef::try_from(der.as_slice()).map_err(|_| not_rsa())?;
    if info.algorithm.oid != RSA_ENCRYPTION {
        return Err(not_rsa());
    }
    let pkcs1 = info.subject_public_key.as_bytes().ok_or_else(not_rsa)?;
    let key = pkcs1::RsaPublicKey::try_from(pkcs1).map_err(|_| not_rsa())?;
    let bits = key.modulus.as_bytes().len() * 8;
    if !(2048..=8192).contains(&bits) {
        return Err(not_rsa());
    }
    Ok(UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, pkcs1.to_vec()))
}

/// `rsaEncryption` (1.2.840.113549.1.1.1), the algorithm of an RSA SubjectPublicKeyInfo.
const RSA_ENCRYPTION: spki::ObjectIdentifier = spki::ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");

/// Whether `signature` (base64) is a SHA256withRSA (PKCS#1 v1.5) signature of `message` under `key`.
pub fn rsa_sha256_verifies(key: &RsaPublicKey, message: &[u8], signature: &str) -> bool {
    match STANDARD.decode(signature.trim()) {
        Ok(signature) => key.verify(message, &signature).is_ok(),
        Err(_) => false,
    }
}

/// An environment variable, if set and not blank.
fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// One try of a request to a payment provider that did not succeed.
pub(crate) enum TryError {
    /// Worth one more try: connection, timeout, 5xx, 429, a system error, an answer that does not verify.
    Transient(String),
    /// The provider's final word.
    Final(domain::ports::ProviderError),
}

/// One call to a provider the way every provider is called: admitted by its breaker, tried once more
/// after a 20–120 ms jitter on a transient failure, its outcome recorded (a final answer, verified,
/// means the provider is up); a call that never got a final answer is `Unavailable`.
pub(crate) async fn call_provider<T, F, Fut>(
    breaker: &crate::breaker::Breaker,
    provider: &'static str,
    what: &str,
    try_once: F,
) -> Result<T, domain::ports::ProviderError>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<T, TryError>>,
{
    use domain::ports::ProviderError;
    if !breaker.admit() {
        return Err(ProviderError::Unavailable(
            format!("{provider} circuit breaker open").into(),
        ));
    }
    let mut last = String::new();
    for attempt in 0..2 {
        match try_once().await {
            Ok(answer) => {
                breaker.record(true);
                return Ok(answer);
            }
            Err(TryError::Transient(why)) if attempt == 0 => {
                tracing::warn!(provider, what, why, "provider request failed; one retry");
                last = why;
                tokio::time::sleep(std::time::Duration::from_millis(fastrand::u64(20..=120))).await;
            }
            Err(TryError::Transient(why)) => last = why,
            Err(TryError::Final(err)) => {
                breaker.record(true);
                return Err(err);
            }
        }
    }
    breaker.record(false);
    Err(ProviderError::Unavailable(last.into()))
}
