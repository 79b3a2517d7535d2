//! The merchant's side of an order (docs/api.md §17): ship, complete, refund, cancel, and settle what
//! the attention list shows. Each action is one pure judgement of the order as the store holds it: the
//! order it answers, and the one conditional write that records it (history operator `staff:<sub>`).

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::change::{Change, OrderWithPayments};
use crate::error::ServiceError;
use crate::ids::{PaymentId, UserId};
use crate::order::OrderStatus;
use crate::payment::PaymentStatus;
use crate::time::Timestamp;
use crate::usecases::cancel::cancellation;

/// The operator scope a merchant's route needs.
pub const SCOPE: &str = "orders:admin";

/// An operator: the JWT's `sub` of a caller holding [`SCOPE`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Staff(UserId);

impl Staff {
    /// The operator named by `sub`.
    pub fn new(sub: UserId) -> Staff {
        Staff(sub)
    }

    /// Who the history says acted: `staff:<sub>`.
    pub fn operator(&self) -> String {
        format!("staff:{}", self.0)
    }

    /// The operator's id (what a cursor is bound to).
    pub fn id(&self) -> &UserId {
        &self.0
    }
}

/// A parcel on its way: recorded on the order when it ships.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shipment {
    /// The carrier (`顺丰速运`, `SF`, ...).
    pub carrier: String,
    /// The carrier's tracking number.
    pub tracking_no: String,
    /// When it shipped.
    pub shipped_at: Timestamp,
    /// Who shipped it: `staff:<sub>`.
    pub by: String,
}

/// What an operator asks of an order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// `paid → shipped`, the shipment recorded.
    Ship {
        /// The carrier.
        carrier: String,
        /// Its tracking number.
        tracking_no: String,
        /// A note for the history.
        note: Option<String>,
    },
    /// `shipped → completed`.
    Complete {
        /// A note for the history.
        note: Option<String>,
    },
    /// `paid | shipped`: the refund started; the order `→ refunded` when it succeeds.
    Refund {
        /// Why (sent to the provider).
        reason: String,
    },
    /// `pending → cancelled` as the shopper's cancel; `paid → cancelled` with the stock returned and
    /// the refund started.
    Cancel {
        /// Why.
        reason: String,
    },
}

impl Action {
    /// The status the action moves the order to.
    pub fn target(&self) -> OrderStatus {
        match self {
            Action::Ship { .. } => OrderStatus::Shipped,
            Action::Complete { .. } => OrderStatus::Completed,
            Action::Refund { .. } => OrderStatus::Refunded,
            Action::Cancel { .. } => OrderStatus::Cancelled,
        }
    }

    /// What the action does from `from`, if the state machine allows it there.
    fn allowed_from(&self, from: OrderStatus) -> bool {
        match self {
            Action::Refund { .. } => matches!(from, OrderStatus::Paid | OrderStatus::Shipped),
            Action::Cancel { .. } => matches!(from, OrderStatus::Pending | OrderStatus::Paid),
            _ => crate::order::can_transition(from, self.target()),
        }
    }
}

fn refused(state: &OrderWithPayments, to: OrderStatus) -> ServiceError {
    ServiceError::OrderTransitionNotAllowed {
        from: state.order.status,
        to,
        allowed: state.order.allowed_transitions().to_vec(),
    }
}

/// The action against the order as the store holds it: the order as it will stand (or the refusal),
/// and the change that records it. A refund asked for again while one is running (or done) answers
/// the order as it stands and writes nothing.
pub fn act(
    state: &OrderWithPayments,
    staff: &Staff,
    action: &Action,
    now: Timestamp,
) -> (Result<OrderWithPayments, ServiceError>, Option<Change>) {
    let from = state.order.status;
    let operator = staff.operator();
    let paid = state
        .payments
        .iter()
        .rev()
        .find(|p| p.status == PaymentStatus::Succeeded);
    if let Action::Refund { .. } = action {
        let running = state
            .payments
            .iter()
            .any(|p| p.refund.as_ref().is_some_and(|r| r.refunds_order));
        if paid.is_none() && running {
            return (Ok(state.clone()), None);
        }
    }
    if !action.allowed_from(from) {
        return (Err(refused(state, action.target())), None);
    }
    let mut change = Change::of(state, now);
    match action {
        Action::Ship {
            carrier,
            tracking_no,
            note,
        } => {
            let note = note
                .clone()
                .unwrap_or_else(|| format!("已发货 {carrier} {tracking_no}"));
            if change
                .order
                .transition(OrderStatus::Shipped, &operator, &note, now)
                .is_err()
            {
                return (Err(refused(state, OrderStatus::Shipped)), None);
            }
            change.order.shipment = Some(Shipment {
                carrier: carrier.clone(),
                tracking_no: tracking_no.clone(),
                shipped_at: now,
                by: operator,
            });
        }
        Action::Complete { note } => {
            let note = note.clone().unwrap_or_else(|| "订单完成".to_owned());
            if change
                .order
                .transition(OrderStatus::Completed, &operator, &note, now)
                .is_err()
            {
                return (Err(refused(state, OrderStatus::Completed)), None);
            }
        }
        Action::Refund { reason } => {
            let Some(paid) = paid else {
                return (Err(refused(state, OrderStatus::Refunded)), None);
            };
            let mut payment = paid.clone();
            if payment.start_refund(reason, &operator, true, now).is_err() {
                return (Err(refused(state, OrderStatus::Refunded)), None);
            }
            change.order.record(&operator, &format!("申请退款：{reason}"), now);
            change.payment(payment);
        }
        Action::Cancel { reason } if from == OrderStatus::Pending => {
            return match cancellation(state, &operator, reason, "cancelled_by_staff", now) {
                Some(change) => (Ok(state.after(&change)), Some(change)),
                None => (Err(refused(state, OrderStatus::Cancelled)), None),
            };
        }
        Action::Cancel { reason } => {
            // Paid: cancelled, its stock returned and its money refunded, in one write.
            let Some(paid) = paid else {
                return (Err(refused(state, OrderStatus::Cancelled)), None);
            };
            let mut payment = paid.clone();
            if payment.start_refund(reason, &operator, false, now).is_err()
                || change
                    .order
                    .transition(OrderStatus::Cancelled, &operator, reason, now)
                    .is_err()
            {
                return (Err(refused(state, OrderStatus::Cancelled)), None);
            }
            change.payment(payment);
            change.release_stock();
        }
    }
    (Ok(state.after(&change)), Some(change))
}

/// An operator settles what the attention list shows for a payment (a refund paid back by hand, a
/// mismatch looked into, a trade closed by hand): logged `attention_resolved` with the note, which
/// takes the payment out of the list until a new reason arises; a `close_pending` mark is cleared.
/// Nothing to settle answers the order as it stands.
pub fn resolve(
    state: &OrderWithPayments,
    staff: &Staff,
    payment_id: &PaymentId,
    note: &str,
    now: Timestamp,
) -> (Result<OrderWithPayments, ServiceError>, Option<Change>) {
    let Some(payment) = state.payments.iter().find(|p| &p.id == payment_id) else {
        return (Err(ServiceError::OrderNotFound), None);
    };
    let reasons = payment.attention();
    if reasons.is_empty() {
        return (Ok(state.clone()), None);
    }
    let mut change = Change::of(state, now);
    let mut payment = payment.clone();
    payment.close_pending = false;
    let reasons: Vec<&str> = reasons.iter().map(|(reason, _)| *reason).collect();
    payment.log(
        "attention_resolved",
        json!({ "by": staff.operator(), "note": note, "reasons": reasons }),
        None,
        now,
    );
    change.payment(payment);
    (Ok(state.after(&change)), Some(change))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::change::Restock;
    use crate::ids::{PaymentMethod, TtlMinutes};
    use crate::payment::Payment;
    use crate::refund::Work;
    use OrderStatus::*;

    fn staff() -> Staff {
        Staff::new(UserId::parse("ops").unwrap())
    }

    /// An order in `status`, as the routes would have left it, with its one payment.
    fn order_in(status: OrderStatus) -> OrderWithPayments {
        let mut order = crate::order::testing::order(2, "99.50", 30);
        let t = order.created_at;
        let mut payment = Payment::create_for_order(&order, PaymentMethod::Wechat, TtlMinutes::DEFAULT, t);
        let paid = |p: &mut Payment| {
            p.transition(PaymentStatus::Succeeded, "succeeded", json!({}), t)
                .unwrap()
        };
        match status {
            Pending => {}
            Cancelled => {
                order.transition(Cancelled, "user:alice", "", t).unwrap();
                payment
                    .transition(PaymentStatus::Expired, "cancelled_by_user", json!({}), t)
                    .unwrap();
            }
            _ => {
                paid(&mut payment);
                order.transition(Paid, "payment-callback", "", t).unwrap();
                let path: &[OrderStatus] = match status {
                    Shipped => &[Shipped],
                    Completed => &[Shipped, Completed],
                    _ => &[],
                };
                for next in path {
                    order.transition(*next, "staff:ops", "", t).unwrap();
                }
                if status == Refunded {
                    payment.start_refund("r", "staff:ops", true, t).unwrap();
                    payment
                        .transition(PaymentStatus::Refunded, "refunded", json!({}), t)
                        .unwrap();
                    order.transition(Refunded, "system:refund", "", t).unwrap();
                }
            }
        }
        assert_eq!(order.status, status);
        OrderWithPayments {
            order,
            payments: vec![payment],
        }
    }

    fn actions() -> [Action; 4] {
        [
            Action::Ship {
                carrier: "顺丰速运".into(),
                tracking_no: "SF1234567890".into(),
                note: None,
            },
            Action::Complete { note: None },
            Action::Refund {
                reason: "质量问题".into(),
            },
            Action::Cancel {
                reason: "缺货".into()
            },
        ]
    }

    /// Every action from every status: the allowed ones move the order (or start its refund) in one
    /// change recorded as `staff:ops`; the others are refused with where the order may go.
    #[test]
    fn every_action_from_every_status() {
        // (from, action index) → the order's status afterwards; absent: refused.
        let allowed = [
            ((Pending, 3), Cancelled),
            ((Paid, 0), Shipped),
            ((Paid, 2), Paid),
            ((Paid, 3), Cancelled),
            ((Shipped, 1), Completed),
            ((Shipped, 2), Shipped),
        ];
        let now = crate::Timestamp::parse("2026-12-01T08:00:00Z").unwrap();
        for from in [Pending, Paid, Shipped, Completed, Cancelled, Refunded] {
            for (i, action) in actions().iter().enumerate() {
                let state = order_in(from);
                let (answer, change) = act(&state, &staff(), action, now);
                let name = format!("{from} {action:?}");
                match allowed.iter().find(|(key, _)| *key == (from, i)) {
                    Some((_, to)) => {
                        let change = change.unwrap_or_else(|| panic!("{name}: a change"));
                        let answered = answer.unwrap_or_else(|e| panic!("{name}: {e}"));
                        assert_eq!(answered, state.after(&change), "{name}");
                        assert_eq!(change.order.status, *to, "{name}");
                        assert_eq!(change.expected_version, state.order.version, "{name}");
                        let entry = change.order.history.last().unwrap();
                        assert_eq!(
                            (entry.from, entry.to, entry.operator.as_str(), entry.at),
                            (Some(from), *to, "staff:ops", now),
                            "{name}"
                        );
                        assert_eq!(change.order.history.len(), state.order.history.len() + 1, "{name}");
                    }
                    None if from == Refunded && matches!(action, Action::Refund { .. }) => {
                        // Its refund already ran: the order as it stands, nothing written.
                        assert_eq!((answer.unwrap(), change), (state.clone(), None), "{name}");
                    }
                    None => {
                        assert!(change.is_none(), "{name}");
                        match answer {
                            Err(ServiceError::OrderTransitionNotAllowed { from: f, to, allowed }) => {
                                assert_eq!(f, from, "{name}");
                                assert_eq!(to, action.target(), "{name}");
                                assert_eq!(allowed, crate::order::allowed_transitions(from), "{name}");
                            }
                            other => panic!("{name}: {other:?}"),
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn a_refund_starts_once_and_a_paid_cancel_returns_stock_and_refunds_in_one_write() {
        let now = crate::Timestamp::parse("2026-12-01T08:00:00Z").unwrap();
        let state = order_in(Paid);
        let refund = Action::Refund {
            reason: "质量问题".into(),
        };
        let (_, change) = act(&state, &staff(), &refund, now);
        let change = change.unwrap();
        let payment = &change.payments[0];
        assert_eq!(payment.status, PaymentStatus::Refunding);
        let r = payment.refund.as_ref().unwrap();
        assert_eq!(
            (r.requested_by.as_str(), r.refunds_order, r.reason.as_str()),
            ("staff:ops", true, "质量问题")
        );
        assert_eq!(payment.work(), Some(Work::Refund(now)));
        assert_eq!(change.restock, None);
        // Asked again while it runs: the order as it stands.
        let running = state.after(&change);
        let (answer, change) = act(&running, &staff(), &refund, now);
        assert_eq!((answer.unwrap(), change), (running.clone(), None));
        // A running refund cannot be cancelled over: nothing left paid to cancel.
        assert!(act(&running, &staff(), &Action::Cancel { reason: "x".into() }, now)
            .0
            .is_err());

        let (_, change) = act(
            &state,
            &staff(),
            &Action::Cancel {
                reason: "缺货".into()
            },
            now,
        );
        let change = change.unwrap();
        assert_eq!(change.order.status, Cancelled);
        assert_eq!(change.payments[0].status, PaymentStatus::Refunding);
        assert!(!change.payments[0].refund.as_ref().unwrap().refunds_order);
        assert!(
            matches!(change.restock, Some(Restock::Stock(_, ref takes)) if takes == &[crate::stock::ShardTake { shard: 0, quantity: 2 }])
        );
    }

    #[test]
    fn a_shipment_is_recorded_and_a_resolution_settles_the_attention_list() {
        let now = crate::Timestamp::parse("2026-12-01T08:00:00Z").unwrap();
        let (_, change) = act(&order_in(Paid), &staff(), &actions()[0], now);
        let shipment = change.unwrap().order.shipment.unwrap();
        assert_eq!(
            (
                shipment.carrier.as_str(),
                shipment.tracking_no.as_str(),
                shipment.by.as_str()
            ),
            ("顺丰速运", "SF1234567890", "staff:ops")
        );

        let mut state = order_in(Pending);
        state.payments[0].close_pending = true;
        let id = state.payments[0].id.clone();
        assert!(state.payments[0].work().is_some());
        let (answer, change) = resolve(&state, &staff(), &id, "已在商户平台关单", now);
        let after = answer.unwrap();
        assert_eq!(after, state.after(&change.unwrap()));
        assert_eq!(after.payments[0].work(), None);
        assert!(!after.payments[0].close_pending);
        let (answer, change) = resolve(&after, &staff(), &id, "again", now);
        assert_eq!((answer.unwrap(), change), (after.clone(), None));
    }
}
