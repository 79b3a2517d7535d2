//! Changes to an existing order: the order put only at the version judged, and a refused change
//! reported as found (the version moved, the key's holder) for the domain to judge.

use async_trait::async_trait;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem, Update};
use domain::change::{Change, ChangeFound, Judge, OrderWithPayments, Refused, Restock, Updated};
use domain::ids::{OrderId, PaymentId};
use domain::ports::{OrderStore, OrderUpdates, StoreError};
use serde_dynamo::aws_sdk_dynamodb_1::from_item;

use super::{backend, backoff, classify, is_transient, keys, order_item, payment_item, DynamoStore, UPDATE_ATTEMPTS};

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
            &format!("{} AND (attribute_not_exists(version) OR version = :v)", keys::EXISTS)
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
                .condition_expression(keys::EXISTS)
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
            let updates = match restock {
                Restock::Stock(product, takes) => takes
                    .iter()
                    .map(|take| {
                        Update::builder()
                            .set_key(Some(keys::stock_shard(product, take.shard)))
                            .update_expression("SET stock = stock + :q")
                            .condition_expression(keys::EXISTS)
                            .expression_attribute_values(":q", AttributeValue::N(take.quantity.to_string()))
                    })
                    .collect(),
                Restock::Reservation(product, quantity) => vec![Update::builder()
                    .set_key(Some(keys::product(product)))
                    .update_expression("ADD #reserved :release")
                    .condition_expression("#reserved >= :q")
                    .expression_attribute_names("#reserved", keys::RESERVED)
                    .expression_attribute_values(":q", AttributeValue::N(quantity.get().to_string()))
                    .expression_attribute_values(":release", AttributeValue::N(format!("-{}", quantity.get())))],
            };
            for update in updates {
                let update = update.table_name(&self.table).build().map_err(backend)?;
                items.push(TransactWriteItem::builder().update(update).build());
            }
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
        self.update_starting(id, None, judge).await
    }

    async fn update_from(&self, known: OrderWithPayments, judge: Judge) -> Result<Updated, StoreError> {
        let id = known.order.id.clone();
        self.update_starting(&id, Some(known), judge).await
    }
}

impl DynamoStore {
    /// Judges `known` first if given, else the order as read; then, while another writer gets there
    /// first, the order as read again.
    async fn update_starting(
        &self,
        id: &OrderId,
        mut known: Option<OrderWithPayments>,
        judge: Judge,
    ) -> Result<Updated, StoreError> {
        for attempt in 1..=UPDATE_ATTEMPTS {
            let state = match known.take() {
                Some(state) => state,
                None => match self.order_with_payments(id).await? {
                    Some(state) => state,
                    None => return Ok(Updated::NotFound),
                },
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
