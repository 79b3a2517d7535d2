//! Test support: a fresh, isolated store per test (SQLite file or DynamoDB table in moto), requests
//! built as API Gateway builds them, and a raw view of the store for "nothing changed" checks.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use aws_sdk_dynamodb::Client;
use domain::catalog::{Address, Product, StockSource};
use domain::ids::{AddressId, ProductId, UserId};
use domain::ports::{CatalogAdmin, Clock, Metric, Metrics, SupplierStock};
use domain::usecases::Services;
use domain::{Money, Timestamp};
use infra::dynamodb::schema::TableSchema;
use infra::dynamodb::DynamoStore;
use infra::sqlite::SqliteStore;
use serde_json::Value;

mod drivers;
pub mod dynamo_model;
mod emulator;
mod fakes;
mod snapshot;

pub use drivers::*;
pub use emulator::*;
pub use fakes::*;
pub use snapshot::*;

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
pub struct RecordedMetrics(Mutex<Vec<Metric>>, Mutex<Vec<(Metric, f64)>>);

impl RecordedMetrics {
    /// How often `metric` was counted.
    pub fn count_of(&self, metric: Metric) -> usize {
        self.0.lock().expect("metrics").iter().filter(|m| **m == metric).count()
    }

    /// The last value measured of `metric`.
    pub fn last_value(&self, metric: Metric) -> Option<f64> {
        let values = self.1.lock().expect("metrics");
        values.iter().rev().find(|(m, _)| *m == metric).map(|(_, v)| *v)
    }
}

impl Metrics for RecordedMetrics {
    fn add(&self, metric: Metric, n: u64) {
        let mut counted = self.0.lock().expect("metrics");
        counted.extend(std::iter::repeat_n(metric, n as usize));
    }

    fn measure(&self, metric: Metric, value: f64) {
        self.1.lock().expect("metrics").push((metric, value));
    }
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

/// The services over the model of DynamoDB's hot-item behaviour ([`dynamo_model`]), with the catalogue
/// behind the warm-function cache as the Lambda functions have it. Only what placing orders and the
/// catalogue's writes send is modelled (no indexes, no queries).
pub fn over_model(model: &dynamo_model::DynamoModel) -> TestEnv {
    let client = model.client();
    let table = "orders-model".to_owned();
    let store = Arc::new(DynamoStore::new(client.clone(), table.clone()));
    let mut env = TestEnv::over(store, Raw::Dynamo { client, table });
    env.svc.catalog = Arc::new(infra::cache::CachedCatalog::new(
        env.svc.catalog.clone(),
        env.clock.clone(),
    ));
    env
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
    fn over<S: domain::ports::Store + 'static>(store: Arc<S>, raw: Raw) -> TestEnv {
        let clock = Arc::new(TestClock::default());
        let metrics = Arc::new(RecordedMetrics::default());
        TestEnv {
            svc: Services::over(
                store.clone(),
                Arc::new(infra::supplier::NoSupplier),
                clock.clone(),
                metrics.clone(),
            ),
            admin: store,
            clock,
            metrics,
            raw,
        }
    }
}

/// A fresh DynamoDB table whose client counts its requests, with the catalogue behind the warm-function
/// cache as the Lambda functions have it.
pub async fn dynamodb_counted() -> Option<(TestEnv, testkit::counter::RequestCounter)> {
    let endpoint = emulator()?;
    let counter = testkit::counter::RequestCounter::default();
    let client = Client::from_conf(
        dynamo_config(&endpoint)
            .to_builder()
            .interceptor(counter.clone())
            .build(),
    );
    Some((over_fresh_table(client).await.with_cache(), counter))
}

impl TestEnv {
    /// The SQLite store itself, for tests that wrap it.
    pub fn sqlite_store(&self) -> Option<Arc<SqliteStore>> {
        match &self.raw {
            Raw::Sqlite { store, .. } => Some(Arc::clone(store)),
            Raw::Dynamo { .. } => None,
        }
    }

    /// The services over another client of the same store (the test's raw view stays as it was).
    pub fn with_store<S: domain::ports::Store + 'static>(mut self, store: Arc<S>) -> Self {
        let svc = &self.svc;
        self.svc = Services::over(store, svc.supplier.clone(), svc.clock.clone(), svc.metrics.clone());
        self
    }

    /// Puts the warm-function catalogue cache in front of the store, timed by the test clock.
    pub fn with_cache(mut self) -> Self {
        let clock: Arc<dyn Clock> = self.clock.clone();
        self.svc.catalog = Arc::new(infra::cache::CachedCatalog::new(self.svc.catalog.clone(), clock));
        self
    }

    /// Uses another payment gateway (the providers' checkout).
    pub fn with_gateway(mut self, gateway: Arc<dyn domain::ports::PaymentGateway>) -> Self {
        self.svc.gateway = gateway;
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
            shards: 1,
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

    /// `n` shoppers `user-<i>`, each with an address `addr-<i>` (in bulk).
    pub async fn shoppers(&self, n: usize) {
        let addresses: Vec<Address> = (0..n)
            .map(|i| Address {
                id: AddressId::parse(&format!("addr-{i}")).expect("address id"),
                user_id: UserId::parse(&format!("user-{i}")).expect("user"),
                fields: serde_json::Map::new(),
            })
            .collect();
        self.admin.upsert_addresses(&addresses).await.expect("addresses");
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
}
