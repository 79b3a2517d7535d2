//! Faults: an unreachable or throttled store answers `503 SERVICE_BUSY` with `Retry-After`, leaks
//! nothing internal, and leaves nothing half-written.

use std::sync::Arc;

use async_trait::async_trait;
use domain::ids::OrderId;
use domain::ports::{OrderStore, OrderWithPayments, PlaceError, Placement, StoreError, SystemClock};
use domain::usecases::Services;
use e2e::{read, request, sqlite};
use infra::dynamodb::DynamoStore;
use serde_json::json;

/// Sends one create_order through `svc` and checks it was refused as busy without leaking `secret`.
async fn assert_busy(svc: &Services, secret: &str) {
    let body = json!({"product_id": "fridge", "address_id": "alice-home", "quantity": 1}).to_string();
    let resp = create_order::handle(
        svc,
        request("POST", "/api/orders/create_order/", Some("alice"), body.as_bytes()),
    )
    .await;
    assert_eq!(
        resp.headers().get("retry-after").and_then(|v| v.to_str().ok()),
        Some("1")
    );
    let (status, body) = read(resp);
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (503, Some("SERVICE_BUSY")),
        "{body}"
    );
    assert_eq!(body["error"]["message"], "服务繁忙");
    assert!(!body.to_string().contains(secret), "internal detail leaked: {body}");
}

#[tokio::test]
async fn an_unreachable_dynamodb_is_503_service_busy() {
    // Nothing listens on the discard port: every call fails to connect, after the SDK's own retries.
    let store = Arc::new(DynamoStore::new(
        e2e::dynamo_client("http://127.0.0.1:9"),
        "orders-prod-secret-name",
    ));
    let svc = Services {
        catalog: store.clone(),
        orders: store.clone(),
        updates: store.clone(),
        expiry: store.clone(),
        list: store,
        supplier: Arc::new(infra::supplier::NoSupplier),
        clock: Arc::new(SystemClock),
        metrics: Arc::new(infra::metrics::EmfMetrics),
    };
    assert_busy(&svc, "orders-prod-secret-name").await;
}

/// Reads through to a real store, but every write is throttled past the adapter's retries.
struct ThrottledWrites(Arc<infra::sqlite::SqliteStore>);

#[async_trait]
impl OrderStore for ThrottledWrites {
    async fn place(&self, _: &Placement) -> Result<(), PlaceError> {
        Err(StoreError::Busy("ProvisionedThroughputExceededException: table orders-prod".into()).into())
    }

    async fn order_with_payments(&self, id: &OrderId) -> Result<Option<OrderWithPayments>, StoreError> {
        self.0.order_with_payments(id).await
    }

    async fn idempotency_record(
        &self,
        user: &domain::UserId,
        key: &domain::idempotency::IdempotencyKey,
    ) -> Result<Option<domain::idempotency::IdempotencyRecord>, StoreError> {
        self.0.idempotency_record(user, key).await
    }
}

#[tokio::test]
async fn a_throttled_write_is_503_and_writes_nothing() {
    let env = sqlite().await;
    env.product("fridge", "10.00", 5).await;
    env.address("alice-home", "alice").await;
    let before = env.snapshot().await;
    let store = env.sqlite_store().expect("a SQLite test store");
    let svc = Services {
        orders: Arc::new(ThrottledWrites(store)),
        ..env.svc.clone()
    };

    assert_busy(&svc, "Provisioned").await;
    assert_eq!(env.snapshot().await, before);
}
