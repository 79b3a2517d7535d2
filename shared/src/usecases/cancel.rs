//! cancel_order: the shopper cancels a pending order; its open payments expire and its stock returns,
//! in one write. The same cancellation serves the expiry sweeper.

use serde_json::json;

use crate::change::{Change, OrderWithPayments};
use crate::closing::guarded;
use crate::error::ServiceError;
use crate::ids::{OrderId, UserId};
use crate::order::OrderStatus;
use crate::time::Timestamp;
use crate::usecases::closing::{shopper_let_go, Closer};

/// The change that cancels a pending order: order `→ cancelled` by `operator`, every open payment `→
/// expired` (logged as `payment_event`), the quantity back to a locally stocked product. `None` if the
/// order is not pending.
pub(crate) fn cancellation(
    state: &OrderWithPayments,
    operator: &str,
    note: &str,
    payment_event: &str,
    now: Timestamp,
) -> Option<Change> {
    let mut change = Change::of(state, now);
    change
        .order
        .transition(OrderStatus::Cancelled, operator, note, now)
        .ok()?;
    change.expire_open_payments(state, None, payment_event, &json!({ "order": "cancelled" }), now);
    change.release_stock();
    Some(change)
}

/// Cancels the caller's order and answers it with its payments as they now are. A trade open at a
/// provider is closed first: found paid, the order is paid instead (`409 ORDER_NOT_CANCELLABLE`); the
/// provider unreachable, nothing changes (`503 PROVIDER_UNAVAILABLE`).
pub async fn cancel_order(closer: &Closer<'_>, user: &UserId, id: &OrderId) -> Result<OrderWithPayments, ServiceError> {
    let (user, now) = (user.clone(), closer.clock.now());
    shopper_let_go(closer, id, None, move |state, closings| {
        guarded(state, closings, shopper_cancel(state, &user, now))
    })
    .await?
    .without_key()?
    .unwrap_or(Err(ServiceError::OrderNotFound))
}

/// Pending: cancel. Already cancelled: answer it again and write nothing (stock returns once). Any other
/// status: `409 ORDER_NOT_CANCELLABLE`. Another user's order is not found.
pub fn shopper_cancel(
    state: &OrderWithPayments,
    user: &UserId,
    now: Timestamp,
) -> (Result<OrderWithPayments, ServiceError>, Option<Change>) {
    if &state.order.user_id != user {
        return (Err(ServiceError::OrderNotFound), None);
    }
    match state.order.status {
        OrderStatus::Pending => {
            let operator = format!("user:{user}");
            match cancellation(state, &operator, "用户取消订单", "cancelled_by_user", now) {
                Some(change) => (Ok(state.after(&change)), Some(change)),
                None => (Err(ServiceError::OrderNotCancellable(state.order.status)), None),
            }
        }
        OrderStatus::Cancelled => (Ok(state.clone()), None),
        other => (Err(ServiceError::OrderNotCancellable(other)), None),
    }
}
