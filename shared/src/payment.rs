//! Payments: one attempt to pay an order, with the seed's statuses and an append-only log.

use serde::{Deserialize, Serialize};

use crate::ids::{OrderId, PaymentId, PaymentMethod, TtlMinutes, UserId};
use crate::money::Money;
use crate::order::Order;
use crate::time::Timestamp;

/// Where a payment is in its life (docs/api.md §7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PaymentStatus {
    /// Created, the shopper has not started paying.
    Init,
    /// The provider reports the payment under way.
    Processing,
    /// Paid.
    Succeeded,
    /// The provider refused it.
    Failed,
    /// Its time ran out.
    Expired,
    /// Paid, and its refund decided: a worker is sending it to the provider (docs/api.md §17).
    Refunding,
    /// The provider refunded it.
    Refunded,
    /// The provider refused the refund for good (or no provider can refund it): for an operator.
    #[serde(rename = "refund_failed")]
    RefundFailed,
}

impl PaymentStatus {
    /// Every status.
    pub const ALL: [PaymentStatus; 8] = [
        Self::Init,
        Self::Processing,
        Self::Succeeded,
        Self::Failed,
        Self::Expired,
        Self::Refunding,
        Self::Refunded,
        Self::RefundFailed,
    ];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Init => "init",
            Self::Processing => "processing",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Expired => "expired",
            Self::Refunding => "refunding",
            Self::Refunded => "refunded",
            Self::RefundFailed => "refund_failed",
        }
    }

    /// `init` and `processing`: the payment can still succeed on its own.
    pub fn is_open(self) -> bool {
        matches!(self, Self::Init | Self::Processing)
    }

    /// Whether the provider holds the shopper's money for it: succeeded, or on its way back.
    pub fn holds_money(self) -> bool {
        matches!(self, Self::Succeeded | Self::Refunding | Self::RefundFailed)
    }

    /// Whether `self → to` is allowed. `expired → succeeded` exists only for a provider's late success
    /// callback (docs/api.md §8); nothing else leaves `expired`. A refund runs `succeeded → refunding →
    /// refunded | refund_failed` (docs/api.md §17).
    pub fn can_transition(self, to: PaymentStatus) -> bool {
        use PaymentStatus::*;
        matches!(
            (self, to),
            (Init, Processing)
                | (Init, Succeeded)
                | (Init, Failed)
                | (Init, Expired)
                | (Processing, Succeeded)
                | (Processing, Failed)
                | (Processing, Expired)
                | (Expired, Succeeded)
                | (Succeeded, Refunding)
                | (Refunding, Refunded)
                | (Refunding, RefundFailed)
        )
    }
}

impl std::fmt::Display for PaymentStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One event in a payment's life.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentLog {
    /// What happened: `created`, `processing`, `succeeded`, `amount_mismatch`, ...
    pub event: String,
    /// When.
    pub at: Timestamp,
    /// Structured detail for people and audits.
    pub details: serde_json::Value,
    /// The provider event this entry applied, if any: the store's memory of what was already applied,
    /// which outlives any queue's deduplication window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_id: Option<String>,
}

/// One attempt to pay an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Payment {
    /// The payment id (what the provider echoes back in callbacks).
    pub id: PaymentId,
    /// The order paid for.
    pub order_id: OrderId,
    /// The shopper who owns the order.
    pub user_id: UserId,
    /// Always the order's total.
    pub amount: Money,
    /// How the shopper pays.
    pub method: PaymentMethod,
    /// Current status.
    pub status: PaymentStatus,
    /// Creation time.
    pub created_at: Timestamp,
    /// After this instant the payment is expired; never later than the order's deadline.
    pub expires_at: Timestamp,
    /// Every event, oldest first.
    pub logs: Vec<PaymentLog>,
    /// The provider's transaction id, once a callback named one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_txn_id: Option<String>,
    /// Money was taken that the shop cannot keep (the order was cancelled, or another payment had
    /// already paid it): someone must refund it.
    #[serde(default)]
    pub refund_required: bool,
    /// What the shopper was handed to pay with, once checked out (docs/api.md §16).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkout: Option<crate::checkout::Checkout>,
    /// Let go while its provider was unreachable: its trade is still to be closed (docs/api.md §16),
    /// which later sweeps keep trying.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub close_pending: bool,
    /// Its refund, once decided (docs/api.md §17).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refund: Option<crate::refund::Refund>,
}

impl Payment {
    /// The seed's `Payment.create_for_order`: amount = order total, status `init`, expiring after `ttl`
    /// (but never after the order's payment deadline), logged as `created`.
    pub fn create_for_order(order: &Order, method: PaymentMethod, ttl: TtlMinutes, now: Timestamp) -> Payment {
        let expires_at = now.plus_minutes(ttl.get()).min(order.payment_deadline);
        Payment {
            id: PaymentId::generate(),
            order_id: order.id.clone(),
            user_id: order.user_id.clone(),
            amount: order.total_amount,
            method,
            status: PaymentStatus::Init,
            created_at: now,
            expires_at,
            logs: vec![PaymentLog {
                event: "created".into(),
                at: now,
                details: serde_json::json!({
                    "method": method.as_str(),
                    "amount": order.total_amount,
                    "ttl_minutes": ttl.get(),
                }),
                event_id: None,
            }],
            provider_txn_id: None,
            refund_required: false,
            checkout: None,
            close_pending: false,
            refund: None,
        }
    }

    /// Whether its trade may still be open at the provider by this service's leave: the payment is open,
    /// or was let go with its close still pending. The expiry index holds exactly these payments.
    pub fn awaits_close(&self) -> bool {
        self.status.is_open() || self.close_pending
    }

    /// Whether the provider event `event_id` was already applied to this payment.
    pub fn has_applied(&self, event_id: &str) -> bool {
        self.logs.iter().any(|log| log.event_id.as_deref() == Some(event_id))
    }

    /// Appends a log entry.
    pub fn log(&mut self, event: &str, details: serde_json::Value, event_id: Option<&str>, at: Timestamp) {
        self.logs.push(PaymentLog {
            event: event.to_owned(),
            at,
            details,
            event_id: event_id.map(str::to_owned),
        });
    }

    /// Moves the payment to `to` if its state machine allows it, logging `event`; refused otherwise,
    /// with the payment unchanged.
    pub fn transition(
        &mut self,
        to: PaymentStatus,
        event: &str,
        details: serde_json::Value,
        at: Timestamp,
    ) -> Result<(), PaymentTransitionError> {
        if !self.status.can_transition(to) {
            return Err(PaymentTransitionError { from: self.status, to });
        }
        self.status = to;
        self.log(event, details, None, at);
        Ok(())
    }
}

/// A refused payment transition.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("payment status cannot change from {from} to {to}")]
pub struct PaymentTransitionError {
    /// The payment's status.
    pub from: PaymentStatus,
    /// The status asked for.
    pub to: PaymentStatus,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(deadline_minutes: u32) -> Order {
        crate::order::testing::order(2, "99.50", deadline_minutes)
    }

    #[test]
    fn create_for_order_copies_the_total_and_logs_creation() {
        let o = order(30);
        let p = Payment::create_for_order(&o, PaymentMethod::Alipay, TtlMinutes::DEFAULT, o.created_at);
        assert_eq!(p.amount, o.total_amount);
        assert_eq!(p.status, PaymentStatus::Init);
        assert_eq!(p.expires_at, o.created_at.plus_minutes(30));
        assert_eq!(p.logs.len(), 1);
        assert_eq!(p.logs[0].event, "created");
        assert_eq!(p.logs[0].details["amount"], "199.00");
        assert_eq!(p.logs[0].details["method"], "alipay");
    }

    #[test]
    fn a_payment_never_outlives_its_order() {
        let o = order(10);
        let p = Payment::create_for_order(&o, PaymentMethod::Wechat, TtlMinutes::new(60).unwrap(), o.created_at);
        assert_eq!(p.expires_at, o.payment_deadline);
    }

    #[test]
    fn payment_transitions() {
        use PaymentStatus::*;
        let allowed = [
            (Init, Processing),
            (Init, Succeeded),
            (Init, Failed),
            (Init, Expired),
            (Processing, Succeeded),
            (Processing, Failed),
            (Processing, Expired),
            (Expired, Succeeded),
            (Succeeded, Refunding),
            (Refunding, Refunded),
            (Refunding, RefundFailed),
        ];
        for from in PaymentStatus::ALL {
            for to in PaymentStatus::ALL {
                assert_eq!(from.can_transition(to), allowed.contains(&(from, to)), "{from} -> {to}");
            }
        }
        assert!(Init.is_open() && Processing.is_open() && !Expired.is_open());
    }
}
