//! create_payment (the seed's `PaymentService.validate_payment_creation`): a new payment for the caller's
//! order, superseding any open one in the same write.

use serde_json::{json, Value};

use crate::change::{Change, Decided, OrderWithPayments};
use crate::closing::guarded;
use crate::error::ServiceError;
use crate::idempotency::{IdempotencyRecord, IdempotentRequest, StoredResponse};
use crate::ids::{OrderId, PaymentId, UserId};
use crate::money::Money;
use crate::order::{Order, OrderStatus};
use crate::payment::Payment;
use crate::ports::OrderStore;
use crate::time::Timestamp;
use crate::usecases::closing::{shopper_let_go, Closer, KeyFirst};
use crate::usecases::idempotent::{at_most_once, Answered, Attempt};
use crate::usecases::request::CreatePayment;

/// How a `201` answer is rendered (stored with the payment when a key is given, and replayed).
pub type RenderPayment = fn(&Order, &Payment) -> Value;

/// Creates a payment for order `id` on behalf of `user`, at most once per idempotency key: the key's
/// record rides in the payment's write ([`at_most_once`]). The trade of an open payment it supersedes is
/// closed at its provider first: found paid, the order is paid (`400 INVALID_ORDER_STATUS`); the
/// provider unreachable, nothing changes (`503 PROVIDER_UNAVAILABLE`).
pub async fn create_payment(
    closer: &Closer<'_>,
    orders: &dyn OrderStore,
    user: &UserId,
    id: &OrderId,
    cmd: &CreatePayment,
    idempotency: Option<(&IdempotentRequest, RenderPayment)>,
) -> Result<Answered<(Order, Payment)>, ServiceError> {
    let (clock, now) = (closer.clock, closer.clock.now());
    let (user_id, cmd) = (user.clone(), cmd.clone());
    let new_id = PaymentId::generate();
    let keyed = idempotency.map(|(request, render)| (request.clone(), render));
    let key = idempotency.map(|(request, _)| KeyFirst {
        records: orders,
        user,
        request,
    });
    let decided = shopper_let_go(closer, id, key, move |state, closings| {
        let (outcome, mut change) = new_payment(state, &user_id, &cmd, &new_id, now);
        if let (Ok((order, payment)), Some(change), Some((request, render))) = (&outcome, change.as_mut(), &keyed) {
            let response = StoredResponse {
                status: 201,
                body: render(order, payment).to_string(),
            };
            change.idempotency = Some(IdempotencyRecord::new(&user_id, request, response, now));
        }
        guarded(state, closings, (outcome, change))
    })
    .await;
    let attempt = match decided? {
        Decided::NotFound => Err(ServiceError::OrderNotFound),
        Decided::Outcome(outcome) => outcome.map(Attempt::Made),
        Decided::KeyAnswered(answer) => Ok(Attempt::KeyAnswered(answer)),
    };
    let request = idempotency.map(|(request, _)| request);
    at_most_once(orders, clock, user, request, attempt).await
}

/// The seed's checks, in its order, against the order as the store holds it; when they pass, the change
/// that expires every open payment (logged `superseded`) and adds the new one.
pub fn new_payment(
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
    change.expire_open_payments(state, None, "superseded", &json!({ "by": new_id }), now);
    let mut payment = Payment::create_for_order(&change.order, cmd.payment_method, cmd.ttl_minutes, now);
    payment.id = new_id.clone();
    change.created = Some(payment.clone());
    (Ok((change.order.clone(), payment)), Some(change))
}
