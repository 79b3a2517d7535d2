//! What the shop sells and where it delivers: products and addresses as the use cases read them.

use serde::{Deserialize, Serialize};

use crate::ids::{AddressId, ProductId, UserId};
use crate::money::Money;

/// Who holds a product's stock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum StockSource {
    /// The shop's own stock figure, decremented by each order.
    #[default]
    Local,
    /// The supplier's API (the seed's Haier products); the local figure is not used.
    Supplier,
}

impl StockSource {
    /// The wire name, as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Local => "local",
            Self::Supplier => "supplier",
        }
    }
}

/// A catalogue product.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Product {
    /// The product id.
    pub id: ProductId,
    /// Display name.
    pub name: String,
    /// Price of one unit.
    pub price: Money,
    /// Units on hand (meaningful for `StockSource::Local` only).
    pub stock: u32,
    /// Who holds the stock.
    pub stock_source: StockSource,
    /// Inactive products cannot be ordered.
    pub active: bool,
    /// For a supplier-held product: the units this shop's orders hold against the supplier's figure
    /// (the reservation ledger, docs/api.md §10), taken by each order in the same write and given back
    /// when the order is cancelled. Kept when the catalogue is reloaded. Always 0 for local products.
    #[serde(default)]
    pub reserved: u32,
    /// How many stock items a locally stocked product's stock is split across (docs/api.md §19): 1
    /// unless the catalogue marks it hot. `stock` is then the sum of the shards' figures.
    #[serde(default = "one_shard", skip_serializing_if = "is_one_shard")]
    pub shards: u16,
}

fn one_shard() -> u16 {
    1
}

fn is_one_shard(shards: &u16) -> bool {
    *shards == 1
}

impl Product {
    /// Whether the product's stock is split across more than one stock item.
    pub fn is_sharded(&self) -> bool {
        self.shards > 1 && self.stock_source == StockSource::Local
    }
}

/// A delivery address owned by one shopper; its fields are free-form (name, phone, city, ...).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Address {
    /// The address id.
    pub id: AddressId,
    /// The shopper who owns it.
    pub user_id: UserId,
    /// Everything else, as given.
    #[serde(default)]
    pub fields: serde_json::Map<String, serde_json::Value>,
}

/// The address as it was when an order was placed: later edits do not change where an order goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct AddressSnapshot {
    /// The address id it was taken from.
    pub id: Option<AddressId>,
    /// Its fields at that moment.
    #[serde(default)]
    pub fields: serde_json::Map<String, serde_json::Value>,
}

impl From<&Address> for AddressSnapshot {
    fn from(address: &Address) -> Self {
        AddressSnapshot {
            id: Some(address.id.clone()),
            fields: address.fields.clone(),
        }
    }
}

/// A product there is not enough of.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Shortage {
    /// The product.
    pub product_id: ProductId,
    /// What the request asked for (after merging lines).
    pub requested: u32,
    /// What is available now.
    pub available: u32,
}
