//! The embedded store: SQLite in WAL mode, one SQL transaction per placement with the same conditions,
//! and the same refusals, as the DynamoDB transaction.
//!
//! Orders and payments are stored as one JSON document each; the columns the store filters and indexes
//! on are generated from that document, so they cannot drift from it.

use std::path::Path;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use domain::catalog::{Address, Product};
use domain::change::{Change, Judge, OrderWithPayments, Restock, Updated};
use domain::idempotency::{IdempotencyKey, IdempotencyRecord, KeyUse};
use domain::ids::{AddressId, OrderId, PaymentId, ProductId};
use domain::order::Order;
use domain::payment::Payment;
use domain::placement::{LineCheck, Placement};
use domain::ports::{
    Catalog, CatalogAdmin, Due, DuePage, ExpiryIndex, ListPosition, ListedOrder, OrderList, OrderStore, OrderUpdates,
    PlaceError, StoreError, WorkIndex, WorkItem, WorkPage,
};
use domain::refund::WorkKind;
use domain::stock::Rebalanced;
use domain::StockSource;
use domain::{Timestamp, UserId};
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS products (
    id           TEXT PRIMARY KEY,
    name         TEXT NOT NULL,
    price        TEXT NOT NULL,
    stock        INTEGER NOT NULL CHECK (stock >= 0),
    stock_source TEXT NOT NULL CHECK (stock_source IN ('local', 'supplier')),
    active       INTEGER NOT NULL,
    reserved     INTEGER NOT NULL DEFAULT 0 CHECK (reserved >= 0),
    shards       INTEGER NOT NULL DEFAULT 1 CHECK (shards >= 1)
);
-- Shards 1..N-1 of a sharded product's stock (shard 0 is products.stock), docs/api.md §19.
CREATE TABLE IF NOT EXISTS stock_shards (
    product_id TEXT NOT NULL,
    shard      INTEGER NOT NULL CHECK (shard >= 1),
    stock      INTEGER NOT NULL CHECK (stock >= 0),
    PRIMARY KEY (product_id, shard)
);
CREATE TABLE IF NOT EXISTS addresses (
    id      TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    fields  TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS orders (
    id               TEXT PRIMARY KEY,
    doc              TEXT NOT NULL,
    user_id          TEXT GENERATED ALWAYS AS (json_extract(doc, '$.user_id')) VIRTUAL,
    status           TEXT GENERATED ALWAYS AS (json_extract(doc, '$.status')) VIRTUAL,
    payment_deadline TEXT GENERATED ALWAYS AS (json_extract(doc, '$.payment_deadline')) VIRTUAL,
    created_at       TEXT GENERATED ALWAYS AS (json_extract(doc, '$.created_at')) VIRTUAL
);
CREATE INDEX IF NOT EXISTS orders_by_user ON orders (user_id, created_at);
CREATE INDEX IF NOT EXISTS orders_pending_by_deadline ON orders (payment_deadline) WHERE status = 'pending';
CREATE TABLE IF NOT EXISTS payments (
    id         TEXT PRIMARY KEY,
    doc        TEXT NOT NULL,
    order_id   TEXT GENERATED ALWAYS AS (json_extract(doc, '$.order_id')) VIRTUAL,
    status     TEXT GENERATED ALWAYS AS (json_extract(doc, '$.status')) VIRTUAL,
    expires_at TEXT GENERATED ALWAYS AS (json_extract(doc, '$.expires_at')) VIRTUAL
);
CREATE INDEX IF NOT EXISTS payments_by_order ON payments (order_id, id);
CREATE TABLE IF NOT EXISTS idempotency (
    user_id TEXT NOT NULL,
    key     TEXT NOT NULL,
    doc     TEXT NOT NULL,
    PRIMARY KEY (user_id, key)
);
CREATE INDEX IF NOT EXISTS payments_open_by_expiry ON payments (expires_at) WHERE status IN ('init', 'processing');
CREATE INDEX IF NOT EXISTS payments_close_pending_by_expiry ON payments (expires_at)
    WHERE json_extract(doc, '$.close_pending') = 1;
CREATE INDEX IF NOT EXISTS payments_by_work ON payments
    (json_extract(doc, '$._work.kind'), json_extract(doc, '$._work.at'));
"#;

/// A payment's row document: the payment, and its place in the work index (`_work`, from
/// [`Payment::work`], as DynamoDB's `work` and `work_at` attributes), which reading it back ignores.
fn payment_doc(payment: &Payment) -> Result<String, StoreError> {
    let mut doc = serde_json::to_value(payment).map_err(backend)?;
    if let (Some(work), Some(fields)) = (payment.work(), doc.as_object_mut()) {
        let at = format!("{} {}", work.at().to_rfc3339(), payment.id);
        fields.insert(
            "_work".into(),
            serde_json::json!({ "kind": work.kind().as_str(), "at": at }),
        );
    }
    serde_json::to_string(&doc).map_err(backend)
}

/// The SQLite store. Cloning shares the connection.
#[derive(Clone)]
pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
}

fn backend(err: impl Into<domain::error::BoxError>) -> StoreError {
    StoreError::backend(err)
}

impl SqliteStore {
    /// Opens (creating if needed) the database file, in WAL mode with the schema in place.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let conn = Connection::open(path).map_err(backend)?;
        // Another process on the same file waits for the write lock instead of failing at once.
        conn.busy_timeout(std::time::Duration::from_secs(5)).map_err(backend)?;
        conn.pragma_update(None, "journal_mode", "WAL").map_err(backend)?;
        conn.pragma_update(None, "synchronous", "NORMAL").map_err(backend)?;
        conn.execute_batch(SCHEMA).map_err(backend)?;
        // A database made before the supplier reservation ledger (or sharded stock) existed gains its
        // column: no order in it holds a reservation, and every product has one shard.
        for (column, definition) in [
            ("reserved", "INTEGER NOT NULL DEFAULT 0 CHECK (reserved >= 0)"),
            ("shards", "INTEGER NOT NULL DEFAULT 1 CHECK (shards >= 1)"),
        ] {
            let present: bool = conn
                .query_row(
                    "SELECT count(*) FROM pragma_table_info('products') WHERE name = ?1",
                    params![column],
                    |r| r.get(0),
                )
                .map_err(backend)?;
            if !present {
                conn.execute_batch(&format!("ALTER TABLE products ADD COLUMN {column} {definition}"))
                    .map_err(backend)?;
            }
        }
        Ok(SqliteStore {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    /// Runs blocking SQLite work off the async executor, one request at a time on this connection.
    async fn with<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let conn = Arc::clone(&self.conn);
        tokio::task::spawn_blocking(move || {
            let mut conn = conn.lock().map_err(|_| backend("sqlite connection mutex poisoned"))?;
            work(&mut conn)
        })
        .await
        .map_err(backend)?
    }
}

fn read_product(conn: &Connection, id: &ProductId) -> Result<Option<Product>, StoreError> {
    let row = conn
        .query_row(
            "SELECT name, price, stock + (SELECT coalesce(sum(stock), 0) FROM stock_shards WHERE product_id = id),
                    stock_source, active, reserved, shards
             FROM products WHERE id = ?1",
            params![id.as_str()],
            |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, u32>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, bool>(4)?,
                    r.get::<_, u32>(5)?,
                    r.get::<_, u16>(6)?,
                ))
            },
        )
        .optional()
        .map_err(backend)?;
    let Some((name, price, stock, source, active, reserved, shards)) = row else {
        return Ok(None);
    };
    Ok(Some(Product {
        id: id.clone(),
        name,
        price: domain::Money::parse(&price).map_err(backend)?,
        stock,
        stock_source: serde_json::from_value(serde_json::Value::String(source)).map_err(backend)?,
        active,
        reserved,
        shards,
    }))
}

/// The figures of a product's shards, shard 0 (the product's own figure) first; `None` for a shard the
/// store does not hold.
fn read_shards(conn: &Connection, id: &ProductId, shards: u16) -> Result<Vec<Option<u32>>, StoreError> {
    let own: Option<u32> = conn
        .query_row("SELECT stock FROM products WHERE id = ?1", params![id.as_str()], |r| {
            r.get(0)
        })
        .optional()
        .map_err(backend)?;
    let mut figures = vec![own];
    let mut rows = conn
        .prepare_cached("SELECT stock FROM stock_shards WHERE product_id = ?1 AND shard = ?2")
        .map_err(backend)?;
    for shard in 1..shards {
        figures.push(
            rows.query_row(params![id.as_str(), shard], |r| r.get(0))
                .optional()
                .map_err(backend)?,
        );
    }
    Ok(figures)
}

/// Every shard's figure, each of which the store must hold.
fn shard_figures(conn: &Connection, id: &ProductId, shards: u16) -> Result<Vec<u32>, StoreError> {
    read_shards(conn, id, shards)?
        .into_iter()
        .enumerate()
        .map(|(k, figure)| figure.ok_or_else(|| backend(format!("product {id} has no stock shard {k}"))))
        .collect()
}

#[async_trait]
impl Catalog for SqliteStore {
    async fn product(&self, id: &ProductId) -> Result<Option<Product>, StoreError> {
        let id = id.clone();
        self.with(move |conn| read_product(conn, &id)).await
    }

    async fn products(&self, ids: &[ProductId]) -> Result<Vec<Option<Product>>, StoreError> {
        let ids = ids.to_vec();
        self.with(move |conn| ids.iter().map(|id| read_product(conn, id)).collect())
            .await
    }

    async fn shard_stock(&self, product: &ProductId, shards: u16) -> Result<Vec<u32>, StoreError> {
        let id = product.clone();
        self.with(move |conn| {
            // The count asked may come from a cached description: read every shard the product has now.
            let now: u16 = conn
                .query_row("SELECT shards FROM products WHERE id = ?1", params![id.as_str()], |r| {
                    r.get(0)
                })
                .optional()
                .map_err(backend)?
                .unwrap_or(1);
            shard_figures(conn, &id, shards.max(now))
        })
        .await
    }

    async fn address(&self, id: &AddressId) -> Result<Option<Address>, StoreError> {
        let id = id.clone();
        self.with(move |conn| {
            let row = conn
                .query_row(
                    "SELECT user_id, fields FROM addresses WHERE id = ?1",
                    params![id.as_str()],
                    |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)),
                )
                .optional()
                .map_err(backend)?;
            let Some((user_id, fields)) = row else {
                return Ok(None);
            };
            Ok(Some(Address {
                id,
                user_id: domain::UserId::parse(&user_id).map_err(backend)?,
                fields: serde_json::from_str(&fields).map_err(backend)?,
            }))
        })
        .await
    }
}

/// Writes products in one transaction: `upsert` replaces every figure of an existing product but its
/// reservation ledger, which is the store's own (a reload keeps what it holds); otherwise each must be
/// new.
fn write_products(conn: &mut Connection, products: &[Product], upsert: bool) -> Result<(), StoreError> {
    let sql = if upsert {
        "INSERT INTO products (id, name, price, stock, stock_source, active, reserved, shards)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
         ON CONFLICT (id) DO UPDATE SET name = excluded.name, price = excluded.price, stock = excluded.stock,
             stock_source = excluded.stock_source, active = excluded.active, shards = excluded.shards"
    } else {
        "INSERT INTO products (id, name, price, stock, stock_source, active, reserved, shards)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
    };
    let tx = conn.transaction().map_err(backend)?;
    for p in products {
        // A sharded product's stock is split over its shards (docs/api.md §19); shard 0 is its own figure.
        let figures = domain::stock::split(p.stock, p.shards);
        tx.execute(
            sql,
            params![
                p.id.as_str(),
                p.name,
                p.price.to_string(),
                figures[0],
                p.stock_source.as_str(),
                p.active,
                p.reserved,
                p.shards
            ],
        )
        .map_err(backend)?;
        for (shard, figure) in figures.iter().enumerate().skip(1) {
            tx.execute(
                "INSERT INTO stock_shards (product_id, shard, stock) VALUES (?1, ?2, ?3)
                 ON CONFLICT (product_id, shard) DO UPDATE SET stock = excluded.stock",
                params![p.id.as_str(), shard as i64, figure],
            )
            .map_err(backend)?;
        }
    }
    tx.commit().map_err(backend)
}

#[async_trait]
impl CatalogAdmin for SqliteStore {
    async fn upsert_product(&self, product: &Product) -> Result<(), StoreError> {
        let product = product.clone();
        self.with(move |conn| write_products(conn, std::slice::from_ref(&product), true))
            .await
    }

    async fn upsert_address(&self, address: &Address) -> Result<(), StoreError> {
        self.upsert_addresses(std::slice::from_ref(address)).await
    }

    async fn rebalance_stock(&self, product: &ProductId) -> Result<Option<Rebalanced>, StoreError> {
        let id = product.clone();
        self.with(move |conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(backend)?;
            let Some(product) = read_product(&tx, &id)? else {
                return Ok(None);
            };
            let before = shard_figures(&tx, &id, product.shards)?;
            let after = domain::stock::rebalance(&before);
            for (shard, figure) in after.iter().enumerate() {
                if shard == 0 {
                    tx.execute(
                        "UPDATE products SET stock = ?2 WHERE id = ?1",
                        params![id.as_str(), figure],
                    )
                } else {
                    let sql = "UPDATE stock_shards SET stock = ?3 WHERE product_id = ?1 AND shard = ?2";
                    tx.execute(sql, params![id.as_str(), shard as i64, figure])
                }
                .map_err(backend)?;
            }
            tx.commit().map_err(backend)?;
            Ok(Some(Rebalanced { before, after }))
        })
        .await
    }

    /// One transaction for all of them.
    async fn create_products(&self, products: &[Product]) -> Result<(), StoreError> {
        let products = products.to_vec();
        self.with(move |conn| write_products(conn, &products, false)).await
    }

    /// One transaction for all of them.
    async fn upsert_addresses(&self, addresses: &[Address]) -> Result<(), StoreError> {
        let addresses = addresses.to_vec();
        self.with(move |conn| {
            let tx = conn.transaction().map_err(backend)?;
            for a in &addresses {
                let fields = serde_json::to_string(&a.fields).map_err(backend)?;
                tx.execute(
                    "INSERT INTO addresses (id, user_id, fields) VALUES (?1, ?2, ?3)
                     ON CONFLICT (id) DO UPDATE SET user_id = excluded.user_id, fields = excluded.fields",
                    params![a.id.as_str(), a.user_id.as_str(), fields],
                )
                .map_err(backend)?;
            }
            tx.commit().map_err(backend)
        })
        .await
    }
}

#[async_trait]
impl OrderStore for SqliteStore {
    async fn place(&self, placement: &Placement) -> Result<(), PlaceError> {
        let placement = placement.clone();
        self.with(move |conn| {
            // IMMEDIATE takes the write lock up front, so the checks below and the writes see the same rows.
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(backend)?;
            let mut checks = Vec::with_capacity(placement.orders.len());
            for line in &placement.orders {
                let current = read_product(&tx, &line.order.product_id)?;
                if !line.is_sharded() {
                    checks.push(line.check(current.as_ref()));
                    continue;
                }
                // Each shard taken from, judged as the product with that shard's figure.
                let shards = line.order.stock_takes().iter().map(|t| t.shard + 1).max().unwrap_or(1);
                let figures = read_shards(&tx, &line.order.product_id, shards)?;
                let check = line.order.stock_takes().into_iter().fold(LineCheck::Ok, |check, take| {
                    let item = current
                        .as_ref()
                        .zip(figures[usize::from(take.shard)])
                        .map(|(p, stock)| Product { stock, ..p.clone() });
                    check.graver(line.check_take(take, item.as_ref()))
                });
                checks.push(check);
            }
            let owner: Option<String> = tx
                .query_row(
                    "SELECT user_id FROM addresses WHERE id = ?1",
                    params![placement.address_id.as_str()],
                    |r| r.get(0),
                )
                .optional()
                .map_err(backend)?;
            let address_ok = owner.as_deref() == Some(placement.user_id.as_str());
            let key_use = match &placement.idempotency {
                Some(record) => placement.key_use(read_idempotency(&tx, &record.user_id, &record.key)?.as_ref()),
                None => KeyUse::Fresh,
            };
            if let Err(refusal) = placement.refusal(false, key_use, &checks, address_ok) {
                return Ok(Err(refusal));
            }
            if let Some(record) = &placement.idempotency {
                // Fresh: no record, or an expired one (SQLite has no TTL), which this one replaces.
                let doc = serde_json::to_string(record).map_err(backend)?;
                tx.execute(
                    "INSERT OR REPLACE INTO idempotency (user_id, key, doc) VALUES (?1, ?2, ?3)",
                    params![record.user_id.as_str(), record.key.as_str(), doc],
                )
                .map_err(backend)?;
            }
            for line in &placement.orders {
                let product = line.order.product_id.as_str();
                if line.order.stock_source == StockSource::Supplier {
                    let sql = "UPDATE products SET reserved = reserved + ?2 WHERE id = ?1";
                    let changed = tx.execute(sql, params![product, line.order.quantity.get()]);
                    if changed.map_err(backend)? != 1 {
                        return Err(backend("product changed inside an immediate transaction"));
                    }
                }
                for take in line
                    .order
                    .stock_takes()
                    .into_iter()
                    .filter(|_| line.order.stock_source == StockSource::Local)
                {
                    let changed = if take.shard == 0 {
                        let sql = "UPDATE products SET stock = stock - ?2 WHERE id = ?1 AND stock >= ?2";
                        tx.execute(sql, params![product, take.quantity])
                    } else {
                        let sql = "UPDATE stock_shards SET stock = stock - ?3
                                   WHERE product_id = ?1 AND shard = ?2 AND stock >= ?3";
                        tx.execute(sql, params![product, take.shard, take.quantity])
                    };
                    if changed.map_err(backend)? != 1 {
                        return Err(backend("product changed inside an immediate transaction"));
                    }
                }
                let order = serde_json::to_string(&line.order).map_err(backend)?;
                tx.execute(
                    "INSERT INTO orders (id, doc) VALUES (?1, ?2)",
                    params![line.order.id.as_str(), order],
                )
                .map_err(backend)?;
                let payment = payment_doc(&line.payment)?;
                tx.execute(
                    "INSERT INTO payments (id, doc) VALUES (?1, ?2)",
                    params![line.payment.id.as_str(), payment],
                )
                .map_err(backend)?;
            }
            tx.commit().map_err(backend)?;
            Ok(Ok(()))
        })
        .await?
    }

    async fn order_with_payments(&self, id: &OrderId) -> Result<Option<OrderWithPayments>, StoreError> {
        let id = id.clone();
        self.with(move |conn| read_order(conn, &id)).await
    }

    async fn idempotency_record(
        &self,
        user: &UserId,
        key: &IdempotencyKey,
    ) -> Result<Option<IdempotencyRecord>, StoreError> {
        let (user, key) = (user.clone(), key.clone());
        self.with(move |conn| read_idempotency(conn, &user, &key)).await
    }
}

fn read_idempotency(
    conn: &Connection,
    user: &UserId,
    key: &IdempotencyKey,
) -> Result<Option<IdempotencyRecord>, StoreError> {
    let doc: Option<String> = conn
        .query_row(
            "SELECT doc FROM idempotency WHERE user_id = ?1 AND key = ?2",
            params![user.as_str(), key.as_str()],
            |r| r.get(0),
        )
        .optional()
        .map_err(backend)?;
    doc.map(|d| serde_json::from_str(&d).map_err(backend)).transpose()
}

/// The order with its payments, oldest payment first (payment ids are time-ordered).
fn read_order(conn: &Connection, id: &OrderId) -> Result<Option<OrderWithPayments>, StoreError> {
    let doc: Option<String> = conn
        .query_row("SELECT doc FROM orders WHERE id = ?1", params![id.as_str()], |r| {
            r.get(0)
        })
        .optional()
        .map_err(backend)?;
    let Some(doc) = doc else { return Ok(None) };
    let order: Order = serde_json::from_str(&doc).map_err(backend)?;
    let mut stmt = conn
        .prepare("SELECT doc FROM payments WHERE order_id = ?1 ORDER BY id")
        .map_err(backend)?;
    let payments = stmt
        .query_map(params![id.as_str()], |r| r.get::<_, String>(0))
        .map_err(backend)?
        .map(|doc| {
            let doc = doc.map_err(backend)?;
            serde_json::from_str::<Payment>(&doc).map_err(backend)
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Some(OrderWithPayments { order, payments }))
}

/// Writes a change judged inside the same immediate transaction, so nothing can have moved in between;
/// the version check guards the invariant all the same.
fn write_change(tx: &rusqlite::Transaction<'_>, change: &Change) -> Result<(), StoreError> {
    let order = serde_json::to_string(&change.order).map_err(backend)?;
    let changed = tx
        .execute(
            "UPDATE orders SET doc = ?2 WHERE id = ?1 AND coalesce(json_extract(doc, '$.version'), 0) = ?3",
            params![
                change.order.id.as_str(),
                order,
                i64::try_from(change.expected_version).map_err(backend)?
            ],
        )
        .map_err(backend)?;
    if changed != 1 {
        return Err(backend("order version moved inside an immediate transaction"));
    }
    for payment in &change.payments {
        let doc = payment_doc(payment)?;
        let changed = tx
            .execute(
                "UPDATE payments SET doc = ?2 WHERE id = ?1",
                params![payment.id.as_str(), doc],
            )
            .map_err(backend)?;
        if changed != 1 {
            return Err(backend(format!("payment {} vanished", payment.id)));
        }
    }
    if let Some(payment) = &change.created {
        let doc = payment_doc(payment)?;
        tx.execute(
            "INSERT INTO payments (id, doc) VALUES (?1, ?2)",
            params![payment.id.as_str(), doc],
        )
        .map_err(backend)?;
    }
    if let Some(record) = &change.idempotency {
        // Free (judged by `update` before this write): no record, or an expired one, which this replaces.
        let doc = serde_json::to_string(record).map_err(backend)?;
        tx.execute(
            "INSERT OR REPLACE INTO idempotency (user_id, key, doc) VALUES (?1, ?2, ?3)",
            params![record.user_id.as_str(), record.key.as_str(), doc],
        )
        .map_err(backend)?;
    }
    match &change.restock {
        None => {}
        Some(Restock::Stock(product, takes)) => {
            for take in takes {
                let changed = if take.shard == 0 {
                    let sql = "UPDATE products SET stock = stock + ?2 WHERE id = ?1";
                    tx.execute(sql, params![product.as_str(), take.quantity])
                } else {
                    let sql = "UPDATE stock_shards SET stock = stock + ?3 WHERE product_id = ?1 AND shard = ?2";
                    tx.execute(sql, params![product.as_str(), take.shard, take.quantity])
                };
                if changed.map_err(backend)? != 1 {
                    return Err(backend(format!(
                        "product {product} (shard {}) is gone: no stock to give back to",
                        take.shard
                    )));
                }
            }
        }
        Some(Restock::Reservation(product, quantity)) => {
            let changed = tx
                .execute(
                    "UPDATE products SET reserved = reserved - ?2 WHERE id = ?1 AND reserved >= ?2",
                    params![product.as_str(), quantity.get()],
                )
                .map_err(backend)?;
            if changed != 1 {
                return Err(backend(format!(
                    "product {product} holds less than the reservation released"
                )));
            }
        }
    }
    Ok(())
}

#[async_trait]
impl OrderUpdates for SqliteStore {
    async fn order_of_payment(&self, id: &PaymentId) -> Result<Option<OrderId>, StoreError> {
        let id = id.clone();
        self.with(move |conn| {
            let order: Option<String> = conn
                .query_row(
                    "SELECT order_id FROM payments WHERE id = ?1",
                    params![id.as_str()],
                    |r| r.get(0),
                )
                .optional()
                .map_err(backend)?;
            order.map(|o| OrderId::parse(&o).map_err(backend)).transpose()
        })
        .await
    }

    async fn update(&self, id: &OrderId, judge: Judge) -> Result<Updated, StoreError> {
        let id = id.clone();
        self.with(move |conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(backend)?;
            let Some(state) = read_order(&tx, &id)? else {
                return Ok(Updated::NotFound);
            };
            let Some(change) = judge(&state) else {
                return Ok(Updated::Judged(Box::new(state)));
            };
            // Inside the immediate transaction only the key can be taken: the domain judges its holder.
            if let Some(record) = &change.idempotency {
                let holder = read_idempotency(&tx, &record.user_id, &record.key)?;
                if let Some(answer) = change.key_answer(holder.as_ref()) {
                    return Ok(Updated::KeyAnswered(answer));
                }
            }
            write_change(&tx, &change)?;
            tx.commit().map_err(backend)?;
            Ok(Updated::Judged(Box::new(state)))
        })
        .await
    }
}

#[async_trait]
impl WorkIndex for SqliteStore {
    async fn work(&self, kind: WorkKind, after: Option<&str>, limit: usize) -> Result<WorkPage, StoreError> {
        let after = after.unwrap_or("").to_owned();
        let limit = i64::try_from(limit).map_err(backend)?;
        self.with(move |conn| {
            let mut stmt = conn
                .prepare(
                    "SELECT json_extract(doc, '$._work.at'), order_id, id FROM payments
                     WHERE json_extract(doc, '$._work.kind') = ?1 AND json_extract(doc, '$._work.at') > ?2
                     ORDER BY json_extract(doc, '$._work.kind'), json_extract(doc, '$._work.at') LIMIT ?3",
                )
                .map_err(backend)?;
            let rows = stmt
                .query_map(params![kind.as_str(), after, limit], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?))
                })
                .map_err(backend)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(backend)?;
            let next = match rows.last() {
                Some((at, ..)) if rows.len() as i64 == limit => Some(at.clone()),
                _ => None,
            };
            let items = rows
                .into_iter()
                .map(|(at, order_id, payment_id)| {
                    let since = at.split(' ').next().unwrap_or_default();
                    Ok(WorkItem {
                        order_id: OrderId::parse(&order_id).map_err(backend)?,
                        payment_id: PaymentId::parse(&payment_id).map_err(backend)?,
                        at: Timestamp::parse(since).map_err(backend)?,
                    })
                })
                .collect::<Result<Vec<_>, StoreError>>()?;
            Ok(WorkPage { items, next })
        })
        .await
    }
}

#[async_trait]
impl ExpiryIndex for SqliteStore {
    async fn due(&self, now: Timestamp, after: Option<&str>, limit: usize) -> Result<DuePage, StoreError> {
        // The partial indexes hold exactly the pending orders, and the open or close_pending payments
        // (`Payment::awaits_close`). Orders come first (as
        // DynamoDB's order partitions do), so an order's cancellation takes its payments out of the
        // index before the payments' turn; keyset paging by (kind, deadline, id).
        let (after_rank, after_at, after_id): (i64, String, String) = match after {
            Some(token) => serde_json::from_str(token).map_err(backend)?,
            None => (0, String::new(), String::new()),
        };
        let limit = i64::try_from(limit).map_err(backend)?;
        self.with(move |conn| {
            let mut stmt = conn
                .prepare(
                    "SELECT rank, at, key, order_id, payment_id FROM (
                         SELECT 0 AS rank, payment_deadline AS at, id AS key, id AS order_id, NULL AS payment_id
                           FROM orders WHERE status = 'pending' AND payment_deadline <= ?1
                         UNION ALL
                         SELECT 1, expires_at, id, order_id, id
                           FROM payments WHERE status IN ('init', 'processing') AND expires_at <= ?1
                         UNION
                         SELECT 1, expires_at, id, order_id, id
                           FROM payments WHERE json_extract(doc, '$.close_pending') = 1 AND expires_at <= ?1)
                     WHERE (rank, at, key) > (?2, ?3, ?4) ORDER BY rank, at, key LIMIT ?5",
                )
                .map_err(backend)?;
            let rows = stmt
                .query_map(params![now.to_rfc3339(), after_rank, after_at, after_id, limit], |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, String>(3)?,
                        r.get::<_, Option<String>>(4)?,
                    ))
                })
                .map_err(backend)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(backend)?;
            let next = match rows.last() {
                Some((rank, at, key, ..)) if rows.len() as i64 == limit => {
                    Some(serde_json::to_string(&(rank, at, key)).map_err(backend)?)
                }
                _ => None,
            };
            let due = rows
                .into_iter()
                .map(|(_, _, _, order, payment)| {
                    let order = OrderId::parse(&order).map_err(backend)?;
                    Ok(match payment {
                        Some(payment) => Due::Payment(order, PaymentId::parse(&payment).map_err(backend)?),
                        None => Due::Order(order),
                    })
                })
                .collect::<Result<Vec<_>, StoreError>>()?;
            Ok(DuePage { due, next })
        })
        .await
    }
}

#[async_trait]
impl OrderList for SqliteStore {
    async fn orders_of(
        &self,
        user: &UserId,
        limit: usize,
        after: Option<&ListPosition>,
    ) -> Result<(Vec<ListedOrder>, Option<ListPosition>), StoreError> {
        let user = user.clone();
        let (after_at, after_id) = match after {
            Some(p) => (p.created_at.to_rfc3339(), p.order_id.to_string()),
            // Later than any real order: the first page starts at the newest.
            None => ("9999".to_owned(), String::new()),
        };
        // One more than asked: if it comes back, more remain.
        let fetch = i64::try_from(limit + 1).map_err(backend)?;
        let orders = self
            .with(move |conn| {
                let mut stmt = conn
                    .prepare(
                        "SELECT o.doc, (SELECT p.doc FROM payments p
                                         WHERE p.order_id = o.id AND p.status IN ('init', 'processing')
                                         ORDER BY p.id DESC LIMIT 1)
                           FROM orders o
                          WHERE o.user_id = ?1 AND (o.created_at, o.id) < (?2, ?3)
                          ORDER BY o.created_at DESC, o.id DESC LIMIT ?4",
                    )
                    .map_err(backend)?;
                let rows = stmt
                    .query_map(params![user.as_str(), after_at, after_id, fetch], |r| {
                        Ok((r.get::<_, String>(0)?, r.get::<_, Option<String>>(1)?))
                    })
                    .map_err(backend)?
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(backend)?;
                rows.into_iter()
                    .map(|(order, payment)| {
                        Ok(ListedOrder {
                            order: serde_json::from_str(&order).map_err(backend)?,
                            open_payment: payment.map(|p| serde_json::from_str(&p)).transpose().map_err(backend)?,
                        })
                    })
                    .collect::<Result<Vec<_>, StoreError>>()
            })
            .await?;
        Ok(ListedOrder::page(orders, limit))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_database_from_before_the_ledger_and_shards_gains_them_and_keeps_its_products() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.sqlite3");
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(
                "CREATE TABLE products (id TEXT PRIMARY KEY, name TEXT NOT NULL, price TEXT NOT NULL,
                     stock INTEGER NOT NULL CHECK (stock >= 0),
                     stock_source TEXT NOT NULL CHECK (stock_source IN ('local', 'supplier')), active INTEGER NOT NULL);
                 INSERT INTO products VALUES ('haier', 'heater', '1599.00', 0, 'supplier', 1);",
            )
            .unwrap();
        }
        let store = SqliteStore::open(&path).unwrap();
        let id = ProductId::parse("haier").unwrap();
        let product = store.product(&id).await.unwrap().unwrap();
        assert_eq!(
            (product.name.as_str(), product.reserved, product.shards),
            ("heater", 0, 1)
        );

        // A reload keeps the ledger as the store holds it.
        store
            .with(|conn| {
                conn.execute("UPDATE products SET reserved = 3 WHERE id = 'haier'", [])
                    .map_err(backend)?;
                Ok(())
            })
            .await
            .unwrap();
        store.upsert_product(&Product { reserved: 0, ..product }).await.unwrap();
        assert_eq!(store.product(&id).await.unwrap().unwrap().reserved, 3);
        drop(store);
        SqliteStore::open(&path).expect("opening again leaves the column as it is");
    }
}
