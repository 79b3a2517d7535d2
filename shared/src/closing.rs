//! Close before letting go (docs/api.md §16): a payment checked out at WeChat Pay or Alipay leaves the
//! open state by this service's decision only once its trade is closed at the provider and confirmed
//! unpaid. The judgements are here, pure: which trades a change lets go, what a provider's answers mean,
//! and what a decision comes to while some trade is not yet closed. The use cases close; the adapters
//! only talk to the providers and report what they said.

use crate::callback::{EventId, EventSource, PaymentEvent, ReportedStatus};
use crate::change::{Change, OrderWithPayments};
use crate::ids::PaymentId;
use crate::money::Money;
use crate::payment::Payment;
use crate::ports::ProviderError;
use crate::time::Timestamp;

/// How long past its deadline the sweeper waits for an unreachable provider before it lets the payment
/// go anyway, marked `close_pending` (its trade closed on a later sweep).
pub const CLOSE_GRACE_MINUTES: u32 = 30;

/// The providers that keep trades (a bank transfer has none).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TradeProvider {
    /// WeChat Pay.
    Wechatpay,
    /// Alipay.
    Alipay,
}

impl TradeProvider {
    /// The format a success this provider reports is applied as.
    pub fn source(self) -> EventSource {
        match self {
            Self::Wechatpay => EventSource::Wechatpay,
            Self::Alipay => EventSource::Alipay,
        }
    }

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Wechatpay => "wechatpay",
            Self::Alipay => "alipay",
        }
    }
}

/// A payment's trade at its provider: what is closed and queried, by `out_trade_no` = the payment id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trade {
    /// The payment (`out_trade_no`).
    pub payment_id: PaymentId,
    /// Where the trade is.
    pub provider: TradeProvider,
}

impl Trade {
    /// The trade of a payment checked out at WeChat Pay or Alipay; `None` for a payment never checked
    /// out, or checked out for a bank transfer.
    pub fn of(payment: &Payment) -> Option<Trade> {
        let provider = match payment.checkout.as_ref()?.scene.provider() {
            "wechatpay" => TradeProvider::Wechatpay,
            "alipay" => TradeProvider::Alipay,
            _ => return None,
        };
        Some(Trade {
            payment_id: payment.id.clone(),
            provider,
        })
    }
}

/// A trade as its provider's query reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TradeState {
    /// Still payable (or being paid): not confirmed closed.
    Open,
    /// Closed, never paid, or never opened at all.
    Closed,
    /// Paid: the provider's transaction, the amount taken, and when.
    Paid {
        /// The provider's transaction id.
        provider_txn_id: String,
        /// The amount paid, exact.
        amount: Money,
        /// When it was paid.
        paid_at: Timestamp,
    },
}

/// What closing one trade came to.
#[derive(Debug)]
pub enum Closing {
    /// Closed and confirmed unpaid: its payment may be let go.
    Closed,
    /// Paid at the provider: the success to apply through the processor's path.
    Paid(PaymentEvent),
    /// The provider could not confirm it (down, or the trade still open).
    Unreachable(ProviderError),
}

/// The query's answer after a close, judged: paid is the success to apply (event id
/// `query:<transaction id>`, so a later notification of it is a duplicate); closed lets the payment go;
/// anything else is not a confirmation.
pub fn judge_query(trade: &Trade, queried: Result<TradeState, ProviderError>, now: Timestamp) -> Closing {
    match queried {
        Ok(TradeState::Closed) => Closing::Closed,
        Ok(TradeState::Open) => Closing::Unreachable(ProviderError::Unavailable(
            format!(
                "{} trade {} still open after its close",
                trade.provider.as_str(),
                trade.payment_id
            )
            .into(),
        )),
        Ok(TradeState::Paid {
            provider_txn_id,
            amount,
            paid_at,
        }) => match EventId::parse(&format!("query:{provider_txn_id}")) {
            Ok(event_id) => Closing::Paid(PaymentEvent {
                event_id,
                payment_id: trade.payment_id.clone(),
                provider_txn_id,
                status: ReportedStatus::Succeeded,
                amount,
                occurred_at: paid_at.min(now),
                source: trade.provider.source(),
            }),
            Err(why) => Closing::Unreachable(ProviderError::Unavailable(
                format!("unusable transaction id in a query answer: {why}").into(),
            )),
        },
        Err(err) => Closing::Unreachable(err),
    }
}

/// What the closing done so far for one decision found, trade by trade (payment ids).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Closings {
    /// Closed and confirmed unpaid.
    pub closed: Vec<PaymentId>,
    /// Found paid (the success applied): settled, never closed again.
    pub paid: Vec<PaymentId>,
    /// Not confirmed: the provider was unreachable.
    pub unreachable: Vec<PaymentId>,
}

/// Whether a change to a payment lets its trade go: it was open (or still owed a close) and no longer is.
fn lets_go(before: &Payment, after: &Payment) -> bool {
    before.awaits_close() && !after.awaits_close()
}

/// Whether a decision may be written as it stands, given what closing found so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Guard {
    /// Every trade the change lets go is closed (or it lets none go): write it.
    Go,
    /// These trades must be closed first.
    Close(Vec<Trade>),
    /// These trades' provider was unreachable: the change cannot be written as it stands.
    Unreachable(Vec<Trade>),
}

impl Closings {
    /// Records what closing `trade` came to.
    pub fn record(&mut self, trade: &Trade, closing: &Closing) {
        let id = trade.payment_id.clone();
        match closing {
            Closing::Closed => self.closed.push(id),
            Closing::Paid(_) => self.paid.push(id),
            Closing::Unreachable(_) => self.unreachable.push(id),
        }
    }

    /// The trades `change` lets go of `state`'s payments, against what closing found: any not tried yet
    /// must be closed first; any unreachable stops the change; else it may be written.
    pub fn guard(&self, state: &OrderWithPayments, change: &Change) -> Guard {
        let let_go: Vec<Trade> = change
            .payments
            .iter()
            .filter_map(|after| {
                let before = state.payments.iter().find(|p| p.id == after.id)?;
                lets_go(before, after).then(|| Trade::of(before)).flatten()
            })
            .filter(|trade| !self.closed.contains(&trade.payment_id) && !self.paid.contains(&trade.payment_id))
            .collect();
        let (unreachable, untried): (Vec<Trade>, Vec<Trade>) = let_go
            .into_iter()
            .partition(|trade| self.unreachable.contains(&trade.payment_id));
        if !untried.is_empty() {
            Guard::Close(untried)
        } else if !unreachable.is_empty() {
            Guard::Unreachable(unreachable)
        } else {
            Guard::Go
        }
    }
}

/// What a decision that may let payments go comes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LetGo<T> {
    /// Decided (and its change, if any, written).
    Decided(T),
    /// These trades must be closed first; nothing written.
    Close(Vec<Trade>),
    /// These trades could not be closed; nothing written.
    Unreachable(Vec<Trade>),
}

/// A decision `(outcome, change)` held back while a trade its change lets go is not confirmed closed:
/// the shopper's routes decide this way (an unreachable provider stops them).
pub fn guarded<T>(
    state: &OrderWithPayments,
    closings: &Closings,
    (outcome, change): (T, Option<Change>),
) -> (LetGo<T>, Option<Change>) {
    match change.as_ref().map(|change| closings.guard(state, change)) {
        Some(Guard::Close(trades)) => (LetGo::Close(trades), None),
        Some(Guard::Unreachable(trades)) => (LetGo::Unreachable(trades), None),
        Some(Guard::Go) | None => (LetGo::Decided(outcome), change),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkout::{Checkout, Scene};
    use crate::ids::{PaymentMethod, TtlMinutes};
    use crate::payment::PaymentStatus;
    use serde_json::{json, Map};

    fn state(scene: Option<Scene>) -> OrderWithPayments {
        let order = crate::order::testing::order(1, "10.00", 30);
        let method = match scene {
            Some(Scene::Page | Scene::Qr) => PaymentMethod::Alipay,
            Some(Scene::Transfer) => PaymentMethod::Bank,
            _ => PaymentMethod::Wechat,
        };
        let mut payment = Payment::create_for_order(&order, method, TtlMinutes::DEFAULT, order.created_at);
        payment.checkout = scene.map(|scene| Checkout {
            provider: scene.provider().to_owned(),
            scene,
            handed_out: Map::new(),
            expires_at: payment.expires_at,
            created_at: order.created_at,
        });
        OrderWithPayments {
            order,
            payments: vec![payment],
        }
    }

    fn expiring(state: &OrderWithPayments) -> Change {
        let now = state.order.created_at.plus_seconds(60);
        let mut change = Change::of(state, now);
        change.expire_open_payments(state, None, "expired", &json!({}), now);
        change
    }

    #[test]
    fn only_a_trade_at_a_provider_is_closed_before_its_payment_is_let_go() {
        for scene in [None, Some(Scene::Transfer)] {
            let s = state(scene);
            assert_eq!(Closings::default().guard(&s, &expiring(&s)), Guard::Go, "{scene:?}");
        }
        for (scene, provider) in [
            (Scene::Native, TradeProvider::Wechatpay),
            (Scene::Qr, TradeProvider::Alipay),
        ] {
            let s = state(Some(scene));
            let id = s.payments[0].id.clone();
            let change = expiring(&s);
            let trade = Trade {
                payment_id: id.clone(),
                provider,
            };
            let mut closings = Closings::default();
            assert_eq!(closings.guard(&s, &change), Guard::Close(vec![trade.clone()]));
            let unreachable = Closings {
                unreachable: vec![id.clone()],
                ..Closings::default()
            };
            assert_eq!(unreachable.guard(&s, &change), Guard::Unreachable(vec![trade]));
            closings.closed.push(id);
            assert_eq!(closings.guard(&s, &change), Guard::Go);
        }
    }

    #[test]
    fn clearing_a_close_pending_mark_lets_a_trade_go_and_setting_it_does_not() {
        let mut s = state(Some(Scene::Native));
        let now = s.order.created_at.plus_seconds(60);
        let mut marked = expiring(&s);
        marked.payments[0].close_pending = true;
        assert_eq!(Closings::default().guard(&s, &marked), Guard::Go);
        s.payments[0].status = PaymentStatus::Expired;
        s.payments[0].close_pending = true;
        let mut cleared = Change::of(&s, now);
        let mut payment = s.payments[0].clone();
        payment.close_pending = false;
        cleared.payment(payment);
        assert!(matches!(Closings::default().guard(&s, &cleared), Guard::Close(_)));
    }

    #[test]
    fn a_query_after_the_close_confirms_only_closed_or_paid() {
        let trade = Trade {
            payment_id: PaymentId::generate(),
            provider: TradeProvider::Alipay,
        };
        let now = Timestamp::parse("2026-12-01T08:00:00Z").unwrap();
        assert!(matches!(
            judge_query(&trade, Ok(TradeState::Closed), now),
            Closing::Closed
        ));
        assert!(matches!(
            judge_query(&trade, Ok(TradeState::Open), now),
            Closing::Unreachable(_)
        ));
        let paid = TradeState::Paid {
            provider_txn_id: "2026120122001".into(),
            amount: Money::parse("10.00").unwrap(),
            paid_at: now.plus_seconds(5),
        };
        match judge_query(&trade, Ok(paid), now) {
            Closing::Paid(event) => {
                assert_eq!(event.event_id.as_str(), "query:2026120122001");
                assert_eq!(event.source, EventSource::Alipay);
                assert_eq!(event.status, ReportedStatus::Succeeded);
                assert_eq!(event.occurred_at, now, "never in the future");
            }
            other => panic!("{other:?}"),
        }
    }
}
