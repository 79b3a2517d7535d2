//! A placement: what one create request writes (orders, payments, the stock taken, the key's record),
//! and the one judgement of what a refused placement means, which both stores call.

use crate::catalog::{Product, Shortage, StockSource};
use crate::idempotency::{IdempotencyRecord, KeyUse};
use crate::ids::{AddressId, UserId};
use crate::order::Order;
use crate::payment::Payment;
use crate::ports::PlaceError;

/// One order with its first payment, to be written together.
#[derive(Debug, Clone)]
pub struct NewOrder {
    /// The order (status `pending`).
    pub order: Order,
    /// Its payment (status `init`).
    pub payment: Payment,
    /// For a supplier-held product: the units the supplier reported before the write. The write takes
    /// the order's quantity into the product's reservation ledger only if the ledger then holds no
    /// more than this (docs/api.md §10). `None` for local products.
    pub supplier_available: Option<u32>,
}

/// Everything one create request writes, atomically.
#[derive(Debug, Clone)]
pub struct Placement {
    /// The caller; the address must still be theirs.
    pub user_id: UserId,
    /// The delivery address.
    pub address_id: AddressId,
    /// One entry per distinct product. Local-stock products are decremented by the order's quantity if
    /// enough remains; every product must still exist, be active and have the order's unit price.
    pub orders: Vec<NewOrder>,
    /// The idempotency record to write with them, when the request carried a key; written only if no
    /// live record holds the key.
    pub idempotency: Option<IdempotencyRecord>,
}

/// What a store found for one line of a placement when it checked the product inside the write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineCheck {
    /// Product as expected, stock sufficient (or held by the supplier).
    Ok,
    /// Product gone or inactive.
    Unavailable,
    /// Price or stock source differs from what the order was priced with.
    Changed,
    /// Short: what is left (local stock, or the supplier's figure less the reservations held).
    Short(u32),
}

impl NewOrder {
    /// Judges the product as the store currently holds it against this order. Every adapter calls this,
    /// so the stores agree on what each condition failure means.
    pub fn check(&self, current: Option<&Product>) -> LineCheck {
        let Some(product) = current.filter(|p| p.active) else {
            return LineCheck::Unavailable;
        };
        if product.price != self.order.unit_price || product.stock_source != self.order.stock_source {
            return LineCheck::Changed;
        }
        let left = match self.order.stock_source {
            StockSource::Local => product.stock,
            StockSource::Supplier => self.supplier_available.unwrap_or(0).saturating_sub(product.reserved),
        };
        if left < self.order.quantity.get() {
            return LineCheck::Short(left);
        }
        LineCheck::Ok
    }

    /// For a supplier-held line: the most the product's ledger may hold before this order takes its
    /// quantity in (the supplier's figure less the quantity); `None` when the figure cannot cover the
    /// quantity at all, or for a local line.
    pub fn reservation_room(&self) -> Option<u32> {
        match self.order.stock_source {
            StockSource::Supplier => self.supplier_available?.checked_sub(self.order.quantity.get()),
            StockSource::Local => None,
        }
    }
}

impl Placement {
    /// How the placement's key stands against the record a store holds for it (`Fresh` without a key).
    pub fn key_use(&self, existing: Option<&IdempotencyRecord>) -> KeyUse {
        self.idempotency
            .as_ref()
            .map_or(KeyUse::Fresh, |record| record.against(existing))
    }

    /// The one refusal a failed placement answers with: a key that already answered (replay, or `422`
    /// if for another request) before anything else; then, in the seed's order of checks, an
    /// unavailable product, the address, a stale read, every short product. `Ok` when nothing failed.
    ///
    /// `landed`: the store already holds this placement's own orders or payments. Their ids were made
    /// for this placement alone, so only an earlier attempt of this same write can have put them there:
    /// one whose answer was lost after the store committed it (a connection reset, a timeout), sent
    /// again. The write is one transaction, so it landed whole: nothing was refused, whatever else the
    /// conditions now find (the stock it took, the key it stored).
    pub fn refusal(&self, landed: bool, key: KeyUse, checks: &[LineCheck], address_ok: bool) -> Result<(), PlaceError> {
        if landed {
            return Ok(());
        }
        match key {
            KeyUse::Fresh => {}
            KeyUse::Replay(response) => return Err(PlaceError::Replay(response)),
            KeyUse::Reused => return Err(PlaceError::KeyReused),
        }
        let lines = || self.orders.iter().zip(checks);
        if let Some((line, _)) = lines().find(|(_, c)| **c == LineCheck::Unavailable) {
            return Err(PlaceError::ProductUnavailable(line.order.product_id.clone()));
        }
        if !address_ok {
            return Err(PlaceError::AddressInvalid);
        }
        if let Some((line, _)) = lines().find(|(_, c)| **c == LineCheck::Changed) {
            return Err(PlaceError::ProductChanged(line.order.product_id.clone()));
        }
        let shortages: Vec<Shortage> = lines()
            .filter_map(|(line, check)| match check {
                LineCheck::Short(available) => Some(Shortage {
                    product_id: line.order.product_id.clone(),
                    requested: line.order.quantity.get(),
                    available: *available,
                }),
                _ => None,
            })
            .collect();
        if shortages.is_empty() {
            Ok(())
        } else {
            Err(PlaceError::InsufficientStock(shortages))
        }
    }
}
