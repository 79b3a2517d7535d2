//! A fake of the supplier's stock API served over real HTTP on loopback, for the local server and the
//! tests: it answers `GET /stock/{sku}` from figures it is given, and can be
//! made slow or failing, and counts the requests it gets.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};

#[derive(Default)]
struct FakeState {
    stock: Mutex<HashMap<String, u32>>,
    delay_ms: AtomicU64,
    /// 0: answer normally; else answer with this status.
    failing_with: AtomicUsize,
    requests: AtomicUsize,
    api_key: Option<String>,
}

/// A running fake supplier; its server stops with the runtime.
#[derive(Clone)]
pub struct FakeSupplier {
    state: Arc<FakeState>,
    /// `http://127.0.0.1:<port>`.
    pub base_url: String,
}

async fn stock(State(state): State<Arc<FakeState>>, headers: HeaderMap, Path(sku): Path<String>) -> Response {
    state.requests.fetch_add(1, Ordering::SeqCst);
    let delay = state.delay_ms.load(Ordering::SeqCst);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    let failing = state.failing_with.load(Ordering::SeqCst);
    if failing != 0 {
        let status = u16::try_from(failing)
            .ok()
            .and_then(|s| StatusCode::from_u16(s).ok())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return (status, "supplier trouble").into_response();
    }
    if let Some(key) = &state.api_key {
        if headers.get("x-api-key").and_then(|v| v.to_str().ok()) != Some(key.as_str()) {
            return StatusCode::UNAUTHORIZED.into_response();
        }
    }
    let available = state.stock.lock().unwrap_or_else(|p| p.into_inner()).get(&sku).copied();
    match available {
        Some(available) => Json(serde_json::json!({ "sku": sku, "available": available })).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

impl FakeSupplier {
    /// Serves `stock` on a free loopback port, requiring `api_key` when given.
    pub async fn start(
        stock_figures: impl IntoIterator<Item = (String, u32)>,
        api_key: Option<String>,
    ) -> std::io::Result<Self> {
        let state = Arc::new(FakeState {
            stock: Mutex::new(stock_figures.into_iter().collect()),
            api_key,
            ..Default::default()
        });
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let base_url = format!("http://{}", listener.local_addr()?);
        let app = Router::new()
            .route("/stock/{sku}", get(stock))
            .with_state(state.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(FakeSupplier { state, base_url })
    }

    /// Sets a product's figure.
    pub fn set_stock(&self, sku: &str, available: u32) {
        self.state
            .stock
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(sku.to_owned(), available);
    }

    /// Takes `quantity` off a product's figure (as the supplier does when an order ships to it).
    pub fn take(&self, sku: &str, quantity: u32) {
        let mut stock = self.state.stock.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(available) = stock.get_mut(sku) {
            *available = available.saturating_sub(quantity);
        }
    }

    /// A product's figure.
    pub fn stock_of(&self, sku: &str) -> Option<u32> {
        self.state
            .stock
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(sku)
            .copied()
    }

    /// Answers every request after `delay`.
    pub fn set_delay(&self, delay: Duration) {
        self.state.delay_ms.store(delay.as_millis() as u64, Ordering::SeqCst);
    }

    /// Answers every request with `status` (`None`: answer normally).
    pub fn set_failing(&self, status: Option<u16>) {
        self.state
            .failing_with
            .store(status.map_or(0, usize::from), Ordering::SeqCst);
    }

    /// Requests received so far.
    pub fn requests(&self) -> usize {
        self.state.requests.load(Ordering::SeqCst)
    }
}
