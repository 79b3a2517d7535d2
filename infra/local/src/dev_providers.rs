//! Development keys for the providers' formats: without WeChat Pay or Alipay configuration, the local
//! server verifies their notifications against keys it generated once and keeps in a file beside its
//! database, and the `sign-wechatpay` / `sign-alipay` helpers sign with the same keys.

use std::path::Path;

use infra::providers::simulate::{AlipaySimulator, SigningKey, WechatPaySimulator};
use serde::{Deserialize, Serialize};

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
    /// The keys kept in `path`, made and saved there on first use.
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
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(path, serde_json::to_string_pretty(&stored)?)?;
        Ok(dev)
    }
}
