//! Checkout (docs/api.md §16): what the shopper pays an open payment with, handed out by its provider
//! (a WeChat Pay `code_url` or JSAPI parameters, an Alipay page-pay link or QR code, bank-transfer
//! instructions), stored on the payment, and the one judgement of whether a payment may be checked out,
//! handed its stored checkout again, or must ask the provider.

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::change::{Change, OrderWithPayments};
use crate::error::ServiceError;
use crate::field::FieldError;
use crate::ids::{PaymentId, PaymentMethod, UserId};
use crate::money::Money;
use crate::order::OrderStatus;
use crate::payment::{Payment, PaymentStatus};
use crate::time::Timestamp;

/// How long a stored checkout is handed out again without asking the provider: a WeChat Pay prepay id
/// lives two hours, so ten minutes are left for the shopper to use it.
pub const REUSE_MINUTES: i64 = 110;

/// Where and how the shopper pays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scene {
    /// WeChat Pay: a `code_url` for a QR code (the default for WeChat Pay).
    Native,
    /// WeChat Pay inside WeChat: parameters for `WeixinJSBridge` (needs the payer's `openid`).
    Jsapi,
    /// Alipay: a signed page-pay link (the default for Alipay).
    Page,
    /// Alipay: a QR code from `alipay.trade.precreate`.
    Qr,
    /// Bank transfer: the account and the reference to quote.
    Transfer,
}

impl Scene {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Native => "native",
            Self::Jsapi => "jsapi",
            Self::Page => "page",
            Self::Qr => "qr",
            Self::Transfer => "transfer",
        }
    }

    /// Who hands this scene out: `wechatpay`, `alipay` or `bank`.
    pub fn provider(self) -> &'static str {
        match self {
            Self::Native | Self::Jsapi => "wechatpay",
            Self::Page | Self::Qr => "alipay",
            Self::Transfer => "bank",
        }
    }

    /// The scenes a payment method offers, its default first.
    pub fn offered_by(method: PaymentMethod) -> &'static [Scene] {
        match method {
            PaymentMethod::Wechat => &[Self::Native, Self::Jsapi],
            PaymentMethod::Alipay => &[Self::Page, Self::Qr],
            PaymentMethod::Bank => &[Self::Transfer],
        }
    }
}

/// A checkout request's body, read: `{"scene"?, "payer_openid"?, "return_url"?}`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckoutAsk {
    /// The scene asked for, as written (the method's default when absent).
    pub scene: Option<String>,
    /// The payer's WeChat `openid` (JSAPI only).
    pub payer_openid: Option<String>,
    /// Where Alipay's page payment sends the shopper back (page only; the configured one otherwise).
    pub return_url: Option<String>,
}

impl CheckoutAsk {
    /// The scene for a payment of `method`: the one asked for if the method offers it (JSAPI with a
    /// payer), else the method's default; anything else names the field.
    pub fn scene_for(&self, method: PaymentMethod) -> Result<Scene, FieldError> {
        let offered = Scene::offered_by(method);
        let scene = match self.scene.as_deref() {
            None => offered[0],
            Some(asked) => *offered.iter().find(|s| s.as_str() == asked).ok_or_else(|| {
                let names: Vec<&str> = offered.iter().map(|s| s.as_str()).collect();
                FieldError::new(
                    "scene",
                    format!("a {} payment offers {}", method.as_str(), names.join(" or ")),
                )
            })?,
        };
        if scene == Scene::Jsapi && self.payer_openid.as_deref().is_none_or(str::is_empty) {
            return Err(FieldError::new("payer_openid", "is required for the jsapi scene"));
        }
        Ok(scene)
    }
}

/// What a provider handed out for a payment, as stored on it and answered to the shopper.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkout {
    /// `wechatpay`, `alipay` or `bank`.
    pub provider: String,
    /// The scene.
    pub scene: Scene,
    /// What the shopper pays with: `code_url`; `params`; `url`; `qr_code`; or `reference`, `account`
    /// and `amount`.
    #[serde(flatten)]
    pub handed_out: Map<String, Value>,
    /// When the provider closes the trade: the payment's own expiry.
    pub expires_at: Timestamp,
    /// When it was handed out (a stored checkout is reused for [`REUSE_MINUTES`]).
    pub created_at: Timestamp,
}

/// What a provider needs to make a checkout for one payment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckoutRequest {
    /// The payment (`out_trade_no`).
    pub payment_id: PaymentId,
    /// Its amount, exact.
    pub amount: Money,
    /// What is being paid for, naming the product.
    pub description: String,
    /// The payment's expiry, which the provider's trade takes as its own (`time_expire`).
    pub expires_at: Timestamp,
    /// The scene.
    pub scene: Scene,
    /// The payer's `openid` (JSAPI).
    pub payer_openid: Option<String>,
    /// Where a page payment returns the shopper.
    pub return_url: Option<String>,
    /// When it is asked (what a provider's request is stamped with).
    pub requested_at: Timestamp,
}

/// The judgement of a checkout request against the order as the store holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckoutPlan {
    /// A checkout for this scene is stored and young enough: hand it out again, no provider call.
    Reuse(Box<(Payment, Checkout)>),
    /// Ask the provider.
    Ask(CheckoutRequest),
}

/// The payment `payment_id` of `state` for `user`, if it may be checked out at `now`: another user's
/// order, or a payment not of this order, is not found; a payment that is not open, past its expiry, of
/// an order no longer pending, is not payable.
fn payable<'a>(
    state: &'a OrderWithPayments,
    user: &UserId,
    payment_id: &PaymentId,
    now: Timestamp,
) -> Result<&'a Payment, ServiceError> {
    if &state.order.user_id != user {
        return Err(ServiceError::OrderNotFound);
    }
    let payment = state
        .payments
        .iter()
        .find(|p| &p.id == payment_id)
        .ok_or(ServiceError::OrderNotFound)?;
    if state.order.status != OrderStatus::Pending {
        return Err(ServiceError::PaymentNotPayable(format!(
            "order {}",
            state.order.status.as_str()
        )));
    }
    if !payment.status.is_open() {
        return Err(ServiceError::PaymentNotPayable(payment.status.as_str().to_owned()));
    }
    if now >= payment.expires_at {
        return Err(ServiceError::PaymentNotPayable(
            PaymentStatus::Expired.as_str().to_owned(),
        ));
    }
    Ok(payment)
}

/// Plans the checkout of `payment_id` in `scene`: refused (not found, not payable, or checked out before
/// in another scene), handed out again (stored for this scene less than [`REUSE_MINUTES`] ago), or the
/// provider asked (first time, or the stored one too old: the provider is asked again with the same
/// `out_trade_no`).
pub fn plan_checkout(
    state: &OrderWithPayments,
    user: &UserId,
    payment_id: &PaymentId,
    ask: &CheckoutAsk,
    now: Timestamp,
) -> Result<CheckoutPlan, ServiceError> {
    let payment = payable(state, user, payment_id, now)?;
    let scene = ask
        .scene_for(payment.method)
        .map_err(|f| ServiceError::Validation(vec![f]))?;
    if let Some(stored) = &payment.checkout {
        if stored.scene != scene {
            return Err(ServiceError::PaymentNotPayable(format!(
                "checked out for {}",
                stored.scene.as_str()
            )));
        }
        if now < stored.created_at.plus_seconds(REUSE_MINUTES * 60) {
            return Ok(CheckoutPlan::Reuse(Box::new((payment.clone(), stored.clone()))));
        }
    }
    let order = &state.order;
    Ok(CheckoutPlan::Ask(CheckoutRequest {
        payment_id: payment.id.clone(),
        amount: payment.amount,
        description: format!("{} × {}", order.product_name, order.quantity.get()),
        expires_at: payment.expires_at,
        scene,
        payer_openid: ask.payer_openid.clone().filter(|_| scene == Scene::Jsapi),
        return_url: ask.return_url.clone().filter(|_| scene == Scene::Page),
        requested_at: now,
    }))
}

/// The change that stores `checkout` on its payment, judged again on the state the store holds: still
/// payable, and not checked out meanwhile (a concurrent request that stored one for the same scene is
/// answered with that one, writing nothing; another scene is not payable).
pub fn store_checkout(
    state: &OrderWithPayments,
    user: &UserId,
    payment_id: &PaymentId,
    checkout: &Checkout,
    now: Timestamp,
) -> (Result<(Payment, Checkout), ServiceError>, Option<Change>) {
    let payment = match payable(state, user, payment_id, now) {
        Ok(payment) => payment,
        Err(err) => return (Err(err), None),
    };
    match &payment.checkout {
        Some(stored) if stored.scene != checkout.scene => {
            let why = format!("checked out for {}", stored.scene.as_str());
            return (Err(ServiceError::PaymentNotPayable(why)), None);
        }
        Some(stored) if stored.created_at >= checkout.created_at => {
            return (Ok((payment.clone(), stored.clone())), None);
        }
        _ => {}
    }
    let mut change = Change::of(state, now);
    let mut updated = payment.clone();
    updated.checkout = Some(checkout.clone());
    updated.log(
        "checkout_created",
        json!({ "provider": checkout.provider, "scene": checkout.scene }),
        None,
        now,
    );
    change.payment(updated.clone());
    (Ok((updated, checkout.clone())), Some(change))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::change::OrderWithPayments;
    use crate::ids::TtlMinutes;

    fn ask(scene: Option<&str>, openid: Option<&str>) -> CheckoutAsk {
        CheckoutAsk {
            scene: scene.map(str::to_owned),
            payer_openid: openid.map(str::to_owned),
            return_url: None,
        }
    }

    #[test]
    fn each_method_offers_its_scenes_its_default_first() {
        use PaymentMethod::*;
        assert_eq!(ask(None, None).scene_for(Wechat), Ok(Scene::Native));
        assert_eq!(ask(None, None).scene_for(Alipay), Ok(Scene::Page));
        assert_eq!(ask(None, None).scene_for(Bank), Ok(Scene::Transfer));
        assert_eq!(ask(Some("qr"), None).scene_for(Alipay), Ok(Scene::Qr));
        assert_eq!(ask(Some("jsapi"), Some("o-1")).scene_for(Wechat), Ok(Scene::Jsapi));
        assert_eq!(
            ask(Some("jsapi"), None).scene_for(Wechat).unwrap_err().field,
            "payer_openid"
        );
        for (scene, method) in [("page", Wechat), ("native", Alipay), ("qr", Bank), ("NATIVE", Wechat)] {
            assert_eq!(
                ask(Some(scene), None).scene_for(method).unwrap_err().field,
                "scene",
                "{scene}"
            );
        }
    }

    #[test]
    fn a_stored_checkout_is_handed_out_again_for_110_minutes_then_asked_afresh() {
        let order = crate::order::testing::order(1, "10.00", 1440);
        let made = order.created_at;
        let mut payment = Payment::create_for_order(&order, PaymentMethod::Bank, TtlMinutes::new(1440).unwrap(), made);
        let user = order.user_id.clone();
        let stored = Checkout {
            provider: "bank".into(),
            scene: Scene::Transfer,
            handed_out: Map::new(),
            expires_at: payment.expires_at,
            created_at: made,
        };
        payment.checkout = Some(stored.clone());
        let id = payment.id.clone();
        let state = OrderWithPayments {
            order,
            payments: vec![payment],
        };
        let plan = |minutes: i64| plan_checkout(&state, &user, &id, &ask(None, None), made.plus_seconds(minutes * 60));
        assert!(matches!(plan(109), Ok(CheckoutPlan::Reuse(reused)) if reused.1 == stored));
        assert!(
            matches!(plan(110), Ok(CheckoutPlan::Ask(request)) if request.scene == Scene::Transfer && request.payment_id == id)
        );
        let other_user = UserId::parse("mallory").unwrap();
        assert!(matches!(
            plan_checkout(&state, &other_user, &id, &ask(None, None), made),
            Err(ServiceError::OrderNotFound)
        ));
        // Storing an older checkout over a newer one answers the newer, writing nothing.
        let older = Checkout {
            created_at: made.plus_seconds(-1),
            ..stored.clone()
        };
        let (outcome, change) = store_checkout(&state, &user, &id, &older, made);
        assert_eq!(outcome.map(|(_, c)| c).ok(), Some(stored));
        assert_eq!(change, None);
    }
}
