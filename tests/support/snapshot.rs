//! A raw view of the store, past the ports under test: every row or item, for "nothing changed"
//! checks, and the records, index entries and ledgers read from it.

use crate::{Raw, TestEnv};
use domain::ids::ProductId;
use domain::{Order, Payment};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;

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

impl TestEnv {
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

    /// Sets a product's reservation ledger in the store itself, as orders of it would have.
    pub async fn set_reserved(&self, id: &ProductId, units: u32) {
        match &self.raw {
            Raw::Sqlite { path, .. } => {
                let conn = rusqlite::Connection::open(path).expect("open sqlite");
                conn.execute(
                    "UPDATE products SET reserved = ?1 WHERE id = ?2",
                    rusqlite::params![units, id.as_str()],
                )
                .expect("set reserved");
            }
            Raw::Dynamo { client, table } => {
                use aws_sdk_dynamodb::types::AttributeValue;
                client
                    .update_item()
                    .table_name(table)
                    .key("pk", AttributeValue::S(format!("PRODUCT#{id}")))
                    .key("sk", AttributeValue::S("#PRODUCT".into()))
                    .update_expression("SET reserved = :n")
                    .expression_attribute_values(":n", AttributeValue::N(units.to_string()))
                    .send()
                    .await
                    .expect("set reserved");
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
                         UNION SELECT id FROM payments WHERE status IN ('init', 'processing')
                         UNION SELECT id FROM payments WHERE json_extract(doc, '$.close_pending') = 1",
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
        let (orders, payments, _) = self.state().await;
        (orders, payments)
    }

    /// Every order, payment and product's stock in the store, from one raw read of all of it.
    pub async fn state(&self) -> (Vec<Order>, Vec<Payment>, BTreeMap<String, u64>) {
        records_of(self.snapshot().await)
    }
}

/// Every order, payment and product's stock in the SQLite database at `path`, read raw.
pub fn sqlite_records(path: &Path) -> (Vec<Order>, Vec<Payment>, BTreeMap<String, u64>) {
    records_of(sqlite_snapshot(path))
}

/// The orders, payments and stock figures in a raw snapshot of either store.
fn records_of(snapshot: BTreeMap<String, Value>) -> (Vec<Order>, Vec<Payment>, BTreeMap<String, u64>) {
    {
        let mut orders = Vec::new();
        let mut payments = Vec::new();
        let mut stock = BTreeMap::new();
        for (key, value) in snapshot {
            if key.starts_with("products|") || key.ends_with("|#PRODUCT") {
                let id = value["id"].as_str().expect("a product's id").to_owned();
                stock.insert(id, value["stock"].as_u64().expect("a product's stock"));
                continue;
            }
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
        (orders, payments, stock)
    }
}
