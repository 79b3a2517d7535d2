//! The warm function's catalogue cache (docs/api.md §11): product descriptions for 30 minutes and
//! addresses for an hour, as the seed keeps them, bounded in size. Stock is never cached: every write
//! re-checks price, source, activity and address owner, so a stale entry can only make a write fail;
//! the use case then forgets the entry and reads again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use domain::catalog::{Address, Product};
use domain::ids::{AddressId, ProductId};
use domain::ports::{Catalog, Clock, StoreError};
use domain::Timestamp;

/// How long a product description is trusted.
pub const PRODUCT_TTL_MINUTES: u32 = 30;
/// How long an address is trusted.
pub const ADDRESS_TTL_MINUTES: u32 = 60;
/// The most entries of each kind kept; a full cache first drops expired entries, then the oldest.
pub const CAPACITY: usize = 1024;

struct Entries<K, V> {
    map: HashMap<K, (V, Timestamp)>,
}

impl<K: std::hash::Hash + Eq + Clone, V: Clone> Entries<K, V> {
    fn new() -> Self {
        Entries { map: HashMap::new() }
    }

    fn get(&self, key: &K, now: Timestamp) -> Option<V> {
        self.map
            .get(key)
            .filter(|(_, until)| now < *until)
            .map(|(v, _)| v.clone())
    }

    fn put(&mut self, key: K, value: V, until: Timestamp, now: Timestamp) {
        if self.map.len() >= CAPACITY && !self.map.contains_key(&key) {
            self.map.retain(|_, (_, t)| now < *t);
            if self.map.len() >= CAPACITY {
                if let Some(oldest) = self.map.iter().min_by_key(|(_, (_, t))| *t).map(|(k, _)| k.clone()) {
                    self.map.remove(&oldest);
                }
            }
        }
        self.map.insert(key, (value, until));
    }
}

struct State {
    products: Entries<ProductId, Product>,
    addresses: Entries<AddressId, Address>,
}

/// A catalogue that answers from memory what it read recently, and asks `inner` the rest in one read.
pub struct CachedCatalog {
    inner: Arc<dyn Catalog>,
    clock: Arc<dyn Clock>,
    state: Mutex<State>,
}

impl CachedCatalog {
    /// A cache in front of `inner`, timed by `clock`.
    pub fn new(inner: Arc<dyn Catalog>, clock: Arc<dyn Clock>) -> Self {
        CachedCatalog {
            inner,
            clock,
            state: Mutex::new(State {
                products: Entries::new(),
                addresses: Entries::new(),
            }),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn remember(&self, products: &[Product], address: Option<&Address>) {
        let now = self.clock.now();
        let mut state = self.state();
        for product in products {
            // A description, never stock: nothing may decide on a cached stock figure.
            let description = Product {
                stock: 0,
                reserved: 0,
                ..product.clone()
            };
            state.products.put(
                product.id.clone(),
                description,
                now.plus_minutes(PRODUCT_TTL_MINUTES),
                now,
            );
        }
        if let Some(address) = address {
            state.addresses.put(
                address.id.clone(),
                address.clone(),
                now.plus_minutes(ADDRESS_TTL_MINUTES),
                now,
            );
        }
    }
}

#[async_trait]
impl Catalog for CachedCatalog {
    async fn product(&self, id: &ProductId) -> Result<Option<Product>, StoreError> {
        self.inner.product(id).await
    }

    async fn address(&self, id: &AddressId) -> Result<Option<Address>, StoreError> {
        self.inner.address(id).await
    }

    async fn shard_stock(&self, product: &ProductId, shards: u16) -> Result<Vec<u32>, StoreError> {
        self.inner.shard_stock(product, shards).await
    }

    async fn read(
        &self,
        products: &[ProductId],
        address: &AddressId,
    ) -> Result<(Vec<Option<Product>>, Option<Address>), StoreError> {
        let now = self.clock.now();
        let (cached, cached_address) = {
            let state = self.state();
            let cached: Vec<Option<Product>> = products.iter().map(|id| state.products.get(id, now)).collect();
            (cached, state.addresses.get(address, now))
        };
        if cached.iter().all(Option::is_some) && cached_address.is_some() {
            return Ok((cached, cached_address));
        }
        // Anything missing: one read of what is missing and the address. Products held are not read
        // again: in a flash sale every buyer brings a new address, and the product's item (shard 0 of
        // its stock) must not take a read for each of them (docs/api.md §19).
        let missing: Vec<ProductId> = products
            .iter()
            .zip(&cached)
            .filter(|(_, held)| held.is_none())
            .map(|(id, _)| id.clone())
            .collect();
        let (fresh, fresh_address) = self.inner.read(&missing, address).await?;
        let found: Vec<Product> = fresh.iter().flatten().cloned().collect();
        self.remember(&found, fresh_address.as_ref());
        let mut fresh = fresh.into_iter();
        let merged = cached
            .into_iter()
            .map(|held| held.or_else(|| fresh.next().flatten()))
            .collect();
        Ok((merged, fresh_address))
    }

    fn forget(&self, products: &[ProductId], address: Option<&AddressId>) {
        let mut state = self.state();
        for id in products {
            state.products.map.remove(id);
        }
        if let Some(address) = address {
            state.addresses.map.remove(address);
        }
        drop(state);
        self.inner.forget(products, address);
    }
}
