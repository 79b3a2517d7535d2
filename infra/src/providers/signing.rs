//! The merchant's side of the providers' RSA: the private key that signs our requests to WeChat Pay and
//! Alipay (SHA256withRSA, PKCS#1 v1.5, base64), read from configuration and never shown.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use ring::rand::SystemRandom;
use ring::rsa::KeyPair;
use ring::signature::RSA_PKCS1_SHA256;

use super::ConfigError;

/// A merchant private key, parsed once and shared by its clones. Its `Debug` output names no key
/// material.
#[derive(Clone)]
pub struct MerchantKey(std::sync::Arc<KeyPair>);

impl std::fmt::Debug for MerchantKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MerchantKey(..)")
    }
}

impl MerchantKey {
    /// From a PEM `PRIVATE KEY` (PKCS#8, as WeChat Pay's `apiclient_key.pem`) or `RSA PRIVATE KEY`
    /// (PKCS#1) block, the bare base64 of either DER (as Alipay's key tool prints it), or a file holding
    /// any of these.
    pub fn parse(text_or_path: &str) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(text_or_path).unwrap_or_else(|_| text_or_path.to_owned());
        let body: String = text
            .lines()
            .filter(|line| !line.starts_with("-----"))
            .flat_map(str::split_whitespace)
            .collect();
        let der = STANDARD.decode(body).map_err(|_| {
            ConfigError("a merchant private key is neither PEM nor base64 DER (nor a readable file)".into())
        })?;
        KeyPair::from_pkcs8(&der)
            .or_else(|_| KeyPair::from_der(&der))
            .map(|key| MerchantKey(std::sync::Arc::new(key)))
            .map_err(|_| ConfigError("not an RSA private key (PKCS#8 or PKCS#1)".into()))
    }

    /// SHA256withRSA (PKCS#1 v1.5) of `message`, in base64.
    pub fn sign(&self, message: &[u8]) -> String {
        let mut signature = vec![0; self.0.public().modulus_len()];
        // Signing with a well-formed key only fails if the output buffer is the wrong size, which it is not.
        self.0
            .sign(&RSA_PKCS1_SHA256, &SystemRandom::new(), message, &mut signature)
            .expect("an RSA signature of the modulus's length");
        STANDARD.encode(signature)
    }
}
