//! The expiry sweeper (docs/api.md §9): pending orders past their deadline are cancelled with their
//! stock returned; open payments past their own expiry are expired while their order may still be paid.

use serde::Serialize;
use serde_json::json;

use crate::change::{update_with, Change, OrderWithPayments};
use crate::payment::PaymentStatus;
use crate::ports::{Clock, Due, ExpiryIndex, OrderUpdates, StoreError};
use crate::time::Timestamp;
use crate::usecases::cancel::cancellation;
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
    /// The order was cancelled.
    Cancelled,
    /// The payment was expired alone.
    PaymentExpired,
    /// Nothing to do any more.
    Skipped,
}

/// Sweeps every due entry, page by page, while `keep_going` says there is time left.
pub async fn sweep(
    expiry: &dyn ExpiryIndex,
    updates: &dyn OrderUpdates,
    clock: &dyn Clock,
    keep_going: &(dyn Fn() -> bool + Send + Sync),
) -> Result<SweepReport, StoreError> {
    let now = clock.now();
    let mut report = SweepReport::default();
    let mut after: Option<String> = None;
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
            let decided = update_with(updates, &id, move |state| expire_due(state, &due, now)).await;
            match decided.and_then(crate::change::Decided::without_key) {
                Ok(Some(Expiry::Cancelled)) => report.cancelled += 1,
                Ok(Some(Expiry::PaymentExpired)) => report.expired += 1,
                Ok(Some(Expiry::Skipped) | None) => report.skipped += 1,
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
    tracing::info!(report = %json!(report), "expiry sweep finished");
    Ok(report)
}

/// One due entry against its order as the store holds it: cancel the order if it is pending past its
/// deadline; else expire the payment if it is open past its own expiry and its order is pending; else
/// nothing (a callback, the shopper or an earlier sweep got there first).
pub fn expire_due(state: &OrderWithPayments, due: &Due, now: Timestamp) -> (Expiry, Option<Change>) {
    let order = &state.order;
    if order.status == OrderStatus::Pending && now >= order.payment_deadline {
        if let Some(change) = cancellation(state, "system:expiry", "支付超时，订单自动取消", "expired", now)
        {
            return (Expiry::Cancelled, Some(change));
        }
    }
    if let Due::Payment(_, payment_id) = due {
        let open = state
            .payments
            .iter()
            .find(|p| &p.id == payment_id && p.status.is_open() && now >= p.expires_at);
        if let (Some(open), OrderStatus::Pending) = (open, order.status) {
            let mut change = Change::of(state, now);
            let mut payment = open.clone();
            if payment
                .transition(
                    PaymentStatus::Expired,
                    "expired",
                    json!({ "reason": "payment window passed" }),
                    now,
                )
                .is_ok()
            {
                change.payment(payment);
                return (Expiry::PaymentExpired, Some(change));
            }
        }
    }
    (Expiry::Skipped, None)
}
