//! Close before letting go (docs/api.md §16): when create_payment supersedes a checked-out payment, the
//! shopper cancels, or the sweeper expires, the trade is closed at the fake provider (over HTTP, signed
//! and verified both ways) and queried first. Unpaid: the decision goes ahead. Paid with its
//! notification lost: the order ends paid, never cancelled. Provider down: the shopper's routes answer
//! 503 and change nothing; the sweeper waits, then cancels with `close_pending` after the grace period,
//! and closes the trade on a later sweep. On both stores.

use std::sync::Arc;
use std::time::Duration;

use domain::closing::CLOSE_GRACE_MINUTES;
use domain::{PaymentEvent, ProductId};
use e2e::{cancel_order, checkout, create_order, create_payment, deliver, get_order, logged, sweep, TestEnv};
use infra::checkout::Providers;
use infra::providers::alipay::{Alipay, AlipayApp, AlipayClient};
use infra::providers::wechatpay::{WechatPay, WechatPayClient, WechatPayMerchant};
use infra::providers::Verdict;
use serde_json::{json, Value};
use testkit::fake_alipay::FakeAlipay;
use testkit::fake_wechatpay::FakeWechatPay;
use testkit::providers::{AlipaySimulator, SigningKey, WechatPaySimulator};

const PLENTY: Duration = Duration::from_secs(600);

/// Both fake providers over HTTP, and the platform keys the receiver verifies their notifications with.
pub(crate) struct Fakes {
    pub(crate) wechat: FakeWechatPay,
    pub(crate) alipay: FakeAlipay,
    pub(crate) wechat_verifier: WechatPay,
    pub(crate) alipay_verifier: Alipay,
}

/// `env` with WeChat Pay and Alipay (QR, close, query) faked over HTTP; a fridge (3299.00, 100 in stock)
/// and Alice's address.
pub(crate) async fn with_providers(env: TestEnv) -> (TestEnv, Fakes) {
    let (providers, fakes) = fake_providers().await;
    let env = env.with_gateway(Arc::new(providers));
    env.product("fridge", "3299.00", 100).await;
    env.address("alice-home", "alice").await;
    (env, fakes)
}

/// WeChat Pay and Alipay (page links, QR, close, query, refund) faked over HTTP, each with its own keys,
/// and the gateway configured to use them (no bank account).
pub(crate) async fn fake_providers() -> (Providers, Fakes) {
    let (merchant, app_key) = (SigningKey::generate(), SigningKey::generate());
    let wechat_sim = WechatPaySimulator::generate("PUB_KEY_ID_0114232134912410000000000001");
    let alipay_sim = AlipaySimulator::generate();
    let (wechat_verifier, alipay_verifier) = (wechat_sim.config(), alipay_sim.config());
    let (mchid, appid, app_id) = (
        wechat_sim.mchid.clone(),
        wechat_sim.appid.clone(),
        alipay_sim.app_id.clone(),
    );
    let wechat_platform = wechat_sim.config();
    let alipay_platform = alipay_sim.config();
    let wechat = FakeWechatPay::start(wechat_sim, &merchant.public_key_pem())
        .await
        .expect("fake WeChat Pay");
    let alipay = FakeAlipay::start(alipay_sim, &app_key.public_key_base64())
        .await
        .expect("fake Alipay");
    let timeout = Duration::from_millis(500);
    let wechat_client = WechatPayClient::new(
        WechatPayMerchant {
            mchid,
            appid,
            serial: "5157F09EFDC096DE15EBE81A47057A7232F1B8E1".into(),
            key: infra::providers::signing::MerchantKey::parse(&merchant.pkcs8_base64()).unwrap(),
            notify_url: "https://shop.example/api/payments/callback/wechatpay/".into(),
            base_url: wechat.base_url.clone(),
        },
        wechat_platform,
        timeout,
    )
    .unwrap()
    .with_breaker(1000, Duration::from_millis(100));
    let app = AlipayApp {
        app_id,
        key: infra::providers::signing::MerchantKey::parse(&app_key.pkcs8_base64()).unwrap(),
        notify_url: "https://shop.example/api/payments/callback/alipay/".into(),
        return_url: None,
        gateway: alipay.gateway.clone(),
    };
    let page_app = app.clone();
    let alipay_client = AlipayClient::new(app, alipay_platform, timeout)
        .unwrap()
        .with_breaker(1000, Duration::from_millis(100));
    let providers = Providers {
        wechatpay: Some(wechat_client),
        alipay_api: Some(alipay_client),
        alipay: Some(page_app),
        ..Providers::default()
    };
    let fakes = Fakes {
        wechat,
        alipay,
        wechat_verifier,
        alipay_verifier,
    };
    (providers, fakes)
}

/// A pending order of one fridge paid by `method` within 30 minutes, checked out in `scene`: its order
/// and payment ids.
pub(crate) async fn checked_out(env: &TestEnv, method: &str, scene: &str) -> (String, String) {
    let body = json!({"product_id": "fridge", "address_id": "alice-home", "quantity": 1, "payment_method": method, "ttl_minutes": 30});
    let (status, created) = create_order(env, Some("alice"), &body).await;
    assert_eq!(status, 201, "{created}");
    let order = created["order"]["id"].as_str().unwrap().to_owned();
    let payment = created["payment"]["id"].as_str().unwrap().to_owned();
    let (status, got) = checkout(env, Some("alice"), &order, &payment, &json!({ "scene": scene })).await;
    assert_eq!(status, 200, "{got}");
    (order, payment)
}

impl Fakes {
    /// The shopper pays the trade at its fake provider; the notification the provider would post,
    /// verified the provider's way, as the event the receiver would enqueue (`None` if the trade could
    /// not be paid: closed or unknown).
    pub(crate) fn pay(&self, method: &str, payment: &str) -> Option<PaymentEvent> {
        let now = domain::Timestamp::now();
        let verdict = match method {
            "wechat" => {
                let posted = self.wechat.pay(payment)?;
                let header = |name: &str| posted.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
                self.wechat_verifier.verify(&header, posted.body.as_bytes(), now)
            }
            _ => self.alipay_verifier.verify(self.alipay.pay(payment)?.as_bytes()),
        };
        match verdict {
            Ok(Verdict::Event(event)) => Some(event),
            other => panic!("the fake's notification did not verify: {other:?}"),
        }
    }

    /// The trade's state at its fake provider.
    pub(crate) fn trade_state(&self, method: &str, payment: &str) -> Option<String> {
        match method {
            "wechat" => self.wechat.trade(payment).map(|t| t.state),
            _ => self.alipay.trade(payment).map(|t| t.state),
        }
    }

    pub(crate) fn set_failing(&self, failing: bool) {
        self.wechat.controls().set_failing(failing);
        self.alipay.controls().set_failing(failing);
    }
}

fn closed_state(method: &str) -> &'static str {
    if method == "wechat" {
        "CLOSED"
    } else {
        "TRADE_CLOSED"
    }
}

fn paid_state(method: &str) -> &'static str {
    if method == "wechat" {
        "SUCCESS"
    } else {
        "TRADE_SUCCESS"
    }
}

pub(crate) async fn order_of(env: &TestEnv, order: &str) -> Value {
    let (status, got) = get_order(env, Some("alice"), order).await;
    assert_eq!(status, 200, "{got}");
    got
}

/// The three ways the service lets a payment go.
#[derive(Debug, Clone, Copy)]
enum Path {
    Supersede,
    Cancel,
    Sweep,
}

const PATHS: [Path; 3] = [Path::Supersede, Path::Cancel, Path::Sweep];

/// Lets the order's payment go by `path`: the HTTP status (200 for the sweep) and the body or report.
async fn let_go(env: &TestEnv, path: Path, order: &str) -> (u16, Value) {
    match path {
        Path::Supersede => {
            create_payment(
                env,
                Some("alice"),
                order,
                &json!({"payment_method": "bank", "ttl_minutes": 5}),
            )
            .await
        }
        Path::Cancel => cancel_order(env, Some("alice"), order).await,
        Path::Sweep => {
            env.clock.advance(31 * 60);
            (200, serde_json::to_value(sweep(env, PLENTY).await).unwrap())
        }
    }
}

pub async fn an_unpaid_trade_is_closed_at_the_provider_then_the_payment_let_go(env: TestEnv) {
    let (env, fakes) = with_providers(env).await;
    let fridge = ProductId::parse("fridge").unwrap();
    for (method, scene) in [("wechat", "native"), ("alipay", "qr")] {
        for path in PATHS {
            // Given a checked-out payment whose trade is open at the provider
            let (order, payment) = checked_out(&env, method, scene).await;
            let stock = env.stock(&fridge).await;

            // When the service lets it go
            let (status, answer) = let_go(&env, path, &order).await;

            // Then the trade was closed at the provider, and the decision went ahead
            assert_eq!(
                fakes.trade_state(method, &payment).as_deref(),
                Some(closed_state(method)),
                "{method} {path:?}"
            );
            let got = order_of(&env, &order).await;
            let first = &got["payments"][0];
            assert_eq!(first["status"], "expired", "{method} {path:?}: {got}");
            assert!(first.get("close_pending").is_none(), "{got}");
            match path {
                Path::Supersede => {
                    assert_eq!(status, 201, "{answer}");
                    assert_eq!(got["order"]["status"], "pending");
                    assert_eq!(got["payments"][1]["status"], "init");
                    assert_eq!(env.stock(&fridge).await, stock);
                    // (the new bank payment needs no close: cancelled out of the later sweeps' way)
                    assert_eq!(cancel_order(&env, Some("alice"), &order).await.0, 200);
                }
                Path::Cancel | Path::Sweep => {
                    assert_eq!(status, 200, "{answer}");
                    assert_eq!(got["order"]["status"], "cancelled", "{method} {path:?}");
                    assert_eq!(env.stock(&fridge).await, stock + 1, "stock returned");
                }
            }
            if let Path::Sweep = path {
                assert_eq!(
                    (answer["cancelled"].as_u64(), answer["paid_on_close"].as_u64()),
                    (Some(1), Some(0))
                );
            }
            // and the trade cannot be paid any more
            assert!(fakes.pay(method, &payment).is_none(), "{method} {path:?}");
        }
    }

    // A page payment whose link was never opened has no trade at Alipay: "trade does not exist" counts
    // as closed
    let (order, payment) = checked_out(&env, "alipay", "page").await;
    let closes = fakes.alipay.controls().closes();
    let (status, answer) = cancel_order(&env, Some("alice"), &order).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(fakes.alipay.controls().closes(), closes + 1, "the close was asked");
    assert_eq!(fakes.alipay.trade(&payment), None);
    assert_eq!(answer["order"]["status"], "cancelled");

    // A bank transfer, and a payment never checked out, need no provider call
    let requests = (fakes.wechat.controls().requests(), fakes.alipay.controls().requests());
    for method in ["bank", "wechat"] {
        let body = json!({"product_id": "fridge", "address_id": "alice-home", "quantity": 1, "payment_method": method});
        let (_, created) = create_order(&env, Some("alice"), &body).await;
        let order = created["order"]["id"].as_str().unwrap();
        assert_eq!(cancel_order(&env, Some("alice"), order).await.0, 200);
    }
    assert_eq!(
        (fakes.wechat.controls().requests(), fakes.alipay.controls().requests()),
        requests
    );
}

pub async fn a_trade_paid_with_its_notification_lost_pays_the_order_instead(env: TestEnv) {
    let (env, fakes) = with_providers(env).await;
    let fridge = ProductId::parse("fridge").unwrap();
    for (method, scene) in [("wechat", "native"), ("alipay", "qr")] {
        for path in PATHS {
            // Given a trade the shopper paid at the provider, its notification lost on the way
            let (order, payment) = checked_out(&env, method, scene).await;
            let lost = fakes.pay(method, &payment).expect("paid at the provider");
            let stock = env.stock(&fridge).await;

            // When the service would let it go
            let (status, answer) = let_go(&env, path, &order).await;

            // Then the decision is reversed: the order is paid, never cancelled, its stock kept
            match path {
                Path::Supersede => assert_eq!(
                    (status, answer["error"]["code"].as_str()),
                    (400, Some("INVALID_ORDER_STATUS")),
                    "{answer}"
                ),
                Path::Cancel => assert_eq!(
                    (status, answer["error"]["code"].as_str()),
                    (409, Some("ORDER_NOT_CANCELLABLE")),
                    "{answer}"
                ),
                Path::Sweep => assert_eq!(
                    (answer["paid_on_close"].as_u64(), answer["cancelled"].as_u64()),
                    (Some(1), Some(0)),
                    "{answer}"
                ),
            }
            let got = order_of(&env, &order).await;
            assert_eq!(got["order"]["status"], "paid", "{method} {path:?}: {got}");
            assert_eq!(got["payments"].as_array().unwrap().len(), 1, "no new payment");
            let paid = &got["payments"][0];
            assert_eq!(paid["status"], "succeeded");
            assert_eq!(paid["refund_required"], false);
            assert_eq!(paid["provider_txn_id"], lost.provider_txn_id.as_str());
            let query_event = format!("query:{}", lost.provider_txn_id);
            assert!(
                paid["logs"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|l| l["event_id"] == query_event.as_str()),
                "applied as event {query_event}: {paid}"
            );
            assert_eq!(env.stock(&fridge).await, stock, "stock kept");
            assert_eq!(fakes.trade_state(method, &payment).as_deref(), Some(paid_state(method)));

            // and the notification delivered afterwards is a duplicate: nothing moves, nothing refunded
            assert!(deliver(&env, &[("late", &lost)]).await.is_empty());
            let again = order_of(&env, &order).await;
            assert_eq!(again["order"]["status"], "paid");
            assert_eq!(again["order"]["history"], got["order"]["history"]);
            assert_eq!(again["payments"][0]["status"], "succeeded");
            assert_eq!(again["payments"][0]["refund_required"], false);
            assert_eq!(logged(&again["payments"][0], "duplicate_success"), 1);
        }
    }
}

pub async fn a_provider_down_stops_the_shopper_and_delays_the_sweeper_until_the_grace_period(env: TestEnv) {
    let (env, fakes) = with_providers(env).await;
    let fridge = ProductId::parse("fridge").unwrap();
    for (method, scene) in [("wechat", "native"), ("alipay", "qr")] {
        // Given a checked-out payment, and its provider down
        let (order, payment) = checked_out(&env, method, scene).await;
        fakes.set_failing(true);
        let before = env.snapshot().await;

        // The shopper's routes: 503 PROVIDER_UNAVAILABLE with Retry-After's code, nothing changed
        for path in [Path::Supersede, Path::Cancel] {
            let (status, answer) = let_go(&env, path, &order).await;
            assert_eq!(
                (status, answer["error"]["code"].as_str()),
                (503, Some("PROVIDER_UNAVAILABLE")),
                "{method} {path:?}: {answer}"
            );
            assert_eq!(env.snapshot().await, before, "{method} {path:?}");
        }

        // The sweeper, past the deadline but within the grace period: leaves the order for the next run
        let (_, report) = let_go(&env, Path::Sweep, &order).await;
        assert_eq!(
            (report["awaiting_close"].as_u64(), report["cancelled"].as_u64()),
            (Some(1), Some(0)),
            "{report}"
        );
        assert_eq!(order_of(&env, &order).await["order"]["status"], "pending");
        let stock = env.stock(&fridge).await;

        // Past the grace period: cancelled anyway, the payment marked close_pending
        env.clock.advance(i64::from(CLOSE_GRACE_MINUTES) * 60);
        let report = sweep(&env, PLENTY).await;
        assert_eq!((report.cancelled, report.close_pending), (1, 1), "{report:?}");
        let got = order_of(&env, &order).await;
        assert_eq!(got["order"]["status"], "cancelled");
        assert_eq!(got["payments"][0]["status"], "expired");
        assert_eq!(got["payments"][0]["close_pending"], true, "{got}");
        assert_eq!(env.stock(&fridge).await, stock + 1, "stock returned");
        assert!(env.expiry_index().await.iter().any(|entry| entry.contains(&payment)));

        // Still down: the mark stays, the next sweep tries again
        let report = sweep(&env, PLENTY).await;
        assert_eq!((report.awaiting_close, report.close_confirmed), (1, 0), "{report:?}");

        // The provider back: the next sweep closes the trade and clears the mark
        fakes.set_failing(false);
        tokio::time::sleep(Duration::from_millis(150)).await; // the breaker's cool-down
        let report = sweep(&env, PLENTY).await;
        assert_eq!(report.close_confirmed, 1, "{report:?}");
        assert_eq!(
            fakes.trade_state(method, &payment).as_deref(),
            Some(closed_state(method))
        );
        let got = order_of(&env, &order).await;
        assert!(got["payments"][0].get("close_pending").is_none(), "{got}");
        assert_eq!(logged(&got["payments"][0], "closed_at_provider"), 1);
        assert!(!env.expiry_index().await.iter().any(|entry| entry.contains(&payment)));
        assert_eq!(sweep(&env, PLENTY).await.found, 0, "nothing left to sweep");
    }
}

/// A close-pending trade paid before the provider came back: the success is a late one, flagged for
/// refund, and the mark cleared.
pub async fn a_close_pending_trade_found_paid_is_flagged_for_refund(env: TestEnv) {
    let (env, fakes) = with_providers(env).await;
    let (order, payment) = checked_out(&env, "wechat", "native").await;
    fakes.set_failing(true);
    env.clock.advance((31 + i64::from(CLOSE_GRACE_MINUTES)) * 60);
    assert_eq!(sweep(&env, PLENTY).await.close_pending, 1);
    fakes.set_failing(false);
    let lost = fakes.pay("wechat", &payment).expect("still payable at the provider");
    tokio::time::sleep(Duration::from_millis(150)).await;

    let report = sweep(&env, PLENTY).await;

    assert_eq!(report.paid_on_close, 1, "{report:?}");
    let got = order_of(&env, &order).await;
    assert_eq!(got["order"]["status"], "cancelled");
    let paid = &got["payments"][0];
    assert_eq!(
        (paid["status"].as_str(), paid["refund_required"].as_bool()),
        (Some("refunding"), Some(true)),
        "{paid}"
    );
    assert!(paid.get("close_pending").is_none(), "{paid}");
    assert!(!env.expiry_index().await.iter().any(|entry| entry.contains(&payment)));
    assert!(deliver(&env, &[("late", &lost)]).await.is_empty());
    assert_eq!(order_of(&env, &order).await["payments"][0]["refund_required"], true);
}

/// The shopper pays at the provider while the sweeper closes the trade, with the timing jittered: every
/// trial ends either paid with the trade paid, or cancelled with the trade closed and the stock returned.
pub async fn paying_while_the_sweeper_closes_never_leaves_a_paid_trade_on_a_cancelled_order(env: TestEnv) {
    const TRIALS: usize = 100;
    let (env, fakes) = with_providers(env).await;
    let fakes = Arc::new(fakes);
    let fridge = ProductId::parse("fridge").unwrap();
    let start = env.stock(&fridge).await;
    let (mut paid, mut cancelled, mut paid_on_close) = (0, 0, 0);
    // The payer waits a random part of the last sweep's duration, so that it pays before, during and
    // after the sweeper's close on either store.
    let mut last_sweep = Duration::from_millis(5);
    for trial in 0..TRIALS {
        let method = if trial % 2 == 0 { "wechat" } else { "alipay" };
        let (order, payment) = checked_out(&env, method, if method == "wechat" { "native" } else { "qr" }).await;
        env.clock.advance(31 * 60);
        let jitter = fastrand::u64(0..=last_sweep.as_micros() as u64);
        let payer = {
            let (fakes, payment) = (fakes.clone(), payment.clone());
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_micros(jitter)).await;
                fakes.pay(method, &payment)
            })
        };
        let started = std::time::Instant::now();
        let report = sweep(&env, PLENTY).await;
        last_sweep = started.elapsed();
        paid_on_close += report.paid_on_close;
        let notification = payer.await.unwrap();
        if let Some(event) = &notification {
            assert!(deliver(&env, &[("notified", event)]).await.is_empty());
        }
        assert_eq!(report.failed, 0, "{report:?}");

        let got = order_of(&env, &order).await;
        let trade = fakes.trade_state(method, &payment);
        let p = &got["payments"][0];
        match got["order"]["status"].as_str() {
            Some("paid") => {
                paid += 1;
                assert_eq!(trade.as_deref(), Some(paid_state(method)), "trial {trial}");
                assert_eq!(p["status"], "succeeded");
                assert!(notification.is_some(), "trial {trial}: paid only if the shopper paid");
            }
            Some("cancelled") => {
                cancelled += 1;
                assert_eq!(trade.as_deref(), Some(closed_state(method)), "trial {trial}: {got}");
                assert_eq!(p["status"], "expired");
                assert!(
                    notification.is_none(),
                    "trial {trial}: the shopper could not pay a closed trade"
                );
            }
            other => panic!("trial {trial}: order {other:?}: {got}"),
        }
        assert_eq!(p["refund_required"], false, "trial {trial}");
    }
    assert_eq!(paid + cancelled, TRIALS);
    assert!(
        paid > 0 && cancelled > 0,
        "the race was run: {paid} paid, {cancelled} cancelled"
    );
    assert_eq!(
        env.stock(&fridge).await,
        start - paid as u32,
        "every cancelled order's stock returned"
    );
    println!("pay vs close: {paid} paid ({paid_on_close} found paid by the sweeper's close), {cancelled} cancelled of {TRIALS} trials");
}

/// The fakes close a trade themselves at its `time_expire`, as the providers do: a trade whose time has
/// passed can no longer be paid, and its query answers closed.
pub async fn the_fake_providers_close_a_trade_at_its_time_expire(env: TestEnv) {
    let (env, fakes) = with_providers(env).await;
    // Checked out with a payment window of one minute, then the providers' own clock moves past it: the
    // fakes read real time, so the trade's time_expire is written two seconds ahead instead.
    let mut trades = Vec::new();
    for (method, scene) in [("wechat", "native"), ("alipay", "qr")] {
        let (_, payment) = checked_out(&env, method, scene).await;
        trades.push((method, payment));
    }
    for (method, payment) in &trades {
        assert_eq!(
            fakes.trade_state(method, payment).as_deref(),
            Some(if *method == "wechat" {
                "NOTPAY"
            } else {
                "WAIT_BUYER_PAY"
            })
        );
    }
    let soon = domain::Timestamp::now().plus_seconds(2);
    fakes
        .wechat
        .set_time_expire(&trades[0].1, &infra::providers::wechatpay::time_expire(soon));
    fakes
        .alipay
        .set_time_expire(&trades[1].1, &infra::providers::alipay::china_time(soon));
    tokio::time::sleep(Duration::from_millis(3100)).await;
    for (method, payment) in &trades {
        assert!(
            fakes.pay(method, payment).is_none(),
            "{method}: past its time_expire, not payable"
        );
        assert_eq!(
            fakes.trade_state(method, payment).as_deref(),
            Some(closed_state(method))
        );
    }
}
