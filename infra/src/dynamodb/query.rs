//! Reads: the catalogue (one `BatchGetItem` per create), the expiry index and a shopper's orders; and
//! the catalogue's upserts.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes};
use domain::catalog::{Address, Product};
use domain::ids::{AddressId, ProductId};
use domain::order::Order;
use domain::payment::Payment;
use domain::ports::{
    Catalog, CatalogAdmin, DuePage, ExpiryIndex, ListPosition, ListedOrder, OrderList, StoreError, WorkIndex, WorkPage,
};
use domain::refund::WorkKind;
use domain::{Timestamp, UserId};
use serde_dynamo::aws_sdk_dynamodb_1::{from_item, to_item};

use super::{backend, backoff, classify, keys, DynamoStore, CONFLICT_ATTEMPTS};

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
impl WorkIndex for DynamoStore {
    async fn work(&self, kind: WorkKind, after: Option<&str>, limit: usize) -> Result<WorkPage, StoreError> {
        let start = match after {
            Some(text) => {
                let key: HashMap<String, String> = serde_json::from_str(text).map_err(backend)?;
                Some(key.into_iter().map(|(k, v)| (k, AttributeValue::S(v))).collect())
            }
            None => None,
        };
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(keys::BY_WORK)
            .key_condition_expression("#work = :kind")
            .expression_attribute_names("#work", keys::WORK)
            .expression_attribute_values(":kind", AttributeValue::S(kind.as_str().to_owned()))
            .limit(i32::try_from(limit).unwrap_or(i32::MAX))
            .set_exclusive_start_key(start)
            .send()
            .await
            .map_err(classify)?;
        let items = out
            .items
            .unwrap_or_default()
            .iter()
            .map(|item| keys::work_of(item).ok_or_else(|| backend("work index item with an unexpected key")))
            .collect::<Result<Vec<_>, _>>()?;
        let next = match out.last_evaluated_key {
            Some(key) => Some(serde_json::to_string(&string_key(key)?).map_err(backend)?),
            None => None,
        };
        Ok(WorkPage { items, next })
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
        let found = self.batch_get(wanted).await?;
        let products = products
            .iter()
            .map(|id| {
                found_item(&found, &keys::product(id))
                    .map(from_item)
                    .transpose()
                    .map_err(backend)
            })
            .collect::<Result<Vec<Option<Product>>, _>>()?;
        let address = found_item(&found, &keys::address(address))
            .map(from_item)
            .transpose()
            .map_err(backend)?;
        Ok((products, address))
    }

    /// `BatchGetItem`s of 100 keys (the most a request may name).
    async fn products(&self, ids: &[ProductId]) -> Result<Vec<Option<Product>>, StoreError> {
        let mut products = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(BATCH_GET_KEYS) {
            let found = self.batch_get(chunk.iter().map(keys::product).collect()).await?;
            for id in chunk {
                products.push(
                    found_item(&found, &keys::product(id))
                        .map(from_item)
                        .transpose()
                        .map_err(backend)?,
                );
            }
        }
        Ok(products)
    }
}

/// The most keys one `BatchGetItem` may name.
const BATCH_GET_KEYS: usize = 100;
/// The most items one `BatchWriteItem` may carry.
const BATCH_WRITE_ITEMS: usize = 25;
/// How often a bulk request is sent again for what DynamoDB left unprocessed (throttling), with
/// backoff, before the load answers busy.
const BULK_ATTEMPTS: u32 = 8;

/// The item among `found` with the partition key of `key`.
fn found_item(found: &[HashMap<String, AttributeValue>], key: &keys::Key) -> Option<HashMap<String, AttributeValue>> {
    let pk_of = |item: &HashMap<String, AttributeValue>| match item.get(keys::PK) {
        Some(AttributeValue::S(pk)) => Some(pk.clone()),
        _ => None,
    };
    let pk = pk_of(key)?;
    found.iter().find(|item| pk_of(item).as_ref() == Some(&pk)).cloned()
}

impl DynamoStore {
    /// The items of `wanted` (at most 100 keys) with one consistent `BatchGetItem`; only keys DynamoDB
    /// reports unprocessed are asked again, with backoff.
    async fn batch_get(&self, mut wanted: Vec<keys::Key>) -> Result<Vec<HashMap<String, AttributeValue>>, StoreError> {
        let mut found = Vec::new();
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
        Ok(found)
    }

    /// Puts `items` with `BatchWriteItem`s of 25; what DynamoDB leaves unprocessed (throttling) is sent
    /// again with backoff, up to [`BULK_ATTEMPTS`] times a batch.
    async fn batch_put(&self, items: Vec<HashMap<String, AttributeValue>>) -> Result<(), StoreError> {
        use aws_sdk_dynamodb::types::{PutRequest, WriteRequest};
        for chunk in items.chunks(BATCH_WRITE_ITEMS) {
            let mut pending = chunk
                .iter()
                .map(|item| {
                    let put = PutRequest::builder()
                        .set_item(Some(item.clone()))
                        .build()
                        .map_err(backend)?;
                    Ok(WriteRequest::builder().put_request(put).build())
                })
                .collect::<Result<Vec<WriteRequest>, StoreError>>()?;
            let mut attempt = 0;
            while !pending.is_empty() {
                attempt += 1;
                let out = self
                    .client
                    .batch_write_item()
                    .request_items(&self.table, std::mem::take(&mut pending))
                    .send()
                    .await
                    .map_err(classify)?;
                if let Some(left) = out.unprocessed_items.and_then(|mut u| u.remove(&self.table)) {
                    if attempt >= BULK_ATTEMPTS {
                        return Err(StoreError::Busy("batch write left items unprocessed".into()));
                    }
                    pending = left;
                    backoff(attempt).await;
                }
            }
        }
        Ok(())
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

    async fn create_products(&self, products: &[Product]) -> Result<(), StoreError> {
        let items = products
            .iter()
            .map(|product| super::item(product, keys::product(&product.id), []))
            .collect::<Result<Vec<_>, _>>()?;
        self.batch_put(items).await
    }

    async fn upsert_addresses(&self, addresses: &[Address]) -> Result<(), StoreError> {
        let items = addresses
            .iter()
            .map(|address| super::item(address, keys::address(&address.id), []))
            .collect::<Result<Vec<_>, _>>()?;
        self.batch_put(items).await
    }
}
