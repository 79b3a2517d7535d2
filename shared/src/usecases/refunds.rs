//! The refund worker (docs/api.md §17): every refunding payment in the work index is sent to its
//! provider with its one refund number (or, once the provider said it is under way, queried), and the
//! verified answer is judged and written: `refunded`, `refund_failed`, or asked again on a later run.

use serde::Serialize;

use crate::change::{update_from_with, Decided};
use crate::error::error_chain;
use crate::ports::{
    Clock, Metric, Metrics, OrderStore, OrderUpdates, PaymentGateway, ProviderError, StoreError, WorkIndex,
};
use crate::refund::{refund_answered, RefundRequest, RefundState, RefundStep, WorkKind, MANUAL_REFUND};

/// Work entries read from the index per page.
pub const PAGE_SIZE: usize = 50;

/// The ports the refund worker takes.
#[derive(Clone, Copy)]
pub struct Refunder<'a> {
    /// The work index.
    pub work: &'a dyn WorkIndex,
    /// Reads the order.
    pub orders: &'a dyn OrderStore,
    /// Writes what the provider answered.
    pub updates: &'a dyn OrderUpdates,
    /// Sends and queries refunds.
    pub gateway: &'a dyn PaymentGateway,
    /// The time.
    pub clock: &'a dyn Clock,
    /// Refunds succeeded and failed.
    pub metrics: &'a dyn Metrics,
}

/// What one run did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct RefundReport {
    /// Refunding payments read from the index.
    pub found: usize,
    /// Refunded by their provider (payment `refunded`).
    pub refunded: usize,
    /// Refused for good by their provider, or with no provider to refund them (`refund_failed`).
    pub failed: usize,
    /// Under way at their provider: queried again on a later run.
    pub pending: usize,
    /// Provider down, slow or refusing our request: sent again on a later run, with the same number.
    pub unreachable: usize,
    /// Already settled when judged (a notification got there first).
    pub skipped: usize,
    /// Store faults: found again on a later run.
    pub errors: usize,
    /// Requests sent to the providers.
    pub provider_requests: usize,
    /// False when the run stopped because its time ran short; the next one carries on.
    pub complete: bool,
    /// The age of the oldest item on the attention list, in seconds (0 when it is empty); also
    /// published as the metric `AttentionOldestAgeSeconds`, which an alarm watches.
    pub oldest_attention_seconds: u64,
}

/// Sends every due refund, page by page, while `keep_going` says there is time left.
pub async fn refund_due(
    ports: &Refunder<'_>,
    keep_going: &(dyn Fn() -> bool + Send + Sync),
) -> Result<RefundReport, StoreError> {
    let mut report = RefundReport::default();
    let mut after: Option<String> = None;
    'pages: loop {
        if !keep_going() {
            break;
        }
        let page = ports.work.work(WorkKind::Refund, after.as_deref(), PAGE_SIZE).await?;
        for item in page.items {
            if !keep_going() {
                break 'pages;
            }
            report.found += 1;
            if let Err(err) = refund_one(ports, &item.order_id, &item.payment_id, &mut report).await {
                report.errors += 1;
                tracing::error!(order_id = %item.order_id, payment_id = %item.payment_id, error = %error_chain(&err), "could not record a refund; the next run retries");
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
    let oldest = ports.work.work(WorkKind::Attention, None, 1).await?;
    let now = ports.clock.now();
    report.oldest_attention_seconds = oldest.items.first().map_or(0, |item| {
        u64::try_from(now.unix_seconds() - item.at.unix_seconds()).unwrap_or(0)
    });
    #[allow(clippy::cast_precision_loss)] // ages far below 2^52 seconds
    ports.metrics.measure(
        Metric::AttentionOldestAgeSeconds,
        report.oldest_attention_seconds as f64,
    );
    tracing::info!(
        found = report.found,
        refunded = report.refunded,
        failed = report.failed,
        pending = report.pending,
        unreachable = report.unreachable,
        skipped = report.skipped,
        errors = report.errors,
        provider_requests = report.provider_requests,
        complete = report.complete,
        oldest_attention_seconds = report.oldest_attention_seconds,
        "refund run finished"
    );
    Ok(report)
}

/// One refunding payment: its order read once, its refund sent (or queried once the provider said it
/// is under way), the answer written against the state read (read again only if it moved meanwhile).
async fn refund_one(
    ports: &Refunder<'_>,
    order_id: &crate::ids::OrderId,
    payment_id: &crate::ids::PaymentId,
    report: &mut RefundReport,
) -> Result<(), StoreError> {
    let Some(state) = ports.orders.order_with_payments(order_id).await? else {
        report.skipped += 1;
        return Ok(());
    };
    let Some(payment) = state.payments.iter().find(|p| &p.id == payment_id) else {
        report.skipped += 1;
        return Ok(());
    };
    let Some(refund) = payment
        .refund
        .as_ref()
        .filter(|_| payment.status == crate::PaymentStatus::Refunding)
    else {
        report.skipped += 1;
        return Ok(());
    };
    let (pid, no) = (payment_id.as_str(), refund.out_refund_no.clone());
    let no = no.as_str();
    let answer = match RefundRequest::of(payment) {
        None => RefundState::Refused {
            code: MANUAL_REFUND.into(),
            message: format!(
                "no provider refunds a {} payment: pay it back by hand",
                payment.method.as_str()
            ),
        },
        Some(request) => {
            report.provider_requests += 1;
            let under_way = refund.provider_status.is_some();
            let asked = if under_way {
                ports.gateway.query_refund(&request).await
            } else {
                ports.gateway.refund(&request).await
            };
            match asked {
                Ok(answer) => answer,
                Err(err) => {
                    report.unreachable += 1;
                    let error = error_chain(&err);
                    match err {
                        ProviderError::Refused(_) => {
                            tracing::error!(payment_id = pid, out_refund_no = no, error = %error, "the provider refused our refund request as malformed; retried next run")
                        }
                        _ => {
                            tracing::warn!(payment_id = pid, out_refund_no = no, error = %error, "refund provider unreachable; retried next run")
                        }
                    }
                    return Ok(());
                }
            }
        }
    };
    let (id, now, judged) = (payment_id.clone(), ports.clock.now(), answer.clone());
    let decided = update_from_with(ports.updates, state, move |state| {
        refund_answered(state, &id, &judged, None, now)
    })
    .await?;
    let step = match decided {
        Decided::Outcome(step) => step,
        Decided::NotFound | Decided::KeyAnswered(_) => RefundStep::Settled,
    };
    match step {
        RefundStep::Refunded(order) => {
            report.refunded += 1;
            ports.metrics.count(Metric::RefundSucceeded);
            let refund_id = match &answer {
                RefundState::Succeeded { refund_id } => refund_id.as_str(),
                _ => "",
            };
            tracing::info!(payment_id = pid, out_refund_no = no, refund_id, %order, "payment refunded")
        }
        RefundStep::Failed(code) => {
            report.failed += 1;
            ports.metrics.count(Metric::RefundFailed);
            tracing::error!(
                payment_id = pid,
                out_refund_no = no,
                code,
                "refund failed for good; an operator must settle it"
            )
        }
        RefundStep::Pending => {
            report.pending += 1;
            tracing::info!(
                payment_id = pid,
                out_refund_no = no,
                "refund under way at the provider; queried next run"
            )
        }
        RefundStep::Settled => report.skipped += 1,
    }
    Ok(())
}
