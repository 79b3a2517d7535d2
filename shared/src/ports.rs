//! The ports: what the use cases need from the outside world, as small traits the adapters implement.

use std::sync::Arc;

use async_trait::async_trait;

use crate::callback::PaymentEvent;
use crate::catalog::{Address, Product, Shortage, StockSource};
use crate::field::BoxError;
use crate::idempotency::{IdempotencyKey, IdempotencyRecord, KeyUse, StoredResponse};
use crate::ids::{AddressId, OrderId, PaymentId, ProductId, Quantity, UserId};
use crate::order::Order;
use crate::payment::{Payment, PaymentStatus};
use crate::time::Timestamp;

/// A store-level failure that is not about the request's content.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Throttling or write conflicts that outlasted the adapter's retries: worth retrying later.
    #[error("store busy")]
    Busy(#[source] BoxError),
    /// Anything else the store reported.
    #[error("store failure")]
    Backend(#[source] BoxError),
}

impl StoreError {
    /// Wraps any error as a backend failure.
    pub fn backend(err: impl Into<BoxError>) -> Self {
        StoreError::Backend(err.into())
    }
}

/// Why a placement was refused, as the store's conditions found it.
#[derive(Debug, thiserror::Error)]
pub enum PlaceError {
    /// A product vanished or was deactivated since it was read.
    #[error("product {0} unknown or inactive")]
    ProductUnavailable(ProductId),
    /// A product's price or stock source changed since it was read (a stale read; the caller re-reads
    /// and retries).
    #[error("product {0} changed since it was read")]
    ProductChanged(ProductId),
    /// The address is gone or no longer the caller's.
    #[error("address invalid")]
    AddressInvalid,
    /// Not enough local stock; one entry per short product, with the stock the store saw.
    #[error("insufficient stock")]
    InsufficientStock(Vec<Shortage>),
    /// The idempotency key already answered this same request: replay that answer.
    #[error("idempotency key already answered this request")]
    Replay(StoredResponse),
    /// The idempotency key was used for a different request.
    #[error("idempotency key used for a different request")]
    KeyReused,
    /// The store itself failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

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

/// Reads the catalogue: products and addresses.
#[async_trait]
pub trait Catalog: Send + Sync {
    /// The product, if it exists (active or not).
    async fn product(&self, id: &ProductId) -> Result<Option<Product>, StoreError>;
    /// The address, if it exists (whoever owns it).
    async fn address(&self, id: &AddressId) -> Result<Option<Address>, StoreError>;

    /// Several products and an address at once (one request where the store can), products in the
    /// order asked.
    async fn read(
        &self,
        products: &[ProductId],
        address: &AddressId,
    ) -> Result<(Vec<Option<Product>>, Option<Address>), StoreError> {
        let mut found = Vec::with_capacity(products.len());
        for id in products {
            found.push(self.product(id).await?);
        }
        Ok((found, self.address(address).await?))
    }

    /// Forgets what a cache holds for these products and this address, so the next read is fresh. A
    /// store without a cache has nothing to forget.
    fn forget(&self, _products: &[ProductId], _address: Option<&AddressId>) {}
}

/// Writes the catalogue (the catalogue loader, tests and operators use it; the API never does).
#[async_trait]
pub trait CatalogAdmin: Send + Sync {
    /// Creates or replaces a product, stock included.
    async fn upsert_product(&self, product: &Product) -> Result<(), StoreError>;
    /// Creates or replaces an address.
    async fn upsert_address(&self, address: &Address) -> Result<(), StoreError>;
}

/// Orders and payments.
#[async_trait]
pub trait OrderStore: Send + Sync {
    /// Writes every order and payment of the placement and takes local stock, all or nothing.
    async fn place(&self, placement: &Placement) -> Result<(), PlaceError>;
    /// The order with its payments.
    async fn order_with_payments(&self, id: &OrderId) -> Result<Option<OrderWithPayments>, StoreError>;
    /// The record a shopper's idempotency key holds, live or expired (the caller judges).
    async fn idempotency_record(
        &self,
        user: &UserId,
        key: &IdempotencyKey,
    ) -> Result<Option<IdempotencyRecord>, StoreError>;
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

    /// Gives the order's quantity back to its product: to the shop's stock, or to the supplier's
    /// figure by releasing the reservation the order holds.
    pub fn release_stock(&mut self) {
        let (product, quantity) = (self.order.product_id.clone(), self.order.quantity);
        self.restock = match self.order.stock_source {
            StockSource::Local => Some(Restock::Stock(product, quantity)),
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
    /// Added to a locally stocked product's stock.
    Stock(ProductId, Quantity),
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

/// Conditional writes to an existing order and its payments (create_payment, callbacks, cancel, expiry).
#[async_trait]
pub trait OrderUpdates: Send + Sync {
    /// The order a payment belongs to.
    async fn order_of_payment(&self, id: &PaymentId) -> Result<Option<OrderId>, StoreError>;

    /// Reads the order with its payments, asks `judge` what to write, and writes it atomically, provided
    /// the order's version is still the one judged and no live record holds the change's idempotency
    /// key; what a refused write means is the domain's to say ([`Change::refused`]): judged again when
    /// another writer got there first, or the key's answer. Returns the state last judged, which is the
    /// state the written change (if any) was computed from.
    async fn update(&self, id: &OrderId, judge: Judge) -> Result<Updated, StoreError>;
}

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

/// What may need expiring: a pending order whose deadline passed, or an open payment past its own
/// `expires_at` (docs/api.md §9).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Due {
    /// A pending order past its payment deadline.
    Order(OrderId),
    /// An open payment past its expiry, with its order.
    Payment(OrderId, PaymentId),
}

impl Due {
    /// The order the entry belongs to.
    pub fn order_id(&self) -> &OrderId {
        match self {
            Due::Order(id) | Due::Payment(id, _) => id,
        }
    }
}

/// One page of due entries and where the next page starts.
#[derive(Debug, Clone, Default)]
pub struct DuePage {
    /// Due entries, oldest deadline first within each index partition.
    pub due: Vec<Due>,
    /// An opaque position to continue from; `None` after the last page.
    pub next: Option<String>,
}

/// The expiry index: pending orders and open payments by deadline (never a table scan).
#[async_trait]
pub trait ExpiryIndex: Send + Sync {
    /// Up to `limit` entries whose deadline is at or before `now`, continuing from `after`.
    async fn due(&self, now: Timestamp, after: Option<&str>, limit: usize) -> Result<DuePage, StoreError>;
}

/// Where a shopper's order list continues: the last order of the previous page.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ListPosition {
    /// Its creation time.
    pub created_at: Timestamp,
    /// Its id (orders of one batch share a creation time).
    pub order_id: OrderId,
}

/// A shopper's order as the list shows it: the order and its open payment, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedOrder {
    /// The order.
    pub order: Order,
    /// Its open payment.
    pub open_payment: Option<Payment>,
}

impl ListedOrder {
    /// Cuts a list fetched with one order more than `limit` to `limit`, with the position the next page
    /// starts after if that extra order was there (so a cursor is issued only while more remain).
    pub fn page(mut orders: Vec<ListedOrder>, limit: usize) -> (Vec<ListedOrder>, Option<ListPosition>) {
        if orders.len() <= limit {
            return (orders, None);
        }
        orders.truncate(limit);
        let next = orders.last().map(|last| ListPosition {
            created_at: last.order.created_at,
            order_id: last.order.id.clone(),
        });
        (orders, next)
    }
}

/// A shopper's orders, newest first (one index query per page).
#[async_trait]
pub trait OrderList: Send + Sync {
    /// Up to `limit` orders of `user` older than `after` (newest first), and the position after the
    /// last one when more may remain.
    async fn orders_of(
        &self,
        user: &UserId,
        limit: usize,
        after: Option<&ListPosition>,
    ) -> Result<(Vec<ListedOrder>, Option<ListPosition>), StoreError>;
}

/// The queue between the callback receiver and the processor (SQS FIFO in AWS).
#[async_trait]
pub trait CallbackQueue: Send + Sync {
    /// Enqueues the event in its payment's group, deduplicated by its event id.
    async fn enqueue(&self, event: &PaymentEvent) -> Result<(), QueueUnavailable>;
}

/// The queue could not take the message; the provider should retry.
#[derive(Debug, thiserror::Error)]
#[error("callback queue unavailable")]
pub struct QueueUnavailable(#[source] pub BoxError);

/// A business figure worth counting (docs/api.md §13).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Metric {
    /// A callback event was applied (or found already applied).
    CallbackApplied,
    /// A callback event failed transiently and will be redelivered.
    CallbackRetried,
    /// A callback's amount differed from the payment's.
    AmountMismatch,
    /// Money arrived that must be refunded.
    RefundRequired,
}

impl Metric {
    /// The metric's name.
    pub fn name(self) -> &'static str {
        match self {
            Self::CallbackApplied => "CallbackApplied",
            Self::CallbackRetried => "CallbackRetried",
            Self::AmountMismatch => "CallbackAmountMismatch",
            Self::RefundRequired => "RefundRequired",
        }
    }
}

/// Where metrics go (CloudWatch Embedded Metric Format in AWS).
pub trait Metrics: Send + Sync {
    /// Counts one occurrence.
    fn count(&self, metric: Metric);
}

/// Why the supplier could not answer.
#[derive(Debug, thiserror::Error)]
#[error("supplier stock service unavailable")]
pub struct SupplierUnavailable(#[source] pub BoxError);

/// The supplier's stock API (the seed's Haier integration).
#[async_trait]
pub trait SupplierStock: Send + Sync {
    /// Units the supplier can deliver now.
    async fn available(&self, product: &ProductId) -> Result<u32, SupplierUnavailable>;
}

/// The time, as a port so that tests can hold it still.
pub trait Clock: Send + Sync {
    /// Now.
    fn now(&self) -> Timestamp;
}

/// The real clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
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
    pub fn refusal(&self, key: KeyUse, checks: &[LineCheck], address_ok: bool) -> Result<(), PlaceError> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::idempotency::{IdempotencyKey, IdempotentRequest};

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
