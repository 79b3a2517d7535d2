//! The expiry sweeper (docs/api.md §9): pending orders past their deadline are cancelled with their
//! stock returned; open payments past their own expiry are expired while their order may still be paid.

use serde::Serialize;
use serde_json::json;

use crate::change::{Change, OrderWithPayments};
use crate::closing::{Closings, Guard, LetGo, CLOSE_GRACE_MINUTES};
use crate::payment::PaymentStatus;
use crate::ports::{Due, ExpiryIndex, Metric, StoreError};
use crate::time::Timestamp;
use crate::usecases::cancel::cancellation;
use crate::usecases::closing::{let_go, Closer};
use crate::OrderStatus;

/// Due entries read from the index per page.
pub const PAGE_SIZE: usize = 100;

/// What one sweep did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct SweepReport {
    /// Due entries read from the index.
    pub found: usize,
    /// Orders cancelled (their open payments expired, stock returned).
    pub cancelled: usize,
    /// Payments expired alone (their order still within its deadline).
    pub expired: usize,
    /// Orders found paid when their trade was closed: the success applied, nothing cancelled.
    pub paid_on_close: usize,
    /// Orders cancelled or payments expired with their provider unreachable past the grace period,
    /// marked `close_pending` for later sweeps.
    pub close_pending: usize,
    /// `close_pending` trades closed at last, their mark cleared.
    pub close_confirmed: usize,
    /// Entries left for the next sweep because their provider could not close a trade (within the
    /// grace period, or still owing a pending close).
    pub awaiting_close: usize,
    /// Entries already settled when judged: by a callback, the shopper, another sweep, or earlier in this
    /// one (a payment listed on the same page as its order).
    pub skipped: usize,
    /// Entries whose write failed (store faults); the next sweep finds them again.
    pub failed: usize,
    /// False when the sweep stopped because its time ran short; the next one carries on.
    pub complete: bool,
}

/// What the sweep decided for one entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    /// The order was cancelled; `close_pending` if a trade of it could not be closed.
    Cancelled {
        /// A trade was left to close later.
        close_pending: bool,
    },
    /// The payment was expired alone; `close_pending` if its trade could not be closed.
    PaymentExpired {
        /// Its trade was left to close later.
        close_pending: bool,
    },
    /// A pending close went through: the payment's mark cleared.
    CloseConfirmed,
    /// A trade could not be closed: left for the next sweep.
    AwaitingClose,
    /// Nothing to do any more.
    Skipped,
}

/// Sweeps every due entry, page by page, while `keep_going` says there is time left, closing each trade
/// it lets go at its provider first.
pub async fn sweep(
    expiry: &dyn ExpiryIndex,
    closer: &Closer<'_>,
    keep_going: &(dyn Fn() -> bool + Send + Sync),
) -> Result<SweepReport, StoreError> {
    let now = closer.clock.now();
    let mut report = SweepReport::default();
    let mut after: Option<String> = None;
    // Orders whose trade could not be closed in this sweep: their other entries wait with them, rather
    // than asking a provider that just failed again.
    let mut awaiting: Vec<crate::ids::OrderId> = Vec::new();
    'pages: loop {
        if !keep_going() {
            break;
        }
        let page = expiry.due(now, after.as_deref(), PAGE_SIZE).await?;
        for due in page.due {
            if !keep_going() {
                break 'pages;
            }
            report.found += 1;
            let id = due.order_id().clone();
            if awaiting.contains(&id) {
                report.skipped += 1;
                continue;
            }
            let decided = let_go(closer, &id, None, move |state, closings| {
                expire_due(state, &due, closings, now)
            })
            .await;
            match decided.and_then(|(decided, closings)| Ok((decided.without_key()?, closings))) {
                Ok((_, closings)) if !closings.paid.is_empty() => report.paid_on_close += 1,
                Ok((Some(LetGo::Decided(expiry)), _)) => match expiry {
                    Expiry::Cancelled { close_pending } => {
                        report.cancelled += 1;
                        report.close_pending += usize::from(close_pending);
                    }
                    Expiry::PaymentExpired { close_pending } => {
                        report.expired += 1;
                        report.close_pending += usize::from(close_pending);
                    }
                    Expiry::CloseConfirmed => report.close_confirmed += 1,
                    Expiry::AwaitingClose => {
                        report.awaiting_close += 1;
                        awaiting.push(id);
                    }
                    Expiry::Skipped => report.skipped += 1,
                },
                Ok((Some(LetGo::Close(_) | LetGo::Unreachable(_)), _)) => {
                    report.awaiting_close += 1;
                    awaiting.push(id);
                }
                Ok((None, _)) => report.skipped += 1,
                Err(err) => {
                    report.failed += 1;
                    tracing::error!(order_id = %id, error = %crate::error::error_chain(&err), "could not expire; the next sweep retries");
                }
            }
        }
        match page.next {
            Some(next) => after = Some(next),
            None => {
                report.complete = true;
                break;
            }
        }
    }
    tracing::info!(
        found = report.found,
        cancelled = report.cancelled,
        expired = report.expired,
        paid_on_close = report.paid_on_close,
        close_pending = report.close_pending,
        close_confirmed = report.close_confirmed,
        awaiting_close = report.awaiting_close,
        skipped = report.skipped,
        failed = report.failed,
        complete = report.complete,
        "expiry sweep finished"
    );
    // A cancelled order's open payments expire with it.
    let metrics = closer.metrics;
    metrics.add(Metric::OrdersCancelledBySweeper, report.cancelled as u64);
    metrics.add(Metric::PaymentsExpired, (report.cancelled + report.expired) as u64);
    Ok(report)
}

/// One due entry against its order as the store holds it and what closing found so far
/// ([`expiry_of`]), held back while a trade it lets go is not closed: closed first; its provider
/// unreachable, left for the next sweep until [`CLOSE_GRACE_MINUTES`] past the deadline, then let go
/// anyway with the payment marked `close_pending`.
pub fn expire_due(
    state: &OrderWithPayments,
    due: &Due,
    closings: &Closings,
    now: Timestamp,
) -> (LetGo<Expiry>, Option<Change>) {
    let (expiry, change) = expiry_of(state, due, now);
    let Some(mut change) = change else {
        return (LetGo::Decided(expiry), None);
    };
    let trades = match closings.guard(state, &change) {
        Guard::Go => return (LetGo::Decided(expiry), Some(change)),
        Guard::Close(trades) => return (LetGo::Close(trades), None),
        Guard::Unreachable(trades) => trades,
    };
    let deadline = match (expiry, due) {
        (Expiry::Cancelled { .. }, _) | (_, Due::Order(_)) => state.order.payment_deadline,
        (_, Due::Payment(_, id)) => state
            .payments
            .iter()
            .find(|p| &p.id == id)
            .map_or(state.order.payment_deadline, |p| p.expires_at),
    };
    if expiry == Expiry::CloseConfirmed || now < deadline.plus_minutes(CLOSE_GRACE_MINUTES) {
        return (LetGo::Decided(Expiry::AwaitingClose), None);
    }
    for trade in &trades {
        if let Some(payment) = change.payments.iter_mut().find(|p| p.id == trade.payment_id) {
            payment.close_pending = true;
            payment.log(
                "close_pending",
                json!({ "provider": trade.provider.as_str(), "reason": "provider unreachable past the grace period" }),
                None,
                now,
            );
        }
    }
    let expiry = match expiry {
        Expiry::Cancelled { .. } => Expiry::Cancelled { close_pending: true },
        _ => Expiry::PaymentExpired { close_pending: true },
    };
    (LetGo::Decided(expiry), Some(change))
}

/// One due entry against its order as the store holds it: cancel the order if it is pending past its
/// deadline; else expire the payment if it is open past its own expiry and its order is pending; else
/// clear a payment's `close_pending` mark (its trade closed now); else nothing (a callback, the shopper
/// or an earlier sweep got there first).
pub fn expiry_of(state: &OrderWithPayments, due: &Due, now: Timestamp) -> (Expiry, Option<Change>) {
    let order = &state.order;
    if order.status == OrderStatus::Pending && now >= order.payment_deadline {
        if let Some(change) = cancellation(state, "system:expiry", "支付超时，订单自动取消", "expired", now)
        {
            return (Expiry::Cancelled { close_pending: false }, Some(change));
        }
    }
    let Due::Payment(_, payment_id) = due else {
        return (Expiry::Skipped, None);
    };
    let Some(payment) = state.payments.iter().find(|p| &p.id == payment_id) else {
        return (Expiry::Skipped, None);
    };
    let mut change = Change::of(state, now);
    let mut updated = payment.clone();
    if payment.status.is_open() && now >= payment.expires_at && order.status == OrderStatus::Pending {
        let window = json!({ "reason": "payment window passed" });
        if updated
            .transition(PaymentStatus::Expired, "expired", window, now)
            .is_ok()
        {
            change.payment(updated);
            return (Expiry::PaymentExpired { close_pending: false }, Some(change));
        }
    }
    if payment.close_pending && !payment.status.is_open() {
        updated.close_pending = false;
        updated.log("closed_at_provider", json!({ "after": "close_pending" }), None, now);
        change.payment(updated);
        return (Expiry::CloseConfirmed, Some(change));
    }
    (Expiry::Skipped, None)
}
