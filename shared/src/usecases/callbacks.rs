//! Payment callbacks after verification: enqueueing the normalized event, and applying it exactly once.

use serde_json::json;

use crate::callback::{PaymentEvent, ReportedStatus};
use crate::change::{update_with, Change, OrderWithPayments};
use crate::error::ServiceError;
use crate::order::OrderStatus;
use crate::payment::{Payment, PaymentStatus};
use crate::ports::{CallbackQueue, Clock, Enqueued, Metric, Metrics, OrderUpdates, StoreError};
use crate::refund::{refund_answered, RefundState, RefundStep, CALLBACK_OPERATOR};
use crate::time::Timestamp;

/// Hands a verified event to the queue; a queue that cannot take it is `503`, so the provider retries.
pub async fn enqueue_callback(queue: &dyn CallbackQueue, event: &PaymentEvent) -> Result<(), ServiceError> {
    let enqueued = queue
        .enqueue(event)
        .await
        .map_err(|e| ServiceError::ServiceBusy(Box::new(e)))?;
    let (event_id, payment_id, status) = (event.event_id.as_str(), event.payment_id.as_str(), event.status);
    match enqueued {
        Enqueued::Taken => tracing::info!(event_id, payment_id, ?status, "callback enqueued"),
        Enqueued::Duplicate => {
            tracing::info!(
                event_id,
                payment_id,
                ?status,
                "callback duplicate; the queue already holds it"
            )
        }
    }
    Ok(())
}

/// What applying one event did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallbackOutcome {
    /// The payment moved to this status, and the order is now in this one.
    Applied(PaymentStatus, OrderStatus),
    /// The payment already applied this event: nothing written.
    AlreadyApplied,
    /// Recorded on the payment, nothing moved: a status the payment is already past.
    Noted,
    /// The amount differs from the payment's: logged on the payment, nothing moved.
    AmountMismatch,
    /// A success that the shop cannot keep (order cancelled, paid by another payment, or payment
    /// failed): recorded and flagged `refund_required`.
    RefundRequired,
    /// The event's format belongs to another provider than the payment's method: not applied.
    NotThisProvider,
    /// A refund notification moved the payment's refund on: to `refunded`, `refund_failed`, or a new
    /// status short of final.
    Refund(RefundOutcome),
    /// No such payment: dropped.
    UnknownPayment,
}

/// What a refund notification did to the payment's refund.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefundOutcome {
    /// The payment is `refunded`.
    Refunded,
    /// The payment is `refund_failed`.
    Failed,
    /// Still under way at the provider.
    Pending,
}

/// Applies one event to its payment (and order), exactly once however often it is delivered. Only store
/// faults are errors; the queue redelivers those.
pub async fn apply_callback(
    updates: &dyn OrderUpdates,
    clock: &dyn Clock,
    metrics: &dyn Metrics,
    event: &PaymentEvent,
) -> Result<CallbackOutcome, StoreError> {
    let outcome = match updates.order_of_payment(&event.payment_id).await? {
        None => None,
        Some(order_id) => {
            let (event, now) = (event.clone(), clock.now());
            update_with(updates, &order_id, move |state| {
                let (outcome, change) = event_outcome(state, &event, now);
                let late = matches!(outcome, CallbackOutcome::Applied(..) | CallbackOutcome::RefundRequired)
                    && late_success(state, &event);
                ((outcome, late), change)
            })
            .await?
            .without_key()?
        }
    };
    let (outcome, late) = outcome.unwrap_or((CallbackOutcome::UnknownPayment, false));
    if late {
        metrics.count(Metric::LateSuccess);
    }
    let (event_id, payment_id) = (event.event_id.as_str(), event.payment_id.as_str());
    match outcome {
        CallbackOutcome::Applied(payment, order) => {
            tracing::info!(event_id, payment_id, %payment, %order, "callback applied")
        }
        CallbackOutcome::AlreadyApplied => tracing::info!(event_id, payment_id, "callback already applied"),
        CallbackOutcome::Noted => tracing::info!(event_id, payment_id, "callback noted; status already past it"),
        CallbackOutcome::AmountMismatch => {
            metrics.count(Metric::AmountMismatch);
            tracing::error!(event_id, payment_id, amount = %event.amount, "callback amount does not match the payment")
        }
        CallbackOutcome::RefundRequired => {
            metrics.count(Metric::RefundRequired);
            metrics.count(Metric::RefundStarted);
            tracing::error!(
                event_id,
                payment_id,
                "payment succeeded for an order that cannot take it; refund required"
            )
        }
        CallbackOutcome::Refund(RefundOutcome::Refunded) => {
            metrics.count(Metric::RefundSucceeded);
            tracing::info!(event_id, payment_id, refund_id = %event.provider_txn_id, "refund notification applied; payment refunded")
        }
        CallbackOutcome::Refund(RefundOutcome::Failed) => {
            metrics.count(Metric::RefundFailed);
            tracing::error!(
                event_id,
                payment_id,
                "refund notification: the provider closed the refund; refund_failed"
            )
        }
        CallbackOutcome::Refund(RefundOutcome::Pending) => {
            tracing::warn!(event_id, payment_id, status = ?event.status, "refund notification applied; refund not final")
        }
        CallbackOutcome::NotThisProvider => {
            tracing::warn!(event_id, payment_id, source = ?event.source, "callback from another provider than the payment's; not applied")
        }
        CallbackOutcome::UnknownPayment => {
            tracing::warn!(event_id, payment_id, "callback for an unknown payment; dropped")
        }
    }
    metrics.count(Metric::CallbackApplied);
    Ok(outcome)
}

/// Whether `event` is a success for a payment this service had already let go: expired or failed, or
/// its order cancelled (docs/api.md §8, late successes).
fn late_success(state: &OrderWithPayments, event: &PaymentEvent) -> bool {
    event.status == ReportedStatus::Succeeded
        && state
            .payments
            .iter()
            .find(|p| p.id == event.payment_id)
            .is_some_and(|payment| {
                matches!(payment.status, PaymentStatus::Expired | PaymentStatus::Failed)
                    || state.order.status == OrderStatus::Cancelled && payment.status.is_open()
            })
}

/// docs/api.md §8 as one pure function of the order's state: what the event means for its payment and
/// order, and the change that records it (every recorded event carries its id, which is how a redelivery
/// is recognised).
pub fn event_outcome(
    state: &OrderWithPayments,
    event: &PaymentEvent,
    now: Timestamp,
) -> (CallbackOutcome, Option<Change>) {
    use CallbackOutcome::*;
    let Some(current) = state.payments.iter().find(|p| p.id == event.payment_id) else {
        return (UnknownPayment, None);
    };
    if current.has_applied(event.event_id.as_str()) {
        return (AlreadyApplied, None);
    }
    if !event.source.speaks_for(current.method) {
        return (NotThisProvider, None);
    }
    if let Some(answer) = event.status.refund_state(&event.provider_txn_id) {
        return refund_event_outcome(state, current, event, &answer, now);
    }
    let mut change = Change::of(state, now);
    let mut payment = current.clone();
    let mut details = json!({
        "provider_txn_id": event.provider_txn_id,
        "amount": event.amount,
        "occurred_at": event.occurred_at,
        "source": event.source,
    });
    let from = payment.status;
    let (log, outcome) = match event.status {
        ReportedStatus::Processing if from.can_transition(PaymentStatus::Processing) => {
            payment.status = PaymentStatus::Processing;
            ("processing", Applied(PaymentStatus::Processing, state.order.status))
        }
        ReportedStatus::Failed if from.is_open() => {
            payment.status = PaymentStatus::Failed;
            ("failed", Applied(PaymentStatus::Failed, state.order.status))
        }
        ReportedStatus::Processing | ReportedStatus::Failed => {
            details["ignored"] = json!(format!("payment is already {from}"));
            ("stale_status", Noted)
        }
        ReportedStatus::Refunded | ReportedStatus::RefundAbnormal | ReportedStatus::RefundClosed => {
            unreachable!("refund notifications are judged by refund_event_outcome")
        }
        ReportedStatus::Succeeded if !event.source.amount_matches(payment.amount, event.amount) => {
            details["expected"] = json!(payment.amount);
            ("amount_mismatch", AmountMismatch)
        }
        ReportedStatus::Succeeded if from.holds_money() || from == PaymentStatus::Refunded => {
            details["ignored"] = json!(format!("payment already {from}"));
            ("duplicate_success", Noted)
        }
        ReportedStatus::Succeeded if from == PaymentStatus::Failed => {
            // The provider took the money after all: the payment holds it, and gives it back.
            payment.status = PaymentStatus::Succeeded;
            payment.refund_required = true;
            details["reason"] = json!("payment had failed");
            ("refund_required", RefundRequired)
        }
        ReportedStatus::Succeeded if state.order.status == OrderStatus::Pending => {
            payment.status = PaymentStatus::Succeeded;
            let note = format!("支付成功 {}", payment.id);
            if change
                .order
                .transition(OrderStatus::Paid, "payment-callback", &note, now)
                .is_err()
            {
                return (Noted, None);
            }
            // Any other open payment can no longer be paid.
            change.expire_open_payments(
                state,
                Some(&payment.id),
                "superseded",
                &json!({ "by": payment.id }),
                now,
            );
            let log = if from == PaymentStatus::Expired {
                "late_success"
            } else {
                "succeeded"
            };
            (log, Applied(PaymentStatus::Succeeded, OrderStatus::Paid))
        }
        ReportedStatus::Succeeded => {
            payment.status = PaymentStatus::Succeeded;
            payment.refund_required = true;
            details["reason"] = json!(format!("order is {}", state.order.status));
            ("refund_required", RefundRequired)
        }
    };
    if matches!(outcome, Applied(..) | RefundRequired) {
        if payment.provider_txn_id.is_none() {
            payment.provider_txn_id = Some(event.provider_txn_id.clone());
        }
        // Paid or failed at the provider, its trade is no longer open: no close is owed any more.
        payment.close_pending = false;
    }
    payment.log(log, details, Some(event.event_id.as_str()), now);
    if outcome == RefundRequired {
        // The refund is decided in the write that records why (docs/api.md §17).
        let reason = match (from, state.order.status) {
            (PaymentStatus::Failed, _) => "支付失败后到账，原路退回",
            (_, OrderStatus::Cancelled) => "订单已取消，到账款项原路退回",
            (_, OrderStatus::Refunded) => "订单已退款，到账款项原路退回",
            _ => "订单已由其他支付单付款，重复到账款项原路退回",
        };
        if payment.start_refund(reason, CALLBACK_OPERATOR, false, now).is_err() {
            return (Noted, None);
        }
    }
    change.payment(payment);
    (outcome, Some(change))
}

/// A refund notification against the payment: judged as the worker judges the provider's answer
/// ([`refund_answered`]), recorded with its event id; one for a refund that is not running (or for
/// another amount) is noted and changes nothing else.
fn refund_event_outcome(
    state: &OrderWithPayments,
    current: &Payment,
    event: &PaymentEvent,
    answer: &RefundState,
    now: Timestamp,
) -> (CallbackOutcome, Option<Change>) {
    let event_id = event.event_id.as_str();
    let matches = current.refund.as_ref().is_some_and(|r| r.amount == event.amount);
    if matches {
        let (step, change) = refund_answered(state, &current.id, answer, Some(event_id), now);
        if let Some(change) = change {
            let outcome = match step {
                RefundStep::Refunded(_) => RefundOutcome::Refunded,
                RefundStep::Failed(_) => RefundOutcome::Failed,
                RefundStep::Pending | RefundStep::Settled => RefundOutcome::Pending,
            };
            return (CallbackOutcome::Refund(outcome), Some(change));
        }
    }
    let mut change = Change::of(state, now);
    let mut payment = current.clone();
    let details = json!({
        "status": event.status,
        "refund_id": event.provider_txn_id,
        "amount": event.amount,
        "ignored": if matches { format!("payment is {}", current.status) } else { "not this payment's refund amount".to_owned() },
    });
    payment.log("stale_refund_status", details, Some(event_id), now);
    change.payment(payment);
    (CallbackOutcome::Noted, Some(change))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::callback::{EventId, EventSource};
    use crate::money::Money;
    use crate::order::testing;
    use crate::payment::Payment;
    use crate::{PaymentMethod, TtlMinutes};

    fn state(payment: PaymentStatus, order: OrderStatus) -> OrderWithPayments {
        let mut o = testing::order(2, "99.50", 30);
        o.status = order;
        let mut p = Payment::create_for_order(&o, PaymentMethod::Wechat, TtlMinutes::DEFAULT, o.created_at);
        p.status = payment;
        OrderWithPayments {
            order: o,
            payments: vec![p],
        }
    }

    fn event(state: &OrderWithPayments, status: ReportedStatus, amount: &str, source: EventSource) -> PaymentEvent {
        PaymentEvent {
            event_id: EventId::parse("evt-1").unwrap(),
            payment_id: state.payments[0].id.clone(),
            provider_txn_id: "txn".into(),
            status,
            amount: Money::parse(amount).unwrap(),
            occurred_at: state.order.created_at,
            source,
        }
    }

    #[test]
    fn every_case_of_spec_section_8() {
        use OrderStatus::{Cancelled, Paid, Pending};
        use PaymentStatus::*;
        use ReportedStatus as R;
        let cases = [
            (
                Init,
                Pending,
                R::Processing,
                "199.00",
                CallbackOutcome::Applied(Processing, Pending),
                Processing,
                Pending,
                "processing",
                false,
            ),
            (
                Processing,
                Pending,
                R::Processing,
                "199.00",
                CallbackOutcome::Noted,
                Processing,
                Pending,
                "stale_status",
                false,
            ),
            (
                Init,
                Pending,
                R::Succeeded,
                "199.01",
                CallbackOutcome::Applied(Succeeded, Paid),
                Succeeded,
                Paid,
                "succeeded",
                false,
            ),
            (
                Processing,
                Pending,
                R::Succeeded,
                "199.02",
                CallbackOutcome::AmountMismatch,
                Processing,
                Pending,
                "amount_mismatch",
                false,
            ),
            (
                Succeeded,
                Paid,
                R::Processing,
                "199.00",
                CallbackOutcome::Noted,
                Succeeded,
                Paid,
                "stale_status",
                false,
            ),
            (
                Init,
                Pending,
                R::Failed,
                "199.00",
                CallbackOutcome::Applied(Failed, Pending),
                Failed,
                Pending,
                "failed",
                false,
            ),
            (
                Failed,
                Pending,
                R::Succeeded,
                "199.00",
                CallbackOutcome::RefundRequired,
                Refunding,
                Pending,
                "refund_required",
                true,
            ),
            (
                Expired,
                Pending,
                R::Succeeded,
                "199.00",
                CallbackOutcome::Applied(Succeeded, Paid),
                Succeeded,
                Paid,
                "late_success",
                false,
            ),
            (
                Expired,
                Cancelled,
                R::Succeeded,
                "199.00",
                CallbackOutcome::RefundRequired,
                Refunding,
                Cancelled,
                "refund_required",
                true,
            ),
            (
                Expired,
                Paid,
                R::Succeeded,
                "199.00",
                CallbackOutcome::RefundRequired,
                Refunding,
                Paid,
                "refund_required",
                true,
            ),
            (
                Succeeded,
                Paid,
                R::Succeeded,
                "199.00",
                CallbackOutcome::Noted,
                Succeeded,
                Paid,
                "duplicate_success",
                false,
            ),
        ];
        for (payment, order, status, amount, outcome, payment_after, order_after, log, refund) in cases {
            let s = state(payment, order);
            let e = event(&s, status, amount, EventSource::Generic);
            let (got, change) = event_outcome(&s, &e, s.order.created_at);
            let name = format!("{payment}/{order} + {status:?} {amount}");
            assert_eq!(got, outcome, "{name}");
            let change = change.expect("every new event is recorded");
            let p = change.payments.iter().find(|p| p.id == e.payment_id).unwrap();
            assert_eq!((p.status, change.order.status), (payment_after, order_after), "{name}");
            assert_eq!(p.refund_required, refund, "{name}");
            let recorded = p.logs.iter().rev().find(|l| l.event_id.is_some()).unwrap();
            assert_eq!(
                (recorded.event.as_str(), recorded.event_id.as_deref()),
                (log, Some("evt-1")),
                "{name}"
            );
            if refund {
                // The refund is decided in the same write: refunding, in the work index.
                let last = p.logs.last().unwrap();
                assert_eq!(last.event, "refund_started", "{name}");
                let r = p.refund.as_ref().expect("a refund");
                assert_eq!((r.amount, r.refunds_order), (p.amount, false), "{name}");
                assert_eq!(r.out_refund_no, crate::refund::out_refund_no(&p.id), "{name}");
                assert!(matches!(p.work(), Some(crate::refund::Work::Refund(_))), "{name}");
            }
            assert_eq!(change.expected_version, s.order.version, "{name}");
            assert_eq!(change.order.version, s.order.version + 1, "{name}");
            assert_eq!(change.restock, None, "a callback never moves stock: {name}");
            // The same event, once recorded, is recognised and writes nothing.
            let mut after = s.clone();
            after.payments = vec![p.clone()];
            assert_eq!(
                event_outcome(&after, &e, s.order.created_at),
                (CallbackOutcome::AlreadyApplied, None),
                "{name}"
            );
        }
    }

    #[test]
    fn provider_notifications_are_exact_and_only_for_their_method() {
        let s = state(PaymentStatus::Init, OrderStatus::Pending);
        let fen_short = event(&s, ReportedStatus::Succeeded, "198.99", EventSource::Wechatpay);
        assert_eq!(
            event_outcome(&s, &fen_short, s.order.created_at).0,
            CallbackOutcome::AmountMismatch
        );
        let alipay = event(&s, ReportedStatus::Succeeded, "199.00", EventSource::Alipay);
        assert_eq!(
            event_outcome(&s, &alipay, s.order.created_at),
            (CallbackOutcome::NotThisProvider, None)
        );
    }
}
