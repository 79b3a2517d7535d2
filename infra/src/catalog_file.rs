//! The catalogue file the local server and operators load products and addresses from:
//!
//! ```json
//! {"products":  [{"id": "p1", "name": "冰箱", "price": "2999.00", "stock": 10, "stock_source": "local", "active": true}],
//!  "addresses": [{"id": "a1", "user_id": "u1", "name": "张三", "phone": "13800000000", "city": "青岛"}]}
//! ```
//!
//! `stock_source` defaults to `local`, `active` to `true`, `shards` to 1 (a hot product's stock split
//! over that many stock items, docs/api.md §19); an address's fields other than `id` and
//! `user_id` are kept as given. Loading upserts: existing entries are replaced, stock included.

use domain::catalog::{Address, Product, StockSource};
use domain::ids::{AddressId, ProductId, UserId};
use domain::money::Money;
use domain::ports::{Catalog, CatalogAdmin, StoreError};
use serde::{Deserialize, Serialize};

/// A catalogue file's content.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogFile {
    /// Products to upsert.
    #[serde(default)]
    pub products: Vec<ProductEntry>,
    /// Addresses to upsert.
    #[serde(default)]
    pub addresses: Vec<AddressEntry>,
}

/// One product in the file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProductEntry {
    id: ProductId,
    name: String,
    price: Money,
    #[serde(default)]
    stock: u32,
    #[serde(default)]
    stock_source: StockSource,
    #[serde(default = "yes")]
    active: bool,
    /// How many stock items a hot product's stock is split across (docs/api.md §19).
    #[serde(default = "one")]
    shards: u16,
}

fn one() -> u16 {
    1
}

impl ProductEntry {
    /// Why the entry's `shards` cannot be had, if it cannot.
    fn shards_refusal(&self) -> Option<String> {
        let max = domain::stock::MAX_SHARDS;
        if !(1..=max).contains(&self.shards) {
            return Some(format!("shards must be 1 to {max}, not {}", self.shards));
        }
        if self.shards > 1 && self.stock_source != StockSource::Local {
            return Some("only locally stocked products can have their stock sharded".to_owned());
        }
        None
    }
}

fn yes() -> bool {
    true
}

/// One address in the file.
#[derive(Debug, Clone, Deserialize)]
pub struct AddressEntry {
    id: AddressId,
    user_id: UserId,
    #[serde(flatten)]
    fields: serde_json::Map<String, serde_json::Value>,
}

/// Why a catalogue could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// The file is not a valid catalogue.
    #[error("catalogue is not valid: {0}")]
    Invalid(#[from] serde_json::Error),
    /// A product's price is above the highest unit price (docs/api.md §3): 999 units of it would
    /// total an amount the service could not read back.
    #[error("catalogue is not valid: product {product} costs {price}, above the highest unit price {max}")]
    PriceTooHigh {
        /// The product.
        product: ProductId,
        /// Its price.
        price: Money,
        /// The highest unit price.
        max: Money,
    },
    /// A product's `shards` cannot be had: outside 1..=32, on supplier-held stock, or fewer than the
    /// store already holds (orders hold units in every shard).
    #[error("catalogue is not valid: product {product}: {reason}")]
    Shards {
        /// The product.
        product: ProductId,
        /// Why.
        reason: String,
    },
    /// The store refused a write.
    #[error("catalogue could not be stored")]
    Store(#[from] StoreError),
}

impl CatalogFile {
    /// Parses catalogue JSON (ids, prices and stock sources are checked here).
    pub fn parse(text: &str) -> Result<Self, CatalogError> {
        let file: CatalogFile = serde_json::from_str(text)?;
        let max = domain::money::MAX_UNIT_PRICE;
        if let Some(p) = file.products.iter().find(|p| p.price > max) {
            return Err(CatalogError::PriceTooHigh {
                product: p.id.clone(),
                price: p.price,
                max,
            });
        }
        if let Some((p, reason)) = file.products.iter().find_map(|p| p.shards_refusal().map(|r| (p, r))) {
            return Err(CatalogError::Shards {
                product: p.id.clone(),
                reason,
            });
        }
        Ok(file)
    }

    /// The products as the domain sees them.
    pub fn products(&self) -> impl Iterator<Item = Product> + '_ {
        self.products.iter().map(|p| Product {
            id: p.id.clone(),
            name: p.name.clone(),
            price: p.price,
            stock: p.stock,
            stock_source: p.stock_source,
            active: p.active,
            // The ledger is the store's: an upsert keeps what it holds (docs/api.md §10).
            reserved: 0,
            shards: p.shards,
        })
    }

    /// The addresses as the domain sees them.
    pub fn addresses(&self) -> impl Iterator<Item = Address> + '_ {
        self.addresses.iter().map(|a| Address {
            id: a.id.clone(),
            user_id: a.user_id.clone(),
            fields: a.fields.clone(),
        })
    }

    /// Parses catalogue JSON entry by entry, for the loader: the file must be a catalogue object (else
    /// the whole file is refused), but an entry that does not parse, a price above the highest unit
    /// price, or an id given twice is refused alone, with its reason, and the rest kept.
    pub fn parse_entries(text: &str) -> Result<(Self, Vec<Refusal>), CatalogError> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Raw {
            #[serde(default)]
            products: Vec<serde_json::Value>,
            #[serde(default)]
            addresses: Vec<serde_json::Value>,
        }
        let value: serde_json::Value = serde_json::from_str(text)?;
        if !value.is_object() {
            return Err(CatalogError::Invalid(serde::de::Error::custom(
                "a catalogue is an object with \"products\" and \"addresses\"",
            )));
        }
        let raw: Raw = serde_json::from_value(value)?;
        let max = domain::money::MAX_UNIT_PRICE;
        let mut refused = Vec::new();
        let mut file = CatalogFile {
            products: Vec::with_capacity(raw.products.len()),
            addresses: Vec::with_capacity(raw.addresses.len()),
        };
        let named = |value: &serde_json::Value| match value.get("id") {
            Some(serde_json::Value::String(id)) => Some(id.clone()),
            Some(other) => Some(other.to_string()),
            None => None,
        };
        let mut seen = std::collections::HashSet::new();
        for (entry, value) in raw.products.into_iter().enumerate() {
            let id = named(&value);
            let reason = match serde_json::from_value::<ProductEntry>(value) {
                Err(err) => Some(err.to_string()),
                Ok(p) if p.price > max => Some(format!("costs {}, above the highest unit price {max}", p.price)),
                Ok(p) if p.shards_refusal().is_some() => p.shards_refusal(),
                Ok(p) if !seen.insert(p.id.clone()) => Some("the same id as an earlier product".to_owned()),
                Ok(p) => {
                    file.products.push(p);
                    None
                }
            };
            if let Some(reason) = reason {
                refused.push(Refusal {
                    kind: "product",
                    entry,
                    id,
                    reason,
                });
            }
        }
        let mut seen = std::collections::HashSet::new();
        for (entry, value) in raw.addresses.into_iter().enumerate() {
            let id = named(&value);
            let reason = match serde_json::from_value::<AddressEntry>(value) {
                Err(err) => Some(err.to_string()),
                Ok(a) if !seen.insert(a.id.clone()) => Some("the same id as an earlier address".to_owned()),
                Ok(a) => {
                    file.addresses.push(a);
                    None
                }
            };
            if let Some(reason) = reason {
                refused.push(Refusal {
                    kind: "address",
                    entry,
                    id,
                    reason,
                });
            }
        }
        Ok((file, refused))
    }

    /// How many entries [`Self::load`] handles (what its progress counts up to).
    pub fn entries(&self) -> usize {
        self.products.len() + self.addresses.len()
    }

    /// Loads the file at scale: products are read from the store 500 at a time (DynamoDB:
    /// `BatchGetItem`s of 100); those the store does not hold are created in bulk (`BatchWriteItem`s
    /// of 25, unprocessed items retried with backoff), those it holds with other figures are updated
    /// one by one keeping their reservation ledger (docs/api.md §10), the rest left unchanged; addresses
    /// are written in bulk. `progress` is told how many entries each step handled. Every
    /// product is read before any is written: a product whose shard count the file would lower refuses
    /// the load, with nothing written.
    pub async fn load(
        &self,
        catalog: &dyn Catalog,
        admin: &dyn CatalogAdmin,
        progress: &(dyn Fn(u64) + Send + Sync),
    ) -> Result<LoadReport, CatalogError> {
        const CHUNK: usize = 500;
        let mut report = LoadReport::default();
        let products: Vec<Product> = self.products().collect();
        // Everything the store holds is read before anything is written, so a refusal (a shard count
        // lowered) leaves the store as it was.
        let mut held = Vec::with_capacity(products.len());
        for chunk in products.chunks(CHUNK) {
            let ids: Vec<ProductId> = chunk.iter().map(|p| p.id.clone()).collect();
            held.extend(catalog.products(&ids).await?);
        }
        for (product, held) in products.iter().zip(&held) {
            if let Some(held) = held.as_ref().filter(|h| h.shards > product.shards) {
                return Err(CatalogError::Shards {
                    product: product.id.clone(),
                    reason: format!(
                        "shards cannot shrink ({} held, {} asked): orders hold units in every shard",
                        held.shards, product.shards
                    ),
                });
            }
        }
        for (chunk, held) in products.chunks(CHUNK).zip(held.chunks(CHUNK)) {
            let mut new = Vec::new();
            for (product, held) in chunk.iter().zip(held) {
                match held {
                    None => new.push(product.clone()),
                    Some(held) if same_figures(held, product) => report.products_unchanged += 1,
                    Some(_) => {
                        admin.upsert_product(product).await?;
                        report.products_updated += 1;
                    }
                }
            }
            admin.create_products(&new).await?;
            report.products_created += new.len();
            progress(chunk.len() as u64);
        }
        let addresses: Vec<Address> = self.addresses().collect();
        for chunk in addresses.chunks(CHUNK) {
            admin.upsert_addresses(chunk).await?;
            report.addresses_loaded += chunk.len();
            progress(chunk.len() as u64);
        }
        Ok(report)
    }

    /// Upserts everything into a store; returns (products, addresses) written.
    pub async fn load_into(&self, store: &dyn CatalogAdmin) -> Result<(usize, usize), CatalogError> {
        for product in self.products() {
            store.upsert_product(&product).await?;
        }
        for address in self.addresses() {
            store.upsert_address(&address).await?;
        }
        Ok((self.products.len(), self.addresses.len()))
    }
}

/// Whether the store's product already has the file's figures (its ledger is the store's own).
fn same_figures(held: &Product, file: &Product) -> bool {
    held.name == file.name
        && held.price == file.price
        && held.stock == file.stock
        && held.stock_source == file.stock_source
        && held.active == file.active
        && held.shards == file.shards
}

/// One entry of a catalogue file the loader refused, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Refusal {
    /// `product` or `address`.
    pub kind: &'static str,
    /// Its position in its list, from 0.
    pub entry: usize,
    /// Its `id`, when it has one.
    pub id: Option<String>,
    /// Why.
    pub reason: String,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let id = self.id.as_deref().unwrap_or("(no id)");
        write!(f, "{} #{} {id}: {}", self.kind, self.entry + 1, self.reason)
    }
}

/// What a load did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct LoadReport {
    /// Products the store did not hold, created.
    pub products_created: usize,
    /// Products the store held with other figures, updated (their ledger kept).
    pub products_updated: usize,
    /// Products the store already held as the file gives them.
    pub products_unchanged: usize,
    /// Addresses written.
    pub addresses_loaded: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_prices_and_unknown_fields_are_refused() {
        assert!(CatalogFile::parse(r#"{"products": [{"id": "p", "name": "n", "price": 1.5}]}"#).is_err());
        assert!(CatalogFile::parse(r#"{"products": [{"id": "p", "name": "n", "price": "1.555"}]}"#).is_err());
        assert!(CatalogFile::parse(r#"{"produtcs": []}"#).is_err());
        let highest = r#"{"products": [{"id": "p", "name": "n", "price": "1001001001.00"}]}"#;
        assert!(CatalogFile::parse(highest).is_ok());
        for over in ["1001001001.01", "999999999999.99"] {
            let text = format!(r#"{{"products": [{{"id": "p", "name": "n", "price": "{over}"}}]}}"#);
            let err = CatalogFile::parse(&text).unwrap_err();
            assert!(matches!(err, CatalogError::PriceTooHigh { .. }), "{over}: {err}");
            assert!(
                err.to_string().contains("above the highest unit price 1001001001.00"),
                "{err}"
            );
        }
    }
}
