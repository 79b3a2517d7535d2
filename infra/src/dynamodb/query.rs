//! Reads: the catalogue (one `BatchGetItem` per create), the expiry index and a shopper's orders; and
//! the catalogue's upserts.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes, Put, TransactWriteItem, Update};
use domain::catalog::{Address, Product};
use domain::ids::{AddressId, ProductId};
use domain::order::Order;
use domain::payment::Payment;
use domain::ports::{
    Catalog, CatalogAdmin, DuePage, ExpiryIndex, ListPosition, ListedOrder, OrderList, StoreError, WorkIndex, WorkPage,
};
use domain::refund::WorkKind;
use domain::stock::Rebalanced;
use domain::{Timestamp, UserId};
use serde_dynamo::aws_sdk_dynamodb_1::from_item;

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
    /// The product item; for a sharded product, with the sum of its shards as its stock.
    async fn product(&self, id: &ProductId) -> Result<Option<Product>, StoreError> {
        let product: Option<Product> = self.get(keys::product(id)).await?;
        match product {
            Some(product) => Ok(Some(self.summed(product).await?)),
            None => Ok(None),
        }
    }

    /// One consistent `BatchGetItem` of the product's shard items (at most 32 keys), all of them if the
    /// product has more than `shards` now. In a flash sale
    /// every refused buyer reads every shard, so keys left unprocessed (a shard's read capacity spent)
    /// are asked again more patiently than other reads: up to [`BULK_ATTEMPTS`] times.
    async fn shard_stock(&self, product: &ProductId, shards: u16) -> Result<Vec<u32>, StoreError> {
        let found = self
            .batch_get_patiently(
                (0..shards).map(|k| keys::stock_shard(product, k)).collect(),
                BULK_ATTEMPTS,
            )
            .await?;
        // The count asked may come from a cached description: if the product (shard 0) now has more
        // shards, read them all.
        let now = found_item(&found, &keys::product(product))
            .and_then(|item| match item.get("shards") {
                Some(AttributeValue::N(n)) => n.parse::<u16>().ok(),
                _ => None,
            })
            .unwrap_or(1);
        if now > shards {
            return Box::pin(self.shard_stock(product, now)).await;
        }
        (0..shards)
            .map(|k| {
                let item = found_item(&found, &keys::stock_shard(product, k))
                    .ok_or_else(|| backend(format!("product {product} has no stock shard {k}")))?;
                match item.get("stock") {
                    Some(AttributeValue::N(n)) => n.parse::<u32>().map_err(backend),
                    _ => Err(backend(format!("stock shard {k} of {product} holds no figure"))),
                }
            })
            .collect()
    }

    async fn address(&self, id: &AddressId) -> Result<Option<Address>, StoreError> {
        self.get(keys::address(id)).await
    }

    /// One `BatchGetItem` for every product and the address (a batch holds at most 32 products, well
    /// under the 100 keys a request may name); only keys DynamoDB reports unprocessed are asked again.
    /// A sharded product's `stock` here is its shard 0's figure alone: placing reads no figure (its
    /// write checks the shards it takes from), so this read stays one request.
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
                let product: Option<Product> = found_item(&found, &keys::product(id))
                    .map(from_item)
                    .transpose()
                    .map_err(backend)?;
                products.push(match product {
                    Some(product) => Some(self.summed(product).await?),
                    None => None,
                });
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
    /// A sharded product with its shards' sum as its stock (the product item holds shard 0's figure).
    async fn summed(&self, mut product: Product) -> Result<Product, StoreError> {
        if product.is_sharded() {
            product.stock = self.shard_stock(&product.id, product.shards).await?.iter().sum();
        }
        Ok(product)
    }

    /// The items that set a product: the product item (with shard 0's figure) and, for a sharded
    /// product, an item per further shard with a copy of its description and its figure.
    fn product_items(product: &Product) -> Result<Vec<HashMap<String, AttributeValue>>, StoreError> {
        let figures = domain::stock::split(product.stock, product.shards);
        figures
            .iter()
            .enumerate()
            .map(|(k, figure)| {
                let shard = u16::try_from(k).map_err(backend)?;
                let copy = Product {
                    stock: *figure,
                    ..product.clone()
                };
                let extra = (k > 0).then(|| (keys::SHARD, k.to_string()));
                super::item(&copy, keys::stock_shard(&product.id, shard), extra)
            })
            .collect()
    }

    /// The items of `wanted` (at most 100 keys) with one consistent `BatchGetItem`; only keys DynamoDB
    /// reports unprocessed are asked again, with backoff.
    async fn batch_get(&self, wanted: Vec<keys::Key>) -> Result<Vec<HashMap<String, AttributeValue>>, StoreError> {
        self.batch_get_patiently(wanted, CONFLICT_ATTEMPTS).await
    }

    /// [`Self::batch_get`], asking for unprocessed keys up to `attempts` times; when more than
    /// [`CONFLICT_ATTEMPTS`], also after a request throttled whole.
    async fn batch_get_patiently(
        &self,
        mut wanted: Vec<keys::Key>,
        attempts: u32,
    ) -> Result<Vec<HashMap<String, AttributeValue>>, StoreError> {
        let mut found = Vec::new();
        let mut attempt = 0;
        while !wanted.is_empty() {
            attempt += 1;
            let request = KeysAndAttributes::builder()
                .set_keys(Some(wanted.clone()))
                .consistent_read(true)
                .build()
                .map_err(backend)?;
            let sent = self
                .client
                .batch_get_item()
                .request_items(&self.table, request)
                .send()
                .await;
            let out = match sent.map_err(classify) {
                Ok(out) => out,
                // Every key throttled (the SDK already tried again): wait and ask again while attempts last.
                Err(StoreError::Busy(_)) if attempt < attempts && attempts > CONFLICT_ATTEMPTS => {
                    backoff(attempt).await;
                    continue;
                }
                Err(err) => return Err(err),
            };
            wanted.clear();
            found.extend(
                out.responses
                    .and_then(|mut r| r.remove(&self.table))
                    .unwrap_or_default(),
            );
            if let Some(left) = out.unprocessed_keys.and_then(|mut u| u.remove(&self.table)) {
                if attempt >= attempts {
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
    /// it (0 for a new product), in one transaction with a sharded product's further shards (its stock
    /// split over them), so no order sees one shard's old price beside another's new.
    async fn upsert_product(&self, product: &Product) -> Result<(), StoreError> {
        let mut items = Self::product_items(product)?;
        let mut attributes: HashMap<String, AttributeValue> = items.remove(0);
        attributes.remove(keys::RESERVED);
        attributes.remove(keys::PK);
        attributes.remove(keys::SK);
        attributes.insert("shards".to_owned(), AttributeValue::N(product.shards.to_string()));
        let mut sets = vec!["#reserved = if_not_exists(#reserved, :zero)".to_owned()];
        let mut names = HashMap::from([("#reserved".to_owned(), keys::RESERVED.to_owned())]);
        let mut values = HashMap::from([(":zero".to_owned(), AttributeValue::N("0".to_owned()))]);
        for (i, (name, value)) in attributes.into_iter().enumerate() {
            sets.push(format!("#a{i} = :a{i}"));
            names.insert(format!("#a{i}"), name);
            values.insert(format!(":a{i}"), value);
        }
        let update = Update::builder()
            .table_name(&self.table)
            .set_key(Some(keys::product(&product.id)))
            .update_expression(format!("SET {}", sets.join(", ")))
            .set_expression_attribute_names(Some(names))
            .set_expression_attribute_values(Some(values))
            .build()
            .map_err(backend)?;
        let mut actions = vec![TransactWriteItem::builder().update(update).build()];
        for item in items {
            let put = Put::builder()
                .table_name(&self.table)
                .set_item(Some(item))
                .build()
                .map_err(backend)?;
            actions.push(TransactWriteItem::builder().put(put).build());
        }
        self.client
            .transact_write_items()
            .set_transact_items(Some(actions))
            .send()
            .await
            .map_err(classify)?;
        Ok(())
    }

    async fn upsert_address(&self, address: &Address) -> Result<(), StoreError> {
        self.put(address, keys::address(&address.id)).await
    }

    async fn create_products(&self, products: &[Product]) -> Result<(), StoreError> {
        let mut items = Vec::with_capacity(products.len());
        for product in products {
            items.extend(Self::product_items(product)?);
        }
        self.batch_put(items).await
    }

    /// Reads the shards' figures, then writes the even split only where every shard still holds what was
    /// read (one transaction); while an order moved a figure in between, reads and tries again.
    async fn rebalance_stock(&self, product: &ProductId) -> Result<Option<Rebalanced>, StoreError> {
        let Some(held) = self.get::<Product>(keys::product(product)).await? else {
            return Ok(None);
        };
        for attempt in 1..=super::UPDATE_ATTEMPTS {
            let before = self.shard_stock(product, held.shards).await?;
            let after = domain::stock::rebalance(&before);
            let mut items = Vec::with_capacity(before.len());
            for (k, (old, new)) in before.iter().zip(&after).enumerate() {
                let update = Update::builder()
                    .table_name(&self.table)
                    .set_key(Some(keys::stock_shard(product, u16::try_from(k).map_err(backend)?)))
                    .update_expression("SET stock = :new")
                    .condition_expression("stock = :old")
                    .expression_attribute_values(":old", AttributeValue::N(old.to_string()))
                    .expression_attribute_values(":new", AttributeValue::N(new.to_string()))
                    .build()
                    .map_err(backend)?;
                items.push(TransactWriteItem::builder().update(update).build());
            }
            match self
                .client
                .transact_write_items()
                .set_transact_items(Some(items))
                .send()
                .await
            {
                Ok(_) => return Ok(Some(Rebalanced { before, after })),
                Err(SdkError::ServiceError(e))
                    if matches!(e.err(), TransactWriteItemsError::TransactionCanceledException(_)) =>
                {
                    tracing::info!(product_id = %product, attempt, "a shard moved while rebalancing; reading again");
                    backoff(attempt).await;
                }
                Err(err) => return Err(classify(err)),
            }
        }
        Err(StoreError::Busy(format!("the shards of {product} kept moving").into()))
    }

    async fn upsert_addresses(&self, addresses: &[Address]) -> Result<(), StoreError> {
        let items = addresses
            .iter()
            .map(|address| super::item(address, keys::address(&address.id), []))
            .collect::<Result<Vec<_>, _>>()?;
        self.batch_put(items).await
    }
}
