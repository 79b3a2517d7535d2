//! A model of DynamoDB's hot-item behaviour, at the adapter's client boundary: an HTTP connector the real
//! SDK client sends its requests to, which keeps one table in memory and answers them as DynamoDB would,
//! with what the emulator cannot show (issue 21, docs/testing.md "Flash sales"):
//!
//! - **Per-item throughput.** Every item has a write budget of 1,000 write units a second and a read
//!   budget of 3,000 read units a second (DynamoDB's per-partition ceilings, which one item can never
//!   exceed). A transactional write of an item costs 2 units per KB (rounded up), a condition check in
//!   a transaction the same, whether the transaction commits or not; a non-transactional write 1 unit
//!   per KB; a strongly consistent read 1 unit per 4 KB. A budget refills continuously and holds at
//!   most one second of it. A request beyond it is throttled: `ThrottlingException` for a single-item
//!   request; the key left in `UnprocessedKeys` of a `BatchGetItem` (the whole request throttled when
//!   no key can be read); for `TransactWriteItems` the whole transaction cancelled with the
//!   cancellation reason `ThrottlingError` on that item.
//! - **Transaction conflicts.** A `TransactWriteItems` holds its items from its arrival until it
//!   commits ([`ModelSettings::transaction_window`]); another transaction that arrives meanwhile and
//!   names one of them is cancelled (`TransactionCanceledException`, reason `TransactionConflict` on
//!   that item), as is a single-item write (`TransactionConflictException`).
//! - **Latency.** Each request takes [`ModelSettings::network`] each way, plus its service time.
//!
//! Time is tokio's: under a paused clock (`start_paused`) every sleep here, the SDK's retry backoff and
//! timeouts and the adapter's own backoff pass in virtual time, so a run measures the model, not this
//! machine. Conditions and updates are evaluated for the expressions the adapter writes (comparisons,
//! `AND`/`OR`/`NOT`, `attribute_exists`/`attribute_not_exists`; `SET` with `+`/`-` and `if_not_exists`,
//! `ADD`); anything else is refused as a `ValidationException`, so the model never silently agrees.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_dynamodb::config::http::{HttpRequest, HttpResponse};
use aws_sdk_dynamodb::config::{Credentials, Region, SharedHttpClient};
use aws_smithy_runtime_api::client::http::{http_client_fn, HttpConnector, HttpConnectorFuture, SharedHttpConnector};
use aws_smithy_types::body::SdkBody;
use rust_decimal::Decimal;
use serde_json::{json, Map, Value};
use tokio::time::Instant;

/// The model's figures. The limits are DynamoDB's documented ones; the times are assumptions
/// (in-region, from a Lambda function), stated with every result.
#[derive(Debug, Clone, Copy)]
pub struct ModelSettings {
    /// Write units per second one item may take.
    pub item_write_units: f64,
    /// Read units per second one item may take.
    pub item_read_units: f64,
    /// One way between the function and DynamoDB.
    pub network: Duration,
    /// Service time of a read.
    pub read: Duration,
    /// How long a transaction holds its items, from arrival to commit.
    pub transaction_window: Duration,
    /// Service time of a single-item write.
    pub write: Duration,
}

impl Default for ModelSettings {
    fn default() -> Self {
        ModelSettings {
            item_write_units: 1_000.0,
            item_read_units: 3_000.0,
            network: Duration::from_micros(500),
            read: Duration::from_millis(2),
            transaction_window: Duration::from_millis(2),
            write: Duration::from_millis(3),
        }
    }
}

/// What the model saw, by kind.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModelCounts {
    /// Requests by operation.
    pub requests: std::collections::BTreeMap<String, u64>,
    /// Transactions committed.
    pub committed: u64,
    /// Transactions cancelled by a conflicting one.
    pub conflicts: u64,
    /// Transactions cancelled for an item's write budget.
    pub throttled_transactions: u64,
    /// Reads throttled (keys left unprocessed, or `ThrottlingException`).
    pub throttled_reads: u64,
    /// Transactions cancelled by a failed condition.
    pub refused: u64,
}

type Key = (String, String);
type Item = Map<String, Value>;

struct Budget {
    units: f64,
    at: Instant,
}

#[derive(Default)]
struct State {
    items: HashMap<Key, Item>,
    in_flight: HashMap<Key, usize>,
    writes: HashMap<Key, Budget>,
    reads: HashMap<Key, Budget>,
    counts: ModelCounts,
}

/// The model: a table in memory behind an HTTP connector. Clones share it.
#[derive(Clone)]
pub struct DynamoModel {
    state: Arc<Mutex<State>>,
    settings: ModelSettings,
}

impl std::fmt::Debug for DynamoModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DynamoModel")
    }
}

struct Failure {
    status: u16,
    kind: &'static str,
    body: Map<String, Value>,
}

fn failure(kind: &'static str, message: impl Into<String>) -> Failure {
    let mut body = Map::new();
    body.insert("message".into(), Value::String(message.into()));
    Failure {
        status: 400,
        kind,
        body,
    }
}

impl DynamoModel {
    /// An empty table with these settings.
    pub fn new(settings: ModelSettings) -> Self {
        DynamoModel {
            state: Arc::new(Mutex::new(State::default())),
            settings,
        }
    }

    /// A DynamoDB client with the functions' retry and timeout settings, talking to this model.
    pub fn client(&self) -> aws_sdk_dynamodb::Client {
        self.client_retrying(infra::aws::retry_config())
    }

    /// A client with its own retry policy (the model's own tests see its answers unretried).
    pub fn client_retrying(&self, retry: aws_sdk_dynamodb::config::retry::RetryConfig) -> aws_sdk_dynamodb::Client {
        let model = self.clone();
        let http: SharedHttpClient = http_client_fn(move |_, _| SharedHttpConnector::new(model.clone()));
        let config = aws_sdk_dynamodb::Config::builder()
            .behavior_version_latest()
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new("model", "model", None, None, "model"))
            .endpoint_url("http://dynamodb.model")
            .retry_config(retry)
            .timeout_config(infra::aws::timeout_config())
            .http_client(http)
            .build();
        aws_sdk_dynamodb::Client::from_conf(config)
    }

    /// What the model has seen so far.
    pub fn counts(&self) -> ModelCounts {
        self.state.lock().unwrap().counts.clone()
    }

    /// Every item, as DynamoDB JSON.
    pub fn items(&self) -> Vec<Item> {
        self.state.lock().unwrap().items.values().cloned().collect()
    }

    async fn answer(&self, target: &str, body: Value) -> Result<Value, Failure> {
        self.state
            .lock()
            .unwrap()
            .counts
            .requests
            .entry(target.to_owned())
            .and_modify(|n| *n += 1)
            .or_insert(1);
        match target {
            "GetItem" => self.get_item(&body).await,
            "BatchGetItem" => self.batch_get(&body).await,
            "TransactWriteItems" => self.transact(&body).await,
            "UpdateItem" | "PutItem" => self.single_write(target, &body).await,
            "BatchWriteItem" => {
                let mut state = self.state.lock().unwrap();
                for requests in object(&body, "RequestItems")?.values() {
                    for request in requests.as_array().into_iter().flatten() {
                        let item = request
                            .pointer("/PutRequest/Item")
                            .and_then(Value::as_object)
                            .ok_or_else(|| failure("ValidationException", "only PutRequest is modelled"))?;
                        state.items.insert(key_of(item)?, item.clone());
                    }
                }
                Ok(json!({}))
            }
            "Scan" => {
                let state = self.state.lock().unwrap();
                let items: Vec<Value> = state.items.values().cloned().map(Value::Object).collect();
                Ok(json!({"Items": items, "Count": items.len(), "ScannedCount": items.len()}))
            }
            other => Err(failure("ValidationException", format!("{other} is not modelled"))),
        }
    }

    /// Takes `units` from an item's budget, if it holds them.
    fn spend(budgets: &mut HashMap<Key, Budget>, key: &Key, units: f64, per_second: f64, now: Instant) -> bool {
        let budget = budgets.entry(key.clone()).or_insert(Budget {
            units: per_second,
            at: now,
        });
        let elapsed = now.saturating_duration_since(budget.at).as_secs_f64();
        budget.units = (budget.units + elapsed * per_second).min(per_second);
        budget.at = now;
        if budget.units >= units {
            budget.units -= units;
            true
        } else {
            false
        }
    }

    async fn get_item(&self, body: &Value) -> Result<Value, Failure> {
        let key = key_of(object(body, "Key")?)?;
        {
            let mut state = self.state.lock().unwrap();
            let units = read_units(state.items.get(&key));
            if !Self::spend(
                &mut state.reads,
                &key,
                units,
                self.settings.item_read_units,
                Instant::now(),
            ) {
                state.counts.throttled_reads += 1;
                return Err(failure(
                    "ThrottlingException",
                    "Throughput exceeds the item's read capacity",
                ));
            }
        }
        tokio::time::sleep(self.settings.read).await;
        let state = self.state.lock().unwrap();
        Ok(match state.items.get(&key) {
            Some(item) => json!({"Item": item}),
            None => json!({}),
        })
    }

    async fn batch_get(&self, body: &Value) -> Result<Value, Failure> {
        let mut wanted = Vec::new();
        for (table, request) in object(body, "RequestItems")? {
            for key in request.get("Keys").and_then(Value::as_array).into_iter().flatten() {
                let key = key
                    .as_object()
                    .ok_or_else(|| failure("ValidationException", "a key is a map"))?;
                wanted.push((table.clone(), key.clone(), key_of(key)?));
            }
        }
        let mut unprocessed: Vec<(String, Item)> = Vec::new();
        let mut served = Vec::new();
        {
            let mut state = self.state.lock().unwrap();
            let now = Instant::now();
            for (table, raw, key) in wanted {
                let units = read_units(state.items.get(&key));
                if Self::spend(&mut state.reads, &key, units, self.settings.item_read_units, now) {
                    served.push((table, key));
                } else {
                    state.counts.throttled_reads += 1;
                    unprocessed.push((table, raw));
                }
            }
        }
        if served.is_empty() && !unprocessed.is_empty() {
            // DynamoDB: when no key at all can be read, the whole request is throttled.
            return Err(failure(
                "ThrottlingException",
                "Throughput exceeds the read capacity of every item",
            ));
        }
        tokio::time::sleep(self.settings.read).await;
        let state = self.state.lock().unwrap();
        let mut responses: Map<String, Value> = Map::new();
        for (table, key) in served {
            let list = responses.entry(table).or_insert_with(|| Value::Array(Vec::new()));
            if let (Some(item), Value::Array(list)) = (state.items.get(&key), list) {
                list.push(Value::Object(item.clone()));
            }
        }
        let mut left: Map<String, Value> = Map::new();
        for (table, key) in unprocessed {
            let entry = left
                .entry(table)
                .or_insert_with(|| json!({"Keys": [], "ConsistentRead": true}));
            entry["Keys"].as_array_mut().unwrap().push(Value::Object(key));
        }
        Ok(json!({"Responses": responses, "UnprocessedKeys": left}))
    }

    async fn single_write(&self, target: &str, body: &Value) -> Result<Value, Failure> {
        let action = Action::parse(target.trim_end_matches("Item"), body)?;
        let key = action.key.clone();
        {
            let mut state = self.state.lock().unwrap();
            if state.in_flight.contains_key(&key) {
                return Err(failure(
                    "TransactionConflictException",
                    "Transaction is ongoing for the item",
                ));
            }
            let units = write_units(state.items.get(&key), action.put.as_ref(), 1.0);
            if !Self::spend(
                &mut state.writes,
                &key,
                units,
                self.settings.item_write_units,
                Instant::now(),
            ) {
                return Err(failure(
                    "ThrottlingException",
                    "Throughput exceeds the item's write capacity",
                ));
            }
        }
        tokio::time::sleep(self.settings.write).await;
        let mut state = self.state.lock().unwrap();
        match action.apply(&mut state.items)? {
            Ok(()) => Ok(json!({})),
            Err(_) => Err(failure(
                "ConditionalCheckFailedException",
                "The conditional request failed",
            )),
        }
    }

    async fn transact(&self, body: &Value) -> Result<Value, Failure> {
        let actions = body
            .get("TransactItems")
            .and_then(Value::as_array)
            .ok_or_else(|| failure("ValidationException", "TransactItems missing"))?
            .iter()
            .map(|entry| {
                let (kind, action) = entry
                    .as_object()
                    .and_then(|m| m.iter().next())
                    .ok_or_else(|| failure("ValidationException", "an empty transaction item"))?;
                Action::parse(kind, action)
            })
            .collect::<Result<Vec<Action>, Failure>>()?;
        let keys: Vec<Key> = actions.iter().map(|a| a.key.clone()).collect();
        {
            let mut state = self.state.lock().unwrap();
            let now = Instant::now();
            let busy: Vec<bool> = keys.iter().map(|k| state.in_flight.contains_key(k)).collect();
            if busy.contains(&true) {
                state.counts.conflicts += 1;
                let codes = busy.iter().map(|b| if *b { "TransactionConflict" } else { "None" });
                return Err(cancelled(codes.map(|c| (c, None)).collect()));
            }
            let costs: Vec<f64> = actions
                .iter()
                .map(|a| write_units(state.items.get(&a.key), a.put.as_ref(), 2.0))
                .collect();
            let short: Vec<bool> = keys
                .iter()
                .zip(&costs)
                .map(|(k, units)| {
                    let budget = state.writes.get(k);
                    let held = budget.map_or(self.settings.item_write_units, |b| {
                        let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
                        (b.units + elapsed * self.settings.item_write_units).min(self.settings.item_write_units)
                    });
                    held < *units
                })
                .collect();
            if short.contains(&true) {
                state.counts.throttled_transactions += 1;
                let codes = short.iter().map(|s| if *s { "ThrottlingError" } else { "None" });
                return Err(cancelled(codes.map(|c| (c, None)).collect()));
            }
            for (key, units) in keys.iter().zip(&costs) {
                Self::spend(&mut state.writes, key, *units, self.settings.item_write_units, now);
                *state.in_flight.entry(key.clone()).or_insert(0) += 1;
            }
        }
        tokio::time::sleep(self.settings.transaction_window).await;
        let mut state = self.state.lock().unwrap();
        for key in &keys {
            if let Some(n) = state.in_flight.get_mut(key) {
                *n -= 1;
                if *n == 0 {
                    state.in_flight.remove(key);
                }
            }
        }
        // Every condition against the items as they are; all or nothing.
        let mut reasons = Vec::with_capacity(actions.len());
        for action in &actions {
            let current = state.items.get(&action.key);
            reasons.push(match &action.condition {
                Some(condition) if !condition.holds(current)? => (
                    "ConditionalCheckFailed",
                    action.return_old.then(|| current.cloned()).flatten(),
                ),
                _ => ("None", None),
            });
        }
        if reasons.iter().any(|(code, _)| *code != "None") {
            state.counts.refused += 1;
            return Err(cancelled(reasons));
        }
        let mut staged = state.items.clone_subset(&keys);
        for action in &actions {
            action.write(&mut staged)?;
        }
        for (key, item) in staged {
            match item {
                Some(item) => state.items.insert(key, item),
                None => state.items.remove(&key),
            };
        }
        state.counts.committed += 1;
        Ok(json!({}))
    }
}

trait Subset {
    fn clone_subset(&self, keys: &[Key]) -> HashMap<Key, Option<Item>>;
}

impl Subset for HashMap<Key, Item> {
    fn clone_subset(&self, keys: &[Key]) -> HashMap<Key, Option<Item>> {
        keys.iter().map(|k| (k.clone(), self.get(k).cloned())).collect()
    }
}

fn cancelled(reasons: Vec<(&str, Option<Item>)>) -> Failure {
    let codes: Vec<&str> = reasons.iter().map(|(c, _)| *c).collect();
    let list: Vec<Value> = reasons
        .into_iter()
        .map(|(code, item)| {
            let mut reason = json!({"Code": code});
            if code != "None" {
                reason["Message"] = Value::String(code.to_owned());
            }
            if let Some(item) = item {
                reason["Item"] = Value::Object(item);
            }
            reason
        })
        .collect();
    let mut f = failure(
        "TransactionCanceledException",
        format!(
            "Transaction cancelled, please refer cancellation reasons for specific reasons [{}]",
            codes.join(", ")
        ),
    );
    f.body.insert("CancellationReasons".into(), Value::Array(list));
    f
}

/// An item's size as DynamoDB counts it, near enough: names and values in bytes.
fn size(item: Option<&Item>) -> usize {
    fn value_size(v: &Value) -> usize {
        match v {
            Value::Object(m) => m
                .iter()
                .map(|(k, v)| match k.as_str() {
                    "S" | "N" | "B" => v.as_str().map_or(0, str::len),
                    "BOOL" | "NULL" => 1,
                    "M" => {
                        3 + v
                            .as_object()
                            .map_or(0, |m| m.iter().map(|(k, v)| k.len() + value_size(v)).sum())
                    }
                    "L" => 3 + v.as_array().map_or(0, |l| l.iter().map(value_size).sum()),
                    _ => value_size(v),
                })
                .sum(),
            _ => 0,
        }
    }
    item.map_or(0, |m| m.iter().map(|(k, v)| k.len() + value_size(v)).sum())
}

/// The write units of writing an item: by the larger of the item as it is and the item put over it.
fn write_units(old: Option<&Item>, new: Option<&Item>, per_kb: f64) -> f64 {
    per_kb * (size(old).max(size(new)).max(1) as f64 / 1024.0).ceil()
}

fn read_units(item: Option<&Item>) -> f64 {
    (size(item).max(1) as f64 / 4096.0).ceil()
}

fn object<'a>(body: &'a Value, field: &str) -> Result<&'a Map<String, Value>, Failure> {
    body.get(field)
        .and_then(Value::as_object)
        .ok_or_else(|| failure("ValidationException", format!("{field} missing")))
}

fn key_of(item: &Item) -> Result<Key, Failure> {
    let text = |name: &str| {
        item.get(name)
            .and_then(|v| v.get("S"))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    match (text("pk"), text("sk")) {
        (Some(pk), Some(sk)) => Ok((pk, sk)),
        _ => Err(failure("ValidationException", "an item without pk and sk")),
    }
}

/// One write (or condition check) of a request, parsed.
struct Action {
    key: Key,
    kind: String,
    condition: Option<Expr>,
    update: Option<Vec<Assignment>>,
    put: Option<Item>,
    return_old: bool,
}

impl Action {
    fn parse(kind: &str, body: &Value) -> Result<Action, Failure> {
        let names = body
            .get("ExpressionAttributeNames")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        let values = body
            .get("ExpressionAttributeValues")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        let put = match kind {
            "Put" => Some(object(body, "Item")?.clone()),
            _ => None,
        };
        let key = match &put {
            Some(item) => key_of(item)?,
            None => key_of(object(body, "Key")?)?,
        };
        let condition = body
            .get("ConditionExpression")
            .and_then(Value::as_str)
            .map(|text| Parser::new(text, &names, &values).condition())
            .transpose()?;
        let update = body
            .get("UpdateExpression")
            .and_then(Value::as_str)
            .map(|text| Parser::new(text, &names, &values).update())
            .transpose()?;
        if !matches!(kind, "Put" | "Update" | "ConditionCheck") {
            return Err(failure("ValidationException", format!("{kind} is not modelled")));
        }
        Ok(Action {
            key,
            kind: kind.to_owned(),
            condition,
            update,
            put,
            return_old: body.get("ReturnValuesOnConditionCheckFailure").and_then(Value::as_str) == Some("ALL_OLD"),
        })
    }

    /// For a single-item request: the condition, then the write, at once.
    fn apply(&self, items: &mut HashMap<Key, Item>) -> Result<Result<(), ()>, Failure> {
        if let Some(condition) = &self.condition {
            if !condition.holds(items.get(&self.key))? {
                return Ok(Err(()));
            }
        }
        let mut staged = items.clone_subset(std::slice::from_ref(&self.key));
        self.write(&mut staged)?;
        if let Some(Some(item)) = staged.remove(&self.key) {
            items.insert(self.key.clone(), item);
        }
        Ok(Ok(()))
    }

    fn write(&self, staged: &mut HashMap<Key, Option<Item>>) -> Result<(), Failure> {
        match self.kind.as_str() {
            "Put" => {
                staged.insert(self.key.clone(), self.put.clone());
            }
            "Update" => {
                let mut item = staged.get(&self.key).cloned().flatten().unwrap_or_else(|| {
                    let mut m = Map::new();
                    m.insert("pk".into(), json!({"S": self.key.0}));
                    m.insert("sk".into(), json!({"S": self.key.1}));
                    m
                });
                for assignment in self.update.iter().flatten() {
                    assignment.apply(&mut item)?;
                }
                staged.insert(self.key.clone(), Some(item));
            }
            _ => {}
        }
        Ok(())
    }
}

#[derive(Debug, Clone)]
enum Operand {
    Path(String),
    Value(Value),
    IfNotExists(String, Box<Operand>),
    Sum(Box<Operand>, bool, Box<Operand>),
}

#[derive(Debug, Clone)]
enum Expr {
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
    Exists(String, bool),
    Compare(Operand, String, Operand),
}

#[derive(Debug, Clone)]
enum Assignment {
    Set(String, Operand),
    Add(String, Operand),
}

fn number(v: &Value) -> Option<Decimal> {
    v.get("N").and_then(Value::as_str).and_then(|n| n.parse().ok())
}

impl Operand {
    fn eval(&self, item: Option<&Item>) -> Result<Option<Value>, Failure> {
        Ok(match self {
            Operand::Path(name) => item.and_then(|i| i.get(name)).cloned(),
            Operand::Value(v) => Some(v.clone()),
            Operand::IfNotExists(name, fallback) => match item.and_then(|i| i.get(name)) {
                Some(v) => Some(v.clone()),
                None => fallback.eval(item)?,
            },
            Operand::Sum(a, plus, b) => {
                let (a, b) = (a.eval(item)?, b.eval(item)?);
                let (Some(a), Some(b)) = (a.as_ref().and_then(number), b.as_ref().and_then(number)) else {
                    return Err(failure(
                        "ValidationException",
                        "arithmetic on a missing or non-number operand",
                    ));
                };
                Some(json!({"N": (if *plus { a + b } else { a - b }).normalize().to_string()}))
            }
        })
    }
}

impl Expr {
    fn holds(&self, item: Option<&Item>) -> Result<bool, Failure> {
        Ok(match self {
            Expr::And(a, b) => a.holds(item)? && b.holds(item)?,
            Expr::Or(a, b) => a.holds(item)? || b.holds(item)?,
            Expr::Not(a) => !a.holds(item)?,
            Expr::Exists(name, wanted) => item.is_some_and(|i| i.contains_key(name)) == *wanted,
            Expr::Compare(a, op, b) => {
                let (Some(a), Some(b)) = (a.eval(item)?, b.eval(item)?) else {
                    return Ok(false);
                };
                let order = match (number(&a), number(&b)) {
                    (Some(x), Some(y)) => Some(x.cmp(&y)),
                    _ => match (a.get("S").and_then(Value::as_str), b.get("S").and_then(Value::as_str)) {
                        (Some(x), Some(y)) => Some(x.cmp(y)),
                        _ => None,
                    },
                };
                match (op.as_str(), order) {
                    ("=", _) => match order {
                        Some(o) => o.is_eq(),
                        None => a == b,
                    },
                    ("<>", _) => match order {
                        Some(o) => o.is_ne(),
                        None => a != b,
                    },
                    ("<", Some(o)) => o.is_lt(),
                    ("<=", Some(o)) => o.is_le(),
                    (">", Some(o)) => o.is_gt(),
                    (">=", Some(o)) => o.is_ge(),
                    _ => false,
                }
            }
        })
    }
}

impl Assignment {
    fn apply(&self, item: &mut Item) -> Result<(), Failure> {
        match self {
            Assignment::Set(name, operand) => {
                let value = operand
                    .eval(Some(item))?
                    .ok_or_else(|| failure("ValidationException", "SET to a missing attribute"))?;
                item.insert(name.clone(), value);
            }
            Assignment::Add(name, operand) => {
                let delta = operand.eval(Some(item))?.as_ref().and_then(number);
                let delta = delta.ok_or_else(|| failure("ValidationException", "ADD of a non-number"))?;
                let old = item.get(name).and_then(number).unwrap_or_default();
                item.insert(name.clone(), json!({"N": (old + delta).normalize().to_string()}));
            }
        }
        Ok(())
    }
}

/// A parser for the expressions the adapter writes.
struct Parser<'a> {
    tokens: Vec<String>,
    at: usize,
    names: &'a Map<String, Value>,
    values: &'a Map<String, Value>,
}

impl<'a> Parser<'a> {
    fn new(text: &str, names: &'a Map<String, Value>, values: &'a Map<String, Value>) -> Self {
        let mut tokens = Vec::new();
        let chars: Vec<char> = text.chars().collect();
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            if c.is_whitespace() {
                i += 1;
            } else if "(),+-=".contains(c) {
                tokens.push(c.to_string());
                i += 1;
            } else if c == '<' || c == '>' {
                let two: String = chars[i..(i + 2).min(chars.len())].iter().collect();
                if two == "<=" || two == ">=" || two == "<>" {
                    tokens.push(two);
                    i += 2;
                } else {
                    tokens.push(c.to_string());
                    i += 1;
                }
            } else {
                let start = i;
                while i < chars.len() && (chars[i].is_alphanumeric() || "_#:.".contains(chars[i])) {
                    i += 1;
                }
                tokens.push(chars[start..i.max(start + 1)].iter().collect());
                i = i.max(start + 1);
            }
        }
        Parser {
            tokens,
            at: 0,
            names,
            values,
        }
    }

    fn peek(&self) -> Option<&str> {
        self.tokens.get(self.at).map(String::as_str)
    }

    fn next(&mut self) -> Result<String, Failure> {
        let token = self.tokens.get(self.at).cloned();
        self.at += 1;
        token.ok_or_else(|| failure("ValidationException", "expression ends too soon"))
    }

    fn expect(&mut self, token: &str) -> Result<(), Failure> {
        match self.next()? {
            t if t == token => Ok(()),
            t => Err(failure("ValidationException", format!("expected {token}, found {t}"))),
        }
    }

    fn name(&self, token: &str) -> Result<String, Failure> {
        if let Some(alias) = token.strip_prefix('#').map(|_| token) {
            return self
                .names
                .get(alias)
                .and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or_else(|| failure("ValidationException", format!("{alias} is not defined")));
        }
        Ok(token.to_owned())
    }

    fn operand(&mut self) -> Result<Operand, Failure> {
        let first = self.single()?;
        match self.peek() {
            Some(op @ ("+" | "-")) => {
                let plus = op == "+";
                self.at += 1;
                Ok(Operand::Sum(Box::new(first), plus, Box::new(self.single()?)))
            }
            _ => Ok(first),
        }
    }

    fn single(&mut self) -> Result<Operand, Failure> {
        let token = self.next()?;
        if token.starts_with(':') {
            return self
                .values
                .get(&token)
                .cloned()
                .map(Operand::Value)
                .ok_or_else(|| failure("ValidationException", format!("{token} is not defined")));
        }
        if token == "if_not_exists" {
            self.expect("(")?;
            let path = self.next()?;
            let path = self.name(&path)?;
            self.expect(",")?;
            let fallback = self.operand()?;
            self.expect(")")?;
            return Ok(Operand::IfNotExists(path, Box::new(fallback)));
        }
        Ok(Operand::Path(self.name(&token)?))
    }

    fn condition(mut self) -> Result<Expr, Failure> {
        let expr = self.or()?;
        match self.peek() {
            None => Ok(expr),
            Some(t) => Err(failure("ValidationException", format!("unexpected {t}"))),
        }
    }

    fn or(&mut self) -> Result<Expr, Failure> {
        let mut left = self.and()?;
        while self.peek().is_some_and(|t| t.eq_ignore_ascii_case("OR")) {
            self.at += 1;
            left = Expr::Or(Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Expr, Failure> {
        let mut left = self.not()?;
        while self.peek().is_some_and(|t| t.eq_ignore_ascii_case("AND")) {
            self.at += 1;
            left = Expr::And(Box::new(left), Box::new(self.not()?));
        }
        Ok(left)
    }

    fn not(&mut self) -> Result<Expr, Failure> {
        if self.peek().is_some_and(|t| t.eq_ignore_ascii_case("NOT")) {
            self.at += 1;
            return Ok(Expr::Not(Box::new(self.not()?)));
        }
        if self.peek() == Some("(") {
            self.at += 1;
            let inner = self.or()?;
            self.expect(")")?;
            return Ok(inner);
        }
        if let Some(f @ ("attribute_exists" | "attribute_not_exists")) = self.peek() {
            let wanted = f == "attribute_exists";
            self.at += 1;
            self.expect("(")?;
            let path = self.next()?;
            let path = self.name(&path)?;
            self.expect(")")?;
            return Ok(Expr::Exists(path, wanted));
        }
        let left = self.operand()?;
        let op = self.next()?;
        if !["=", "<>", "<", "<=", ">", ">="].contains(&op.as_str()) {
            return Err(failure("ValidationException", format!("{op} is not modelled")));
        }
        Ok(Expr::Compare(left, op, self.operand()?))
    }

    fn update(mut self) -> Result<Vec<Assignment>, Failure> {
        let mut assignments = Vec::new();
        while let Some(clause) = self.peek().map(str::to_ascii_uppercase) {
            self.at += 1;
            loop {
                let path = self.next()?;
                let path = self.name(&path)?;
                match clause.as_str() {
                    "SET" => {
                        self.expect("=")?;
                        assignments.push(Assignment::Set(path, self.operand()?));
                    }
                    "ADD" => assignments.push(Assignment::Add(path, self.single()?)),
                    other => return Err(failure("ValidationException", format!("{other} is not modelled"))),
                }
                if self.peek() == Some(",") {
                    self.at += 1;
                } else {
                    break;
                }
            }
        }
        Ok(assignments)
    }
}

impl HttpConnector for DynamoModel {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let model = self.clone();
        let target = request
            .headers()
            .get("x-amz-target")
            .and_then(|t| t.split('.').nth(1))
            .unwrap_or_default()
            .to_owned();
        let body: Value = request
            .body()
            .bytes()
            .and_then(|b| serde_json::from_slice(b).ok())
            .unwrap_or(Value::Null);
        HttpConnectorFuture::new(async move {
            tokio::time::sleep(model.settings.network).await;
            let answered = model.answer(&target, body).await;
            tokio::time::sleep(model.settings.network).await;
            let (status, body) = match answered {
                Ok(body) => (200, body),
                Err(Failure { status, kind, mut body }) => {
                    body.insert(
                        "__type".into(),
                        Value::String(format!("com.amazonaws.dynamodb.v20120810#{kind}")),
                    );
                    (status, Value::Object(body))
                }
            };
            let mut response = HttpResponse::new(status.try_into().expect("status"), SdkBody::from(body.to_string()));
            response
                .headers_mut()
                .insert("content-type", "application/x-amz-json-1.0");
            Ok(response)
        })
    }
}
