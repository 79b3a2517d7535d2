//! The use cases: what the functions do, written against the ports only.

pub mod admin;
mod callbacks;
pub(crate) mod cancel;
mod checkout;
pub mod closing;
mod create_orders;
mod create_payment;
pub mod expiry;
mod get_order;
mod idempotent;
pub mod list;
pub mod refunds;
pub mod request;

use std::sync::Arc;

use crate::ports::{
    Catalog, Clock, ExpiryIndex, Metrics, NoProviders, OrderList, OrderStore, OrderUpdates, PaymentGateway, Store,
    SupplierStock, WorkIndex,
};

pub use callbacks::{apply_callback, enqueue_callback, CallbackOutcome, RefundOutcome};
pub use cancel::cancel_order;
pub use checkout::{checkout_payment, Checkouts};
pub use closing::Closer;
pub use create_orders::{create_orders, Created, Idempotency, Placing};
pub use create_payment::{create_payment, RenderPayment};
pub use expiry::{sweep, SweepReport};
pub use get_order::get_order;
pub use idempotent::{at_most_once, Answered, Attempt};
pub use list::{list_orders, CursorKey, OrderPage};
pub use refunds::{refund_due, RefundReport, Refunder};

/// Every port the functions use, built once per cold start and shared by every request; each use case
/// takes only the ports it uses, from here.
#[derive(Clone)]
pub struct Services {
    /// Products and addresses.
    pub catalog: Arc<dyn Catalog>,
    /// Placing orders and reading them.
    pub orders: Arc<dyn OrderStore>,
    /// Conditional writes to existing orders and their payments.
    pub updates: Arc<dyn OrderUpdates>,
    /// What may need expiring.
    pub expiry: Arc<dyn ExpiryIndex>,
    /// Each shopper's orders, newest first.
    pub list: Arc<dyn OrderList>,
    /// Refunds to send and payments for an operator.
    pub work: Arc<dyn WorkIndex>,
    /// The supplier's stock API.
    pub supplier: Arc<dyn SupplierStock>,
    /// The payment providers: checkout, close and query (none in the functions that never let a
    /// checked-out payment go).
    pub gateway: Arc<dyn PaymentGateway>,
    /// The time.
    pub clock: Arc<dyn Clock>,
    /// Business metrics.
    pub metrics: Arc<dyn Metrics>,
}

impl Services {
    /// The one way services are assembled (the Lambda wiring, the local server, the tests and the
    /// benchmark): every store port from `store`, and the supplier, clock and metrics given. A warm
    /// function's cache wraps `catalog` afterwards.
    pub fn over<S: Store + 'static>(
        store: Arc<S>,
        supplier: Arc<dyn SupplierStock>,
        clock: Arc<dyn Clock>,
        metrics: Arc<dyn Metrics>,
    ) -> Services {
        Services {
            catalog: store.clone(),
            orders: store.clone(),
            updates: store.clone(),
            expiry: store.clone(),
            list: store.clone(),
            work: store,
            supplier,
            gateway: Arc::new(NoProviders),
            clock,
            metrics,
        }
    }

    /// The ports a checkout takes.
    pub fn checkouts(&self) -> Checkouts<'_> {
        Checkouts {
            orders: self.orders.as_ref(),
            closer: self.closer(),
        }
    }

    /// The ports letting payments go takes (closing their trades at the providers first).
    pub fn closer(&self) -> Closer<'_> {
        Closer {
            updates: self.updates.as_ref(),
            gateway: self.gateway.as_ref(),
            clock: self.clock.as_ref(),
            metrics: self.metrics.as_ref(),
        }
    }

    /// The ports the refund worker takes.
    pub fn refunder(&self) -> Refunder<'_> {
        Refunder {
            work: self.work.as_ref(),
            orders: self.orders.as_ref(),
            updates: self.updates.as_ref(),
            gateway: self.gateway.as_ref(),
            clock: self.clock.as_ref(),
            metrics: self.metrics.as_ref(),
        }
    }

    /// The ports placing orders takes.
    pub fn placing(&self) -> Placing<'_> {
        Placing {
            catalog: self.catalog.as_ref(),
            orders: self.orders.as_ref(),
            supplier: self.supplier.as_ref(),
            clock: self.clock.as_ref(),
            metrics: self.metrics.as_ref(),
        }
    }
}
