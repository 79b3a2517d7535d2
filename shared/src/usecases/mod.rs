//! The use cases: what the functions do, written against the ports only.

mod callbacks;
mod cancel;
mod create_orders;
mod create_payment;
pub mod expiry;
mod get_order;
mod idempotent;
pub mod list;
pub mod request;

use std::sync::Arc;

use crate::ports::{Catalog, Clock, ExpiryIndex, Metrics, OrderList, OrderStore, OrderUpdates, SupplierStock};

pub use callbacks::{apply_callback, enqueue_callback, CallbackOutcome};
pub use cancel::cancel_order;
pub use create_orders::{create_orders, Created, Idempotency};
pub use create_payment::{create_payment, RenderPayment};
pub use expiry::{sweep, SweepReport};
pub use get_order::get_order;
pub use idempotent::{at_most_once, Answered, Attempt};
pub use list::{list_orders, CursorKey, OrderPage};

/// The ports a use case may need, built once per cold start and shared by every request.
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
    /// The supplier's stock API.
    pub supplier: Arc<dyn SupplierStock>,
    /// The time.
    pub clock: Arc<dyn Clock>,
    /// Business metrics.
    pub metrics: Arc<dyn Metrics>,
}
