//! A placement: what one create request writes (orders, payments, the stock taken, the key's record),
//! and the one judgement of what a refused placement means, which both stores call.

use crate::catalog::{Product, Shortage, StockSource};
use crate::idempotency::{IdempotencyRecord, KeyUse};
use crate::ids::{AddressId, UserId};
use crate::order::Order;
use crate::payment::Payment;
use crate::ports::PlaceError;
use crate::stock::ShardTake;

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
    /// enough remains (a sharded product's chosen shards, each by what the order takes from it:
    /// `Order::stock_shards`); every product must still exist, be active and have the order's unit price.
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
    /// A shard of a sharded product holds less than the line took from it; what all shards hold
    /// together is not known from that one shard.
    ShardShort,
}

impl LineCheck {
    /// The graver of two findings on one line (a line on sharded stock may take from several shards):
    /// unavailable, then changed, then a short shard, then short, then fine.
    pub fn graver(self, other: LineCheck) -> LineCheck {
        let rank = |c: &LineCheck| match c {
            LineCheck::Unavailable => 4,
            LineCheck::Changed => 3,
            LineCheck::ShardShort => 2,
            LineCheck::Short(_) => 1,
            LineCheck::Ok => 0,
        };
        if rank(&other) > rank(&self) {
            other
        } else {
            self
        }
    }
}

impl NewOrder {
    /// Judges the product as the store currently holds it against this order (a line on sharded stock
    /// is judged take by take instead, [`Self::check_take`]). Every adapter calls this, so the stores
    /// agree on what each condition failure means.
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

    /// Whether this line takes its quantity from the shards of a sharded product (docs/api.md §19).
    pub fn is_sharded(&self) -> bool {
        !self.order.stock_shards.is_empty()
    }

    /// Judges one stock item a sharded line takes from, as the store holds it: the shard's copy of the
    /// product, with the shard's own figure as its `stock` (shard 0 is the product itself).
    pub fn check_take(&self, take: ShardTake, current: Option<&Product>) -> LineCheck {
        let Some(item) = current.filter(|p| p.active) else {
            return LineCheck::Unavailable;
        };
        if item.price != self.order.unit_price || item.stock_source != self.order.stock_source {
            return LineCheck::Changed;
        }
        if item.stock < take.quantity {
            return LineCheck::ShardShort;
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

    /// What a write cancelled only by contention (conflicting transactions, throttling) comes to, given
    /// the lines whose shard takes were contended: a sharded line tries other shards at once
    /// ([`PlaceError::ShardsContended`]); otherwise `None`, and the store sends the same write again
    /// after a backoff.
    pub fn contention(&self, contended: &[usize]) -> Option<PlaceError> {
        let ids: Vec<_> = contended
            .iter()
            .filter_map(|i| self.orders.get(*i))
            .filter(|line| line.is_sharded())
            .map(|line| line.order.product_id.clone())
            .collect();
        (!ids.is_empty()).then_some(PlaceError::ShardsContended(ids))
    }

    /// The one refusal a failed placement answers with: a key that already answered (replay, or `422`
    /// if for another request) before anything else; then, in the seed's order of checks, an
    /// unavailable product, the address, a stale read, a short shard (to be planned again), every short
    /// product. `Ok` when nothing failed.
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
        let shards_short: Vec<_> = lines()
            .filter(|(_, c)| **c == LineCheck::ShardShort)
            .map(|(line, _)| line.order.product_id.clone())
            .collect();
        if !shards_short.is_empty() {
            return Err(PlaceError::ShardsShort(shards_short));
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{PaymentMethod, TtlMinutes};
    use crate::order::testing::order;

    fn line(quantity: u32, takes: &[(u16, u32)]) -> NewOrder {
        let mut order = order(quantity, "10.00", 30);
        order.stock_shards = takes
            .iter()
            .map(|&(shard, quantity)| ShardTake { shard, quantity })
            .collect();
        let payment = Payment::create_for_order(
            &order,
            PaymentMethod::Wechat,
            TtlMinutes::new(30).unwrap(),
            order.created_at,
        );
        NewOrder {
            order,
            payment,
            supplier_available: None,
        }
    }

    fn placement(orders: Vec<NewOrder>) -> Placement {
        Placement {
            user_id: UserId::parse("u1").unwrap(),
            address_id: AddressId::parse("a1").unwrap(),
            orders,
            idempotency: None,
        }
    }

    fn shard_item(stock: u32) -> Product {
        Product {
            id: crate::ids::ProductId::parse("p1").unwrap(),
            name: "fridge".into(),
            price: crate::money::Money::parse("10.00").unwrap(),
            stock,
            stock_source: StockSource::Local,
            active: true,
            reserved: 0,
            shards: 4,
        }
    }

    #[test]
    fn a_take_is_judged_on_its_shards_figure_and_copy_of_the_product() {
        let line = line(3, &[(2, 2), (0, 1)]);
        let take = ShardTake { shard: 2, quantity: 2 };
        assert_eq!(line.check_take(take, Some(&shard_item(2))), LineCheck::Ok);
        assert_eq!(line.check_take(take, Some(&shard_item(1))), LineCheck::ShardShort);
        assert_eq!(line.check_take(take, None), LineCheck::Unavailable);
        let repriced = Product {
            price: crate::money::Money::parse("11.00").unwrap(),
            ..shard_item(9)
        };
        assert_eq!(line.check_take(take, Some(&repriced)), LineCheck::Changed);
        assert_eq!(LineCheck::ShardShort.graver(LineCheck::Changed), LineCheck::Changed);
        assert_eq!(LineCheck::Short(1).graver(LineCheck::ShardShort), LineCheck::ShardShort);
        assert_eq!(LineCheck::Ok.graver(LineCheck::Short(0)), LineCheck::Short(0));
    }

    #[test]
    fn a_short_shard_is_planned_again_after_what_refuses_outright() {
        let p = placement(vec![line(2, &[(1, 2)]), line(1, &[])]);
        let refusal = p.refusal(
            false,
            KeyUse::Fresh,
            &[LineCheck::ShardShort, LineCheck::Short(0)],
            true,
        );
        assert!(matches!(refusal, Err(PlaceError::ShardsShort(ref ids)) if ids.len() == 1));
        let refusal = p.refusal(false, KeyUse::Fresh, &[LineCheck::ShardShort, LineCheck::Changed], true);
        assert!(matches!(refusal, Err(PlaceError::ProductChanged(_))));
        let refusal = p.refusal(false, KeyUse::Fresh, &[LineCheck::ShardShort, LineCheck::Ok], false);
        assert!(matches!(refusal, Err(PlaceError::AddressInvalid)));
        // Landed: an earlier attempt of this same write committed; nothing is refused.
        assert!(p
            .refusal(true, KeyUse::Fresh, &[LineCheck::ShardShort, LineCheck::Ok], true)
            .is_ok());
    }

    #[test]
    fn contention_moves_only_sharded_lines() {
        let p = placement(vec![line(2, &[(1, 2)]), line(1, &[])]);
        assert!(matches!(p.contention(&[0]), Some(PlaceError::ShardsContended(ref ids)) if ids.len() == 1));
        assert!(
            p.contention(&[1]).is_none(),
            "an unsharded line's conflict is the store's to retry"
        );
        assert!(p.contention(&[]).is_none());
    }
}
