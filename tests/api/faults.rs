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

/// What the proxy does to an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// Answer a throttling error, as DynamoDB does under load; nothing reaches moto.
    Throttle,
    /// Forward it (moto applies it), then reset the connection instead of answering: the answer is lost
    /// after the write was committed.
    LoseAnswer,
    /// Hold it this long before forwarding it (a slow read).
    DelayRequest(std::time::Duration),
    /// Forward it (moto applies it), then hold the answer this long (a slow write).
    DelayAnswer(std::time::Duration),
    /// Refuse the connection's request as a service outage (`503`), as an unreachable SQS would.
    Unavailable,
    /// Cancel the transaction for a conflict with another one in flight, as DynamoDB does; nothing
    /// reaches moto.
    Conflict,
}

/// A proxy in front of moto that does a chosen [`Fault`] to chosen operations (DynamoDB's, or SQS's, by
/// their `X-Amz-Target`), and counts every operation it sees.
struct FaultyDynamo {
    endpoint: String,
    /// (operation, fault, how many more times; `usize::MAX` for ever), the first applying until spent
    rules: Arc<std::sync::Mutex<Vec<(String, Fault, usize)>>>,
    seen: Arc<std::sync::Mutex<Vec<String>>>,
}

impl FaultyDynamo {
    async fn start(upstream: String) -> Self {
        use axum::body::Bytes;
        use axum::http::{HeaderMap, StatusCode};
        let rules = Arc::new(std::sync::Mutex::new(Vec::<(String, Fault, usize)>::new()));
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (r, s) = (rules.clone(), seen.clone());
        let client = reqwest::Client::new();
        let app = axum::Router::new().fallback(move |headers: HeaderMap, body: Bytes| {
            let (rules, seen, client, upstream) = (r.clone(), s.clone(), client.clone(), upstream.clone());
            async move {
                let content_type = headers
                    .get("content-type")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("application/x-amz-json-1.0")
                    .to_owned();
                let target = headers
                    .get("x-amz-target")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .rsplit('.')
                    .next()
                    .unwrap_or("")
                    .to_owned();
                seen.lock().unwrap().push(target.clone());
                let fault = {
                    let mut rules = rules.lock().unwrap();
                    rules.retain(|rule| rule.2 > 0);
                    rules.first_mut().filter(|rule| rule.0 == target).map(|rule| {
                        rule.2 = rule.2.saturating_sub(1);
                        rule.1
                    })
                };
                match fault {
                    Some(Fault::Throttle) => {
                        let body = r#"{"__type":"com.amazonaws.dynamodb.v20120810#ThrottlingException","message":"Rate of requests exceeds the allowed throughput."}"#;
                        return (StatusCode::BAD_REQUEST, [("content-type", content_type)], body.to_owned());
                    }
                    Some(Fault::Unavailable) => {
                        let body = r#"{"__type":"ServiceUnavailable","message":"Service is unable to handle request."}"#;
                        return (StatusCode::SERVICE_UNAVAILABLE, [("content-type", content_type)], body.to_owned());
                    }
                    Some(Fault::Conflict) => {
                        let reason = r#"{"Code":"TransactionConflict","Message":"Transaction is ongoing for the item"}"#;
                        let reasons = vec![reason; 16].join(",");
                        let body = format!(
                            r#"{{"__type":"com.amazonaws.dynamodb.v20120810#TransactionCanceledException","message":"Transaction cancelled, please refer cancellation reasons for specific reasons","CancellationReasons":[{reasons}]}}"#
                        );
                        return (StatusCode::BAD_REQUEST, [("content-type", content_type)], body);
                    }
                    Some(Fault::DelayRequest(delay)) => tokio::time::sleep(delay).await,
                    _ => {}
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
                match fault {
                    // Unwinding out of the handler drops the connection without an answer (a reset, as
                    // the client sees it); `resume_unwind` skips the panic hook, so nothing is printed.
                    Some(Fault::LoseAnswer) => std::panic::resume_unwind(Box::new("answer lost")),
                    Some(Fault::DelayAnswer(delay)) => tokio::time::sleep(delay).await,
                    _ => {}
                }
                (status, [("content-type", content_type)], text)
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        FaultyDynamo { endpoint, rules, seen }
    }

    /// Does `fault` to the next `times` requests of `operation` (and to no other operation).
    fn fault(&self, operation: &str, fault: Fault, times: usize) {
        self.faults(&[(operation, fault, times)]);
    }

    /// Does each fault in turn: the first to its operation's next requests until spent, then the next.
    fn faults(&self, faults: &[(&str, Fault, usize)]) {
        *self.rules.lock().unwrap() = faults.iter().map(|(op, f, n)| ((*op).to_owned(), *f, *n)).collect();
    }

    fn throttle(&self, operation: &str, times: usize) {
        self.fault(operation, Fault::Throttle, times);
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

/// The answer to a committed `TransactWriteItems` lost (the connection reset after moto applied it): the
/// SDK sends the same request again, whose conditions now fail on the orders it had put. The domain
/// judges that the write landed (those ids were made for this placement alone), so the shopper gets
/// their order, once, even when the retry also finds the stock gone (the last unit, taken by the lost
/// attempt itself). The same after a conflict: the adapter's next attempt (a new `ClientRequestToken`,
/// as the first applied nothing) has its answer lost, and still one order. With a key, the retried key
/// replays the one answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_lost_after_the_commit_does_not_make_a_second_order() {
    let Some((env, proxy)) = through_faulty_proxy().await else {
        return;
    };
    let fridge = env.product("fridge", "10.00", 3).await;
    env.address("alice-home", "alice").await;

    // The last unit but two: the lost answer, the SDK's retry, one order
    let order = json!({"product_id": "fridge", "address_id": "alice-home", "quantity": 1});
    proxy.fault("TransactWriteItems", Fault::LoseAnswer, 1);
    let before = proxy.count("TransactWriteItems");
    let (status, created) = e2e::create_order(&env, Some("alice"), &order).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(
        proxy.count("TransactWriteItems") - before,
        2,
        "the lost attempt and the SDK's retry"
    );
    let (orders, payments) = env.records().await;
    assert_eq!((orders.len(), payments.len()), (1, 1));
    assert_eq!(orders[0].id.as_str(), created["order"]["id"]);
    assert_eq!(env.stock(&fridge).await, 2);

    // A conflict first (the adapter tries again), then that attempt's answer lost: one order
    proxy.faults(&[
        ("TransactWriteItems", Fault::Conflict, 1),
        ("TransactWriteItems", Fault::LoseAnswer, 1),
    ]);
    let before = proxy.count("TransactWriteItems");
    let (status, created) = e2e::create_order(&env, Some("alice"), &order).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(proxy.count("TransactWriteItems") - before, 3, "conflict, lost, retried");
    assert_eq!(env.stock(&fridge).await, 1);
    assert_eq!(env.records().await.0.len(), 2);

    // The last unit, with a key: lost, retried (the stock condition fails too: the lost attempt took
    // it), one order; the shopper's own retry with the key replays it
    let key = "lost-answer";
    proxy.fault("TransactWriteItems", Fault::LoseAnswer, 1);
    let (status, first, replayed) = e2e::create_with_key(&env, "/api/orders/create_order/", "alice", key, &order).await;
    assert_eq!((status, replayed), (201, false), "{first}");
    let (status, again, replayed) = e2e::create_with_key(&env, "/api/orders/create_order/", "alice", key, &order).await;
    assert_eq!((status, replayed, &again), (201, true, &first));
    assert_eq!(env.stock(&fridge).await, 0);
    let (orders, payments) = env.records().await;
    assert_eq!((orders.len(), payments.len()), (3, 3));
    let ordered: u32 = orders.iter().map(|o| o.quantity.get()).sum();
    assert_eq!(env.stock(&fridge).await + ordered, 3, "stock conserved");
}

/// A timeout on the read before a change (the order read by the shopper's cancel, held past the SDK's
/// attempt timeout every time): `503 SERVICE_BUSY` once the SDK's time is spent, and nothing changed.
/// A timeout on the write of the change (the transaction applied by moto, its answer held past the
/// attempt timeout once): the SDK sends it again, its condition fails on the order it had already
/// moved, the change is judged again on the order as it now stands, and the shopper gets the cancelled
/// order with the stock returned once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeouts_on_the_read_and_on_the_write_of_a_change_leave_it_whole() {
    let Some((env, proxy)) = through_faulty_proxy().await else {
        return;
    };
    let fridge = env.product("fridge", "10.00", 5).await;
    env.address("alice-home", "alice").await;
    let body = json!({"product_id": "fridge", "address_id": "alice-home", "quantity": 2});
    let (status, created) = e2e::create_order(&env, Some("alice"), &body).await;
    assert_eq!(status, 201, "{created}");
    let order = created["order"]["id"].as_str().unwrap().to_owned();
    let slow = std::time::Duration::from_millis(2_500);

    // The read times out on every attempt
    let snapshot = env.snapshot().await;
    proxy.fault("Query", Fault::DelayRequest(slow), usize::MAX);
    let (status, answer) = e2e::cancel_order(&env, Some("alice"), &order).await;
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (503, Some("SERVICE_BUSY")),
        "{answer}"
    );
    proxy.fault("Query", Fault::DelayRequest(slow), 0);
    assert_eq!(env.snapshot().await, snapshot, "nothing changed");

    // The write's answer times out once, after moto applied it
    proxy.fault("TransactWriteItems", Fault::DelayAnswer(slow), 1);
    let before = proxy.count("TransactWriteItems");
    let (status, answer) = e2e::cancel_order(&env, Some("alice"), &order).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["order"]["status"], "cancelled");
    assert!(
        proxy.count("TransactWriteItems") - before >= 2,
        "the timed-out write was sent again"
    );
    assert_eq!(env.stock(&fridge).await, 5, "the stock returned once");
    let (orders, payments) = env.records().await;
    let cancels = orders[0]
        .history
        .iter()
        .filter(|h| h.to == domain::OrderStatus::Cancelled)
        .count();
    assert_eq!(cancels, 1);
    assert_eq!(payments[0].status, domain::PaymentStatus::Expired);
}

/// The queue down when the receiver enqueues (SQS on moto behind the proxy, refusing `SendMessage`):
/// `503` so the provider retries, nothing enqueued; the provider's retry once the queue is back is
/// enqueued, and the processor pays the order once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_down_loses_nothing_the_provider_sends_again() {
    let Some(env) = e2e::dynamodb().await else { return };
    let proxy = FaultyDynamo::start(e2e::emulator().expect("emulator")).await;
    env.product("fridge", "10.00", 5).await;
    env.address("alice-home", "alice").await;
    let body = json!({"product_id": "fridge", "address_id": "alice-home", "quantity": 1});
    let (status, created) = e2e::create_order(&env, Some("alice"), &body).await;
    assert_eq!(status, 201, "{created}");
    let payment = created["payment"]["id"].as_str().unwrap().to_owned();

    let direct = e2e::sqs_client(&e2e::emulator().expect("emulator"));
    let url = e2e::fifo_queue(&direct).await.expect("queue");
    let receiver = payment_callback::Receiver {
        verifier: domain::callback::SignatureVerifier::from_list("fault-secret").unwrap(),
        queue: Arc::new(infra::sqs::SqsQueue::new(e2e::sqs_client(&proxy.endpoint), url.clone())),
        clock: Arc::new(SystemClock),
        wechatpay: None,
        alipay: None,
    };
    let notification = json!({"event_id": "evt-queue-down", "payment_id": payment, "provider_txn_id": "txn-1",
                              "status": "succeeded", "amount": "10.00", "occurred_at": "2026-12-02T07:00:00Z"})
    .to_string();
    let post = || async {
        let t = domain::Timestamp::now().unix_seconds();
        let signature = testkit::generic::header(b"fault-secret", t, notification.as_bytes());
        let req = infra::http::GatewayRequest {
            method: "POST",
            path: "/api/payments/callback/",
            route_key: "POST /api/payments/callback/",
            headers: vec![
                ("content-type".to_owned(), "application/json".to_owned()),
                ("x-payment-signature".to_owned(), signature),
            ],
            body: notification.as_bytes(),
            request_id: "cb-request",
            ..Default::default()
        }
        .into_request()
        .unwrap();
        read(payment_callback::handle(&receiver, req).await)
    };

    // The queue down: 503 with Retry-After's code, and nothing in the queue
    proxy.fault("SendMessage", Fault::Unavailable, usize::MAX);
    let (status, answer) = post().await;
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (503, Some("SERVICE_BUSY")),
        "{answer}"
    );
    let waiting = direct.receive_message().queue_url(&url).send().await.unwrap();
    assert!(
        waiting.messages().is_empty(),
        "nothing enqueued while the queue was down"
    );

    // The provider sends it again once the queue is back: enqueued, and applied once
    proxy.fault("SendMessage", Fault::Unavailable, 0);
    let (status, answer) = post().await;
    assert_eq!((status, answer), (200, json!({"code": "SUCCESS"})));
    let got = direct
        .receive_message()
        .queue_url(&url)
        .max_number_of_messages(10)
        .message_system_attribute_names(aws_sdk_sqs::types::MessageSystemAttributeName::All)
        .send()
        .await
        .unwrap();
    assert_eq!(got.messages().len(), 1);
    let event: domain::PaymentEvent = serde_json::from_str(got.messages()[0].body().unwrap()).unwrap();
    assert!(e2e::deliver(&env, &[("m1", &event)]).await.is_empty());
    assert!(e2e::deliver(&env, &[("m1-again", &event)]).await.is_empty());
    let (orders, payments) = env.records().await;
    assert_eq!(orders[0].status, domain::OrderStatus::Paid);
    assert_eq!(payments[0].status, domain::PaymentStatus::Succeeded);
    assert_eq!(
        orders[0]
            .history
            .iter()
            .filter(|h| h.to == domain::OrderStatus::Paid)
            .count(),
        1
    );
}
