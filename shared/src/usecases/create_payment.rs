//! create_payment (the seed's `PaymentService.validate_payment_creation`): a new payment for the caller's
//! order, superseding any open one in the same write.

use serde_json::json;

use crate::error::ServiceError;
use crate::ids::{OrderId, PaymentId, UserId};
use crate::money::Money;
use crate::order::{Order, OrderStatus};
use crate::payment::{Payment, PaymentStatus};
use crate::ports::{update_with, Change, OrderWithPayments};
use crate::time::Timestamp;
use crate::usecases::request::CreatePayment;
use crate::usecases::Services;

/// Creates a payment for order `id` on behalf of `user`: the order and the new payment.
pub async fn create_payment(
    svc: &Services,
    user: &UserId,
    id: &OrderId,
    cmd: &CreatePayment,
) -> Result<(Order, Payment), ServiceError> {
    let (user, cmd) = (user.clone(), cmd.clone());
    let new_id = PaymentId::generate();
    let now = svc.clock.now();
    let outcome = update_with(svc.updates.as_ref(), id, move |state| {
        judge(state, &user, &cmd, &new_id, now)
    })
    .await?;
    outcome.unwrap_or(Err(ServiceError::OrderNotFound))
}

/// The seed's checks, in its order, against the order as the store holds it; when they pass, the change
/// that expires every open payment (logged `superseded`) and adds the new one.
pub fn judge(
    state: &OrderWithPayments,
    user: &UserId,
    cmd: &CreatePayment,
    new_id: &PaymentId,
    now: Timestamp,
) -> (Result<(Order, Payment), ServiceError>, Option<Change>) {
    let order = &state.order;
    let refused = |err| (Err(err), None);
    if &order.user_id != user {
        return refused(ServiceError::OrderNotFound);
    }
    if order.status != OrderStatus::Pending {
        return refused(ServiceError::InvalidOrderStatus(order.status));
    }
    if let Some(amount) = &cmd.amount {
        match Money::from_json(amount) {
            Err(_) => return refused(ServiceError::InvalidAmountFormat),
            Ok(amount) if !order.total_amount.matches(amount) => return refused(ServiceError::AmountMismatch),
            Ok(_) => {}
        }
    }
    if now >= order.payment_deadline {
        return refused(ServiceError::OrderExpired);
    }
    let mut change = Change::of(state, now);
    for open in state.payments.iter().filter(|p| p.status.is_open()) {
        let mut superseded = open.clone();
        if superseded
            .transition(PaymentStatus::Expired, "superseded", json!({ "by": new_id }), now)
            .is_ok()
        {
            change.payment(superseded);
        }
    }
    let mut payment = Payment::create_for_order(&change.order, cmd.payment_method, cmd.ttl_minutes, now);
    payment.id = new_id.clone();
    change.created = Some(payment.clone());
    (Ok((change.order.clone(), payment)), Some(change))
}
