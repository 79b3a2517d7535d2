//! `Idempotency-Key`: any header value is accepted only as 1 to 255 visible ASCII characters, the same
//! whether parsed alone or read from a request as the handlers read it.
#![no_main]

use domain::idempotency::IdempotencyKey;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let parsed = IdempotencyKey::parse(&text);
    if let Ok(key) = &parsed {
        assert_eq!(key.as_str(), text);
        assert!((1..=255).contains(&text.len()), "{text:?}");
        assert!(text.bytes().all(|b| b.is_ascii_graphic()), "{text:?}");
    }
    let headers = vec![("idempotency-key".to_owned(), text.clone().into_owned())];
    if let Some(req) = order_service_fuzz::request(headers, vec![], b"{}") {
        if let Ok(read) = infra::http::idempotency_key(&req) {
            assert_eq!(
                read.map(|k| k.as_str().to_owned()),
                parsed.ok().map(|k| k.as_str().to_owned())
            );
        }
    }
});
