//! TLS for the functions' own HTTPS calls (the supplier's stock API, WeChat Pay, Alipay): reqwest over
//! rustls with ring, the same crypto library as the SDK's client (`infra::aws::http_client`) and the
//! providers' RSA and AES-GCM, so a function links one (BENCHMARKS.md, "One crypto library").

use std::sync::Once;

/// A reqwest client with its own connection pool, each try bounded by `timeout` to connect and to
/// answer, whose TLS uses ring: ring is installed as the process's rustls provider first (once; a
/// provider installed before is left as it is).
pub fn client(timeout: std::time::Duration) -> Result<reqwest::Client, reqwest::Error> {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
    reqwest::Client::builder()
        .connect_timeout(timeout)
        .timeout(timeout)
        .build()
}
