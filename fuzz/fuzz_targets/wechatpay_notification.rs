//! A WeChat Pay notification (the four `Wechatpay-*` headers and the body). The first byte chooses: even,
//! the headers and body are the input's (cut at `\n`: timestamp, nonce, signature, serial, then the
//! body) and are verified as the receiver verifies them; odd, the input is a resource's plaintext,
//! sealed with the APIv3 key into a notification signed by the platform key, so decryption and the
//! transaction's reading are reached: its signature must verify, whatever the plaintext. Nothing panics.
#![no_main]

use domain::Timestamp;
use infra::providers::Rejection;
use libfuzzer_sys::fuzz_target;
use order_service_fuzz::{split_line, wechatpay};
use testkit::providers::WechatPaySimulator;

fuzz_target!(|data: &[u8]| {
    let Some((mode, rest)) = data.split_first() else { return };
    let platform = wechatpay();
    let config = platform.config();
    let now = Timestamp::now();
    if mode % 2 == 0 {
        let mut headers = Vec::new();
        let mut rest = rest;
        for name in [
            "wechatpay-timestamp",
            "wechatpay-nonce",
            "wechatpay-signature",
            "wechatpay-serial",
        ] {
            let (value, tail) = split_line(rest);
            headers.push((name, String::from_utf8_lossy(value).into_owned()));
            rest = tail;
        }
        let header = |name: &str| headers.iter().find(|(n, _)| *n == name).map(|(_, v)| v.clone());
        let _ = config.verify(&header, rest, now);
    } else {
        let (kind, plaintext) = split_line(rest);
        let (event_type, original_type) = match kind.first().copied().unwrap_or(0) % 3 {
            0 => ("TRANSACTION.SUCCESS", "transaction"),
            1 => ("REFUND.SUCCESS", "refund"),
            _ => ("REFUND.ABNORMAL", "refund"),
        };
        let body = WechatPaySimulator::sealed_bytes(
            "fuzz",
            &platform.apiv3_key,
            event_type,
            "fuzz",
            original_type,
            plaintext,
        );
        let posted = platform.post(body, now.unix_seconds());
        let header = |name: &str| posted.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone());
        let verdict = config.verify(&header, posted.body.as_bytes(), now);
        assert!(!matches!(verdict, Err(Rejection::Signature(_))), "{verdict:?}");
    }
});
