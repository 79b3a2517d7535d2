//! The generic callback: the `X-Payment-Signature` header and the body. The first byte chooses: even, the
//! header and body are the input's (cut at the first `\n`) and are checked as the receiver checks them;
//! odd, the body is the input's and is signed right, which must verify, and is then parsed. Nothing
//! panics; a parsed event's amount is never negative.
#![no_main]

use domain::callback::{PaymentEvent, SignatureVerifier};
use domain::Timestamp;
use libfuzzer_sys::fuzz_target;

const SECRET: &str = "fuzz-callback-secret";

fuzz_target!(|data: &[u8]| {
    let Some((mode, rest)) = data.split_first() else { return };
    let verifier = SignatureVerifier::new([SECRET]).expect("a secret");
    let now = Timestamp::now();
    let body = if mode % 2 == 0 {
        let (header, body) = order_service_fuzz::split_line(rest);
        let header = String::from_utf8_lossy(header);
        if verifier.verify(Some(&header), body, now).is_err() {
            return;
        }
        body
    } else {
        let header = testkit::generic::header(SECRET.as_bytes(), now.unix_seconds(), rest);
        assert!(
            verifier.verify(Some(&header), rest, now).is_ok(),
            "a right signature verifies"
        );
        rest
    };
    if let Ok(event) = PaymentEvent::parse_generic(body) {
        assert!(!event.amount.to_string().starts_with('-'), "{event:?}");
    }
});
