//! The DynamoDB store: one table, one `TransactWriteItems` per placement, refusals read from the
//! transaction's cancellation reasons.

pub mod keys;
#[cfg(feature = "local")]
pub mod schema;

mod place;
mod query;
mod update;

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_dynamodb::Client;
use domain::error::BoxError;
use domain::order::Order;
use domain::payment::Payment;
use domain::ports::StoreError;
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
