//! A change: one conditional write to an existing order and its payments, described by the domain, and
//! the one judgement of what a refused change means, which both stores call.

use std::sync::Arc;

use crate::catalog::StockSource;
use crate::idempotency::{IdempotencyRecord, KeyUse};
use crate::ids::{OrderId, PaymentId, ProductId, Quantity};
use crate::order::Order;
use crate::payment::{Payment, PaymentStatus};
use crate::ports::{OrderUpdates, StoreError};
use crate::time::Timestamp;

/// An order as `get_order` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderWithPayments {
    /// The order.
    pub order: Order,
    /// All its payments, oldest first.
    pub payments: Vec<Payment>,
}

impl OrderWithPayments {
    /// The payment that can still succeed on its own (`init` or `processing`), if any.
    pub fn open_payment(&self) -> Option<&Payment> {
        self.payments.iter().rev().find(|p| p.status.is_open())
    }

    /// The state as it will be once `change` is written.
    pub fn after(&self, change: &Change) -> OrderWithPayments {
        let mut payments: Vec<Payment> = self
            .payments
            .iter()
            .map(|p| change.payments.iter().find(|c| c.id == p.id).unwrap_or(p).clone())
            .collect();
        payments.extend(change.created.clone());
        OrderWithPayments {
            order: change.order.clone(),
            payments,
        }
    }
}

/// One atomic write to an order and its payments, decided by the domain from the state the store holds.
///
/// The order's `version` is the aggregate's one concurrency token: a store writes the change only if the
/// order still has `expected_version`, so of two writers that judged the same state only one wins, and
/// the other is asked to judge again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The version the order must still have.
    pub expected_version: u64,
    /// The order as it will be (its version one higher).
    pub order: Order,
    /// Existing payments as they will be (only those that change).
    pub payments: Vec<Payment>,
    /// A payment to create.
    pub created: Option<Payment>,
    /// Units to give back to the order's product: local stock, or a supplier reservation.
    pub restock: Option<Restock>,
    /// An idempotency record to write with the change, only if no live record holds its key.
    pub idempotency: Option<IdempotencyRecord>,
}

impl Change {
    /// A change to `state`: the order copied with its version bumped and `now` as its last change, no
    /// payment touched yet. Edit it, then hand it to the store.
    pub fn of(state: &OrderWithPayments, now: Timestamp) -> Change {
        let mut order = state.order.clone();
        order.version += 1;
        order.updated_at = now;
        Change {
            expected_version: state.order.version,
            order,
            payments: Vec::new(),
            created: None,
            restock: None,
            idempotency: None,
        }
    }

    /// Records a changed payment (replacing an earlier edit of the same one).
    pub fn payment(&mut self, payment: Payment) {
        self.payments.retain(|p| p.id != payment.id);
        self.payments.push(payment);
    }

    /// Expires every open payment of `state` but `except` (logged `event` with `details`), in this change:
    /// a payment that can no longer be paid leaves the open set in the same write that decides so.
    pub fn expire_open_payments(
        &mut self,
        state: &OrderWithPayments,
        except: Option<&PaymentId>,
        event: &str,
        details: &serde_json::Value,
        now: Timestamp,
    ) {
        for open in state
            .payments
            .iter()
            .filter(|p| p.status.is_open() && Some(&p.id) != except)
        {
            let mut payment = open.clone();
            if payment
                .transition(PaymentStatus::Expired, event, details.clone(), now)
                .is_ok()
            {
                self.payment(payment);
            }
        }
    }

    /// Gives the order's quantity back to its product: to the shop's stock (to the shards it was taken
    /// from, for a sharded product), or to the supplier's figure by releasing the reservation the order
    /// holds.
    pub fn release_stock(&mut self) {
        let (product, quantity) = (self.order.product_id.clone(), self.order.quantity);
        self.restock = match self.order.stock_source {
            StockSource::Local => Some(Restock::Stock(product, self.order.stock_takes())),
            StockSource::Supplier if self.order.holds_reservation => Some(Restock::Reservation(product, quantity)),
            StockSource::Supplier => None,
        };
    }
}

/// Units a change gives back to a product. The product must still exist: a change that would give
/// units back to a product the catalogue no longer holds is not written on either store (a fault for an
/// operator: orders still hold a product that was removed), rather than dropping the units silently.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Restock {
    /// Added to a locally stocked product's stock: to each shard the order took units from (shard 0,
    /// the product's own figure, for an unsharded product).
    Stock(ProductId, Vec<crate::stock::ShardTake>),
    /// Taken out of a supplier-held product's reservation ledger (which holds at least this much, since
    /// the order took it in).
    Reservation(ProductId, Quantity),
}

/// What a store found when it did not write a change as asked, reported as found: the domain decides
/// what it means ([`Change::refused`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChangeFound {
    /// The order is no longer at the version the change was judged from (or is gone).
    pub version_moved: bool,
    /// The record holding the change's idempotency key, when the key's condition failed (DynamoDB's
    /// `ALL_OLD` of the refused put; SQLite's row).
    pub key_holder: Option<IdempotencyRecord>,
}

/// What a change that was not written comes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// Another writer changed the order first: judge the state as it is now, again.
    Stale,
    /// The change's idempotency key already answered a request: that answer (`Replay`), or `Reused`
    /// for another request. Nothing is written, whatever else the store found.
    KeyAnswered(KeyUse),
}

impl Change {
    /// Whether this change may be written over what the store holds for its key: `None` (no key, or no
    /// live holder) or the key's earlier answer. The one rule both stores apply before writing.
    pub fn key_answer(&self, holder: Option<&IdempotencyRecord>) -> Option<KeyUse> {
        match self.idempotency.as_ref()?.against(holder) {
            KeyUse::Fresh => None,
            answered => Some(answered),
        }
    }

    /// The one judgement of a change the store refused: a live holder of its key answers first (so a
    /// concurrent retry that wrote the same request gets that request's answer); anything else means the
    /// order moved on and must be judged again.
    pub fn refused(&self, found: &ChangeFound) -> Refused {
        match self.key_answer(found.key_holder.as_ref()) {
            Some(answer) => Refused::KeyAnswered(answer),
            None => Refused::Stale,
        }
    }
}

/// What [`OrderUpdates::update`] came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Updated {
    /// No such order.
    NotFound,
    /// The state judged last; the change judged from it, if any, was written.
    Judged(Box<OrderWithPayments>),
    /// The change's idempotency key had already answered: its answer (a replay, or `Reused`); nothing
    /// was written.
    KeyAnswered(KeyUse),
}

/// The domain's judgement of an order's current state: the change to write, or `None` to write nothing.
pub type Judge = Arc<dyn Fn(&OrderWithPayments) -> Option<Change> + Send + Sync>;

/// What a decision run through [`update_with`] came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decided<T> {
    /// No such order.
    NotFound,
    /// The outcome for the state judged last (whose change, if any, was written).
    Outcome(T),
    /// The change's idempotency key had already answered (see [`Updated::KeyAnswered`]).
    KeyAnswered(KeyUse),
}

impl<T> Decided<T> {
    /// The outcome of a decision whose changes carry no idempotency key (so no key can answer).
    pub fn without_key(self) -> Result<Option<T>, StoreError> {
        match self {
            Decided::NotFound => Ok(None),
            Decided::Outcome(outcome) => Ok(Some(outcome)),
            Decided::KeyAnswered(_) => Err(StoreError::backend("a change without a key was answered by a key")),
        }
    }
}

/// [`update_with`] starting from `known`, the order as the caller has just read it
/// ([`OrderUpdates::update_from`]): one read fewer when nothing moved in between.
pub async fn update_from_with<T, F>(
    store: &dyn OrderUpdates,
    known: OrderWithPayments,
    decide: F,
) -> Result<Decided<T>, StoreError>
where
    F: Fn(&OrderWithPayments) -> (T, Option<Change>) + Send + Sync + 'static,
{
    let decide = Arc::new(decide);
    let judge = Arc::clone(&decide);
    Ok(
        match store.update_from(known, Arc::new(move |state| judge(state).1)).await? {
            Updated::NotFound => Decided::NotFound,
            Updated::Judged(state) => Decided::Outcome(decide(&state).0),
            Updated::KeyAnswered(answer) => Decided::KeyAnswered(answer),
        },
    )
}

/// Runs `decide` through [`OrderUpdates::update`] and returns its outcome for the state that was judged
/// last. `decide` must be a pure function of the state (time and fresh ids are captured beforehand), so
/// judging that state again yields exactly the outcome whose change was written.
pub async fn update_with<T, F>(store: &dyn OrderUpdates, id: &OrderId, decide: F) -> Result<Decided<T>, StoreError>
where
    F: Fn(&OrderWithPayments) -> (T, Option<Change>) + Send + Sync + 'static,
{
    let decide = Arc::new(decide);
    let judge = Arc::clone(&decide);
    Ok(match store.update(id, Arc::new(move |state| judge(state).1)).await? {
        Updated::NotFound => Decided::NotFound,
        Updated::Judged(state) => Decided::Outcome(decide(&state).0),
        Updated::KeyAnswered(answer) => Decided::KeyAnswered(answer),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::idempotency::{IdempotencyKey, IdempotentRequest, StoredResponse};
    use crate::ids::UserId;

    fn record(body: &str, at: Timestamp) -> IdempotencyRecord {
        let request = IdempotentRequest::new(
            IdempotencyKey::parse("k-1").unwrap(),
            "POST /x",
            &serde_json::from_str(body).unwrap(),
        );
        let response = StoredResponse {
            status: 201,
            body: body.to_owned(),
        };
        IdempotencyRecord::new(&UserId::parse("u").unwrap(), &request, response, at)
    }

    /// Every way a store can report a refused change, judged once for both stores.
    #[test]
    fn a_refused_change_is_judged_by_what_the_store_found() {
        let made = Timestamp::parse("2026-11-25T07:00:00Z").unwrap();
        let state = OrderWithPayments {
            order: crate::order::testing::order(1, "10.00", 30),
            payments: Vec::new(),
        };
        let mut change = Change::of(&state, made.plus_seconds(60));
        change.idempotency = Some(record(r#"{"q": 1}"#, made.plus_seconds(60)));
        let same = record(r#"{"q": 1}"#, made);
        let other = record(r#"{"q": 2}"#, made);
        let expired = record(r#"{"q": 1}"#, made.plus_seconds(60 - 24 * 3600));

        let found = |version_moved, key_holder: Option<&IdempotencyRecord>| ChangeFound {
            version_moved,
            key_holder: key_holder.cloned(),
        };
        let replay = Refused::KeyAnswered(KeyUse::Replay(same.response.clone()));
        assert_eq!(change.refused(&found(false, Some(&same))), replay);
        assert_eq!(
            change.refused(&found(true, Some(&same))),
            replay,
            "the key answers first"
        );
        assert_eq!(
            change.refused(&found(false, Some(&other))),
            Refused::KeyAnswered(KeyUse::Reused)
        );
        assert_eq!(
            change.refused(&found(false, Some(&expired))),
            Refused::Stale,
            "expired at its instant"
        );
        assert_eq!(change.refused(&found(true, None)), Refused::Stale);
        assert_eq!(change.key_answer(Some(&expired)), None, "an expired holder is replaced");
        assert_eq!(change.key_answer(None), None);

        let keyless = Change::of(&state, made);
        assert_eq!(keyless.refused(&found(false, Some(&same))), Refused::Stale);
        assert!(expired.is_live_at(made.plus_seconds(59)) && !expired.is_live_at(made.plus_seconds(60)));
    }
}
