//! Test support: a fresh, isolated store per test (SQLite file or DynamoDB table in moto), requests
//! built as API Gateway builds them, and a raw view of the store for "nothing changed" checks.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};

use async_trait::async_trait;
use aws_lambda_events::sqs::SqsEvent;
use aws_sdk_dynamodb::Client;
use domain::catalog::{Address, Product, StockSource};
use domain::ids::{AddressId, ProductId, UserId};
use domain::ports::{CatalogAdmin, Clock, Metric, Metrics, SupplierStock, SupplierUnavailable};
use domain::usecases::Services;
use domain::{EventId, EventSource, Money, Order, Payment, PaymentEvent, ReportedStatus, Timestamp};
use infra::dynamodb::schema::TableSchema;
use infra::dynamodb::DynamoStore;
use infra::http::GatewayRequest;
use infra::sqlite::SqliteStore;
use lambda_http::{Body, Request, Response};
use serde_json::Value;

enum Raw {
    Sqlite {
        path: PathBuf,
        store: Arc<SqliteStore>,
        _dir: tempfile::TempDir,
    },
    Dynamo {
        client: Client,
        table: String,
    },
}

/// One test's private store and the services over it.
pub struct TestEnv {
    /// What the handlers run with.
    pub svc: Services,
    /// Writes products and addresses.
    pub admin: Arc<dyn CatalogAdmin>,
    /// The clock the services read; tests move it forward.
    pub clock: Arc<TestClock>,
    /// Every metric the services counted.
    pub metrics: Arc<RecordedMetrics>,
    raw: Raw,
}

/// The system time plus an offset a test can move forward.
#[derive(Debug, Default)]
pub struct TestClock {
    offset_seconds: std::sync::atomic::AtomicI64,
}

impl TestClock {
    /// Moves the clock `seconds` forward.
    pub fn advance(&self, seconds: i64) {
        self.offset_seconds
            .fetch_add(seconds, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Clock for TestClock {
    fn now(&self) -> Timestamp {
        Timestamp::now().plus_seconds(self.offset_seconds.load(std::sync::atomic::Ordering::SeqCst))
    }
}

/// Metrics kept in memory.
#[derive(Debug, Default)]
pub struct RecordedMetrics(Mutex<Vec<Metric>>);

impl RecordedMetrics {
    /// How often `metric` was counted.
    pub fn count_of(&self, metric: Metric) -> usize {
        self.0.lock().expect("metrics").iter().filter(|m| **m == metric).count()
    }
}

impl Metrics for RecordedMetrics {
    fn count(&self, metric: Metric) {
        self.0.lock().expect("metrics").push(metric);
    }
}

/// Every row of every table of the SQLite database at `path` (the store's own tables, whatever they
/// are: a table added later is compared too), keyed by table and row id, each row as a JSON object of
/// its columns.
pub fn sqlite_snapshot(path: &Path) -> BTreeMap<String, Value> {
    use rusqlite::types::ValueRef;
    let conn = rusqlite::Connection::open(path).expect("open sqlite for snapshot");
    let tables: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")
        .expect("list tables")
        .query_map([], |r| r.get(0))
        .expect("query tables")
        .map(|t| t.expect("table name"))
        .collect();
    assert!(!tables.is_empty(), "no tables in {}", path.display());
    let mut out = BTreeMap::new();
    for table in tables {
        let mut stmt = conn
            .prepare(&format!("SELECT rowid, * FROM \"{table}\""))
            .expect("prepare snapshot");
        let columns: Vec<String> = stmt.column_names().map(str::to_owned).collect();
        let mut rows = stmt.query([]).expect("query snapshot");
        while let Some(row) = rows.next().expect("row") {
            let mut object = serde_json::Map::new();
            for (i, column) in columns.iter().enumerate().skip(1) {
                let value = match row.get_ref(i).expect("column") {
                    ValueRef::Null => Value::Null,
                    ValueRef::Integer(n) => Value::from(n),
                    ValueRef::Real(x) => Value::from(x),
                    // A JSON document column is compared (and shown) as the JSON it holds.
                    ValueRef::Text(t) if column == "doc" => serde_json::from_slice(t).expect("doc column holds JSON"),
                    ValueRef::Text(t) => Value::from(String::from_utf8_lossy(t).into_owned()),
                    ValueRef::Blob(b) => Value::from(hex::encode(b)),
                };
                object.insert(column.clone(), value);
            }
            let rowid: i64 = row.get(0).expect("rowid");
            out.insert(format!("{table}|{rowid}"), Value::Object(object));
        }
    }
    out
}

/// A fresh SQLite store in its own temporary directory.
pub async fn sqlite() -> TestEnv {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("shop.sqlite3");
    let store = Arc::new(SqliteStore::open(&path).expect("open sqlite"));
    TestEnv::over(store.clone(), Raw::Sqlite { path, store, _dir: dir })
}

/// A fresh DynamoDB table in moto, created from template.yaml; `None` (after saying so loudly) when no
/// emulator can be had outside CI. Under `CI=true` a missing emulator fails the test.
pub async fn dynamodb() -> Option<TestEnv> {
    let endpoint = emulator()?;
    Some(over_fresh_table(dynamo_client(&endpoint)).await)
}

/// A new table created from template.yaml, and the services over it through `client`.
async fn over_fresh_table(client: Client) -> TestEnv {
    let table = format!("orders-{}", uuid::Uuid::now_v7().simple());
    TableSchema::bundled()
        .expect("template schema")
        .create_table(&client, &table)
        .await
        .expect("create table");
    let store = Arc::new(DynamoStore::new(client.clone(), table.clone()));
    TestEnv::over(store, Raw::Dynamo { client, table })
}

impl TestEnv {
    fn over<S>(store: Arc<S>, raw: Raw) -> TestEnv
    where
        S: domain::ports::Catalog
            + domain::ports::OrderStore
            + domain::ports::OrderUpdates
            + domain::ports::ExpiryIndex
            + domain::ports::OrderList
            + CatalogAdmin
            + 'static,
    {
        let clock = Arc::new(TestClock::default());
        let metrics = Arc::new(RecordedMetrics::default());
        TestEnv {
            svc: Services {
                catalog: store.clone(),
                orders: store.clone(),
                updates: store.clone(),
                expiry: store.clone(),
                list: store.clone(),
                supplier: Arc::new(infra::supplier::NoSupplier),
                clock: clock.clone(),
                metrics: metrics.clone(),
            },
            admin: store,
            clock,
            metrics,
            raw,
        }
    }
}

/// A fresh DynamoDB table whose client counts its requests, with the catalogue behind the warm-function
/// cache as the Lambda functions have it.
pub async fn dynamodb_counted() -> Option<(TestEnv, infra::dynamodb::RequestCounter)> {
    let endpoint = emulator()?;
    let counter = infra::dynamodb::RequestCounter::default();
    let client = Client::from_conf(
        dynamo_config(&endpoint)
            .to_builder()
            .interceptor(counter.clone())
            .build(),
    );
    Some((over_fresh_table(client).await.with_cache(), counter))
}

/// A client for the emulator with dummy credentials.
pub fn dynamo_client(endpoint: &str) -> Client {
    Client::from_conf(dynamo_config(endpoint))
}

fn dynamo_config(endpoint: &str) -> aws_sdk_dynamodb::Config {
    aws_sdk_dynamodb::Config::builder()
        .behavior_version(aws_sdk_dynamodb::config::BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(aws_sdk_dynamodb::config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
            "test", "test", None, None, "test",
        ))
        .build()
}

/// An SQS client for the emulator with dummy credentials.
pub fn sqs_client(endpoint: &str) -> aws_sdk_sqs::Client {
    aws_sdk_sqs::Client::from_conf(
        aws_sdk_sqs::Config::builder()
            .behavior_version(aws_sdk_sqs::config::BehaviorVersion::latest())
            .endpoint_url(endpoint)
            .region(aws_sdk_sqs::config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_sqs::config::Credentials::new(
                "test", "test", None, None, "test",
            ))
            .build(),
    )
}

/// A fresh FIFO queue as the template makes it (content-based deduplication off, deduplication and
/// throughput per message group): its URL. moto accepts the per-group attributes but deduplicates
/// across the whole queue; the local queue's own tests check the per-group scope.
pub async fn fifo_queue(client: &aws_sdk_sqs::Client) -> Result<String, String> {
    use aws_sdk_sqs::types::QueueAttributeName;
    let created = client
        .create_queue()
        .queue_name(format!("callbacks-{}.fifo", uuid::Uuid::now_v7().simple()))
        .attributes(QueueAttributeName::FifoQueue, "true")
        .attributes(QueueAttributeName::ContentBasedDeduplication, "false")
        .attributes(QueueAttributeName::DeduplicationScope, "messageGroup")
        .attributes(QueueAttributeName::FifoThroughputLimit, "perMessageGroupId")
        .send()
        .await
        .map_err(|e| format!("create FIFO queue: {e}"))?;
    created
        .queue_url()
        .map(str::to_owned)
        .ok_or_else(|| "no queue url".to_owned())
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// Whether a missing emulator (or any tool a test needs) must fail the test: under `CI=true`, and
/// whenever `REQUIRE_EMULATORS=1` (scripts/test.sh sets it, since it installs them).
pub fn tools_required() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true") || std::env::var("REQUIRE_EMULATORS").is_ok_and(|v| v == "1")
}

/// The emulator's endpoint for a test that needs it. Where [`tools_required`], a missing emulator fails
/// the test; elsewhere the test says `SKIPPED` and why, and gets `None`.
pub fn emulator() -> Option<String> {
    match moto_endpoint() {
        Ok(endpoint) => Some(endpoint),
        Err(why) if tools_required() => {
            panic!("DynamoDB emulator unavailable (CI=true or REQUIRE_EMULATORS=1): {why}")
        }
        Err(why) => {
            eprintln!("SKIPPED (no DynamoDB emulator; run scripts/test.sh): {why}");
            None
        }
    }
}

/// The emulator's endpoint: `DYNAMODB_TEST_ENDPOINT` if set, else one moto server per test binary,
/// started from the project's virtualenv (scripts/test.sh creates it) and stopped when the binary exits.
pub fn moto_endpoint() -> Result<String, String> {
    static MOTO: OnceLock<Result<(String, Mutex<Child>), String>> = OnceLock::new();
    if let Ok(endpoint) = std::env::var("DYNAMODB_TEST_ENDPOINT") {
        return Ok(endpoint);
    }
    let started = MOTO.get_or_init(|| {
        let root = workspace_root();
        let python = root.join(".venv/bin/python");
        if !python.exists() {
            return Err(format!("{} not found", python.display()));
        }
        // The emulator's own log is kept (one file per test binary) and quoted when it fails to start;
        // scripts/test.sh prints the tails of these files when the tests fail.
        let logs = root.join("target/emulator-logs");
        std::fs::create_dir_all(&logs).map_err(|e| format!("cannot make {}: {e}", logs.display()))?;
        let log_path = logs.join(format!("moto-{}.log", std::process::id()));
        let log = std::fs::File::create(&log_path).map_err(|e| format!("cannot create {}: {e}", log_path.display()))?;
        let mut child = Command::new(&python)
            .arg(root.join("scripts/moto_server.py"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot start moto: {e}"))?;
        let log_tail = || {
            let text = std::fs::read_to_string(&log_path).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            format!(
                "{} ends:\n{}",
                log_path.display(),
                lines[lines.len().saturating_sub(20)..].join("\n")
            )
        };
        let stdout = child.stdout.take().ok_or("no stdout from moto")?;
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .map_err(|e| format!("moto did not report its port: {e}; {}", log_tail()))?;
        let port: u16 = line
            .trim()
            .parse()
            .map_err(|_| format!("moto printed {line:?}, not a port; {}", log_tail()))?;
        Ok((format!("http://127.0.0.1:{port}"), Mutex::new(child)))
    });
    started
        .as_ref()
        .map(|(endpoint, _)| endpoint.clone())
        .map_err(Clone::clone)
}

impl TestEnv {
    /// The SQLite store itself, for tests that wrap it.
    pub fn sqlite_store(&self) -> Option<Arc<SqliteStore>> {
        match &self.raw {
            Raw::Sqlite { store, .. } => Some(Arc::clone(store)),
            Raw::Dynamo { .. } => None,
        }
    }

    /// Removes a product from the store itself (no port removes products; an operator might).
    pub async fn remove_product(&self, id: &str) {
        match &self.raw {
            Raw::Sqlite { path, .. } => {
                let conn = rusqlite::Connection::open(path).expect("open sqlite");
                conn.execute("DELETE FROM products WHERE id = ?1", [id])
                    .expect("delete product");
            }
            Raw::Dynamo { client, table } => {
                client
                    .delete_item()
                    .table_name(table)
                    .key(
                        "pk",
                        aws_sdk_dynamodb::types::AttributeValue::S(format!("PRODUCT#{id}")),
                    )
                    .key("sk", aws_sdk_dynamodb::types::AttributeValue::S("#PRODUCT".into()))
                    .send()
                    .await
                    .expect("delete product");
            }
        }
    }

    /// The SQLite database file, when the store is SQLite (for tests that reach under the adapter).
    pub fn sqlite_path(&self) -> Option<&Path> {
        match &self.raw {
            Raw::Sqlite { path, .. } => Some(path),
            Raw::Dynamo { .. } => None,
        }
    }

    /// The DynamoDB table's name, when the store is DynamoDB.
    pub fn table_name(&self) -> Option<String> {
        match &self.raw {
            Raw::Dynamo { table, .. } => Some(table.clone()),
            Raw::Sqlite { .. } => None,
        }
    }

    /// The services over another client of the same store (the test's raw view stays as it was).
    pub fn with_store<S>(mut self, store: Arc<S>) -> Self
    where
        S: domain::ports::Catalog
            + domain::ports::OrderStore
            + domain::ports::OrderUpdates
            + domain::ports::ExpiryIndex
            + domain::ports::OrderList
            + 'static,
    {
        self.svc.catalog = store.clone();
        self.svc.orders = store.clone();
        self.svc.updates = store.clone();
        self.svc.expiry = store.clone();
        self.svc.list = store;
        self
    }

    /// Puts the warm-function catalogue cache in front of the store, timed by the test clock.
    pub fn with_cache(mut self) -> Self {
        let clock: Arc<dyn Clock> = self.clock.clone();
        self.svc.catalog = Arc::new(infra::cache::CachedCatalog::new(self.svc.catalog.clone(), clock));
        self
    }

    /// Uses another supplier port.
    pub fn with_supplier(mut self, supplier: Arc<dyn SupplierStock>) -> Self {
        self.svc.supplier = supplier;
        self
    }

    /// Adds a locally stocked, active product.
    pub async fn product(&self, id: &str, price: &str, stock: u32) -> ProductId {
        self.product_with(id, price, stock, StockSource::Local, true).await
    }

    /// Adds a product with every field chosen.
    pub async fn product_with(
        &self,
        id: &str,
        price: &str,
        stock: u32,
        source: StockSource,
        active: bool,
    ) -> ProductId {
        let product = Product {
            id: ProductId::parse(id).expect("product id"),
            name: format!("product {id}"),
            price: Money::parse(price).expect("price"),
            stock,
            stock_source: source,
            active,
            reserved: 0,
        };
        self.admin.upsert_product(&product).await.expect("upsert product");
        product.id
    }

    /// Adds an address owned by `user`.
    pub async fn address(&self, id: &str, user: &str) -> AddressId {
        let mut fields = serde_json::Map::new();
        fields.insert("city".into(), Value::String("青岛".into()));
        let address = Address {
            id: AddressId::parse(id).expect("address id"),
            user_id: UserId::parse(user).expect("user"),
            fields,
        };
        self.admin.upsert_address(&address).await.expect("upsert address");
        address.id
    }

    /// A product's stock as the store holds it.
    /// The units a supplier-held product's reservation ledger holds, read from the store itself (a
    /// cache never holds the figure).
    pub async fn reserved(&self, id: &ProductId) -> u32 {
        let key = match &self.raw {
            Raw::Sqlite { .. } => "products|".to_owned(),
            Raw::Dynamo { .. } => format!("PRODUCT#{id}|#PRODUCT"),
        };
        let snapshot = self.snapshot().await;
        let row = snapshot
            .iter()
            .find(|(k, v)| k.starts_with(&key) && v["id"] == id.as_str())
            .map(|(_, v)| v)
            .expect("product exists");
        row.get("reserved")
            .map_or(0, |r| r.as_u64().expect("a whole number") as u32)
    }

    pub async fn stock(&self, id: &ProductId) -> u32 {
        self.svc
            .catalog
            .product(id)
            .await
            .expect("read product")
            .expect("product exists")
            .stock
    }

    /// Every item in the store, raw, keyed by table and key: equal snapshots mean nothing changed.
    pub async fn snapshot(&self) -> BTreeMap<String, Value> {
        match &self.raw {
            Raw::Dynamo { client, table } => {
                let mut out = BTreeMap::new();
                let mut start = None;
                loop {
                    let page = client
                        .scan()
                        .table_name(table)
                        .set_exclusive_start_key(start)
                        .send()
                        .await
                        .expect("scan");
                    for item in page.items.unwrap_or_default() {
                        let value: Value = serde_dynamo::aws_sdk_dynamodb_1::from_item(item).expect("item as json");
                        out.insert(
                            format!(
                                "{}|{}",
                                value["pk"].as_str().unwrap_or(""),
                                value["sk"].as_str().unwrap_or("")
                            ),
                            value,
                        );
                    }
                    start = page.last_evaluated_key;
                    if start.is_none() {
                        break out;
                    }
                }
            }
            Raw::Sqlite { path, .. } => sqlite_snapshot(path),
        }
    }

    /// The ids of the orders and payments the expiry index holds (DynamoDB: items carrying the sparse
    /// index's key; SQLite: rows inside its partial indexes).
    pub async fn expiry_index(&self) -> std::collections::BTreeSet<String> {
        match &self.raw {
            Raw::Dynamo { .. } => self
                .snapshot()
                .await
                .into_values()
                .filter(|item| item.get("expiry_shard").is_some())
                .filter_map(|item| item["id"].as_str().map(str::to_owned))
                .collect(),
            Raw::Sqlite { path, .. } => {
                let conn = rusqlite::Connection::open(path).expect("open sqlite");
                let mut stmt = conn
                    .prepare(
                        "SELECT id FROM orders WHERE status = 'pending'
                         UNION SELECT id FROM payments WHERE status IN ('init', 'processing')",
                    )
                    .expect("prepare");
                let ids = stmt
                    .query_map([], |r| r.get::<_, String>(0))
                    .expect("query")
                    .map(|id| id.expect("id"))
                    .collect();
                ids
            }
        }
    }

    /// Every order and payment in the store, read raw (not through the port under test).
    pub async fn records(&self) -> (Vec<Order>, Vec<Payment>) {
        let snapshot = self.snapshot().await;
        let mut orders = Vec::new();
        let mut payments = Vec::new();
        for (key, value) in snapshot {
            let is_order = key.starts_with("orders|") || key.ends_with("|#ORDER");
            let is_payment = key.starts_with("payments|") || key.contains("|PAYMENT#");
            // SQLite rows keep the record in their `doc` column; DynamoDB items are the record.
            let record = match value.get("doc") {
                Some(doc) if key.starts_with("orders|") || key.starts_with("payments|") => doc.clone(),
                _ => value,
            };
            if is_order {
                orders.push(serde_json::from_value(record).expect("order record"));
            } else if is_payment {
                payments.push(serde_json::from_value(record).expect("payment record"));
            }
        }
        (orders, payments)
    }
}

/// A request as API Gateway would hand it to a function: `{order_id}` is taken from
/// `/api/orders/{order_id}/`, `/api/orders/{order_id}/payments/` and `/api/orders/{order_id}/cancel/`.
pub fn request(method: &str, path: &str, user: Option<&str>, body: &[u8]) -> Request {
    let segments: Vec<&str> = path
        .strip_prefix("/api/orders/")
        .and_then(|rest| rest.strip_suffix('/'))
        .map(|rest| rest.split('/').collect())
        .unwrap_or_default();
    let path_parameters = match (method, segments.as_slice()) {
        ("GET", [id]) | ("POST", [id, "payments" | "cancel"]) => vec![("order_id", (*id).to_owned())],
        _ => vec![],
    };
    GatewayRequest {
        method,
        path,
        route_key: "test",
        headers: vec![("content-type".into(), "application/json".into())],
        path_parameters,
        body,
        user,
        request_id: "test-request",
        ..Default::default()
    }
    .into_request()
    .expect("gateway event")
}

/// Status and JSON body of a response.
pub fn read(resp: Response<Body>) -> (u16, Value) {
    let status = resp.status().as_u16();
    let body: &[u8] = resp.body().as_ref();
    (status, serde_json::from_slice(body).unwrap_or(Value::Null))
}

/// `POST /api/orders/create_order/` through the real handler.
pub async fn create_order(env: &TestEnv, user: Option<&str>, body: &Value) -> (u16, Value) {
    let req = request("POST", "/api/orders/create_order/", user, body.to_string().as_bytes());
    read(create_order::handle(&env.svc, req).await)
}

/// A create through the real handler with an `Idempotency-Key`: status, body, and whether the answer
/// was marked `Idempotent-Replayed: true`.
pub async fn create_with_key(env: &TestEnv, route: &str, user: &str, key: &str, body: &Value) -> (u16, Value, bool) {
    let text = body.to_string();
    let order_id = route
        .strip_prefix("/api/orders/")
        .and_then(|rest| rest.strip_suffix("/payments/"))
        .map(|id| vec![("order_id", id.to_owned())])
        .unwrap_or_default();
    let req = GatewayRequest {
        method: "POST",
        path: route,
        route_key: route,
        path_parameters: order_id,
        headers: vec![
            ("content-type".into(), "application/json".into()),
            ("idempotency-key".into(), key.into()),
        ],
        body: text.as_bytes(),
        user: Some(user),
        request_id: "test-request",
        ..Default::default()
    }
    .into_request()
    .expect("gateway event");
    let resp = if route.ends_with("create_batch_orders/") {
        create_batch_orders::handle(&env.svc, req).await
    } else if route.ends_with("/payments/") {
        create_payment::handle(&env.svc, req).await
    } else {
        create_order::handle(&env.svc, req).await
    };
    let replayed = resp.headers().get("idempotent-replayed").is_some_and(|v| v == "true");
    let (status, body) = read(resp);
    (status, body, replayed)
}

/// `POST /api/orders/create_batch_orders/` through the real handler.
pub async fn create_batch(env: &TestEnv, user: Option<&str>, body: &Value) -> (u16, Value) {
    let req = request(
        "POST",
        "/api/orders/create_batch_orders/",
        user,
        body.to_string().as_bytes(),
    );
    read(create_batch_orders::handle(&env.svc, req).await)
}

/// `GET /api/orders/{id}/` through the real handler.
pub async fn get_order(env: &TestEnv, user: Option<&str>, id: &str) -> (u16, Value) {
    let req = request("GET", &format!("/api/orders/{id}/"), user, b"");
    read(get_order::handle(&env.svc, req).await)
}

/// `POST /api/orders/{id}/payments/` through the real handler.
pub async fn create_payment(env: &TestEnv, user: Option<&str>, order_id: &str, body: &Value) -> (u16, Value) {
    let path = format!("/api/orders/{order_id}/payments/");
    let req = request("POST", &path, user, body.to_string().as_bytes());
    read(create_payment::handle(&env.svc, req).await)
}

/// A normalized callback event in the generic format.
pub fn event(payment_id: &str, event_id: &str, status: ReportedStatus, amount: &str) -> PaymentEvent {
    PaymentEvent {
        event_id: EventId::parse(event_id).expect("event id"),
        payment_id: domain::PaymentId::parse(payment_id).expect("payment id"),
        provider_txn_id: format!("txn-{payment_id}"),
        status,
        amount: Money::parse(amount).expect("amount"),
        occurred_at: Timestamp::now(),
        source: EventSource::Generic,
    }
}

/// The SQS event Lambda would deliver for these messages (message id, event), each in its payment's
/// group, received for the `receives`-th time.
pub fn sqs_event(messages: &[(&str, &PaymentEvent)], receives: u32) -> SqsEvent {
    let records: Vec<Value> = messages
        .iter()
        .map(|(id, event)| {
            serde_json::json!({
                "messageId": id,
                "receiptHandle": format!("rh-{id}"),
                "body": serde_json::to_string(event).expect("event json"),
                "attributes": {
                    "ApproximateReceiveCount": receives.to_string(),
                    "MessageGroupId": event.payment_id,
                    "MessageDeduplicationId": event.event_id,
                    "SentTimestamp": "1764054000000",
                },
                "messageAttributes": {},
                "md5OfBody": "",
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:callbacks.fifo",
                "awsRegion": "us-east-1",
            })
        })
        .collect();
    serde_json::from_value(serde_json::json!({ "Records": records })).expect("SQS event")
}

/// Runs the real processor handler on one batch; the ids of the messages it reports as failed.
pub async fn deliver(env: &TestEnv, messages: &[(&str, &PaymentEvent)]) -> Vec<String> {
    let response = process_payment_callbacks::handle(&env.svc, sqs_event(messages, 1)).await;
    response
        .batch_item_failures
        .into_iter()
        .map(|f| f.item_identifier)
        .collect()
}

/// `POST /api/orders/{id}/cancel/` through the real handler.
pub async fn cancel_order(env: &TestEnv, user: Option<&str>, order_id: &str) -> (u16, Value) {
    let req = request("POST", &format!("/api/orders/{order_id}/cancel/"), user, b"");
    read(cancel_order::handle(&env.svc, req).await)
}

/// `GET /api/orders/?<query>` through the real handler, with cursors signed by `key`.
pub async fn list_orders(env: &TestEnv, key: &str, user: Option<&str>, query: &str) -> (u16, Value) {
    let listing = list_orders::Listing {
        services: env.svc.clone(),
        cursors: domain::usecases::CursorKey::new(key).expect("cursor key"),
    };
    let req = GatewayRequest {
        method: "GET",
        path: "/api/orders/",
        route_key: "GET /api/orders/",
        query,
        user,
        request_id: "test-request",
        ..Default::default()
    }
    .into_request()
    .expect("gateway event");
    read(list_orders::handle(&listing, req).await)
}

/// Runs the real sweeper handler on a scheduled event, with `budget` before the invocation's deadline
/// (on top of the handler's safety margin).
pub async fn sweep(env: &TestEnv, budget: std::time::Duration) -> domain::usecases::SweepReport {
    let event = serde_json::from_value(serde_json::json!({
        "version": "0", "id": "test-tick", "detail-type": "Scheduled Event", "source": "aws.events",
        "account": "123456789012", "time": "2026-11-25T07:00:00Z", "region": "us-east-1",
        "resources": ["arn:aws:events:us-east-1:123456789012:rule/expire"], "detail": {},
    }))
    .expect("scheduled event");
    let deadline = std::time::SystemTime::now() + expire_payments::SAFETY_MARGIN + budget;
    expire_payments::handle(&env.svc, event, deadline).await.expect("sweep")
}

/// A callback queue in memory: keeps what it is sent, or refuses everything when `down`.
#[derive(Default)]
pub struct MemoryQueue {
    /// What was enqueued, oldest first.
    pub sent: Mutex<Vec<PaymentEvent>>,
    /// Refuse every message.
    pub down: bool,
}

#[async_trait]
impl domain::ports::CallbackQueue for MemoryQueue {
    async fn enqueue(&self, event: &PaymentEvent) -> Result<(), domain::ports::QueueUnavailable> {
        if self.down {
            return Err(domain::ports::QueueUnavailable(
                "connection refused to sqs.internal:443".into(),
            ));
        }
        self.sent.lock().expect("queue").push(event.clone());
        Ok(())
    }
}

impl MemoryQueue {
    /// Hands everything enqueued so far to the real processor, one batch in order, and empties the queue.
    pub async fn drain_into(&self, env: &TestEnv) {
        let events: Vec<PaymentEvent> = std::mem::take(&mut *self.sent.lock().expect("queue"));
        let ids: Vec<String> = (0..events.len()).map(|i| format!("msg-{i}")).collect();
        let messages: Vec<(&str, &PaymentEvent)> = ids.iter().map(String::as_str).zip(events.iter()).collect();
        for chunk in messages.chunks(10) {
            assert!(deliver(env, chunk).await.is_empty(), "the processor reported failures");
        }
    }
}

/// A supplier port with fixed figures, for exercising the use case's supplier branch.
pub struct FixedSupplier(pub BTreeMap<String, u32>);

#[async_trait]
impl SupplierStock for FixedSupplier {
    async fn available(&self, product: &ProductId) -> Result<u32, SupplierUnavailable> {
        Ok(self.0.get(product.as_str()).copied().unwrap_or(0))
    }
}
