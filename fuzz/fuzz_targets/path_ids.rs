//! The `{order_id}` and `{payment_id}` path parameters: any text is an id or not found (never a panic),
//! the same read from a request as parsed alone, and an id reads back as the text it came from.
#![no_main]

use domain::{OrderId, PaymentId};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data).into_owned();
    let order = OrderId::parse(&text).ok();
    let payment = PaymentId::parse(&text).ok();
    if let Some(id) = &order {
        assert_eq!(id.as_str(), text);
    }
    if let Some(id) = &payment {
        assert_eq!(id.as_str(), text);
    }
    let params = vec![("order_id", text.clone()), ("payment_id", text.clone())];
    if let Some(req) = order_service_fuzz::request(vec![], params, b"") {
        assert_eq!(infra::http::order_id(&req).ok(), order);
        assert_eq!(infra::http::payment_id(&req).ok(), payment);
    }
});
