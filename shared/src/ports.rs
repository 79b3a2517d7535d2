//! The ports: what the use cases need from the outside world, as small traits the adapters implement.

use async_trait::async_trait;

use crate::callback::PaymentEvent;
use crate::catalog::{Address, Product, Shortage};
use crate::change::{Judge, OrderWithPayments, Updated};
use crate::error::ErrorCode;
use crate::field::BoxError;
use crate::idempotency::{IdempotencyKey, IdempotencyRecord, StoredResponse};
use crate::ids::{AddressId, OrderId, PaymentId, ProductId, UserId};
use crate::order::Order;
use crate::payment::Payment;
use crate::placement::Placement;
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
    /// A shard a sharded line took from held less than it took (another order took those units first):
    /// the caller reads the products' shard figures and plans those lines again (docs/api.md §19).
    #[error("a stock shard of {0:?} was short")]
    ShardsShort(Vec<ProductId>),
    /// A shard a sharded line took from was busy with another order's write (DynamoDB cancelled the
    /// transaction for a conflict, or throttled the shard's item): nothing was written, and the caller
    /// tries those lines again on shards picked afresh (docs/api.md §19).
    #[error("a stock shard of {0:?} was busy")]
    ShardsContended(Vec<ProductId>),
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

/// Reads the catalogue: products and addresses.
#[async_trait]
pub trait Catalog: Send + Sync {
    /// The product, if it exists (active or not).
    async fn product(&self, id: &ProductId) -> Result<Option<Product>, StoreError>;
    /// The address, if it exists (whoever owns it).
    async fn address(&self, id: &AddressId) -> Result<Option<Address>, StoreError>;

    /// The figures of a product's stock shards, shard 0 (the product's own figure) first, read
    /// consistently and never from a cache (docs/api.md §19): `shards` of them, or every shard the
    /// product has if it has more now (the count may come from a cached description).
    async fn shard_stock(&self, product: &ProductId, shards: u16) -> Result<Vec<u32>, StoreError>;

    /// Many products at once (the catalogue loader compares a file with them), in the order asked,
    /// `None` where absent; as few requests as the store can.
    async fn products(&self, ids: &[ProductId]) -> Result<Vec<Option<Product>>, StoreError> {
        let mut found = Vec::with_capacity(ids.len());
        for id in ids {
            found.push(self.product(id).await?);
        }
        Ok(found)
    }

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

/// A store adapter: every port over the one table (or file) at once. The services are assembled from one
/// ([`crate::usecases::Services::over`]); each use case still takes only the ports it uses.
pub trait Store: Catalog + CatalogAdmin + OrderStore + OrderUpdates + ExpiryIndex + OrderList + WorkIndex {}

impl<T: Catalog + CatalogAdmin + OrderStore + OrderUpdates + ExpiryIndex + OrderList + WorkIndex> Store for T {}

/// Writes the catalogue (the catalogue loader, tests and operators use it; the API never does).
#[async_trait]
pub trait CatalogAdmin: Send + Sync {
    /// Creates or replaces a product, stock included.
    async fn upsert_product(&self, product: &Product) -> Result<(), StoreError>;
    /// Creates or replaces an address.
    async fn upsert_address(&self, address: &Address) -> Result<(), StoreError>;
    /// Spreads a product's stock evenly over its shards again ([`crate::stock::rebalance`]), without
    /// losing or making a unit while orders take and return stock; the figures before and after, shard
    /// 0 first. `None` for a product the store does not hold.
    async fn rebalance_stock(&self, product: &ProductId) -> Result<Option<crate::stock::Rebalanced>, StoreError>;
    /// Creates products the store does not hold yet, many per request where the store can (DynamoDB:
    /// `BatchWriteItem`, 25 a request, unprocessed items retried with backoff). Unconditional: the
    /// loader calls it only for products it just read as absent.
    async fn create_products(&self, products: &[Product]) -> Result<(), StoreError> {
        for product in products {
            self.upsert_product(product).await?;
        }
        Ok(())
    }
    /// Creates or replaces addresses, many per request where the store can.
    async fn upsert_addresses(&self, addresses: &[Address]) -> Result<(), StoreError> {
        for address in addresses {
            self.upsert_address(address).await?;
        }
        Ok(())
    }
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

    /// [`update`](Self::update), judging first `known`, the order as the caller has just read it: its
    /// change is written only if the order is still at that version, and the order is read afresh only
    /// if it is not (a store whose reads are free may read anyway).
    async fn update_from(&self, known: OrderWithPayments, judge: Judge) -> Result<Updated, StoreError> {
        self.update(&known.order.id, judge).await
    }
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

/// A payment in the work index ([`crate::payment::Payment::work`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkItem {
    /// Its order.
    pub order_id: OrderId,
    /// The payment.
    pub payment_id: PaymentId,
    /// Since when (the refund's decision, or the oldest reason for attention).
    pub at: Timestamp,
}

/// One page of the work index and where the next starts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorkPage {
    /// Oldest first.
    pub items: Vec<WorkItem>,
    /// An opaque position to continue from; `None` after the last page.
    pub next: Option<String>,
}

/// The work index: refunds to send and payments an operator must look at, oldest first (a sparse
/// index, never a table scan).
#[async_trait]
pub trait WorkIndex: Send + Sync {
    /// Up to `limit` payments of `kind`, oldest first, continuing from `after`.
    async fn work(
        &self,
        kind: crate::refund::WorkKind,
        after: Option<&str>,
        limit: usize,
    ) -> Result<WorkPage, StoreError>;
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
    async fn enqueue(&self, event: &PaymentEvent) -> Result<Enqueued, QueueUnavailable>;
}

/// What the queue did with an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enqueued {
    /// Taken (or, where the queue cannot tell, possibly dropped as a duplicate: SQS answers both alike).
    Taken,
    /// Dropped as a duplicate of an event it took within its deduplication window.
    Duplicate,
}

/// The queue could not take the message; the provider should retry.
#[derive(Debug, thiserror::Error)]
#[error("callback queue unavailable")]
pub struct QueueUnavailable(#[source] pub BoxError);

/// Where a stock figure was checked: the store's own stock (inside the placement's write) or the
/// supplier's API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StockKind {
    /// Stock the table holds, checked by the placement's conditional write.
    Local,
    /// Stock the supplier holds, asked of its API.
    Supplier,
}

/// A business figure worth counting (docs/api.md §13). Every metric carries the dimensions `service`
/// and `function` only; ids go in the document's properties, never in a name or a dimension.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Metric {
    /// A create request (create_order, create_batch_orders) made its orders.
    OrderCreateSucceeded,
    /// A create request was refused, with the catalogue code it was answered with: counted once as
    /// `OrderCreateRefused` and once under the code (`OrderCreateRefused_INSUFFICIENT_STOCK`, ...).
    OrderCreateRefused(ErrorCode),
    /// A create request the service could not answer (a `5xx`: busy, supplier or store down): the
    /// denominator of the success rate, beside the successes.
    OrderCreateFailed,
    /// Orders made (a batch counts each of its orders).
    OrdersCreated,
    /// Milliseconds from a request's arrival to its payment stored (create_order,
    /// create_batch_orders, create_payment, checkout_payment).
    PaymentCreationLatency,
    /// A line's stock was checked.
    StockCheck(StockKind),
    /// A line's stock could not be checked (the store or the supplier failed to answer).
    StockCheckFailed(StockKind),
    /// A callback event was applied (or found already applied).
    CallbackApplied,
    /// A callback event failed transiently and will be redelivered.
    CallbackRetried,
    /// A callback's amount differed from the payment's.
    AmountMismatch,
    /// A success arrived for a payment already let go (expired, failed, or its order cancelled).
    LateSuccess,
    /// Money arrived that must be refunded.
    RefundRequired,
    /// A refund was decided (payment `refunding`).
    RefundStarted,
    /// A provider refunded a payment.
    RefundSucceeded,
    /// A refund failed for good (`refund_failed`): an operator must settle it.
    RefundFailed,
    /// The sweeper expired a payment (its order cancelled, or the payment alone).
    PaymentsExpired,
    /// The sweeper cancelled an order and returned its stock.
    OrdersCancelledBySweeper,
    /// The age of the oldest item on the attention list, in seconds (0 when it is empty).
    AttentionOldestAgeSeconds,
    /// An execution environment's first invocation.
    ColdStart,
}

/// The unit a metric is published in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricUnit {
    /// Occurrences, summed.
    Count,
    /// A duration in milliseconds, one value per observation.
    Milliseconds,
    /// A figure in seconds, the last one set.
    Seconds,
}

impl Metric {
    /// The metric's name.
    pub fn name(self) -> std::borrow::Cow<'static, str> {
        let name = match self {
            Self::OrderCreateSucceeded => "OrderCreateSucceeded",
            Self::OrderCreateRefused(code) => return format!("OrderCreateRefused_{}", code.as_str()).into(),
            Self::OrderCreateFailed => "OrderCreateFailed",
            Self::OrdersCreated => "OrdersCreated",
            Self::PaymentCreationLatency => "PaymentCreationLatency",
            Self::StockCheck(StockKind::Local) => "StockCheckLocal",
            Self::StockCheck(StockKind::Supplier) => "StockCheckSupplier",
            Self::StockCheckFailed(StockKind::Local) => "StockCheckFailedLocal",
            Self::StockCheckFailed(StockKind::Supplier) => "StockCheckFailedSupplier",
            Self::CallbackApplied => "CallbackApplied",
            Self::CallbackRetried => "CallbackRetried",
            Self::AmountMismatch => "CallbackAmountMismatch",
            Self::LateSuccess => "LateSuccess",
            Self::RefundRequired => "RefundRequired",
            Self::RefundStarted => "RefundStarted",
            Self::RefundSucceeded => "RefundSucceeded",
            Self::RefundFailed => "RefundFailed",
            Self::PaymentsExpired => "PaymentsExpired",
            Self::OrdersCancelledBySweeper => "OrdersCancelledBySweeper",
            Self::AttentionOldestAgeSeconds => "AttentionOldestAgeSeconds",
            Self::ColdStart => "ColdStart",
        };
        name.into()
    }

    /// Every metric whose name is fixed (a refusal's name carries its code).
    pub const FIXED: [Metric; 20] = [
        Self::OrderCreateSucceeded,
        Self::OrderCreateFailed,
        Self::OrdersCreated,
        Self::PaymentCreationLatency,
        Self::StockCheck(StockKind::Local),
        Self::StockCheck(StockKind::Supplier),
        Self::StockCheckFailed(StockKind::Local),
        Self::StockCheckFailed(StockKind::Supplier),
        Self::CallbackApplied,
        Self::CallbackRetried,
        Self::AmountMismatch,
        Self::LateSuccess,
        Self::RefundRequired,
        Self::RefundStarted,
        Self::RefundSucceeded,
        Self::RefundFailed,
        Self::PaymentsExpired,
        Self::OrdersCancelledBySweeper,
        Self::AttentionOldestAgeSeconds,
        Self::ColdStart,
    ];

    /// The unit it is published in.
    pub fn unit(self) -> MetricUnit {
        match self {
            Self::PaymentCreationLatency => MetricUnit::Milliseconds,
            Self::AttentionOldestAgeSeconds => MetricUnit::Seconds,
            _ => MetricUnit::Count,
        }
    }
}

/// Where metrics go (CloudWatch Embedded Metric Format in AWS, one document per invocation).
pub trait Metrics: Send + Sync {
    /// Counts `n` occurrences.
    fn add(&self, metric: Metric, n: u64);
    /// Records one measurement of `metric`: a duration observed, or a gauge set (an age, a size).
    fn measure(&self, metric: Metric, value: f64);
    /// Counts one occurrence.
    fn count(&self, metric: Metric) {
        self.add(metric, 1);
    }
}

/// Metrics that go nowhere.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoMetrics;

impl Metrics for NoMetrics {
    fn add(&self, _: Metric, _: u64) {}
    fn measure(&self, _: Metric, _: f64) {}
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

/// Why a payment provider handed out no checkout.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    /// Down, slow, rate-limiting, answering a system error, or an answer that failed verification:
    /// worth trying again later (`503 PROVIDER_UNAVAILABLE`).
    #[error("payment provider unavailable")]
    Unavailable(#[source] BoxError),
    /// The provider says the trade is already paid.
    #[error("the provider reports the trade paid")]
    AlreadyPaid,
    /// The provider refused our request as malformed or wrongly signed: our defect (`500`).
    #[error("the provider refused the request")]
    Refused(#[source] BoxError),
}

/// The providers' checkout APIs, and the bank's instructions: one port for every payment method.
#[async_trait]
pub trait PaymentGateway: Send + Sync {
    /// What the shopper pays with in `request.scene` (the provider's answer, verified its way): the
    /// fields of the stored checkout but `provider`, `scene`, `expires_at` and `created_at`.
    async fn checkout(
        &self,
        request: &crate::checkout::CheckoutRequest,
    ) -> Result<serde_json::Map<String, serde_json::Value>, ProviderError>;

    /// Closes the trade at its provider (WeChat Pay's close, `alipay.trade.close`). A trade already
    /// closed, already paid or never opened is no error: the query that follows says which.
    async fn close(&self, trade: &crate::closing::Trade) -> Result<(), ProviderError>;

    /// The trade as its provider reports it (WeChat Pay's query by `out_trade_no`,
    /// `alipay.trade.query`), its answer verified; a trade the provider does not know is `Closed`.
    async fn query(&self, trade: &crate::closing::Trade) -> Result<crate::closing::TradeState, ProviderError>;

    /// Asks the provider for the refund (WeChat Pay's refund, `alipay.trade.refund`), its answer
    /// verified. Asking again with the same refund number is the same refund.
    async fn refund(&self, request: &crate::refund::RefundRequest)
        -> Result<crate::refund::RefundState, ProviderError>;

    /// The refund as its provider reports it (WeChat Pay's refund query,
    /// `alipay.trade.fastpay.refund.query`), its answer verified.
    async fn query_refund(
        &self,
        request: &crate::refund::RefundRequest,
    ) -> Result<crate::refund::RefundState, ProviderError>;
}

/// A gateway with no provider configured: every checkout is unavailable (functions that never check
/// out hold this one).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoProviders;

#[async_trait]
impl PaymentGateway for NoProviders {
    async fn checkout(
        &self,
        request: &crate::checkout::CheckoutRequest,
    ) -> Result<serde_json::Map<String, serde_json::Value>, ProviderError> {
        Err(ProviderError::Unavailable(
            format!("no {} checkout is configured", request.scene.provider()).into(),
        ))
    }

    async fn close(&self, trade: &crate::closing::Trade) -> Result<(), ProviderError> {
        Err(NoProviders::unconfigured(trade.provider))
    }

    async fn query(&self, trade: &crate::closing::Trade) -> Result<crate::closing::TradeState, ProviderError> {
        Err(NoProviders::unconfigured(trade.provider))
    }

    async fn refund(
        &self,
        request: &crate::refund::RefundRequest,
    ) -> Result<crate::refund::RefundState, ProviderError> {
        Err(NoProviders::unconfigured(request.provider))
    }

    async fn query_refund(
        &self,
        request: &crate::refund::RefundRequest,
    ) -> Result<crate::refund::RefundState, ProviderError> {
        Err(NoProviders::unconfigured(request.provider))
    }
}

impl NoProviders {
    fn unconfigured(provider: crate::closing::TradeProvider) -> ProviderError {
        ProviderError::Unavailable(format!("no {} client is configured", provider.as_str()).into())
    }
}
