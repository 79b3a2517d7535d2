//! checkout_payment: what the shopper pays an open payment with, from its provider (docs/api.md §16),
//! stored on the payment in a conditional write and handed out again while young enough.

use crate::change::{update_from_with, Decided};
use crate::checkout::{plan_checkout, store_checkout, Checkout, CheckoutAsk, CheckoutPlan, CheckoutRequest};
use crate::closing::{judge_query, Closing, Trade};
use crate::error::ServiceError;
use crate::ids::{OrderId, PaymentId, UserId};
use crate::payment::Payment;
use crate::ports::{OrderStore, ProviderError};
use crate::usecases::apply_callback;
use crate::usecases::closing::Closer;

/// The ports a checkout takes.
#[derive(Clone, Copy)]
pub struct Checkouts<'a> {
    /// Reads the order with its payments.
    pub orders: &'a dyn OrderStore,
    /// Stores the checkout on its payment, and talks to the providers.
    pub closer: Closer<'a>,
}

/// Checks out payment `payment_id` of the caller's order `order_id`: the stored checkout for the same
/// scene while young, else the provider's, stored with the payment (still open, the order unchanged)
/// before it is answered. Nothing is stored when the provider gives nothing. A provider that reports the
/// trade already paid is asked for it, and the success applied through the processor's path.
pub async fn checkout_payment(
    ports: &Checkouts<'_>,
    user: &UserId,
    order_id: &OrderId,
    payment_id: &PaymentId,
    ask: &CheckoutAsk,
) -> Result<(Payment, Checkout), ServiceError> {
    let Closer {
        updates,
        gateway,
        clock,
        ..
    } = ports.closer;
    let now = clock.now();
    let state = ports
        .orders
        .order_with_payments(order_id)
        .await?
        .ok_or(ServiceError::OrderNotFound)?;
    let request = match plan_checkout(&state, user, payment_id, ask, now)? {
        CheckoutPlan::Reuse(stored) => return Ok(*stored),
        CheckoutPlan::Ask(request) => request,
    };
    let handed_out = match gateway.checkout(&request).await {
        Ok(handed_out) => handed_out,
        Err(ProviderError::Unavailable(source)) => return Err(ServiceError::ProviderUnavailable(source)),
        Err(ProviderError::Refused(source)) => return Err(ServiceError::Internal(source)),
        Err(ProviderError::AlreadyPaid) => {
            tracing::warn!(payment_id = %request.payment_id, "provider reports the trade already paid");
            apply_paid(&ports.closer, &request).await?;
            return Err(ServiceError::PaymentNotPayable("paid at the provider".into()));
        }
    };
    let checkout = Checkout {
        provider: request.scene.provider().to_owned(),
        scene: request.scene,
        handed_out,
        expires_at: request.expires_at,
        created_at: now,
    };
    let (user, payment_id) = (user.clone(), payment_id.clone());
    // The order as read for the plan is judged first: written unless it moved meanwhile.
    let stored = match update_from_with(updates, state, move |state| {
        store_checkout(state, &user, &payment_id, &checkout, now)
    })
    .await?
    {
        Decided::Outcome(outcome) => outcome,
        Decided::NotFound => Err(ServiceError::OrderNotFound),
        Decided::KeyAnswered(_) => Err(ServiceError::internal("a checkout carries no idempotency key")),
    };
    if let (Err(ServiceError::PaymentNotPayable(_)), Some(trade)) = (&stored, opened_trade(&request)) {
        // The payment was let go while its trade opened: nothing was handed out, and the trade is
        // closed again rather than left payable until its own expiry.
        if let Err(err) = gateway.close(&trade).await {
            tracing::warn!(payment_id = %trade.payment_id, error = %crate::error::error_chain(&err), "could not close a trade opened for a payment let go meanwhile");
        }
    }
    stored
}

/// The trade a provider call for `request` opened, if it opens one (WeChat Pay's prepay and Alipay's
/// precreate do; a page link and a bank transfer open nothing until the shopper acts).
fn opened_trade(request: &CheckoutRequest) -> Option<Trade> {
    use crate::checkout::Scene;
    let provider = match request.scene {
        Scene::Native | Scene::Jsapi => crate::closing::TradeProvider::Wechatpay,
        Scene::Qr => crate::closing::TradeProvider::Alipay,
        Scene::Page | Scene::Transfer => return None,
    };
    Some(Trade {
        payment_id: request.payment_id.clone(),
        provider,
    })
}

/// The provider says `request`'s trade is paid: its success, as the provider's query reports it, applied
/// through the processor's path (event `query:<transaction id>`); a query that cannot confirm it leaves
/// the provider's notification to do so.
async fn apply_paid(ports: &Closer<'_>, request: &CheckoutRequest) -> Result<(), ServiceError> {
    let Some(trade) = opened_trade(request) else {
        return Ok(());
    };
    match judge_query(&trade, ports.gateway.query(&trade).await, ports.clock.now()) {
        Closing::Paid(event) => {
            apply_callback(ports.updates, ports.clock, ports.metrics, &event).await?;
        }
        Closing::Closed | Closing::Unreachable(_) => {
            tracing::warn!(payment_id = %trade.payment_id, "the provider's query did not confirm the payment; its notification will")
        }
    }
    Ok(())
}
