//! What the fuzz targets share: building requests as API Gateway presents them, and the simulated
//! providers, whose keys are generated once per process (never stored).

use std::sync::OnceLock;

use infra::http::GatewayRequest;
use lambda_http::Request;
use testkit::providers::{AlipaySimulator, WechatPaySimulator};

/// A POST to `path` with `headers` (names lower-case), `path_parameters` and `body`, by `alice`, as API
/// Gateway hands it to a function; `None` if no event could carry it.
pub fn request(
    headers: Vec<(String, String)>,
    path_parameters: Vec<(&'static str, String)>,
    body: &[u8],
) -> Option<Request> {
    GatewayRequest {
        method: "POST",
        path: "/api/orders/fuzz/",
        route_key: "POST /api/orders/fuzz/",
        headers,
        path_parameters,
        body,
        user: Some("alice"),
        request_id: "fuzz",
        ..Default::default()
    }
    .into_request()
    .ok()
}

/// The simulated WeChat Pay platform (its key generated on first use).
pub fn wechatpay() -> &'static WechatPaySimulator {
    static SIMULATOR: OnceLock<WechatPaySimulator> = OnceLock::new();
    SIMULATOR.get_or_init(|| WechatPaySimulator::generate("PUB_KEY_ID_0114232134912410000000000012"))
}

/// The simulated Alipay (its key generated on first use).
pub fn alipay() -> &'static AlipaySimulator {
    static SIMULATOR: OnceLock<AlipaySimulator> = OnceLock::new();
    SIMULATOR.get_or_init(AlipaySimulator::generate)
}

/// `data` cut at its first `\n`: what comes before, and the rest.
pub fn split_line(data: &[u8]) -> (&[u8], &[u8]) {
    match data.iter().position(|b| *b == b'\n') {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &[]),
    }
}
