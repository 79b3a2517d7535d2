//! Plays the providers' side: generated RSA keys, and notifications signed (and, for WeChat Pay,
//! encrypted) exactly as the providers make them. For the local server's helpers and the tests only
//! (the Lambda functions never sign anything).

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{KeyPair, KeySize};
use aws_lc_rs::signature::{KeyPair as _, RSA_PKCS1_SHA256};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use domain::Timestamp;
use serde_json::json;

use infra::providers::alipay::{signing_string, Alipay};
use infra::providers::wechatpay::WechatPay;
use infra::providers::ConfigError;

/// An RSA key pair a simulated provider signs with.
pub struct SigningKey(KeyPair);

impl SigningKey {
    /// A fresh 2048-bit key.
    pub fn generate() -> Self {
        SigningKey(KeyPair::generate(KeySize::Rsa2048).expect("RSA key generation"))
    }

    /// From PKCS#8 DER in base64.
    pub fn from_pkcs8_base64(text: &str) -> Result<Self, ConfigError> {
        let der = STANDARD.decode(text).map_err(|e| ConfigError(e.to_string()))?;
        KeyPair::from_pkcs8(&der)
            .map(SigningKey)
            .map_err(|e| ConfigError(e.to_string()))
    }

    /// The private key as PKCS#8 DER in base64 (to keep a development key across restarts).
    pub fn pkcs8_base64(&self) -> String {
        let der = self.0.as_der().expect("PKCS#8 encoding");
        STANDARD.encode(der.as_ref())
    }

    /// The public key as a PEM `PUBLIC KEY` block (SubjectPublicKeyInfo).
    pub fn public_key_pem(&self) -> String {
        let der = self.0.public_key().as_der().expect("SubjectPublicKeyInfo encoding");
        let body = STANDARD.encode(der.as_ref());
        let lines: Vec<&str> = body
            .as_bytes()
            .chunks(64)
            .map(|c| std::str::from_utf8(c).expect("base64 is ASCII"))
            .collect();
        format!(
            "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
            lines.join("\n")
        )
    }

    /// The public key as the bare base64 of its DER, as Alipay's console shows it.
    pub fn public_key_base64(&self) -> String {
        let der = self.0.public_key().as_der().expect("SubjectPublicKeyInfo encoding");
        STANDARD.encode(der.as_ref())
    }

    /// SHA256withRSA (PKCS#1 v1.5) of `message`, in base64.
    pub fn sign(&self, message: &[u8]) -> String {
        let mut signature = vec![0; self.0.public_modulus_len()];
        self.0
            .sign(&RSA_PKCS1_SHA256, &SystemRandom::new(), message, &mut signature)
            .expect("RSA signing");
        STANDARD.encode(signature)
    }
}

/// A simulated WeChat Pay merchant account: the platform's signing key and the merchant's APIv3 key.
pub struct WechatPaySimulator {
    /// The platform key's id (`Wechatpay-Serial`).
    pub key_id: String,
    /// The platform's signing key.
    pub key: SigningKey,
    /// The merchant's 32-character APIv3 key.
    pub apiv3_key: String,
    /// The merchant id.
    pub mchid: String,
    /// The app id.
    pub appid: String,
}

/// One notification as WeChat Pay posts it: headers (lower-case names) and the raw body.
pub struct Posted {
    /// `wechatpay-timestamp`, `wechatpay-nonce`, `wechatpay-signature`, `wechatpay-serial`.
    pub headers: Vec<(String, String)>,
    /// The JSON body, exactly as signed.
    pub body: String,
}

impl WechatPaySimulator {
    /// A merchant with fresh keys.
    pub fn generate(key_id: &str) -> Self {
        WechatPaySimulator {
            key_id: key_id.to_owned(),
            key: SigningKey::generate(),
            apiv3_key: uuid::Uuid::new_v4().simple().to_string(),
            mchid: "1900000109".into(),
            appid: "wxd678efh567hg6787".into(),
        }
    }

    /// The receiving side's configuration for this merchant.
    pub fn config(&self) -> WechatPay {
        WechatPay::new(
            &self.mchid,
            &self.appid,
            &self.apiv3_key,
            &[(self.key_id.clone(), self.key.public_key_pem())],
        )
        .expect("a generated configuration is valid")
    }

    /// The decrypted transaction of a payment notification.
    pub fn transaction(&self, payment_id: &str, trade_state: &str, total_fen: u64) -> serde_json::Value {
        json!({
            "mchid": self.mchid, "appid": self.appid, "out_trade_no": payment_id,
            "transaction_id": format!("4200000{}", &uuid::Uuid::new_v4().simple().to_string()[..21]),
            "trade_type": "JSAPI", "trade_state": trade_state, "trade_state_desc": trade_state,
            "bank_type": "CMC", "attach": "", "success_time": "2026-11-25T15:00:00+08:00",
            "payer": {"openid": "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"},
            "amount": {"total": total_fen, "payer_total": total_fen, "currency": "CNY", "payer_currency": "CNY"},
        })
    }

    /// The notification body carrying `transaction`, encrypted under `apiv3_key`.
    pub fn body(id: &str, apiv3_key: &str, transaction: &serde_json::Value) -> String {
        Self::sealed(
            id,
            apiv3_key,
            "TRANSACTION.SUCCESS",
            "支付成功",
            "transaction",
            transaction,
        )
    }

    /// A notification body of `event_type` whose resource (`original_type`) is `resource`, sealed with
    /// AEAD_AES_256_GCM under `apiv3_key`.
    pub fn sealed(
        id: &str,
        apiv3_key: &str,
        event_type: &str,
        summary: &str,
        original_type: &str,
        resource: &serde_json::Value,
    ) -> String {
        Self::sealed_bytes(
            id,
            apiv3_key,
            event_type,
            summary,
            original_type,
            resource.to_string().as_bytes(),
        )
    }

    /// [`Self::sealed`] for any plaintext, JSON or not (the fuzz targets seal what they are given).
    pub fn sealed_bytes(
        id: &str,
        apiv3_key: &str,
        event_type: &str,
        summary: &str,
        original_type: &str,
        plaintext: &[u8],
    ) -> String {
        let nonce: String = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
        let associated_data = original_type;
        let key = UnboundKey::new(&AES_256_GCM, apiv3_key.as_bytes()).expect("a 32-byte key");
        let mut sealed = plaintext.to_vec();
        LessSafeKey::new(key)
            .seal_in_place_append_tag(
                Nonce::try_assume_unique_for_key(nonce.as_bytes()).expect("12 bytes"),
                Aad::from(associated_data.as_bytes()),
                &mut sealed,
            )
            .expect("AES-GCM sealing");
        json!({
            "id": id, "create_time": "2026-11-25T15:00:00+08:00", "resource_type": "encrypt-resource",
            "event_type": event_type, "summary": summary,
            "resource": {"original_type": original_type, "algorithm": "AEAD_AES_256_GCM",
                         "ciphertext": STANDARD.encode(&sealed), "associated_data": associated_data, "nonce": nonce},
        })
        .to_string()
    }

    /// A refund notification's decrypted resource: `refund_status` `SUCCESS`, `ABNORMAL` or `CLOSED`.
    pub fn refund_resource(
        &self,
        payment_id: &str,
        out_refund_no: &str,
        refund_id: &str,
        refund_status: &str,
        refund_fen: u64,
        total_fen: u64,
    ) -> serde_json::Value {
        json!({
            "mchid": self.mchid, "out_trade_no": payment_id,
            "transaction_id": "4200000000000000000000000000", "out_refund_no": out_refund_no,
            "refund_id": refund_id, "refund_status": refund_status,
            "success_time": "2026-11-25T16:00:00+08:00", "user_received_account": "招商银行信用卡0403",
            "amount": {"total": total_fen, "refund": refund_fen, "payer_total": total_fen, "payer_refund": refund_fen},
        })
    }

    /// A complete, valid refund notification (`REFUND.<refund_status>`), signed now.
    pub fn refund_notification(&self, id: &str, resource: &serde_json::Value) -> Posted {
        let status = resource["refund_status"].as_str().unwrap_or("SUCCESS");
        let body = Self::sealed(
            id,
            &self.apiv3_key,
            &format!("REFUND.{status}"),
            "退款状态变更",
            "refund",
            resource,
        );
        self.post(body, Timestamp::now().unix_seconds())
    }

    /// Signs `body` at `timestamp` as the platform does.
    pub fn post(&self, body: String, timestamp: i64) -> Posted {
        let nonce = uuid::Uuid::new_v4().simple().to_string().to_uppercase();
        let message = format!("{timestamp}\n{nonce}\n{body}\n");
        let headers = vec![
            ("wechatpay-timestamp".into(), timestamp.to_string()),
            ("wechatpay-nonce".into(), nonce),
            ("wechatpay-signature".into(), self.key.sign(message.as_bytes())),
            ("wechatpay-serial".into(), self.key_id.clone()),
        ];
        Posted { headers, body }
    }

    /// A complete, valid notification for a payment, signed now.
    pub fn notification(&self, id: &str, payment_id: &str, trade_state: &str, total_fen: u64) -> Posted {
        let body = Self::body(
            id,
            &self.apiv3_key,
            &self.transaction(payment_id, trade_state, total_fen),
        );
        self.post(body, Timestamp::now().unix_seconds())
    }
}

/// A simulated Alipay app: Alipay's signing key and the app id.
pub struct AlipaySimulator {
    /// Alipay's signing key (the app verifies with its public half).
    pub key: SigningKey,
    /// The app id.
    pub app_id: String,
}

impl AlipaySimulator {
    /// An app with a fresh key.
    pub fn generate() -> Self {
        AlipaySimulator {
            key: SigningKey::generate(),
            app_id: "2021000117650139".into(),
        }
    }

    /// The receiving side's configuration for this app (the key as the console's bare base64).
    pub fn config(&self) -> Alipay {
        Alipay::new(&self.app_id, &self.key.public_key_base64()).expect("a generated configuration is valid")
    }

    /// The parameters of a trade notification, unsigned.
    pub fn params(
        &self,
        notify_id: &str,
        payment_id: &str,
        trade_status: &str,
        total_amount: &str,
    ) -> Vec<(String, String)> {
        [
            ("notify_time", "2026-11-25 15:00:05"),
            ("notify_type", "trade_status_sync"),
            ("notify_id", notify_id),
            ("charset", "utf-8"),
            ("version", "1.0"),
            ("app_id", self.app_id.as_str()),
            ("trade_no", "2026112522001400000000000001"),
            ("out_trade_no", payment_id),
            ("trade_status", trade_status),
            ("total_amount", total_amount),
            ("receipt_amount", total_amount),
            ("subject", "海尔 冰箱"),
            ("gmt_payment", "2026-11-25 15:00:04"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    /// `params` with `sign_type=RSA2` and their `sign` added.
    pub fn sign(&self, mut params: Vec<(String, String)>) -> Vec<(String, String)> {
        let signature = self.key.sign(signing_string(&params).as_bytes());
        params.push(("sign_type".into(), "RSA2".into()));
        params.push(("sign".into(), signature));
        params
    }

    /// The form body of `params`, in their order.
    pub fn form(params: &[(String, String)]) -> String {
        form_urlencoded::Serializer::new(String::new())
            .extend_pairs(params.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .finish()
    }

    /// A complete, valid notification body for a payment.
    pub fn notification(&self, notify_id: &str, payment_id: &str, trade_status: &str, total_amount: &str) -> String {
        Self::form(&self.sign(self.params(notify_id, payment_id, trade_status, total_amount)))
    }
}
