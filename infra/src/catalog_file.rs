//! The catalogue file the local server and operators load products and addresses from:
//!
//! ```json
//! {"products":  [{"id": "p1", "name": "冰箱", "price": "2999.00", "stock": 10, "stock_source": "local", "active": true}],
//!  "addresses": [{"id": "a1", "user_id": "u1", "name": "张三", "phone": "13800000000", "city": "青岛"}]}
//! ```
//!
//! `stock_source` defaults to `local`, `active` to `true`; an address's fields other than `id` and
//! `user_id` are kept as given. Loading upserts: existing entries are replaced, stock included.

use domain::catalog::{Address, Product, StockSource};
use domain::ids::{AddressId, ProductId, UserId};
use domain::money::Money;
use domain::ports::{CatalogAdmin, StoreError};
use serde::Deserialize;

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
