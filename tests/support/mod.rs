//! Test support: a fresh, isolated store per test (SQLite file or DynamoDB table in moto), requests
//! built as API Gateway builds them, and a raw view of the store for "nothing changed" checks.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use domain::catalog::{Address, Product, StockSource};
use domain::ids::{AddressId, ProductId, UserId};
use domain::ports::{CatalogAdmin, SupplierStock, SupplierUnavailable, SystemClock};
use domain::usecases::Services;
use domain::{Money, Order, Payment};
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
    raw: Raw,
}

/// A fresh SQLite store in its own temporary directory.
pub async fn sqlite() -> TestEnv {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("shop.sqlite3");
    let store = Arc::new(SqliteStore::open(&path).expect("open sqlite"));
    TestEnv {
        svc: services(store.clone(), store.clone()),
        admin: store.clone(),
        raw: Raw::Sqlite { path, store, _dir: dir },
    }
}

/// A fresh DynamoDB table in moto, created from template.yaml; `None` (after saying so loudly) when no
/// emulator can be had outside CI. Under `CI=true` a missing emulator fails the test.
pub async fn dynamodb() -> Option<TestEnv> {
    let endpoint = emulator()?;
    let client = dynamo_client(&endpoint);
    let table = format!("orders-{}", uuid::Uuid::now_v7().simple());
    TableSchema::bundled()
        .expect("template schema")
        .create_table(&client, &table)
        .await
        .expect("create table");
    let store = Arc::new(DynamoStore::new(client.clone(), table.clone()));
    Some(TestEnv {
        svc: services(store.clone(), store.clone()),
        admin: store,
        raw: Raw::Dynamo { client, table },
    })
}

fn services<S>(catalog: Arc<S>, orders: Arc<S>) -> Services
where
    S: domain::ports::Catalog + domain::ports::OrderStore + 'static,
{
    Services {
        catalog,
        orders,
        supplier: Arc::new(infra::supplier::NoSupplier),
        clock: Arc::new(SystemClock),
    }
}

/// A client for the emulator with dummy credentials.
pub fn dynamo_client(endpoint: &str) -> Client {
    let config = aws_sdk_dynamodb::Config::builder()
        .behavior_version(aws_sdk_dynamodb::config::BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(aws_sdk_dynamodb::config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
            "test", "test", None, None, "test",
        ))
        .build();
    Client::from_conf(config)
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// The emulator's endpoint for a test that needs it. Under `CI=true` a missing emulator fails the test;
/// elsewhere the test says `SKIPPED` and why, and gets `None`.
pub fn emulator() -> Option<String> {
    match moto_endpoint() {
        Ok(endpoint) => Some(endpoint),
        Err(why) if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("DynamoDB emulator unavailable under CI: {why}")
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
        let mut child = Command::new(&python)
            .arg(root.join("scripts/moto_server.py"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start moto: {e}"))?;
        let stdout = child.stdout.take().ok_or("no stdout from moto")?;
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .map_err(|e| format!("moto did not report its port: {e}"))?;
        let port: u16 = line
            .trim()
            .parse()
            .map_err(|_| format!("moto printed {line:?}, not a port"))?;
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
            Raw::Sqlite { path, .. } => {
                let conn = rusqlite::Connection::open(path).expect("open sqlite for snapshot");
                let mut out = BTreeMap::new();
                for (table, sql) in [
                    ("products", "SELECT id, json_object('name', name, 'price', price, 'stock', stock, 'source', stock_source, 'active', active) FROM products"),
                    ("addresses", "SELECT id, json_object('user_id', user_id, 'fields', fields) FROM addresses"),
                    ("orders", "SELECT id, doc FROM orders"),
                    ("payments", "SELECT id, doc FROM payments"),
                ] {
                    let mut stmt = conn.prepare(sql).expect("prepare snapshot");
                    let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))).expect("query snapshot");
                    for row in rows {
                        let (id, doc) = row.expect("row");
                        out.insert(format!("{table}|{id}"), serde_json::from_str(&doc).expect("json row"));
                    }
                }
                out
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
            if is_order {
                orders.push(serde_json::from_value(value).expect("order record"));
            } else if is_payment {
                payments.push(serde_json::from_value(value).expect("payment record"));
            }
        }
        (orders, payments)
    }
}

/// A request as API Gateway would hand it to a function.
pub fn request(method: &str, path: &str, user: Option<&str>, body: &[u8]) -> Request {
    let order_id = path
        .strip_prefix("/api/orders/")
        .and_then(|rest| rest.strip_suffix('/'))
        .filter(|id| !id.contains('/'));
    let path_parameters = match (method, order_id) {
        ("GET", Some(id)) => vec![("order_id", id.to_owned())],
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

/// A supplier port with fixed figures, for exercising the use case's supplier branch.
pub struct FixedSupplier(pub BTreeMap<String, u32>);

#[async_trait]
impl SupplierStock for FixedSupplier {
    async fn available(&self, product: &ProductId) -> Result<u32, SupplierUnavailable> {
        Ok(self.0.get(product.as_str()).copied().unwrap_or(0))
    }
}
