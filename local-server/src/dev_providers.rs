//! Development keys for the providers' formats: without WeChat Pay or Alipay configuration, the local
//! server verifies their notifications against keys it generated once and keeps in a file beside its
//! database, and the `sign-wechatpay` / `sign-alipay` helpers sign with the same keys.

use std::path::Path;

use serde::{Deserialize, Serialize};
use testkit::providers::{AlipaySimulator, SigningKey, WechatPaySimulator};

#[derive(Serialize, Deserialize)]
struct Stored {
    wechatpay_key_id: String,
    wechatpay_key: String,
    wechatpay_apiv3_key: String,
    wechatpay_mchid: String,
    wechatpay_appid: String,
    alipay_key: String,
    alipay_app_id: String,
}

/// Both simulated providers.
pub struct DevProviders {
    /// The WeChat Pay merchant.
    pub wechatpay: WechatPaySimulator,
    /// The Alipay app.
    pub alipay: AlipaySimulator,
}

impl DevProviders {
    /// The keys kept in `path`, made and saved there on first use. Servers and helpers started at once
    /// on the same path agree: the file appears whole or not at all, and only the first to publish it
    /// wins (the others read the winner's keys).
    pub fn load_or_create(path: &Path) -> Result<Self, Box<dyn std::error::Error>> {
        if let Ok(text) = std::fs::read_to_string(path) {
            let stored: Stored = serde_json::from_str(&text)?;
            return Ok(DevProviders {
                wechatpay: WechatPaySimulator {
                    key_id: stored.wechatpay_key_id,
                    key: SigningKey::from_pkcs8_base64(&stored.wechatpay_key)?,
                    apiv3_key: stored.wechatpay_apiv3_key,
                    mchid: stored.wechatpay_mchid,
                    appid: stored.wechatpay_appid,
                },
                alipay: AlipaySimulator {
                    key: SigningKey::from_pkcs8_base64(&stored.alipay_key)?,
                    app_id: stored.alipay_app_id,
                },
            });
        }
        let dev = DevProviders {
            wechatpay: WechatPaySimulator::generate("PUB_KEY_ID_LOCAL_DEV"),
            alipay: AlipaySimulator::generate(),
        };
        let stored = Stored {
            wechatpay_key_id: dev.wechatpay.key_id.clone(),
            wechatpay_key: dev.wechatpay.key.pkcs8_base64(),
            wechatpay_apiv3_key: dev.wechatpay.apiv3_key.clone(),
            wechatpay_mchid: dev.wechatpay.mchid.clone(),
            wechatpay_appid: dev.wechatpay.appid.clone(),
            alipay_key: dev.alipay.key.pkcs8_base64(),
            alipay_app_id: dev.alipay.app_id.clone(),
        };
        if publish_new(path, &serde_json::to_string_pretty(&stored)?)? {
            Ok(dev)
        } else {
            Self::load_or_create(path)
        }
    }
}

/// Writes `contents` to `path` only if nothing is there yet, atomically: to a temporary file beside it,
/// then linked into place (which fails if another process got there first). Whether this call made it.
pub fn publish_new(path: &Path, contents: &str) -> std::io::Result<bool> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let temporary = path.with_file_name(format!(".{name}.{}.tmp", uuid::Uuid::new_v4().simple()));
    std::fs::write(&temporary, contents)?;
    let linked = std::fs::hard_link(&temporary, path);
    std::fs::remove_file(&temporary)?;
    match linked {
        Ok(()) => Ok(true),
        Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(err) => Err(err),
    }
}

/// The callback secrets: `PAYMENT_CALLBACK_SECRETS` if set, else a development secret kept in
/// `secret_file` (made on first use), which the server prints at start.
pub fn callback_secrets(secret_file: &Path) -> Result<(String, bool), Box<dyn std::error::Error>> {
    if let Some(secrets) = configured_secrets() {
        return Ok((secrets, false));
    }
    Ok((kept_secret(secret_file)?, true))
}

/// `PAYMENT_CALLBACK_SECRETS`, if set and not blank.
pub fn configured_secrets() -> Option<String> {
    std::env::var("PAYMENT_CALLBACK_SECRETS")
        .ok()
        .filter(|secrets| !secrets.trim().is_empty())
}

/// A random secret kept in `path`: read if there, else made and published there (the first of several
/// concurrent starts wins, and the others read its secret).
pub fn kept_secret(path: &Path) -> Result<String, Box<dyn std::error::Error>> {
    if let Ok(secret) = std::fs::read_to_string(path) {
        if !secret.trim().is_empty() {
            return Ok(secret.trim().to_owned());
        }
    }
    let secret = format!("dev-{}", uuid::Uuid::new_v4().simple());
    if publish_new(path, &secret)? {
        Ok(secret)
    } else {
        kept_secret(path)
    }
}

/// What a helper reads, which the server made: an error naming the file and what to do if it is not
/// there yet (a helper never invents a secret or key the server does not know).
pub fn made_by_the_server(path: &Path, what: &str) -> Result<(), Box<dyn std::error::Error>> {
    if path.exists() {
        return Ok(());
    }
    Err(format!(
        "no {what} at {}: start the local server once with the same data folder (it makes one there), \
         or pass --data-dir / the file's own flag",
        path.display()
    )
    .into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concurrent_first_starts_agree_on_one_set_of_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys").join("dev-providers.json");
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let path = path.clone();
                std::thread::spawn(move || {
                    DevProviders::load_or_create(&path)
                        .unwrap()
                        .alipay
                        .key
                        .public_key_base64()
                })
            })
            .collect();
        let keys: Vec<String> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        assert!(
            keys.windows(2).all(|w| w[0] == w[1]),
            "every start uses the published keys"
        );
        let on_disk = DevProviders::load_or_create(&path)
            .unwrap()
            .alipay
            .key
            .public_key_base64();
        assert_eq!(on_disk, keys[0]);
        let left: Vec<_> = std::fs::read_dir(path.parent().unwrap()).unwrap().collect();
        assert_eq!(left.len(), 1, "no temporary file left behind");
    }
}
