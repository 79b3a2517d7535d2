//! checkout_payment: what the shopper pays an open payment with, from its provider (docs/api.md §16),
//! stored on the payment in a conditional write and handed out again while young enough.

use crate::change::{update_with, Decided};
use crate::checkout::{plan_checkout, store_checkout, Checkout, CheckoutAsk, CheckoutPlan};
use crate::error::ServiceError;
use crate::ids::{OrderId, PaymentId, UserId};
use crate::payment::Payment;
use crate::ports::{Clock, OrderStore, OrderUpdates, PaymentGateway, ProviderError};

/// The ports a checkout takes.
#[derive(Clone, Copy)]
pub struct Checkouts<'a> {
    /// Reads the order with its payments.
    pub orders: &'a dyn OrderStore,
    /// Stores the checkout on its payment.
    pub updates: &'a dyn OrderUpdates,
    /// The providers.
    pub gateway: &'a dyn PaymentGateway,
    /// The time.
    pub clock: &'a dyn Clock,
}

/// Checks out payment `payment_id` of the caller's order `order_id`: the stored checkout for the same
/// scene while young, else the provider's, stored with the payment (still open, the order unchanged)
/// before it is answered. Nothing is stored when the provider gives nothing.
pub async fn checkout_payment(
    ports: &Checkouts<'_>,
    user: &UserId,
    order_id: &OrderId,
    payment_id: &PaymentId,
    ask: &CheckoutAsk,
) -> Result<(Payment, Checkout), ServiceError> {
    let now = ports.clock.now();
    let state = ports
        .orders
        .order_with_payments(order_id)
        .await?
        .ok_or(ServiceError::OrderNotFound)?;
    let request = match plan_checkout(&state, user, payment_id, ask, now)? {
        CheckoutPlan::Reuse(stored) => return Ok(*stored),
        CheckoutPlan::Ask(request) => request,
    };
    let handed_out = ports.gateway.checkout(&request).await.map_err(|err| match err {
        ProviderError::Unavailable(source) => ServiceError::ProviderUnavailable(source),
        ProviderError::Refused(source) => ServiceError::Internal(source),
        ProviderError::AlreadyPaid => {
            // The provider's notification of that payment pays the order through the processor.
            tracing::warn!(payment_id = %request.payment_id, "provider reports the trade already paid");
            ServiceError::PaymentNotPayable("paid at the provider".into())
        }
    })?;
    let checkout = Checkout {
        provider: request.scene.provider().to_owned(),
        scene: request.scene,
        handed_out,
        expires_at: request.expires_at,
        created_at: now,
    };
    let (user, payment_id) = (user.clone(), payment_id.clone());
    match update_with(ports.updates, order_id, move |state| {
        store_checkout(state, &user, &payment_id, &checkout, now)
    })
    .await?
    {
        Decided::Outcome(outcome) => outcome,
        Decided::NotFound => Err(ServiceError::OrderNotFound),
        Decided::KeyAnswered(_) => Err(ServiceError::internal("a checkout carries no idempotency key")),
    }
}
