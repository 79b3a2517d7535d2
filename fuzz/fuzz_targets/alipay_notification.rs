//! An Alipay notification (a form). The first byte chooses: even, the form is the input and is verified
//! as the receiver verifies it; odd, the input's parameters are signed with the simulated Alipay key,
//! so everything after the signature is reached: the signature must verify (each parameter is kept
//! once, and a charset other than utf-8 left out: a form naming a parameter twice, or another charset,
//! is refused before its signature is checked). Nothing panics.
#![no_main]

use infra::providers::Rejection;
use libfuzzer_sys::fuzz_target;
use order_service_fuzz::alipay;
use testkit::providers::AlipaySimulator;

fuzz_target!(|data: &[u8]| {
    let Some((mode, rest)) = data.split_first() else { return };
    let simulator = alipay();
    let config = simulator.config();
    if mode % 2 == 0 {
        let _ = config.verify(rest);
    } else {
        // Each parameter once (a form naming one twice is refused before its signature is checked).
        let mut params: Vec<(String, String)> = Vec::new();
        for (k, v) in form_urlencoded::parse(rest) {
            let charset = k == "charset" && !v.eq_ignore_ascii_case("utf-8");
            if k != "sign" && k != "sign_type" && !charset && !params.iter().any(|(seen, _)| *seen == k) {
                params.push((k.into_owned(), v.into_owned()));
            }
        }
        let form = AlipaySimulator::form(&simulator.sign(params));
        let verdict = config.verify(form.as_bytes());
        assert!(!matches!(verdict, Err(Rejection::Signature(_))), "{verdict:?}");
    }
});
