//! Plays a provider of the generic callback format: `X-Payment-Signature: t=<unix seconds>,v1=<hex>`,
//! `v1 = HMAC-SHA256(secret, "<t>.<raw body>")` (docs/api.md §8).

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// The hex `v1` tag of `body` signed at `t` with `secret`.
pub fn sign_with(secret: &[u8], t: i64, body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// The header a provider holding `secret` sends for `body` at `t`.
pub fn header(secret: &[u8], t: i64, body: &[u8]) -> String {
    format!("t={t},v1={}", sign_with(secret, t, body))
}
