//! The merchant's routes (docs/api.md §17) over the ports: any order with its payments, the attention
//! list, and the operator's actions, each one conditional write judged by `domain::operator`.

use serde::Serialize;

use crate::change::{update_with, OrderWithPayments};
use crate::closing::guarded;
use crate::error::ServiceError;
use crate::ids::{OrderId, PaymentId};
use crate::operator::{act, resolve, Action, Staff};
use crate::order::OrderStatus;
use crate::payment::Payment;
use crate::ports::{Metric, OrderStore};
use crate::refund::WorkKind;
use crate::time::Timestamp;
use crate::usecases::closing::shopper_let_go;
use crate::usecases::list::CursorKey;
use crate::usecases::Services;

/// What attention-list cursors are bound to, besides the operator.
const ATTENTION_CURSOR: &str = "attention-cursor";

/// Any user's order with its payments; `404` when unknown.
pub async fn admin_order(orders: &dyn OrderStore, id: &OrderId) -> Result<OrderWithPayments, ServiceError> {
    orders.order_with_payments(id).await?.ok_or(ServiceError::OrderNotFound)
}

/// Runs an operator's action on the order: judged by [`act`], a pending order's trades closed first
/// as for the shopper's cancel (provider unreachable: `503`, nothing changed). The order as it now
/// stands.
pub async fn act_on_order(
    svc: &Services,
    staff: &Staff,
    id: &OrderId,
    action: Action,
) -> Result<OrderWithPayments, ServiceError> {
    let now = svc.clock.now();
    let (who, what) = (staff.clone(), action.clone());
    let decided = shopper_let_go(&svc.closer(), id, None, move |state, closings| {
        guarded(state, closings, act(state, &who, &what, now))
    })
    .await?
    .without_key()?;
    let answered = decided.unwrap_or(Err(ServiceError::OrderNotFound))?;
    let operator = staff.operator();
    let started = answered
        .payments
        .iter()
        .filter(|p| {
            p.refund
                .as_ref()
                .is_some_and(|r| r.decided_at == now && r.requested_by == operator)
        })
        .count();
    for _ in 0..started {
        svc.metrics.count(Metric::RefundStarted);
    }
    tracing::info!(
        order_id = %id,
        operator,
        action = ?action.target(),
        status = %answered.order.status,
        refunds_started = started,
        "operator action"
    );
    Ok(answered)
}

/// Settles what the attention list shows for one payment ([`resolve`]).
pub async fn resolve_payment(
    svc: &Services,
    staff: &Staff,
    order: &OrderId,
    payment: &PaymentId,
    note: String,
) -> Result<OrderWithPayments, ServiceError> {
    let (who, id, now) = (staff.clone(), payment.clone(), svc.clock.now());
    let decided = update_with(svc.updates.as_ref(), order, move |state| {
        resolve(state, &who, &id, &note, now)
    })
    .await?
    .without_key()?;
    let answered = decided.unwrap_or(Err(ServiceError::OrderNotFound))?;
    tracing::info!(order_id = %order, payment_id = %payment, operator = staff.operator(), "attention resolved");
    Ok(answered)
}

/// Why a payment is on the attention list, since when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Reason {
    /// `refund_failed`, `close_pending`, `amount_mismatch` or `refund_required`.
    pub reason: &'static str,
    /// When it arose.
    pub since: Timestamp,
}

/// One payment an operator must look at.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AttentionItem {
    /// Its order.
    pub order_id: OrderId,
    /// The order's status.
    pub order_status: OrderStatus,
    /// Since when (its oldest reason).
    pub since: Timestamp,
    /// Every reason, oldest first.
    pub reasons: Vec<Reason>,
    /// The payment as it stands.
    pub payment: Payment,
}

/// One page of the attention list.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AttentionPage {
    /// Oldest first.
    pub items: Vec<AttentionItem>,
    /// Present while more may remain.
    pub next_cursor: Option<String>,
}

/// A page of the attention list after `cursor`, read through the work index and each order read
/// afresh: a payment settled since the index entry was written (a DynamoDB index lags its table) is
/// left out, never listed.
pub async fn attention(
    svc: &Services,
    key: &CursorKey,
    staff: &Staff,
    limit: usize,
    cursor: Option<&str>,
) -> Result<AttentionPage, ServiceError> {
    let after = cursor
        .map(|c| key.open_token(staff.id(), ATTENTION_CURSOR, c))
        .transpose()?;
    let page = svc.work.work(WorkKind::Attention, after.as_deref(), limit).await?;
    let mut items = Vec::with_capacity(page.items.len());
    for entry in page.items {
        let Some(state) = svc.orders.order_with_payments(&entry.order_id).await? else {
            continue;
        };
        let Some(payment) = state.payments.into_iter().find(|p| p.id == entry.payment_id) else {
            continue;
        };
        let mut reasons: Vec<Reason> = payment
            .attention()
            .into_iter()
            .map(|(reason, since)| Reason { reason, since })
            .collect();
        reasons.sort_by_key(|r| r.since);
        let Some(since) = reasons.first().map(|r| r.since) else {
            continue;
        };
        items.push(AttentionItem {
            order_id: entry.order_id,
            order_status: state.order.status,
            since,
            reasons,
            payment,
        });
    }
    Ok(AttentionPage {
        items,
        next_cursor: page
            .next
            .map(|token| key.issue_token(staff.id(), ATTENTION_CURSOR, &token)),
    })
}
