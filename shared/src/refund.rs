//! Refunds (docs/api.md §17): decided in the write that decides their cause, sent by a worker with the
//! same refund number on every attempt, settled only by the provider's answer; and the work a payment
//! leaves for the worker or for an operator, which the stores' sparse index holds.

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::change::{Change, OrderWithPayments};
use crate::closing::TradeProvider;
use crate::ids::{PaymentId, PaymentMethod};
use crate::money::Money;
use crate::order::OrderStatus;
use crate::payment::{Payment, PaymentStatus, PaymentTransitionError};
use crate::time::Timestamp;

/// The history operator of an order moved by its refund's success.
pub const REFUND_OPERATOR: &str = "system:refund";
/// The operator of a refund decided because money arrived that the shop cannot keep.
pub const CALLBACK_OPERATOR: &str = "system:callback";
/// The failure code of a refund no provider can make (a bank transfer): an operator pays it back.
pub const MANUAL_REFUND: &str = "manual_refund";

/// A payment's refund: always the whole payment, under one number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refund {
    /// The merchant's refund number (WeChat Pay `out_refund_no`, Alipay `out_request_no`): derived from
    /// the payment id, so every attempt asks for the same refund.
    pub out_refund_no: String,
    /// The payment's whole amount.
    pub amount: Money,
    /// Why, for the provider and for people.
    pub reason: String,
    /// Who decided it: `system:callback` or `staff:<sub>`.
    pub requested_by: String,
    /// Whether its success moves the order `paid | shipped → refunded` (an operator's refund).
    pub refunds_order: bool,
    /// When it was decided.
    pub decided_at: Timestamp,
    /// The provider's refund id, once it named one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_refund_id: Option<String>,
    /// The provider's last status short of final (`PROCESSING`, `ABNORMAL`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_status: Option<String>,
    /// The provider's code of a final refusal, or `manual_refund`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
    /// When it succeeded or failed for good.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settled_at: Option<Timestamp>,
}

/// The refund number of a payment: the same on every attempt, and a valid WeChat Pay `out_refund_no`
/// (1..=64 of `[0-9A-Za-z_|*@-]`) and Alipay `out_request_no` whenever the payment id is an
/// `out_trade_no`.
pub fn out_refund_no(payment: &PaymentId) -> String {
    let id = payment.as_str();
    format!("ref_{}", id.strip_prefix("pay_").unwrap_or(id))
}

/// What a provider says of a refund, its answer verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefundState {
    /// The money went back.
    Succeeded {
        /// The provider's refund id.
        refund_id: String,
    },
    /// Accepted but not final (WeChat Pay `PROCESSING` or `ABNORMAL`, an Alipay refund without a fund
    /// change yet): ask again later.
    Pending {
        /// The provider's refund id, if it named one.
        refund_id: Option<String>,
        /// The provider's status.
        status: String,
    },
    /// Refused for good, with the provider's code.
    Refused {
        /// The provider's code (`CLOSED`, `ACQ.TRADE_NOT_ALLOW_REFUND`, ...).
        code: String,
        /// Its message.
        message: String,
    },
}

/// What one answer did to a refund.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefundStep {
    /// The payment is `refunded`; the order moved to this status (or stayed, if it did not move).
    Refunded(OrderStatus),
    /// The payment is `refund_failed`, with this code.
    Failed(String),
    /// Still under way at the provider.
    Pending,
    /// The payment is not refunding (any more): nothing to do.
    Settled,
}

impl Payment {
    /// Decides the refund of a paid payment in the change that decides its cause: `succeeded →
    /// refunding`, the refund numbered from the payment id, logged `refund_started`.
    pub fn start_refund(
        &mut self,
        reason: &str,
        requested_by: &str,
        refunds_order: bool,
        now: Timestamp,
    ) -> Result<(), PaymentTransitionError> {
        let refund = Refund {
            out_refund_no: out_refund_no(&self.id),
            amount: self.amount,
            reason: reason.to_owned(),
            requested_by: requested_by.to_owned(),
            refunds_order,
            decided_at: now,
            provider_refund_id: None,
            provider_status: None,
            failure: None,
            settled_at: None,
        };
        let details = json!({
            "out_refund_no": refund.out_refund_no,
            "amount": refund.amount,
            "reason": reason,
            "by": requested_by,
        });
        self.transition(PaymentStatus::Refunding, "refund_started", details, now)?;
        self.refund = Some(refund);
        Ok(())
    }

    /// What this payment leaves to do: its refund to send (the worker's), or something an operator must
    /// look at since a time (the attention list), or nothing. The stores' sparse work index holds
    /// exactly the payments for which this is `Some`, keyed by it.
    pub fn work(&self) -> Option<Work> {
        if self.status == PaymentStatus::Refunding {
            let since = self.refund.as_ref().map_or(self.created_at, |r| r.decided_at);
            return Some(Work::Refund(since));
        }
        self.attention()
            .into_iter()
            .map(|(_, since)| since)
            .min()
            .map(Work::Attention)
    }

    /// Why an operator must look at this payment, each reason with the time it arose: `refund_failed`
    /// (the provider refused, or no provider can refund), `close_pending` (let go with its trade maybe
    /// still open), `amount_mismatch` (a provider reported another amount), and `refund_required` on a
    /// payment whose refund was never started (flagged before refunds were decided with their cause).
    /// An operator's `attention_resolved` log settles the reasons that arose before it.
    pub fn attention(&self) -> Vec<(&'static str, Timestamp)> {
        let resolved = self
            .logs
            .iter()
            .rev()
            .find(|l| l.event == "attention_resolved")
            .map(|l| l.at);
        let last = |event: &str| self.logs.iter().rev().find(|l| l.event == event).map(|l| l.at);
        let open = |at: Option<Timestamp>| at.filter(|at| resolved.is_none_or(|r| *at > r));
        let mut reasons = Vec::new();
        if self.status == PaymentStatus::RefundFailed {
            let at = self
                .refund
                .as_ref()
                .and_then(|r| r.settled_at)
                .or(last("refund_failed"));
            if let Some(at) = open(at.or(Some(self.created_at))) {
                reasons.push(("refund_failed", at));
            }
        }
        if self.close_pending {
            reasons.push(("close_pending", last("close_pending").unwrap_or(self.expires_at)));
        }
        if let Some(at) = open(last("amount_mismatch")) {
            reasons.push(("amount_mismatch", at));
        }
        if self.refund_required && self.refund.is_none() {
            if let Some(at) = open(last("refund_required").or(Some(self.created_at))) {
                reasons.push(("refund_required", at));
            }
        }
        reasons
    }
}

/// A payment's place in the work index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Work {
    /// A refund for the worker, decided at this time.
    Refund(Timestamp),
    /// Something for an operator, since this time.
    Attention(Timestamp),
}

impl Work {
    /// The index partition.
    pub fn kind(self) -> WorkKind {
        match self {
            Work::Refund(_) => WorkKind::Refund,
            Work::Attention(_) => WorkKind::Attention,
        }
    }

    /// The index's sort time.
    pub fn at(self) -> Timestamp {
        match self {
            Work::Refund(at) | Work::Attention(at) => at,
        }
    }
}

/// One provider answer (the worker's call or query, or a refund notification with `event_id`) against
/// the order as the store holds it: the step it makes, and the change that records it. A success moves
/// the payment to `refunded` and, for an operator's refund, the order `paid | shipped → refunded`; a
/// final refusal moves it to `refund_failed`; a status short of final is recorded only when it is news.
pub fn refund_answered(
    state: &OrderWithPayments,
    payment_id: &PaymentId,
    answer: &RefundState,
    event_id: Option<&str>,
    now: Timestamp,
) -> (RefundStep, Option<Change>) {
    let Some(current) = state.payments.iter().find(|p| &p.id == payment_id) else {
        return (RefundStep::Settled, None);
    };
    let (Some(refund), PaymentStatus::Refunding) = (current.refund.clone(), current.status) else {
        return (RefundStep::Settled, None);
    };
    let mut change = Change::of(state, now);
    let mut payment = current.clone();
    let mut refund = refund;
    let step = match answer {
        RefundState::Succeeded { refund_id } => {
            refund.provider_refund_id = Some(refund_id.clone());
            refund.provider_status = None;
            refund.settled_at = Some(now);
            let details =
                json!({ "out_refund_no": refund.out_refund_no, "refund_id": refund_id, "amount": refund.amount });
            if payment
                .transition(PaymentStatus::Refunded, "refunded", details, now)
                .is_err()
            {
                return (RefundStep::Settled, None);
            }
            if refund.refunds_order && matches!(state.order.status, OrderStatus::Paid | OrderStatus::Shipped) {
                let note = format!("退款成功 {}", payment.id);
                // Paid or shipped may always move to refunded.
                let _ = change
                    .order
                    .transition(OrderStatus::Refunded, REFUND_OPERATOR, &note, now);
            }
            RefundStep::Refunded(change.order.status)
        }
        RefundState::Refused { code, message } => {
            refund.failure = Some(code.clone());
            refund.provider_status = None;
            refund.settled_at = Some(now);
            let details = json!({ "out_refund_no": refund.out_refund_no, "code": code, "message": message });
            if payment
                .transition(PaymentStatus::RefundFailed, "refund_failed", details, now)
                .is_err()
            {
                return (RefundStep::Settled, None);
            }
            RefundStep::Failed(code.clone())
        }
        RefundState::Pending { refund_id, status } => {
            let known_id = refund_id.is_none() || refund.provider_refund_id == *refund_id;
            if event_id.is_none() && known_id && refund.provider_status.as_deref() == Some(status) {
                return (RefundStep::Pending, None);
            }
            if refund_id.is_some() {
                refund.provider_refund_id = refund_id.clone();
            }
            refund.provider_status = Some(status.clone());
            let details = json!({ "out_refund_no": refund.out_refund_no, "status": status });
            payment.log("refund_pending", details, None, now);
            RefundStep::Pending
        }
    };
    payment.refund = Some(refund);
    if let (Some(event_id), Some(last)) = (event_id, payment.logs.last_mut()) {
        last.event_id = Some(event_id.to_owned());
    }
    change.payment(payment);
    (step, Some(change))
}

/// A refund as sent to its provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundRequest {
    /// The payment (`out_trade_no`).
    pub payment_id: PaymentId,
    /// Who refunds it.
    pub provider: TradeProvider,
    /// The refund number, the same on every attempt.
    pub out_refund_no: String,
    /// The amount refunded: the whole payment.
    pub amount: Money,
    /// The payment's amount (WeChat Pay's `amount.total`).
    pub total: Money,
    /// Why (WeChat Pay's `reason`, Alipay's `refund_reason`).
    pub reason: String,
}

impl RefundRequest {
    /// The refund a refunding payment asks its provider for; `None` when no provider can make it (a
    /// bank transfer is paid back by hand) or no refund was decided.
    pub fn of(payment: &Payment) -> Option<RefundRequest> {
        let refund = payment.refund.as_ref()?;
        let provider = match payment.method {
            PaymentMethod::Wechat => TradeProvider::Wechatpay,
            PaymentMethod::Alipay => TradeProvider::Alipay,
            PaymentMethod::Bank => return None,
        };
        Some(RefundRequest {
            payment_id: payment.id.clone(),
            provider,
            out_refund_no: refund.out_refund_no.clone(),
            amount: refund.amount,
            total: payment.amount,
            reason: refund.reason.clone(),
        })
    }
}

/// The partitions of the work index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WorkKind {
    /// Refunds for the worker to send.
    Refund,
    /// Payments for an operator to look at.
    Attention,
}

impl WorkKind {
    /// The partition's name.
    pub fn as_str(self) -> &'static str {
        match self {
            WorkKind::Refund => "refund",
            WorkKind::Attention => "attention",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::order::testing;
    use crate::TtlMinutes;

    fn paid(refunds_order: bool) -> OrderWithPayments {
        let mut order = testing::order(2, "99.50", 30);
        let now = order.created_at;
        let mut payment = Payment::create_for_order(&order, PaymentMethod::Wechat, TtlMinutes::DEFAULT, now);
        order
            .transition(OrderStatus::Paid, "payment-callback", "", now)
            .unwrap();
        payment
            .transition(PaymentStatus::Succeeded, "succeeded", json!({}), now)
            .unwrap();
        payment.start_refund("r", "staff:ops", refunds_order, now).unwrap();
        OrderWithPayments {
            order,
            payments: vec![payment],
        }
    }

    #[test]
    fn the_refund_number_is_derived_and_provider_safe() {
        let id = PaymentId::generate();
        assert_eq!(out_refund_no(&id), out_refund_no(&id));
        let no = out_refund_no(&id);
        assert!(no.starts_with("ref_") && no.len() <= 64 && no != id.as_str());
        assert!(no.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'));
    }

    #[test]
    fn a_success_refunds_the_payment_and_an_operators_refund_the_order() {
        for refunds_order in [true, false] {
            let state = paid(refunds_order);
            let id = state.payments[0].id.clone();
            let now = state.order.created_at.plus_seconds(60);
            let ok = RefundState::Succeeded { refund_id: "r1".into() };
            let (step, change) = refund_answered(&state, &id, &ok, None, now);
            let change = change.unwrap();
            let payment = &change.payments[0];
            assert_eq!(payment.status, PaymentStatus::Refunded);
            assert_eq!(
                payment.refund.as_ref().unwrap().provider_refund_id.as_deref(),
                Some("r1")
            );
            let order = if refunds_order {
                OrderStatus::Refunded
            } else {
                OrderStatus::Paid
            };
            assert_eq!((step, change.order.status), (RefundStep::Refunded(order), order));
            if refunds_order {
                assert_eq!(change.order.history.last().unwrap().operator, REFUND_OPERATOR);
            }
            let after = state.after(&change);
            assert_eq!(after.payments[0].work(), None, "settled: out of the work index");
            assert_eq!(
                refund_answered(&after, &id, &ok, None, now),
                (RefundStep::Settled, None)
            );
        }
    }

    #[test]
    fn a_refusal_fails_the_refund_into_the_attention_list_and_pending_is_written_only_when_news() {
        let state = paid(true);
        let id = state.payments[0].id.clone();
        let decided = state.payments[0].refund.as_ref().unwrap().decided_at;
        assert_eq!(state.payments[0].work(), Some(Work::Refund(decided)));
        let now = decided.plus_seconds(60);
        let no = RefundState::Refused {
            code: "CLOSED".into(),
            message: "closed".into(),
        };
        let (step, change) = refund_answered(&state, &id, &no, None, now);
        let after = state.after(&change.unwrap());
        assert_eq!(step, RefundStep::Failed("CLOSED".into()));
        assert_eq!(after.payments[0].status, PaymentStatus::RefundFailed);
        assert_eq!(after.order.status, OrderStatus::Paid);
        assert_eq!(after.payments[0].work(), Some(Work::Attention(now)));
        assert_eq!(after.payments[0].attention(), vec![("refund_failed", now)]);

        let pending = RefundState::Pending {
            refund_id: Some("r9".into()),
            status: "PROCESSING".into(),
        };
        let (step, change) = refund_answered(&state, &id, &pending, None, now);
        assert_eq!(step, RefundStep::Pending);
        let after = state.after(&change.unwrap());
        assert_eq!(after.payments[0].status, PaymentStatus::Refunding);
        assert_eq!(
            refund_answered(&after, &id, &pending, None, now),
            (RefundStep::Pending, None)
        );
    }

    #[test]
    fn a_resolution_settles_what_arose_before_it() {
        let mut state = paid(false);
        let p = &mut state.payments[0];
        let t = p.created_at;
        p.status = PaymentStatus::Expired;
        p.refund = None;
        p.log("amount_mismatch", json!({}), None, t.plus_seconds(1));
        assert_eq!(p.work(), Some(Work::Attention(t.plus_seconds(1))));
        p.log("attention_resolved", json!({}), None, t.plus_seconds(2));
        assert_eq!(p.work(), None);
        p.log("amount_mismatch", json!({}), None, t.plus_seconds(3));
        assert_eq!(p.attention(), vec![("amount_mismatch", t.plus_seconds(3))]);
    }
}
