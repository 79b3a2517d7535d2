//! The supplier's stock API (the seed's Haier integration): `GET {base}/stock/{sku}` answering
//! `{"sku", "available"}`, with a connect+read timeout, one retry with jitter on a transient failure, and
//! a circuit breaker that fails fast after repeated failures (docs/api.md §10).

use std::time::Duration;

use async_trait::async_trait;
use domain::ids::ProductId;
use domain::ports::{SupplierStock, SupplierUnavailable};
use serde::Deserialize;

/// Answers every stock question with "unavailable": for a deployment with no supplier configured.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoSupplier;

#[async_trait]
impl SupplierStock for NoSupplier {
    async fn available(&self, product: &ProductId) -> Result<u32, SupplierUnavailable> {
        Err(SupplierUnavailable(
            format!("no supplier stock service is configured (product {product})").into(),
        ))
    }
}

/// How the client talks to the supplier.
#[derive(Clone)]
pub struct SupplierConfig {
    /// The API's base URL, e.g. `https://stock.supplier.example/api`.
    pub base_url: String,
    /// Sent as `X-Api-Key` when set; never logged.
    pub api_key: Option<String>,
    /// Connect and read timeout of one try.
    pub timeout: Duration,
    /// Consecutive failed calls that open the breaker.
    pub failure_threshold: u32,
    /// How long an open breaker fails fast before letting one trial call through.
    pub cool_down: Duration,
}

impl std::fmt::Debug for SupplierConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SupplierConfig")
            .field("base_url", &self.base_url)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl SupplierConfig {
    /// The defaults (2 s timeout, 5 failures, 30 s cool-down) for `base_url`.
    pub fn new(base_url: &str) -> Self {
        SupplierConfig {
            base_url: base_url.trim_end_matches('/').to_owned(),
            api_key: None,
            timeout: Duration::from_secs(2),
            failure_threshold: 5,
            cool_down: Duration::from_secs(30),
        }
    }

    /// From `SUPPLIER_BASE_URL`, `SUPPLIER_API_KEY` and `SUPPLIER_TIMEOUT_MS`; `None` without a base URL.
    pub fn from_env() -> Result<Option<Self>, String> {
        let Some(base) = std::env::var("SUPPLIER_BASE_URL").ok().filter(|v| !v.trim().is_empty()) else {
            return Ok(None);
        };
        let mut config = Self::new(&base);
        config.api_key = std::env::var("SUPPLIER_API_KEY").ok().filter(|v| !v.is_empty());
        if let Ok(ms) = std::env::var("SUPPLIER_TIMEOUT_MS") {
            let ms: u64 = ms
                .parse()
                .map_err(|_| "SUPPLIER_TIMEOUT_MS must be a number of milliseconds")?;
            config.timeout = Duration::from_millis(ms);
        }
        Ok(Some(config))
    }
}

/// One try's failure.
enum TryError {
    /// Worth one more try: connect error, timeout, 5xx, 429.
    Transient(String),
    /// Not worth retrying.
    Permanent(String),
}

#[derive(Deserialize)]
struct StockAnswer {
    sku: String,
    available: u32,
}

/// The HTTP client for the supplier's stock API.
pub struct HttpSupplier {
    client: reqwest::Client,
    config: SupplierConfig,
    breaker: crate::breaker::Breaker,
}

impl HttpSupplier {
    /// A client with its own connection pool (rustls, no OpenSSL).
    pub fn new(config: SupplierConfig) -> Result<Self, String> {
        let client = crate::tls::client(config.timeout).map_err(|e| format!("supplier HTTP client: {e}"))?;
        Ok(HttpSupplier {
            client,
            breaker: crate::breaker::Breaker::new("supplier", config.failure_threshold, config.cool_down),
            config,
        })
    }

    async fn try_once(&self, product: &ProductId) -> Result<u32, TryError> {
        let url = format!("{}/stock/{}", self.config.base_url, product);
        let mut request = self.client.get(&url);
        if let Some(key) = &self.config.api_key {
            request = request.header("X-Api-Key", key);
        }
        let response = request.send().await.map_err(|e| {
            if e.is_timeout() || e.is_connect() || e.is_request() {
                TryError::Transient(format!("supplier request failed: {e}"))
            } else {
                TryError::Permanent(format!("supplier request failed: {e}"))
            }
        })?;
        let status = response.status();
        if status.is_server_error() || status.as_u16() == 429 {
            return Err(TryError::Transient(format!("supplier answered {status}")));
        }
        if status.as_u16() == 404 {
            // The supplier does not know the product: none to be had.
            return Ok(0);
        }
        if !status.is_success() {
            return Err(TryError::Permanent(format!("supplier answered {status}")));
        }
        let answer: StockAnswer = response
            .json()
            .await
            .map_err(|e| TryError::Transient(format!("supplier answer unreadable: {e}")))?;
        if answer.sku != product.as_str() {
            return Err(TryError::Permanent(format!("supplier answered for {}", answer.sku)));
        }
        Ok(answer.available)
    }
}

#[async_trait]
impl SupplierStock for HttpSupplier {
    async fn available(&self, product: &ProductId) -> Result<u32, SupplierUnavailable> {
        if !self.breaker.admit() {
            return Err(SupplierUnavailable("supplier circuit breaker open".into()));
        }
        let mut last = String::new();
        for attempt in 0..2 {
            match self.try_once(product).await {
                Ok(available) => {
                    self.breaker.record(true);
                    return Ok(available);
                }
                Err(TryError::Transient(why)) if attempt == 0 => {
                    tracing::warn!(product_id = %product, why, "supplier stock check failed; one retry");
                    last = why;
                    tokio::time::sleep(Duration::from_millis(fastrand::u64(20..=120))).await;
                }
                Err(TryError::Transient(why) | TryError::Permanent(why)) => {
                    last = why;
                    break;
                }
            }
        }
        self.breaker.record(false);
        Err(SupplierUnavailable(last.into()))
    }
}
