//! Orders and the seed's order state machine (docs/api.md §7).

use serde::{Deserialize, Serialize};

use crate::catalog::{AddressSnapshot, StockSource};
use crate::ids::{OrderId, ProductId, Quantity, TtlMinutes, UserId};
use crate::money::Money;
use crate::time::Timestamp;

/// Where an order is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OrderStatus {
    /// Created, waiting for payment.
    Pending,
    /// Paid.
    Paid,
    /// Handed to the carrier.
    Shipped,
    /// Received by the shopper.
    Completed,
    /// Cancelled (by the shopper, support, or payment expiry).
    Cancelled,
    /// Money returned.
    Refunded,
}

impl OrderStatus {
    /// Every status, in the seed's order.
    pub const ALL: [OrderStatus; 6] = [
        Self::Pending,
        Self::Paid,
        Self::Shipped,
        Self::Completed,
        Self::Cancelled,
        Self::Refunded,
    ];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Paid => "paid",
            Self::Shipped => "shipped",
            Self::Completed => "completed",
            Self::Cancelled => "cancelled",
            Self::Refunded => "refunded",
        }
    }

    /// True for `completed`, `cancelled` and `refunded`.
    pub fn is_terminal(self) -> bool {
        allowed_transitions(self).is_empty()
    }
}

impl std::fmt::Display for OrderStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The statuses an order may move to from `from`: the whole state machine lives in this one table.
pub fn allowed_transitions(from: OrderStatus) -> &'static [OrderStatus] {
    use OrderStatus::*;
    match from {
        Pending => &[Paid, Cancelled],
        Paid => &[Shipped, Refunded, Cancelled],
        Shipped => &[Completed, Refunded],
        Completed | Cancelled | Refunded => &[],
    }
}

/// Whether `from → to` is a transition the state machine allows.
pub fn can_transition(from: OrderStatus, to: OrderStatus) -> bool {
    allowed_transitions(from).contains(&to)
}

/// One line of an order's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// The status before; `None` for the creation entry.
    pub from: Option<OrderStatus>,
    /// The status after.
    pub to: OrderStatus,
    /// Who made the change: `user:<id>`, `payment-callback`, `system:expiry`, ...
    pub operator: String,
    /// Free text for people.
    pub note: String,
    /// When.
    pub at: Timestamp,
}

/// A refused transition.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("order status cannot change from {from} to {to}")]
pub struct TransitionError {
    /// The order's status.
    pub from: OrderStatus,
    /// The status asked for.
    pub to: OrderStatus,
}

/// One product bought in one quantity by one shopper, with its price and address frozen at creation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Order {
    /// The order id.
    pub id: OrderId,
    /// The shopper.
    pub user_id: UserId,
    /// The product bought.
    pub product_id: ProductId,
    /// The product's name when ordered.
    pub product_name: String,
    /// Where the product's stock is kept, so that cancelling knows whether to return it.
    pub stock_source: StockSource,
    /// Units bought.
    pub quantity: Quantity,
    /// Price of one unit when ordered.
    pub unit_price: Money,
    /// `unit_price × quantity`; every payment of the order is for this amount.
    pub total_amount: Money,
    /// Current status.
    pub status: OrderStatus,
    /// The delivery address as it was when ordered.
    pub address: AddressSnapshot,
    /// The payment lifetime the order was created with.
    pub ttl_minutes: TtlMinutes,
    /// After this instant the order can no longer be paid and the sweeper cancels it.
    pub payment_deadline: Timestamp,
    /// Creation time.
    pub created_at: Timestamp,
    /// Last change.
    pub updated_at: Timestamp,
    /// Every status change, oldest first, starting with creation.
    pub history: Vec<HistoryEntry>,
    /// Whether this order holds a reservation of its quantity in its supplier-held product's ledger
    /// (docs/api.md §10), to be given back if it is cancelled. Orders placed before the ledger existed
    /// hold none (and read as `false`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub holds_reservation: bool,
    /// For a product whose stock is sharded (docs/api.md §19): the units taken from each shard, given
    /// back to the same shards if the order is cancelled. Empty otherwise: the product's own figure.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stock_shards: Vec<crate::stock::ShardTake>,
    /// The parcel, once an operator shipped the order (docs/api.md §17).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shipment: Option<crate::operator::Shipment>,
    /// Bumped by every write to the order or any of its payments: the one token a conditional write
    /// checks, so two writers of the same order can never both win. Records from before it existed read as 0.
    #[serde(default)]
    pub version: u64,
}

/// What a new order is made of; everything else follows from it.
#[derive(Debug, Clone)]
pub struct OrderDraft<'a> {
    /// The shopper.
    pub user_id: &'a UserId,
    /// The product as it is sold now.
    pub product: &'a crate::catalog::Product,
    /// Units bought.
    pub quantity: Quantity,
    /// The delivery address, frozen.
    pub address: AddressSnapshot,
    /// The payment lifetime, which sets the payment deadline.
    pub ttl_minutes: TtlMinutes,
}

impl Order {
    /// The stock items this order's quantity was taken from: its shards, or shard 0 (the product's own
    /// figure) for an order on an unsharded product.
    pub fn stock_takes(&self) -> Vec<crate::stock::ShardTake> {
        if self.stock_shards.is_empty() {
            vec![crate::stock::ShardTake {
                shard: 0,
                quantity: self.quantity.get(),
            }]
        } else {
            self.stock_shards.clone()
        }
    }

    /// A new `pending` order at the product's current price, with its creation in the history; refused
    /// when its total would be an amount no one could read back (a price beyond the catalogue's limit).
    pub fn new_pending(draft: OrderDraft<'_>, now: Timestamp) -> Result<Order, crate::money::AmountOutOfRange> {
        let OrderDraft {
            user_id,
            product,
            quantity,
            address,
            ttl_minutes,
        } = draft;
        let total_amount = product.price.times(quantity.get())?;
        Ok(Order {
            id: OrderId::generate(),
            user_id: user_id.clone(),
            product_id: product.id.clone(),
            product_name: product.name.clone(),
            stock_source: product.stock_source,
            holds_reservation: product.stock_source == StockSource::Supplier,
            stock_shards: Vec::new(),
            shipment: None,
            quantity,
            unit_price: product.price,
            total_amount,
            status: OrderStatus::Pending,
            address,
            ttl_minutes,
            payment_deadline: now.plus_minutes(ttl_minutes.get()),
            created_at: now,
            updated_at: now,
            history: vec![HistoryEntry {
                from: None,
                to: OrderStatus::Pending,
                operator: format!("user:{user_id}"),
                note: "订单创建".into(),
                at: now,
            }],
            version: 0,
        })
    }

    /// Moves the order to `to` if the state machine allows it, recording who did it and why.
    pub fn transition(
        &mut self,
        to: OrderStatus,
        operator: &str,
        note: &str,
        at: Timestamp,
    ) -> Result<&HistoryEntry, TransitionError> {
        if !can_transition(self.status, to) {
            return Err(TransitionError { from: self.status, to });
        }
        self.history.push(HistoryEntry {
            from: Some(self.status),
            to,
            operator: operator.to_owned(),
            note: note.to_owned(),
            at,
        });
        self.status = to;
        self.updated_at = at;
        Ok(self.history.last().expect("an entry was just pushed"))
    }

    /// Records in the history an action that leaves the status as it is (an operator's refund request,
    /// whose success moves the order later): `{from: status, to: status, operator, note, at}`.
    pub fn record(&mut self, operator: &str, note: &str, at: Timestamp) {
        self.history.push(HistoryEntry {
            from: Some(self.status),
            to: self.status,
            operator: operator.to_owned(),
            note: note.to_owned(),
            at,
        });
        self.updated_at = at;
    }

    /// The statuses this order may move to next.
    pub fn allowed_transitions(&self) -> &'static [OrderStatus] {
        allowed_transitions(self.status)
    }
}

/// Orders for unit tests across the domain.
#[cfg(test)]
pub(crate) mod testing {
    use super::*;
    use crate::catalog::{Product, StockSource};

    /// A pending order of `quantity` units at `price`, created at 2026-11-25T07:00Z with `ttl` minutes to pay.
    pub fn order(quantity: u32, price: &str, ttl: u32) -> Order {
        let product = Product {
            id: ProductId::parse("p1").unwrap(),
            name: "fridge".into(),
            price: Money::parse(price).unwrap(),
            stock: 10,
            stock_source: StockSource::Local,
            active: true,
            reserved: 0,
            shards: 1,
        };
        let draft = OrderDraft {
            user_id: &UserId::parse("u1").unwrap(),
            product: &product,
            quantity: Quantity::new(quantity).unwrap(),
            address: AddressSnapshot::default(),
            ttl_minutes: TtlMinutes::new(ttl).unwrap(),
        };
        Order::new_pending(draft, Timestamp::parse("2026-11-25T07:00:00Z").unwrap()).unwrap()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use OrderStatus::*;

    /// docs/api.md §7, written out independently of `allowed_transitions` so the test can catch a typo there.
    const ALLOWED: [(OrderStatus, OrderStatus); 7] = [
        (Pending, Paid),
        (Pending, Cancelled),
        (Paid, Shipped),
        (Paid, Refunded),
        (Paid, Cancelled),
        (Shipped, Completed),
        (Shipped, Refunded),
    ];

    fn order_in(status: OrderStatus) -> Order {
        let mut order = testing::order(1, "1.00", 30);
        order.status = status;
        order.history.clear();
        order
    }

    #[test]
    fn every_allowed_transition_succeeds_with_history() {
        for (from, to) in ALLOWED {
            let mut order = order_in(from);
            let at = order.created_at.plus_minutes(1);
            let entry = order.transition(to, "ops:alice", "because", at).unwrap().clone();
            assert_eq!(order.status, to);
            assert_eq!(order.updated_at, at);
            assert_eq!(
                entry,
                HistoryEntry {
                    from: Some(from),
                    to,
                    operator: "ops:alice".into(),
                    note: "because".into(),
                    at
                }
            );
            assert_eq!(order.history, vec![entry]);
        }
    }

    #[test]
    fn every_other_pair_is_refused_and_changes_nothing() {
        let mut refused = 0;
        for from in OrderStatus::ALL {
            for to in OrderStatus::ALL {
                if ALLOWED.contains(&(from, to)) {
                    assert!(can_transition(from, to));
                    continue;
                }
                assert!(!can_transition(from, to), "{from} -> {to}");
                let mut order = order_in(from);
                let before = order.clone();
                let err = order.transition(to, "x", "y", order.created_at).unwrap_err();
                assert_eq!(err, TransitionError { from, to });
                assert_eq!(order, before);
                refused += 1;
            }
        }
        assert_eq!(refused, 36 - ALLOWED.len());
    }

    #[test]
    fn allowed_transitions_and_terminal_states() {
        assert_eq!(allowed_transitions(Pending), &[Paid, Cancelled]);
        assert_eq!(order_in(Paid).allowed_transitions(), &[Shipped, Refunded, Cancelled]);
        for s in OrderStatus::ALL {
            assert_eq!(s.is_terminal(), matches!(s, Completed | Cancelled | Refunded));
        }
    }

    #[test]
    fn a_chain_of_transitions_keeps_every_entry_in_order() {
        let mut order = order_in(Pending);
        let t0 = order.created_at;
        order
            .transition(Paid, "payment-callback", "paid", t0.plus_minutes(1))
            .unwrap();
        order.transition(Shipped, "ops", "shipped", t0.plus_minutes(2)).unwrap();
        order
            .transition(Completed, "user:u1", "received", t0.plus_minutes(3))
            .unwrap();
        let path: Vec<_> = order.history.iter().map(|h| (h.from, h.to)).collect();
        assert_eq!(
            path,
            vec![(Some(Pending), Paid), (Some(Paid), Shipped), (Some(Shipped), Completed)]
        );
        assert!(order.transition(Refunded, "ops", "late", t0.plus_minutes(4)).is_err());
    }
}
