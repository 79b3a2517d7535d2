//! The use cases: what the functions do, written against the ports only.

mod create_orders;
mod get_order;
pub mod request;

use std::sync::Arc;

use crate::ports::{Catalog, Clock, OrderStore, SupplierStock};

pub use create_orders::{create_orders, Created};
pub use get_order::get_order;

/// The ports a use case may need, built once per cold start and shared by every request.
#[derive(Clone)]
pub struct Services {
    /// Products and addresses.
    pub catalog: Arc<dyn Catalog>,
    /// Orders and payments.
    pub orders: Arc<dyn OrderStore>,
    /// The supplier's stock API.
    pub supplier: Arc<dyn SupplierStock>,
    /// The time.
    pub clock: Arc<dyn Clock>,
}
