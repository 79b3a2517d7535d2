//! get_order: the caller's order with its payments.

use crate::change::OrderWithPayments;
use crate::error::ServiceError;
use crate::ids::{OrderId, UserId};
use crate::ports::OrderStore;

/// The order and its payments, if the order exists and belongs to `user`; another user's order is
/// indistinguishable from a missing one.
pub async fn get_order(
    orders: &dyn OrderStore,
    user: &UserId,
    id: &OrderId,
) -> Result<OrderWithPayments, ServiceError> {
    match orders.order_with_payments(id).await? {
        Some(found) if &found.order.user_id == user => Ok(found),
        _ => Err(ServiceError::OrderNotFound),
    }
}
