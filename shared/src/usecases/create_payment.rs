//! create_payment (the seed's `PaymentService.validate_payment_creation`): a new payment for the caller's
//! order, superseding any open one in the same write.

use serde_json::{json, Value};

use crate::error::ServiceError;
use crate::idempotency::{IdempotencyRecord, IdempotentRequest, KeyUse, StoredResponse};
use crate::ids::{OrderId, PaymentId, UserId};
use crate::money::Money;
use crate::order::{Order, OrderStatus};
use crate::payment::{Payment, PaymentStatus};
use crate::ports::{update_with, Change, OrderWithPayments, StoreError};
use crate::time::Timestamp;
use crate::usecases::request::CreatePayment;
use crate::usecases::Services;

/// What create_payment answers: the order and its new payment, or the answer its idempotency key
/// already gave.
#[derive(Debug, Clone)]
pub enum PaymentPlaced {
    /// Created now (status 201).
    Created(Box<(Order, Payment)>),
    /// The key's earlier answer, to replay as it was.
    Replayed(StoredResponse),
}

/// How a `201` answer is rendered (stored with the payment when a key is given, and replayed).
pub type RenderPayment = fn(&Order, &Payment) -> Value;

/// Creates a payment for order `id` on behalf of `user`, at most once per idempotency key.
pub async fn create_payment(
    svc: &Services,
    user: &UserId,
    id: &OrderId,
    cmd: &CreatePayment,
    idempotency: Option<(&IdempotentRequest, RenderPayment)>,
) -> Result<PaymentPlaced, ServiceError> {
    let now = svc.clock.now();
    if let Some((request, _)) = idempotency {
        if let Some(answer) = earlier_answer(svc, user, request).await? {
            return answer;
        }
    }
    let (user_id, cmd) = (user.clone(), cmd.clone());
    let new_id = PaymentId::generate();
    let keyed = idempotency.map(|(request, render)| (request.clone(), render));
    let outcome = update_with(svc.updates.as_ref(), id, move |state| {
        let (outcome, mut change) = judge(state, &user_id, &cmd, &new_id, now);
        if let (Ok((order, payment)), Some(change), Some((request, render))) = (&outcome, change.as_mut(), &keyed) {
            let response = StoredResponse {
                status: 201,
                body: render(order, payment).to_string(),
            };
            change.idempotency = Some(IdempotencyRecord::new(&user_id, request, response, now));
        }
        (outcome, change)
    })
    .await;
    match outcome {
        Ok(Some(Ok(created))) => Ok(PaymentPlaced::Created(Box::new(created))),
        Ok(Some(Err(err))) => Err(err),
        Ok(None) => Err(ServiceError::OrderNotFound),
        // A concurrent retry with the same key wrote first: answer as it did.
        Err(StoreError::KeyTaken) => match idempotency {
            Some((request, _)) => earlier_answer(svc, user, request)
                .await?
                .unwrap_or_else(|| Err(ServiceError::ServiceBusy("idempotency record vanished".into()))),
            None => Err(StoreError::KeyTaken.into()),
        },
        Err(err) => Err(err.into()),
    }
}

/// The answer a live record for the key gives: a replay, or `422` for another request.
async fn earlier_answer(
    svc: &Services,
    user: &UserId,
    request: &IdempotentRequest,
) -> Result<Option<Result<PaymentPlaced, ServiceError>>, ServiceError> {
    let existing = svc.orders.idempotency_record(user, &request.key).await?;
    Ok(
        match IdempotencyRecord::judge(existing.as_ref(), request, svc.clock.now()) {
            KeyUse::Fresh => None,
            KeyUse::Replay(response) => Some(Ok(PaymentPlaced::Replayed(response))),
            KeyUse::Reused => Some(Err(ServiceError::IdempotencyKeyReused)),
        },
    )
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
