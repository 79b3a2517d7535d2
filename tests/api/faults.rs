//! Faults: an unreachable or throttled store answers `503 SERVICE_BUSY` with `Retry-After`, leaks
//! nothing internal, and leaves nothing half-written.

use std::sync::Arc;

use async_trait::async_trait;
use domain::change::OrderWithPayments;
use domain::ids::OrderId;
use domain::placement::Placement;
use domain::ports::{OrderStore, PlaceError, StoreError, SystemClock};
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
    let svc = Services::over(
        store,
        Arc::new(infra::supplier::NoSupplier),
        Arc::new(SystemClock),
        Arc::new(infra::metrics::EmfMetrics),
    );
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

/// How a store's busy answer reaches the shopper (the store itself is never reached, so this proves
/// the mapping only; the tests below make real stores fail and look at what they hold afterwards).
#[tokio::test]
async fn a_store_that_answers_busy_is_503_service_busy() {
    let env = sqlite().await;
    env.product("fridge", "10.00", 5).await;
    env.address("alice-home", "alice").await;
    let store = env.sqlite_store().expect("a SQLite test store");
    let svc = Services {
        orders: Arc::new(ThrottledWrites(store)),
        ..env.svc.clone()
    };

    assert_busy(&svc, "Provisioned").await;
}

/// A fault inside the store's own write, after the stock was taken and the order inserted (a trigger
/// on the payments table fails the insert of the payment): the transaction is rolled back whole.
#[tokio::test]
async fn a_fault_in_the_middle_of_the_write_leaves_nothing_half_written() {
    let env = sqlite().await;
    env.product("fridge", "10.00", 5).await;
    env.address("alice-home", "alice").await;
    let path = env.sqlite_path().expect("a SQLite test store").to_owned();
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch(
        "CREATE TRIGGER fail_payment BEFORE INSERT ON payments BEGIN SELECT RAISE(ABORT, 'disk trouble in table orders-prod'); END;",
    )
    .unwrap();
    let before = env.snapshot().await;

    let body = json!({"product_id": "fridge", "address_id": "alice-home", "quantity": 2}).to_string();
    let resp = create_order::handle(
        &env.svc,
        request("POST", "/api/orders/create_order/", Some("alice"), body.as_bytes()),
    )
    .await;
    let (status, body) = read(resp);
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (500, Some("INTERNAL_ERROR")),
        "{body}"
    );
    assert!(
        !body.to_string().contains("orders-prod"),
        "internal detail leaked: {body}"
    );
    assert_eq!(
        env.snapshot().await,
        before,
        "stock taken or order written without its payment"
    );

    // Once the fault is gone the same request succeeds, once
    conn.execute_batch("DROP TRIGGER fail_payment").unwrap();
    let body = json!({"product_id": "fridge", "address_id": "alice-home", "quantity": 2});
    assert_eq!(e2e::create_order(&env, Some("alice"), &body).await.0, 201);
    assert_eq!(env.stock(&domain::ProductId::parse("fridge").unwrap()).await, 3);
}

/// A proxy in front of moto that answers chosen DynamoDB operations with a throttling error, as DynamoDB
/// does under load, and counts every operation it sees.
struct FaultyDynamo {
    endpoint: String,
    /// (operation, how many more times to throttle it; `usize::MAX` for ever)
    throttle: Arc<std::sync::Mutex<(String, usize)>>,
    seen: Arc<std::sync::Mutex<Vec<String>>>,
}

impl FaultyDynamo {
    async fn start(upstream: String) -> Self {
        use axum::body::Bytes;
        use axum::http::{HeaderMap, StatusCode};
        let throttle = Arc::new(std::sync::Mutex::new((String::new(), 0usize)));
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (t, s) = (throttle.clone(), seen.clone());
        let client = reqwest::Client::new();
        let app = axum::Router::new().fallback(move |headers: HeaderMap, body: Bytes| {
            let (throttle, seen, client, upstream) = (t.clone(), s.clone(), client.clone(), upstream.clone());
            async move {
                let target = headers
                    .get("x-amz-target")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .rsplit('.')
                    .next()
                    .unwrap_or("")
                    .to_owned();
                seen.lock().unwrap().push(target.clone());
                {
                    let mut throttle = throttle.lock().unwrap();
                    if throttle.0 == target && throttle.1 > 0 {
                        throttle.1 = throttle.1.saturating_sub(1);
                        let body = r#"{"__type":"com.amazonaws.dynamodb.v20120810#ThrottlingException","message":"Rate of requests exceeds the allowed throughput."}"#;
                        return (StatusCode::BAD_REQUEST, [("content-type", "application/x-amz-json-1.0")], body.to_owned());
                    }
                }
                let mut request = client.post(&upstream).body(body);
                for (name, value) in &headers {
                    if name != "host" && name != "content-length" {
                        request = request.header(name, value);
                    }
                }
                let response = request.send().await.expect("moto");
                let status = StatusCode::from_u16(response.status().as_u16()).unwrap();
                let text = response.text().await.unwrap();
                (status, [("content-type", "application/x-amz-json-1.0")], text)
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        FaultyDynamo {
            endpoint,
            throttle,
            seen,
        }
    }

    fn throttle(&self, operation: &str, times: usize) {
        *self.throttle.lock().unwrap() = (operation.to_owned(), times);
    }

    fn count(&self, operation: &str) -> usize {
        self.seen.lock().unwrap().iter().filter(|o| *o == operation).count()
    }
}

/// Services over a fresh moto table reached through the faulty proxy, with the production SDK
/// configuration (its retry policy and timeouts); the test's own view of the table bypasses the proxy.
async fn through_faulty_proxy() -> Option<(e2e::TestEnv, FaultyDynamo)> {
    let env = e2e::dynamodb().await?;
    let proxy = FaultyDynamo::start(e2e::emulator()?).await;
    let store = Arc::new(DynamoStore::new(
        infra::dynamodb::client(Some(&proxy.endpoint)),
        env.table_name().expect("a DynamoDB test table"),
    ));
    let env = env.with_store(store);
    Some((env, proxy))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_is_retried_by_the_sdk_and_a_failed_condition_is_not() {
    let Some((env, proxy)) = through_faulty_proxy().await else {
        return;
    };
    env.product("fridge", "10.00", 5).await;
    env.address("alice-home", "alice").await;
    let order = json!({"product_id": "fridge", "address_id": "alice-home", "quantity": 1});

    // Throttled twice, then accepted: exactly one order
    proxy.throttle("TransactWriteItems", 2);
    let (status, created) = e2e::create_order(&env, Some("alice"), &order).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(proxy.count("TransactWriteItems"), 3);
    let (orders, payments) = env.records().await;
    assert_eq!((orders.len(), payments.len()), (1, 1));

    // A refused condition (not enough stock) is answered at once, not retried
    let before = proxy.count("TransactWriteItems");
    let too_many = json!({"product_id": "fridge", "address_id": "alice-home", "quantity": 5});
    let (status, _) = e2e::create_order(&env, Some("alice"), &too_many).await;
    assert_eq!(status, 409);
    assert_eq!(proxy.count("TransactWriteItems") - before, 1);

    // Throttled every time: 503 SERVICE_BUSY with Retry-After once the SDK's attempts are spent; nothing
    // written
    let snapshot = env.snapshot().await;
    proxy.throttle("TransactWriteItems", usize::MAX);
    let before = proxy.count("TransactWriteItems");
    let mark = proxy.seen.lock().unwrap().len();
    assert_busy(&env.svc, "ThrottlingException").await;
    let attempts = proxy.count("TransactWriteItems") - before;
    assert_eq!(attempts, 4, "the SDK's attempts, and no second loop on top");
    assert_eq!(env.snapshot().await, snapshot);
    // Every other operation reached the table: only the throttled transaction was held back, so the
    // unchanged table shows that the create wrote nothing outside its one transaction.
    let writes: Vec<String> = proxy.seen.lock().unwrap()[mark..]
        .iter()
        .filter(|o| matches!(o.as_str(), "PutItem" | "UpdateItem" | "DeleteItem" | "BatchWriteItem"))
        .cloned()
        .collect();
    assert!(writes.is_empty(), "writes outside the transaction: {writes:?}");

    // Once the throttling stops, the shopper's retry with the same key makes the order, once
    proxy.throttle("TransactWriteItems", 0);
    let key = "retry-after-throttling";
    let (status, first, _) = e2e::create_with_key(&env, "/api/orders/create_order/", "alice", key, &order).await;
    assert_eq!(status, 201, "{first}");
    let (status, again, replayed) = e2e::create_with_key(&env, "/api/orders/create_order/", "alice", key, &order).await;
    assert_eq!((status, replayed, &again), (201, true, &first));
    let (orders, _) = env.records().await;
    assert_eq!(orders.len(), 2, "the first order of this test and the retried one");
}
