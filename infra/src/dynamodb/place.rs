//! Placing orders: one `TransactWriteItems` per create request, and its refusal read from the
//! cancellation reasons (the `ALL_OLD` items) and judged by the domain.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeValue, CancellationReason, ConditionCheck, Put, ReturnValuesOnConditionCheckFailure, TransactWriteItem,
    Update,
};
use domain::catalog::Product;
use domain::change::OrderWithPayments;
use domain::idempotency::{IdempotencyKey, IdempotencyRecord, KeyUse};
use domain::ids::OrderId;
use domain::order::Order;
use domain::payment::Payment;
use domain::placement::{LineCheck, NewOrder, Placement};
use domain::ports::{OrderStore, PlaceError, StoreError};
use domain::stock::ShardTake;
use domain::{StockSource, UserId};
use serde_dynamo::aws_sdk_dynamodb_1::from_item;

use super::{
    backend, backoff, classify, is_transient, item, keys, order_item, payment_item, DynamoStore, CONFLICT_ATTEMPTS,
};

/// What each action of the transaction is, so a cancellation reason can be traced to its line.
enum Action {
    Address,
    Product(usize),
    /// A sharded line's take from one shard.
    Take(usize, ShardTake),
    Record,
    Idempotency,
}

impl DynamoStore {
    /// A sharded line's action on one shard it takes from: decrement that shard's item if it still holds
    /// the take and its copy of the product is as the order was priced.
    fn take_action(&self, line: &NewOrder, take: ShardTake) -> Result<TransactWriteItem, StoreError> {
        let order = &line.order;
        let update = Update::builder()
            .table_name(&self.table)
            .set_key(Some(keys::stock_shard(&order.product_id, take.shard)))
            .update_expression("SET stock = stock - :q")
            .condition_expression("active = :active AND price = :price AND stock_source = :source AND stock >= :q")
            .expression_attribute_values(":active", AttributeValue::Bool(true))
            .expression_attribute_values(":price", AttributeValue::S(order.unit_price.to_string()))
            .expression_attribute_values(":source", AttributeValue::S(order.stock_source.as_str().to_owned()))
            .expression_attribute_values(":q", AttributeValue::N(take.quantity.to_string()))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .build()
            .map_err(backend)?;
        Ok(TransactWriteItem::builder().update(update).build())
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
    pub(super) fn idempotency_put(&self, record: &IdempotencyRecord) -> Result<TransactWriteItem, StoreError> {
        let mut item = item(record, keys::idempotency(&record.user_id, &record.key), [])?;
        item.insert(
            keys::TTL.to_owned(),
            AttributeValue::N(record.expires_at.unix_seconds().to_string()),
        );
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression(format!("{} OR expires_at <= :now", keys::ABSENT))
            .expression_attribute_values(":now", AttributeValue::S(record.created_at.to_rfc3339()))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .build()
            .map_err(backend)?;
        Ok(TransactWriteItem::builder().put(put).build())
    }

    pub(super) fn put_new(&self, item: HashMap<String, AttributeValue>) -> Result<TransactWriteItem, StoreError> {
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression(keys::ABSENT)
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
            if line.is_sharded() {
                for take in line.order.stock_takes() {
                    items.push(self.take_action(line, take)?);
                    actions.push(Action::Take(i, take));
                }
            } else {
                items.push(self.product_action(line)?);
                actions.push(Action::Product(i));
            }
            items.push(self.put_new(order_item(&line.order, Some(&line.payment))?)?);
            actions.push(Action::Record);
            items.push(self.put_new(payment_item(&line.payment)?)?);
            actions.push(Action::Record);
        }
        Ok((items, actions))
    }

    /// Turns the cancellation reasons into the placement's outcome as the domain judges it: `Ok` when
    /// the write had landed already (an earlier attempt whose answer was lost), else its refusal; when
    /// only conflicts (or throttling) cancelled it, a sharded line's contended shard is reported for
    /// other shards to be tried, else `None`: the same write is worth another try.
    fn refusal(
        placement: &Placement,
        actions: &[Action],
        reasons: &[CancellationReason],
    ) -> Result<Option<Result<(), PlaceError>>, StoreError> {
        let mut checks = vec![LineCheck::Ok; placement.orders.len()];
        let mut address_ok = true;
        let mut refused = false;
        let mut landed = false;
        let mut key_use = KeyUse::Fresh;
        let mut contended = Vec::new();
        for (action, reason) in actions.iter().zip(reasons) {
            match reason.code() {
                None | Some("None") => continue,
                Some("ConditionalCheckFailed") => refused = true,
                Some(code) if is_transient(Some(code)) => {
                    if let Action::Take(i, _) = action {
                        contended.push(*i);
                    }
                    continue;
                }
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
                Action::Take(i, take) => {
                    let current: Option<Product> = reason
                        .item()
                        .map(|item| from_item(item.clone()))
                        .transpose()
                        .map_err(backend)?;
                    let check = placement.orders[*i].check_take(*take, current.as_ref());
                    if check == LineCheck::Ok {
                        return Err(backend("shard condition failed without a returned item"));
                    }
                    checks[*i] = checks[*i].graver(check);
                }
                Action::Record => landed = true,
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
            return Ok(placement.contention(&contended).map(Err));
        }
        Ok(Some(placement.refusal(landed, key_use, &checks, address_ok)))
    }
}

/// The `ClientRequestToken` of one attempt of a placement: DynamoDB answers a request sent again with
/// the same token (the SDK's own retries of an attempt whose answer was lost) with success, without
/// applying it twice, for ten minutes. Each of the adapter's own attempts (after a conflict, which
/// applied nothing) gets its own. The placement's first order id is unique to it; its 32 hex digits and
/// the attempt number fit the token's 36 characters.
fn request_token(placement: &Placement, attempt: u32) -> String {
    let id = placement.orders.first().map_or("", |line| line.order.id.as_str());
    let digits = id.rsplit('_').next().unwrap_or(id);
    format!("{digits}-{attempt}")
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
                .client_request_token(request_token(placement, attempt))
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
                    match Self::refusal(placement, &actions, &reasons)? {
                        // A busy shard is tried again like any conflict; one that stays busy is left for
                        // the use case to try other shards.
                        Some(Err(PlaceError::ShardsContended(_))) if attempt < CONFLICT_ATTEMPTS => {}
                        Some(judged) => return judged,
                        None => {}
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
            } else if keys::is_payment(&sk) {
                payments.push(from_item::<Payment>(item).map_err(backend)?);
            }
        }
        Ok(order.map(|order| OrderWithPayments { order, payments }))
    }
}
