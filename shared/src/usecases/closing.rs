//! Letting payments go (docs/api.md §16): a decision whose change lets a checked-out payment go is
//! written only once its trade is closed at the provider and confirmed unpaid; a trade found paid has its
//! success applied through the processor's path instead, and the decision is judged again on the order
//! as that leaves it.

use crate::change::{update_with, Change, Decided, OrderWithPayments};
use crate::closing::{judge_query, Closing, Closings, LetGo, Trade};
use crate::error::ServiceError;
use crate::idempotency::{IdempotencyRecord, IdempotentRequest, KeyUse};
use crate::ids::{OrderId, UserId};
use crate::ports::{Clock, Metrics, OrderStore, OrderUpdates, PaymentGateway, StoreError};
use crate::usecases::apply_callback;

/// Rounds of closing one decision may take: each round closes the trades its judgement named, so more
/// rounds are needed only while concurrent checkouts keep opening trades.
const MAX_ROUNDS: usize = 4;

/// The ports letting payments go takes.
#[derive(Clone, Copy)]
pub struct Closer<'a> {
    /// Reads and writes the order.
    pub updates: &'a dyn OrderUpdates,
    /// Closes and queries trades.
    pub gateway: &'a dyn PaymentGateway,
    /// The time.
    pub clock: &'a dyn Clock,
    /// Counts what a success found on closing applies.
    pub metrics: &'a dyn Metrics,
}

/// A keyed request's idempotency key, checked before any trade is closed for it: a retry of a request
/// that was already answered must not close the trade of the payment that answer made.
#[derive(Clone, Copy)]
pub struct KeyFirst<'a> {
    /// Where the key's record is.
    pub records: &'a dyn OrderStore,
    /// The caller.
    pub user: &'a UserId,
    /// The request.
    pub request: &'a IdempotentRequest,
}

/// Closes `trade`, then queries it to confirm: what that came to.
pub async fn close_trade(gateway: &dyn PaymentGateway, trade: &Trade, now: crate::Timestamp) -> Closing {
    if let Err(err) = gateway.close(trade).await {
        return Closing::Unreachable(err);
    }
    judge_query(trade, gateway.query(trade).await, now)
}

/// Runs `decide` (a pure judgement of the order and of what closing found so far) through
/// [`update_with`], closing the trades it names before judging again: the final decision, and what
/// closing found. A trade found paid has its success applied (event `query:<transaction id>`) before
/// the next judgement. With `key`, a key that already answered is that answer, before anything is closed.
pub async fn let_go<T, F>(
    ports: &Closer<'_>,
    id: &OrderId,
    key: Option<KeyFirst<'_>>,
    decide: F,
) -> Result<(Decided<LetGo<T>>, Closings), StoreError>
where
    T: Send + 'static,
    F: Fn(&OrderWithPayments, &Closings) -> (LetGo<T>, Option<Change>) + Clone + Send + Sync + 'static,
{
    let mut closings = Closings::default();
    for _ in 0..MAX_ROUNDS {
        let (decide, seen) = (decide.clone(), closings.clone());
        let decided = update_with(ports.updates, id, move |state| decide(state, &seen)).await?;
        let Decided::Outcome(LetGo::Close(trades)) = decided else {
            return Ok((decided, closings));
        };
        if let Some(key) = key {
            let record = key.records.idempotency_record(key.user, &key.request.key).await?;
            match IdempotencyRecord::judge(record.as_ref(), key.request, ports.clock.now()) {
                KeyUse::Fresh => {}
                answered => return Ok((Decided::KeyAnswered(answered), closings)),
            }
        }
        for trade in &trades {
            let (payment_id, provider) = (trade.payment_id.as_str(), trade.provider.as_str());
            let closing = close_trade(ports.gateway, trade, ports.clock.now()).await;
            match &closing {
                Closing::Closed => tracing::info!(payment_id, provider, "trade closed at the provider"),
                Closing::Paid(event) => {
                    tracing::warn!(payment_id, provider, event_id = %event.event_id, "trade found paid on closing; applying its success");
                    apply_callback(ports.updates, ports.clock, ports.metrics, event).await?;
                }
                Closing::Unreachable(err) => {
                    tracing::warn!(payment_id, provider, error = %crate::error::error_chain(err), "trade could not be closed")
                }
            }
            closings.record(trade, &closing);
        }
    }
    Err(StoreError::Busy(
        format!("order {id}: trades kept opening while closing").into(),
    ))
}

/// A shopper's decision through [`let_go`], its provider unreachable answered `503 PROVIDER_UNAVAILABLE`.
pub async fn shopper_let_go<T, F>(
    ports: &Closer<'_>,
    id: &OrderId,
    key: Option<KeyFirst<'_>>,
    decide: F,
) -> Result<Decided<T>, ServiceError>
where
    T: Send + 'static,
    F: Fn(&OrderWithPayments, &Closings) -> (LetGo<T>, Option<Change>) + Clone + Send + Sync + 'static,
{
    Ok(match let_go(ports, id, key, decide).await?.0 {
        Decided::NotFound => Decided::NotFound,
        Decided::KeyAnswered(answer) => Decided::KeyAnswered(answer),
        Decided::Outcome(LetGo::Decided(outcome)) => Decided::Outcome(outcome),
        Decided::Outcome(LetGo::Close(trades) | LetGo::Unreachable(trades)) => {
            let names: Vec<String> = trades
                .iter()
                .map(|t| format!("{} {}", t.provider.as_str(), t.payment_id))
                .collect();
            return Err(ServiceError::ProviderUnavailable(
                format!("could not close {} at the provider", names.join(", ")).into(),
            ));
        }
    })
}
