//! The DynamoDB store: one table, one `TransactWriteItems` per placement, refusals read from the
//! transaction's cancellation reasons.

mod counter;
pub mod keys;
#[cfg(feature = "local")]
pub mod schema;

pub use counter::RequestCounter;

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeValue, CancellationReason, ConditionCheck, KeysAndAttributes, Put, ReturnValuesOnConditionCheckFailure,
    TransactWriteItem, Update,
};
use aws_sdk_dynamodb::Client;
use domain::catalog::{Address, Product};
use domain::error::BoxError;
use domain::idempotency::{IdempotencyKey, IdempotencyRecord, KeyUse};
use domain::ids::{AddressId, OrderId, PaymentId, ProductId};
use domain::order::Order;
use domain::payment::Payment;
use domain::ports::{
    Catalog, CatalogAdmin, Change, ChangeFound, DuePage, ExpiryIndex, Judge, LineCheck, ListPosition, ListedOrder,
    NewOrder, OrderList, OrderStore, OrderUpdates, OrderWithPayments, PlaceError, Placement, Refused, Restock,
    StoreError, Updated,
};
use domain::{StockSource, Timestamp, UserId};
use serde::Serialize;
use serde_dynamo::aws_sdk_dynamodb_1::{from_item, to_item};

/// How often a transaction cancelled only by conflicting concurrent transactions is tried again.
const CONFLICT_ATTEMPTS: u32 = 4;
/// How often an update whose order another writer changed first is judged and tried again. Each lost
/// round means another writer won, so the order makes progress; the bound only caps one caller's wait.
const UPDATE_ATTEMPTS: u32 = 32;

/// Full-jitter exponential backoff before attempt `attempt + 1`: a random wait up to 10 ms doubled per
/// attempt, capped at 160 ms.
async fn backoff(attempt: u32) {
    let cap = 10u64 << attempt.min(4);
    tokio::time::sleep(Duration::from_millis(fastrand::u64(1..=cap))).await;
}

/// The DynamoDB store over one table.
#[derive(Clone, Debug)]
pub struct DynamoStore {
    client: Client,
    table: String,
}

/// The error codes DynamoDB uses for throttling and contention: worth retrying later, so `503`.
fn is_transient(code: Option<&str>) -> bool {
    matches!(
        code,
        Some(
            "ThrottlingException"
                | "ProvisionedThroughputExceededException"
                | "RequestLimitExceeded"
                | "TransactionConflictException"
                | "TransactionInProgressException"
                | "ThrottlingError"
                | "TransactionConflict"
                | "InternalServerError"
        )
    )
}

/// Sorts an SDK failure into busy (throttled, conflicted, timed out, unreachable) or a backend fault.
fn classify<E>(err: SdkError<E>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let transient = match &err {
        SdkError::ServiceError(e) => is_transient(e.err().code()),
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) => true,
        _ => false,
    };
    let source: BoxError = Box::new(err);
    if transient {
        StoreError::Busy(source)
    } else {
        StoreError::Backend(source)
    }
}

fn backend(err: impl Into<BoxError>) -> StoreError {
    StoreError::backend(err)
}

/// Maps a record to an item and adds its key and index attributes.
fn item<T: Serialize>(
    record: &T,
    key: keys::Key,
    extra: impl IntoIterator<Item = (&'static str, String)>,
) -> Result<HashMap<String, AttributeValue>, StoreError> {
    let mut item: HashMap<String, AttributeValue> = to_item(record).map_err(backend)?;
    item.extend(key);
    item.extend(extra.into_iter().map(|(k, v)| (k.to_owned(), AttributeValue::S(v))));
    Ok(item)
}

/// An order item: the order, its key and index attributes, and a copy of its open payment (if any), so
/// that one index query lists a shopper's orders with their open payments.
fn order_item(order: &Order, open_payment: Option<&Payment>) -> Result<HashMap<String, AttributeValue>, StoreError> {
    let mut item = item(order, keys::order(&order.id), keys::order_index_attributes(order))?;
    if let Some(payment) = open_payment {
        let payment: HashMap<String, AttributeValue> = to_item(payment).map_err(backend)?;
        item.insert(keys::OPEN_PAYMENT.to_owned(), AttributeValue::M(payment));
    }
    Ok(item)
}

fn payment_item(payment: &Payment) -> Result<HashMap<String, AttributeValue>, StoreError> {
    item(
        payment,
        keys::payment(&payment.order_id, &payment.id),
        keys::payment_index_attributes(payment),
    )
}

/// What each action of the transaction is, so a cancellation reason can be traced to its line.
enum Action {
    Address,
    Product(usize),
    Record,
    Idempotency,
}

impl DynamoStore {
    /// A store over `table`.
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        DynamoStore {
            client,
            table: table.into(),
        }
    }

    /// Opens the connection (TCP and TLS) to DynamoDB during a function's init, so that its first
    /// invocation does not pay for the handshake in the request path: one eventually consistent GetItem
    /// of a key no item has (half a read unit), waited for at most `aws::WARM_UP_LIMIT`. A failure is
    /// logged and otherwise ignored: the function still starts, and its first request connects.
    pub async fn warm_up(&self) {
        let request = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(keys::warm_up()))
            .projection_expression("#pk")
            .expression_attribute_names("#pk", keys::PK)
            .send();
        crate::aws::warm_up("DynamoDB", request).await;
    }

    async fn get<T: serde::de::DeserializeOwned>(&self, key: keys::Key) -> Result<Option<T>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key))
            .send()
            .await
            .map_err(classify)?;
        out.item.map(|item| from_item(item).map_err(backend)).transpose()
    }

    async fn put<T: Serialize>(&self, record: &T, key: keys::Key) -> Result<(), StoreError> {
        let item = item(record, key, [])?;
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(classify)?;
        Ok(())
    }

    /// The product action of one line: take the stock if local, else only check the product.
    fn product_action(&self, line: &NewOrder) -> Result<TransactWriteItem, StoreError> {
        let order = &line.order;
        let mut values = HashMap::from([
            (":active".to_owned(), AttributeValue::Bool(true)),
            (":price".to_owned(), AttributeValue::S(order.unit_price.to_string())),
            (
                ":source".to_owned(),
                AttributeValue::S(order.stock_source.as_str().to_owned()),
            ),
        ]);
        let unchanged = "active = :active AND price = :price AND stock_source = :source";
        let key = keys::product(&order.product_id);
        let fail = ReturnValuesOnConditionCheckFailure::AllOld;
        Ok(match order.stock_source {
            StockSource::Local => {
                values.insert(":q".to_owned(), AttributeValue::N(order.quantity.get().to_string()));
                let update = Update::builder()
                    .table_name(&self.table)
                    .set_key(Some(key))
                    .update_expression("SET stock = stock - :q")
                    .condition_expression(format!("{unchanged} AND stock >= :q"))
                    .set_expression_attribute_values(Some(values))
                    .return_values_on_condition_check_failure(fail)
                    .build()
                    .map_err(backend)?;
                TransactWriteItem::builder().update(update).build()
            }
            StockSource::Supplier => {
                // The ledger takes the quantity only if it then holds no more than the supplier's figure;
                // without room for the quantity at all, a condition no item meets (the ledger is never
                // negative), so the refusal still brings back the product to be judged.
                values.insert(":q".to_owned(), AttributeValue::N(order.quantity.get().to_string()));
                let fits = match line.reservation_room() {
                    Some(room) => {
                        values.insert(":room".to_owned(), AttributeValue::N(room.to_string()));
                        "(attribute_not_exists(#reserved) OR #reserved <= :room)"
                    }
                    None => {
                        values.insert(":zero".to_owned(), AttributeValue::N("0".to_owned()));
                        "#reserved < :zero"
                    }
                };
                let update = Update::builder()
                    .table_name(&self.table)
                    .set_key(Some(key))
                    .update_expression("ADD #reserved :q")
                    .condition_expression(format!("{unchanged} AND {fits}"))
                    .expression_attribute_names("#reserved", keys::RESERVED)
                    .set_expression_attribute_values(Some(values))
                    .return_values_on_condition_check_failure(fail)
                    .build()
                    .map_err(backend)?;
                TransactWriteItem::builder().update(update).build()
            }
        })
    }

    /// An idempotency record, written only where no live record holds its key (DynamoDB's TTL deletes
    /// late, so an expired one may still be there and is replaced); a live one comes back to be judged.
    fn idempotency_put(&self, record: &IdempotencyRecord) -> Result<TransactWriteItem, StoreError> {
        let mut item = item(record, keys::idempotency(&record.user_id, &record.key), [])?;
        item.insert(
            keys::TTL.to_owned(),
            AttributeValue::N(record.expires_at.unix_seconds().to_string()),
        );
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk) OR expires_at <= :now")
            .expression_attribute_values(":now", AttributeValue::S(record.created_at.to_rfc3339()))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .build()
            .map_err(backend)?;
        Ok(TransactWriteItem::builder().put(put).build())
    }

    fn put_new(&self, item: HashMap<String, AttributeValue>) -> Result<TransactWriteItem, StoreError> {
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk)")
            .build()
            .map_err(backend)?;
        Ok(TransactWriteItem::builder().put(put).build())
    }

    fn transaction(&self, placement: &Placement) -> Result<(Vec<TransactWriteItem>, Vec<Action>), StoreError> {
        let mut items = Vec::with_capacity(1 + placement.orders.len() * 3);
        let mut actions = Vec::with_capacity(items.capacity());
        let address = ConditionCheck::builder()
            .table_name(&self.table)
            .set_key(Some(keys::address(&placement.address_id)))
            .condition_expression("user_id = :user")
            .expression_attribute_values(":user", AttributeValue::S(placement.user_id.to_string()))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .build()
            .map_err(backend)?;
        items.push(TransactWriteItem::builder().condition_check(address).build());
        actions.push(Action::Address);
        if let Some(record) = &placement.idempotency {
            items.push(self.idempotency_put(record)?);
            actions.push(Action::Idempotency);
        }
        for (i, line) in placement.orders.iter().enumerate() {
            items.push(self.product_action(line)?);
            actions.push(Action::Product(i));
            items.push(self.put_new(order_item(&line.order, Some(&line.payment))?)?);
            actions.push(Action::Record);
            items.push(self.put_new(payment_item(&line.payment)?)?);
            actions.push(Action::Record);
        }
        Ok((items, actions))
    }

    /// Turns the cancellation reasons into the placement's refusal; `None` when only conflicts (or
    /// throttling) cancelled it, which is worth another try.
    fn refusal(
        placement: &Placement,
        actions: &[Action],
        reasons: &[CancellationReason],
    ) -> Result<Option<PlaceError>, StoreError> {
        let mut checks = vec![LineCheck::Ok; placement.orders.len()];
        let mut address_ok = true;
        let mut refused = false;
        let mut key_use = KeyUse::Fresh;
        for (action, reason) in actions.iter().zip(reasons) {
            match reason.code() {
                None | Some("None") => continue,
                Some("ConditionalCheckFailed") => refused = true,
                Some(code) if is_transient(Some(code)) => continue,
                Some(code) => return Err(backend(format!("transaction cancelled: {code}"))),
            }
            match action {
                Action::Address => address_ok = false,
                Action::Product(i) => {
                    let current: Option<Product> = reason
                        .item()
                        .map(|item| from_item(item.clone()))
                        .transpose()
                        .map_err(backend)?;
                    checks[*i] = placement.orders[*i].check(current.as_ref());
                    if checks[*i] == LineCheck::Ok {
                        // The condition failed yet the old item satisfies it: the old item was not returned.
                        return Err(backend("product condition failed without a returned item"));
                    }
                }
                Action::Record => return Err(backend("an order or payment id already exists")),
                Action::Idempotency => {
                    let existing: Option<IdempotencyRecord> = reason
                        .item()
                        .map(|item| from_item(item.clone()))
                        .transpose()
                        .map_err(backend)?;
                    key_use = placement.key_use(existing.as_ref());
                    if key_use == KeyUse::Fresh {
                        return Err(backend("idempotency condition failed without a live record returned"));
                    }
                }
            }
        }
        if !refused {
            return Ok(None);
        }
        Ok(placement.refusal(key_use, &checks, address_ok).err())
    }
}

/// What one attempt at writing a change came to.
enum Committed {
    Written,
    /// Not written; what the domain made of what the store found (or a conflicting transaction: stale).
    Refused(Refused),
}

impl DynamoStore {
    /// The transaction of a change: the order put only if its version is the one judged, changed
    /// payments put over existing ones, a created payment put only if new, stock given back.
    fn change_items(&self, state: &OrderWithPayments, change: &Change) -> Result<Vec<TransactWriteItem>, StoreError> {
        let mut items = Vec::with_capacity(3 + change.payments.len());
        // Orders written before versions existed carry no version attribute: they count as version 0.
        let unchanged = if change.expected_version == 0 {
            "attribute_exists(pk) AND (attribute_not_exists(version) OR version = :v)"
        } else {
            "version = :v"
        };
        let order = Put::builder()
            .table_name(&self.table)
            .set_item(Some(order_item(&change.order, state.after(change).open_payment())?))
            .condition_expression(unchanged)
            .expression_attribute_values(":v", AttributeValue::N(change.expected_version.to_string()))
            .build()
            .map_err(backend)?;
        items.push(TransactWriteItem::builder().put(order).build());
        for payment in &change.payments {
            let put = Put::builder()
                .table_name(&self.table)
                .set_item(Some(payment_item(payment)?))
                .condition_expression("attribute_exists(pk)")
                .build()
                .map_err(backend)?;
            items.push(TransactWriteItem::builder().put(put).build());
        }
        if let Some(payment) = &change.created {
            items.push(self.put_new(payment_item(payment)?)?);
        }
        if let Some(record) = &change.idempotency {
            items.push(self.idempotency_put(record)?);
        }
        if let Some(restock) = &change.restock {
            let update = match restock {
                Restock::Stock(product, quantity) => Update::builder()
                    .set_key(Some(keys::product(product)))
                    .update_expression("SET stock = stock + :q")
                    .condition_expression("attribute_exists(pk)")
                    .expression_attribute_values(":q", AttributeValue::N(quantity.get().to_string())),
                Restock::Reservation(product, quantity) => Update::builder()
                    .set_key(Some(keys::product(product)))
                    .update_expression("ADD #reserved :release")
                    .condition_expression("#reserved >= :q")
                    .expression_attribute_names("#reserved", keys::RESERVED)
                    .expression_attribute_values(":q", AttributeValue::N(quantity.get().to_string()))
                    .expression_attribute_values(":release", AttributeValue::N(format!("-{}", quantity.get()))),
            };
            let update = update.table_name(&self.table).build().map_err(backend)?;
            items.push(TransactWriteItem::builder().update(update).build());
        }
        Ok(items)
    }

    async fn commit(&self, state: &OrderWithPayments, change: &Change) -> Result<Committed, StoreError> {
        let sent = self
            .client
            .transact_write_items()
            .set_transact_items(Some(self.change_items(state, change)?))
            .send()
            .await;
        let err = match sent {
            Ok(_) => return Ok(Committed::Written),
            Err(err) => err,
        };
        if let SdkError::ServiceError(e) = &err {
            if let TransactWriteItemsError::TransactionCanceledException(c) = e.err() {
                // The first action is the order's version check; the idempotency record, if any, comes
                // right after the payments. Any other failed condition means the change does not fit the
                // table (a payment vanished, an id collided): not worth retrying. What the two report is
                // the domain's to judge.
                let record_at = change
                    .idempotency
                    .as_ref()
                    .map(|_| 1 + change.payments.len() + usize::from(change.created.is_some()));
                let mut found = ChangeFound::default();
                for (i, reason) in c.cancellation_reasons().iter().enumerate() {
                    match reason.code() {
                        None | Some("None") => {}
                        Some("ConditionalCheckFailed") if i == 0 => found.version_moved = true,
                        Some("ConditionalCheckFailed") if Some(i) == record_at => {
                            found.key_holder = reason
                                .item()
                                .map(|item| from_item(item.clone()))
                                .transpose()
                                .map_err(backend)?;
                        }
                        Some(code) if is_transient(Some(code)) => {}
                        Some(code) => return Err(backend(format!("change refused at action {i}: {code}"))),
                    }
                }
                return Ok(Committed::Refused(change.refused(&found)));
            }
        }
        // Throttling and timeouts were already retried by the SDK: past that, the caller answers busy.
        Err(classify(err))
    }
}

#[async_trait]
impl OrderUpdates for DynamoStore {
    async fn order_of_payment(&self, id: &PaymentId) -> Result<Option<OrderId>, StoreError> {
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(keys::BY_PAYMENT)
            .key_condition_expression("#p = :p")
            .expression_attribute_names("#p", keys::PAYMENT_ID)
            .expression_attribute_values(":p", AttributeValue::S(id.to_string()))
            .limit(1)
            .send()
            .await
            .map_err(classify)?;
        let Some(item) = out.items.unwrap_or_default().into_iter().next() else {
            return Ok(None);
        };
        match item.get(keys::PK) {
            Some(AttributeValue::S(pk)) => keys::order_of_partition(pk)
                .map(Some)
                .ok_or_else(|| backend(format!("payment index points at {pk}"))),
            _ => Err(backend("payment index item without a partition key")),
        }
    }

    async fn update(&self, id: &OrderId, judge: Judge) -> Result<Updated, StoreError> {
        for attempt in 1..=UPDATE_ATTEMPTS {
            let Some(state) = self.order_with_payments(id).await? else {
                return Ok(Updated::NotFound);
            };
            let Some(change) = judge(&state) else {
                return Ok(Updated::Judged(Box::new(state)));
            };
            match self.commit(&state, &change).await? {
                Committed::Written => return Ok(Updated::Judged(Box::new(state))),
                Committed::Refused(Refused::KeyAnswered(answer)) => return Ok(Updated::KeyAnswered(answer)),
                Committed::Refused(Refused::Stale) => {
                    tracing::info!(order_id = %id, attempt, "order changed while judged; judging again");
                    backoff(attempt).await;
                }
            }
        }
        Err(StoreError::Busy(format!("order {id} kept changing").into()))
    }
}

/// Where the sweep continues: which expiry-index partition, and after which item in it.
#[derive(serde::Serialize, serde::Deserialize)]
struct DueToken {
    partition: usize,
    after: Option<HashMap<String, String>>,
}

fn string_key(key: HashMap<String, AttributeValue>) -> Result<HashMap<String, String>, StoreError> {
    key.into_iter()
        .map(|(k, v)| match v {
            AttributeValue::S(s) => Ok((k, s)),
            _ => Err(backend("expiry index key is not all strings")),
        })
        .collect()
}

#[async_trait]
impl ExpiryIndex for DynamoStore {
    async fn due(&self, now: Timestamp, after: Option<&str>, limit: usize) -> Result<DuePage, StoreError> {
        let token: DueToken = match after {
            Some(text) => serde_json::from_str(text).map_err(backend)?,
            None => DueToken {
                partition: 0,
                after: None,
            },
        };
        let partitions = keys::expiry_partitions();
        let Some(partition) = partitions.get(token.partition) else {
            return Ok(DuePage::default());
        };
        let start = token
            .after
            .map(|key| key.into_iter().map(|(k, v)| (k, AttributeValue::S(v))).collect());
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(keys::BY_EXPIRY)
            .key_condition_expression("#shard = :shard AND #at <= :now")
            .expression_attribute_names("#shard", keys::EXPIRY_SHARD)
            .expression_attribute_names("#at", keys::EXPIRY_AT)
            .expression_attribute_values(":shard", AttributeValue::S(partition.clone()))
            .expression_attribute_values(":now", AttributeValue::S(now.to_rfc3339()))
            .limit(i32::try_from(limit).unwrap_or(i32::MAX))
            .set_exclusive_start_key(start)
            .send()
            .await
            .map_err(classify)?;
        let due = out
            .items
            .unwrap_or_default()
            .iter()
            .map(|item| keys::due_of(item).ok_or_else(|| backend("expiry index item with an unexpected key")))
            .collect::<Result<Vec<_>, _>>()?;
        let next = match out.last_evaluated_key {
            Some(key) => Some(DueToken {
                partition: token.partition,
                after: Some(string_key(key)?),
            }),
            None if token.partition + 1 < partitions.len() => Some(DueToken {
                partition: token.partition + 1,
                after: None,
            }),
            None => None,
        };
        let next = next.map(|t| serde_json::to_string(&t)).transpose().map_err(backend)?;
        Ok(DuePage { due, next })
    }
}

#[async_trait]
impl OrderList for DynamoStore {
    async fn orders_of(
        &self,
        user: &UserId,
        limit: usize,
        after: Option<&ListPosition>,
    ) -> Result<(Vec<ListedOrder>, Option<ListPosition>), StoreError> {
        // One more than asked: if it comes back, more remain.
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(keys::BY_OWNER)
            .key_condition_expression("#owner = :owner")
            .expression_attribute_names("#owner", keys::OWNER)
            .expression_attribute_values(":owner", AttributeValue::S(user.to_string()))
            .scan_index_forward(false)
            .limit(i32::try_from(limit + 1).unwrap_or(i32::MAX))
            .set_exclusive_start_key(after.map(|p| keys::owner_position(user, p)))
            .send()
            .await
            .map_err(classify)?;
        let mut orders = Vec::new();
        for mut item in out.items.unwrap_or_default() {
            let open_payment = match item.remove(keys::OPEN_PAYMENT) {
                Some(AttributeValue::M(payment)) => Some(from_item::<Payment>(payment).map_err(backend)?),
                _ => None,
            };
            let order: Order = from_item(item).map_err(backend)?;
            orders.push(ListedOrder { order, open_payment });
        }
        Ok(ListedOrder::page(orders, limit))
    }
}

#[async_trait]
impl Catalog for DynamoStore {
    async fn product(&self, id: &ProductId) -> Result<Option<Product>, StoreError> {
        self.get(keys::product(id)).await
    }

    async fn address(&self, id: &AddressId) -> Result<Option<Address>, StoreError> {
        self.get(keys::address(id)).await
    }

    /// One `BatchGetItem` for every product and the address (a batch holds at most 32 products, well
    /// under the 100 keys a request may name); only keys DynamoDB reports unprocessed are asked again.
    async fn read(
        &self,
        products: &[ProductId],
        address: &AddressId,
    ) -> Result<(Vec<Option<Product>>, Option<Address>), StoreError> {
        let mut wanted: Vec<keys::Key> = products.iter().map(keys::product).collect();
        wanted.push(keys::address(address));
        wanted.dedup();
        let mut found: Vec<HashMap<String, AttributeValue>> = Vec::new();
        let mut attempt = 0;
        while !wanted.is_empty() {
            attempt += 1;
            let request = KeysAndAttributes::builder()
                .set_keys(Some(std::mem::take(&mut wanted)))
                .consistent_read(true)
                .build()
                .map_err(backend)?;
            let out = self
                .client
                .batch_get_item()
                .request_items(&self.table, request)
                .send()
                .await
                .map_err(classify)?;
            found.extend(
                out.responses
                    .and_then(|mut r| r.remove(&self.table))
                    .unwrap_or_default(),
            );
            if let Some(left) = out.unprocessed_keys.and_then(|mut u| u.remove(&self.table)) {
                if attempt >= CONFLICT_ATTEMPTS {
                    return Err(StoreError::Busy("batch read left keys unprocessed".into()));
                }
                wanted = left.keys().to_vec();
                backoff(attempt).await;
            }
        }
        let pk_of = |item: &HashMap<String, AttributeValue>| match item.get(keys::PK) {
            Some(AttributeValue::S(pk)) => pk.clone(),
            _ => String::new(),
        };
        let take = |key: &keys::Key| {
            let pk = match key.get(keys::PK) {
                Some(AttributeValue::S(pk)) => pk.clone(),
                _ => String::new(),
            };
            found.iter().find(|item| pk_of(item) == pk).cloned()
        };
        let products = products
            .iter()
            .map(|id| take(&keys::product(id)).map(from_item).transpose().map_err(backend))
            .collect::<Result<Vec<Option<Product>>, _>>()?;
        let address = take(&keys::address(address))
            .map(from_item)
            .transpose()
            .map_err(backend)?;
        Ok((products, address))
    }
}

#[async_trait]
impl CatalogAdmin for DynamoStore {
    /// Sets every attribute of the product but its reservation ledger, which stays as the store holds
    /// it (0 for a new product).
    async fn upsert_product(&self, product: &Product) -> Result<(), StoreError> {
        let mut attributes: HashMap<String, AttributeValue> = to_item(product).map_err(backend)?;
        attributes.remove(keys::RESERVED);
        let mut sets = vec!["#reserved = if_not_exists(#reserved, :zero)".to_owned()];
        let mut names = HashMap::from([("#reserved".to_owned(), keys::RESERVED.to_owned())]);
        let mut values = HashMap::from([(":zero".to_owned(), AttributeValue::N("0".to_owned()))]);
        for (i, (name, value)) in attributes.into_iter().enumerate() {
            sets.push(format!("#a{i} = :a{i}"));
            names.insert(format!("#a{i}"), name);
            values.insert(format!(":a{i}"), value);
        }
        self.client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(keys::product(&product.id)))
            .update_expression(format!("SET {}", sets.join(", ")))
            .set_expression_attribute_names(Some(names))
            .set_expression_attribute_values(Some(values))
            .send()
            .await
            .map_err(classify)?;
        Ok(())
    }

    async fn upsert_address(&self, address: &Address) -> Result<(), StoreError> {
        self.put(address, keys::address(&address.id)).await
    }
}

#[async_trait]
impl OrderStore for DynamoStore {
    async fn place(&self, placement: &Placement) -> Result<(), PlaceError> {
        let (items, actions) = self.transaction(placement)?;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let sent = self
                .client
                .transact_write_items()
                .set_transact_items(Some(items.clone()))
                .send()
                .await;
            let err = match sent {
                Ok(_) => return Ok(()),
                Err(err) => err,
            };
            let canceled = match &err {
                SdkError::ServiceError(e) => match e.err() {
                    TransactWriteItemsError::TransactionCanceledException(c) => Some(c.cancellation_reasons().to_vec()),
                    _ => None,
                },
                _ => None,
            };
            // Only a transaction cancelled by conflicts is worth another attempt here; a refusal or a fault
            // ends it.
            match canceled {
                Some(reasons) => {
                    if let Some(refusal) = Self::refusal(placement, &actions, &reasons)? {
                        return Err(refusal);
                    }
                    if attempt >= CONFLICT_ATTEMPTS {
                        return Err(StoreError::Busy(format!("transaction conflicted {attempt} times").into()).into());
                    }
                    tracing::warn!(attempt, "transaction cancelled by conflicts; retrying");
                }
                // Throttling, timeouts and connection failures were already retried by the SDK.
                None => return Err(classify(err).into()),
            }
            backoff(attempt).await;
        }
    }

    async fn idempotency_record(
        &self,
        user: &UserId,
        key: &IdempotencyKey,
    ) -> Result<Option<IdempotencyRecord>, StoreError> {
        self.get(keys::idempotency(user, key)).await
    }

    async fn order_with_payments(&self, id: &OrderId) -> Result<Option<OrderWithPayments>, StoreError> {
        let mut items = Vec::new();
        let mut start = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk")
                .expression_attribute_values(":pk", AttributeValue::S(keys::order_partition(id)))
                .consistent_read(true)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(classify)?;
            items.extend(out.items.unwrap_or_default());
            start = out.last_evaluated_key;
            if start.is_none() {
                break;
            }
        }
        let mut order = None;
        let mut payments = Vec::new();
        for item in items {
            let sk = match item.get(keys::SK) {
                Some(AttributeValue::S(sk)) => sk.clone(),
                _ => return Err(backend("item without a string sort key")),
            };
            if sk == keys::ORDER_SK {
                order = Some(from_item::<Order>(item).map_err(backend)?);
            } else if sk.starts_with("PAYMENT#") {
                payments.push(from_item::<Payment>(item).map_err(backend)?);
            }
        }
        Ok(order.map(|order| OrderWithPayments { order, payments }))
    }
}

/// A DynamoDB client from the environment's AWS configuration, pointed at `endpoint` when given
/// (DynamoDB Local, moto).
pub fn client(endpoint: Option<&str>) -> Client {
    Client::new(&crate::aws::config(endpoint))
}

/// A DynamoDB client for the local server: the SDK's default credential chain (profiles included), pointed
/// at `endpoint` when given.
#[cfg(feature = "local")]
pub async fn client_from_default_chain(endpoint: Option<&str>) -> Client {
    Client::new(&crate::aws::config_from_default_chain(endpoint).await)
}
