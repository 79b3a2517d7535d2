//! Refunds (docs/api.md §17): money the shop cannot keep goes back exactly once. A late success on a
//! cancelled order, or a second success on a paid one, decides the refund in the write that records
//! it; the real refund worker sends it to the fake provider (over HTTP, signed and verified both ways)
//! with one refund number, follows a refund under way with queries, survives its own crash and a
//! provider down, and records a final refusal for an operator. WeChat Pay's refund notifications are
//! applied once, in order with the payment's events. On both stores.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use domain::change::{Judge, OrderWithPayments, Updated};
use domain::ports::{Metric, OrderUpdates, StoreError, WorkItem};
use domain::refund::{out_refund_no, WorkKind};
use domain::{OrderId, PaymentEvent, PaymentId, ProductId, ReportedStatus};
use e2e::{create_order, create_payment, deliver, event, logged, refund_run, sweep, TestEnv};
use infra::providers::Verdict;
use serde_json::{json, Value};
use testkit::controls::RefundMode;

use super::closing::{checked_out, order_of, with_providers, Fakes};

const PLENTY: std::time::Duration = std::time::Duration::from_secs(600);

const PROVIDERS: [(&str, &str); 2] = [("wechat", "native"), ("alipay", "qr")];

/// A checked-out payment paid at its fake provider, its notification lost, and the order then
/// cancelled by the sweeper while the provider could not be asked (past the grace period, with the
/// payment `close_pending`). The payment id and the lost notification.
pub(crate) async fn paid_after_cancel(
    env: &TestEnv,
    fakes: &Fakes,
    method: &str,
    scene: &str,
) -> (String, String, PaymentEvent) {
    let (order, payment) = checked_out(env, method, scene).await;
    let lost = fakes.pay(method, &payment).expect("paid at the provider");
    fakes.set_failing(true);
    env.clock.advance(61 * 60);
    let swept = sweep(env, PLENTY).await;
    fakes.set_failing(false);
    assert_eq!((swept.cancelled, swept.close_pending), (1, 1), "{swept:?}");
    (order, payment, lost)
}

/// A payment checked out and paid at its fake provider, its notification held back while it expired
/// alone (provider unreachable past the grace period), and the order then paid by another payment:
/// the order, the held-back payment and its notification.
async fn paid_twice(env: &TestEnv, fakes: &Fakes, method: &str, scene: &str) -> (String, String, PaymentEvent) {
    let body = json!({"product_id": "fridge", "address_id": "alice-home", "quantity": 1, "payment_method": "bank", "ttl_minutes": 120});
    let (status, created) = create_order(env, Some("alice"), &body).await;
    assert_eq!(status, 201, "{created}");
    let order = created["order"]["id"].as_str().unwrap().to_owned();
    let short = json!({"payment_method": method, "ttl_minutes": 5});
    let (status, made) = create_payment(env, Some("alice"), &order, &short).await;
    assert_eq!(status, 201, "{made}");
    let first = made["payment"]["id"].as_str().unwrap().to_owned();
    let (status, got) = e2e::checkout(env, Some("alice"), &order, &first, &json!({ "scene": scene })).await;
    assert_eq!(status, 200, "{got}");
    let held = fakes.pay(method, &first).expect("paid at the provider");
    fakes.set_failing(true);
    env.clock.advance(36 * 60);
    let swept = sweep(env, PLENTY).await;
    fakes.set_failing(false);
    assert_eq!((swept.expired, swept.close_pending), (1, 1), "{swept:?}");
    let (status, made) = create_payment(env, Some("alice"), &order, &json!({"payment_method": "bank"})).await;
    assert_eq!(status, 201, "{made}");
    let second = made["payment"]["id"].as_str().unwrap().to_owned();
    let paid = event(&second, &format!("bank-{second}"), ReportedStatus::Succeeded, "3299.00");
    assert!(deliver(env, &[("m1", &paid)]).await.is_empty());
    assert_eq!(order_of(env, &order).await["order"]["status"], "paid");
    (order, first, held)
}

fn payment<'a>(got: &'a Value, id: &str) -> &'a Value {
    got["payments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == id)
        .expect("the payment")
}

/// The refunds the fake provider of `method` keeps for `payment`.
fn refunds_at(fakes: &Fakes, method: &str, payment: &str) -> Vec<testkit::controls::Refund> {
    let all = match method {
        "wechat" => fakes.wechat.refunds(),
        _ => fakes.alipay.refunds(),
    };
    all.into_iter().filter(|r| r.out_trade_no == payment).collect()
}

fn set_refund_mode(fakes: &Fakes, mode: RefundMode) {
    fakes.wechat.controls().set_refund_mode(mode.clone());
    fakes.alipay.controls().set_refund_mode(mode);
}

async fn work(env: &TestEnv, kind: WorkKind) -> Vec<WorkItem> {
    let mut items = Vec::new();
    let mut after = None;
    loop {
        let page = env.svc.work.work(kind, after.as_deref(), 2).await.expect("work index");
        items.extend(page.items);
        match page.next {
            Some(next) => after = Some(next),
            None => return items,
        }
    }
}

/// The refund as the payment records it, and the payment's status.
fn refund_of(got: &Value, id: &str) -> (String, Value) {
    let p = payment(got, id);
    (p["status"].as_str().unwrap().to_owned(), p["refund"].clone())
}

pub async fn a_late_success_on_a_cancelled_order_is_refunded_once_at_its_provider(env: TestEnv) {
    let (env, fakes) = with_providers(env).await;
    let fridge = ProductId::parse("fridge").unwrap();
    for (method, scene) in PROVIDERS {
        // Given an order cancelled while its trade was paid at the provider
        let (order, id, lost) = paid_after_cancel(&env, &fakes, method, scene).await;
        let stock = env.stock(&fridge).await;
        let started = env.metrics.count_of(Metric::RefundStarted);

        // When the notification arrives late
        assert!(deliver(&env, &[("late", &lost)]).await.is_empty());

        // Then the refund is decided in the write that records it: refunding, in the refund partition
        let got = order_of(&env, &order).await;
        assert_eq!(got["order"]["status"], "cancelled", "{got}");
        let (status, refund) = refund_of(&got, &id);
        assert_eq!(status, "refunding", "{method}: {got}");
        assert_eq!(refund["out_refund_no"], out_refund_no(&PaymentId::parse(&id).unwrap()));
        assert_eq!(
            (refund["amount"].as_str(), refund["refunds_order"].as_bool()),
            (Some("3299.00"), Some(false))
        );
        assert!(payment(&got, &id).get("close_pending").is_none(), "paid: no close owed");
        assert_eq!(env.metrics.count_of(Metric::RefundStarted), started + 1);
        assert!(work(&env, WorkKind::Refund)
            .await
            .iter()
            .any(|w| w.payment_id.as_str() == id));

        // When the refund worker runs (twice)
        let report = refund_run(&env.svc).await;
        assert_eq!(
            (report.found, report.refunded, report.provider_requests),
            (1, 1, 1),
            "{method}: {report:?}"
        );
        let again = refund_run(&env.svc).await;
        assert_eq!((again.found, again.provider_requests), (0, 0), "{again:?}");

        // Then the provider refunded it once, the payment is refunded, the order still cancelled
        let refunds = refunds_at(&fakes, method, &id);
        assert_eq!(refunds.len(), 1, "{method}: {refunds:?}");
        assert_eq!(
            (refunds[0].status.as_str(), refunds[0].amount_fen),
            ("SUCCESS", 329_900)
        );
        assert_eq!(refunds[0].out_refund_no, refund["out_refund_no"].as_str().unwrap());
        let got = order_of(&env, &order).await;
        let (status, refund) = refund_of(&got, &id);
        assert_eq!(status, "refunded", "{got}");
        assert!(
            refund["provider_refund_id"].is_string() && refund["settled_at"].is_string(),
            "{refund}"
        );
        assert_eq!(logged(payment(&got, &id), "refunded"), 1);
        assert_eq!(got["order"]["status"], "cancelled");
        assert_eq!(env.stock(&fridge).await, stock, "stock returned once, by the cancel");
        assert!(work(&env, WorkKind::Refund).await.is_empty());
        assert!(
            work(&env, WorkKind::Attention).await.is_empty(),
            "settled: nothing for an operator"
        );

        // and the notification delivered once more changes nothing
        assert!(deliver(&env, &[("again", &lost)]).await.is_empty());
        assert_eq!(refund_of(&order_of(&env, &order).await, &id).0, "refunded");
    }
    assert_eq!(env.metrics.count_of(Metric::RefundSucceeded), 2);
    assert_eq!(
        env.metrics.last_value(Metric::AttentionOldestAgeSeconds),
        Some(0.0),
        "nothing for an operator"
    );
}

pub async fn a_second_success_on_a_paid_order_is_refunded_once_at_its_provider(env: TestEnv) {
    let (env, fakes) = with_providers(env).await;
    for (method, scene) in PROVIDERS {
        // Given an order paid by a bank transfer while its earlier trade was also paid
        let (order, first, held) = paid_twice(&env, &fakes, method, scene).await;

        // When the earlier payment's notification arrives
        assert!(deliver(&env, &[("held", &held)]).await.is_empty());
        let got = order_of(&env, &order).await;
        assert_eq!(refund_of(&got, &first).0, "refunding", "{got}");
        assert_eq!(payment(&got, &first)["refund_required"], true);

        // Then the worker refunds that payment once; the order stays paid by the other
        let report = refund_run(&env.svc).await;
        assert_eq!((report.refunded, report.provider_requests), (1, 1), "{report:?}");
        assert_eq!(refunds_at(&fakes, method, &first).len(), 1);
        let got = order_of(&env, &order).await;
        assert_eq!(refund_of(&got, &first).0, "refunded");
        assert_eq!(got["order"]["status"], "paid", "{got}");
        assert_eq!(
            got["order"]["history"].as_array().unwrap().len(),
            2,
            "created, paid: {got}"
        );
    }
}

/// A store whose next `update_from` fails after the provider was called: the worker killed between
/// the provider's success and its own write.
struct FailNextWrite {
    inner: Arc<dyn OrderUpdates>,
    armed: AtomicBool,
}

#[async_trait]
impl OrderUpdates for FailNextWrite {
    async fn order_of_payment(&self, id: &PaymentId) -> Result<Option<OrderId>, StoreError> {
        self.inner.order_of_payment(id).await
    }

    async fn update(&self, id: &OrderId, judge: Judge) -> Result<Updated, StoreError> {
        self.inner.update(id, judge).await
    }

    async fn update_from(&self, known: OrderWithPayments, judge: Judge) -> Result<Updated, StoreError> {
        if self.armed.swap(false, Ordering::SeqCst) {
            return Err(StoreError::backend("the worker died before its write"));
        }
        self.inner.update_from(known, judge).await
    }
}

pub async fn a_worker_that_dies_after_the_provider_refunded_refunds_once(env: TestEnv) {
    let (env, fakes) = with_providers(env).await;
    for (method, scene) in PROVIDERS {
        let (order, id, lost) = paid_after_cancel(&env, &fakes, method, scene).await;
        assert!(deliver(&env, &[("late", &lost)]).await.is_empty());

        // Given a run whose write fails after the provider refunded
        let mut dying = env.svc.clone();
        dying.updates = Arc::new(FailNextWrite {
            inner: env.svc.updates.clone(),
            armed: AtomicBool::new(true),
        });
        let report = refund_run(&dying).await;
        assert_eq!((report.errors, report.refunded), (1, 0), "{report:?}");
        assert_eq!(refunds_at(&fakes, method, &id).len(), 1, "refunded at the provider");
        assert_eq!(
            refund_of(&order_of(&env, &order).await, &id).0,
            "refunding",
            "not recorded"
        );

        // When the next run sends it again, under the same number
        let report = refund_run(&env.svc).await;

        // Then the provider answers the same refund: one refund, the payment refunded
        assert_eq!(report.refunded, 1, "{report:?}");
        let refunds = refunds_at(&fakes, method, &id);
        assert_eq!(refunds.len(), 1, "{method}: one refund, not two: {refunds:?}");
        assert_eq!(refund_of(&order_of(&env, &order).await, &id).0, "refunded");
    }
}

pub async fn a_provider_down_or_still_processing_is_asked_again_until_a_final_answer(env: TestEnv) {
    let (env, fakes) = with_providers(env).await;
    for (method, scene) in PROVIDERS {
        // Provider down for three runs, then up: one refund
        let (order, id, lost) = paid_after_cancel(&env, &fakes, method, scene).await;
        assert!(deliver(&env, &[("late", &lost)]).await.is_empty());
        fakes.set_failing(true);
        for run in 0..3 {
            let report = refund_run(&env.svc).await;
            assert_eq!((report.unreachable, report.refunded), (1, 0), "run {run}: {report:?}");
        }
        assert_eq!(refund_of(&order_of(&env, &order).await, &id).0, "refunding");
        fakes.set_failing(false);
        assert_eq!(refund_run(&env.svc).await.refunded, 1);
        assert_eq!(refunds_at(&fakes, method, &id).len(), 1);
        assert_eq!(refund_of(&order_of(&env, &order).await, &id).0, "refunded");

        // Under way at the provider: later runs ask after it until it is refunded
        set_refund_mode(&fakes, RefundMode::Processing { queries: 2 });
        let (order, id, lost) = paid_after_cancel(&env, &fakes, method, scene).await;
        assert!(deliver(&env, &[("late", &lost)]).await.is_empty());
        let mut runs = 0;
        loop {
            runs += 1;
            let report = refund_run(&env.svc).await;
            if report.refunded == 1 {
                break;
            }
            assert_eq!(report.pending, 1, "run {runs}: {report:?}");
            let (status, refund) = refund_of(&order_of(&env, &order).await, &id);
            assert_eq!(status, "refunding");
            assert!(refund["provider_status"].is_string(), "{refund}");
            assert!(runs < 6, "{method}: never refunded");
        }
        assert!(runs >= 2, "{method}: refunded only after asking again ({runs} runs)");
        assert_eq!(refunds_at(&fakes, method, &id).len(), 1, "{method}");
        let got = order_of(&env, &order).await;
        assert_eq!(refund_of(&got, &id).0, "refunded");
        assert_eq!(
            logged(payment(&got, &id), "refund_pending"),
            1,
            "recorded once, when news: {got}"
        );
        set_refund_mode(&fakes, RefundMode::Succeed);
    }
}

pub async fn a_final_refusal_or_a_bank_transfer_is_left_for_an_operator(env: TestEnv) {
    let (env, fakes) = with_providers(env).await;
    let mut failed = Vec::new();
    for ((method, scene), code) in PROVIDERS.into_iter().zip(["CLOSED", "ACQ.TRADE_NOT_ALLOW_REFUND"]) {
        set_refund_mode(&fakes, RefundMode::Refuse(code.into()));
        let (order, id, lost) = paid_after_cancel(&env, &fakes, method, scene).await;
        assert!(deliver(&env, &[("late", &lost)]).await.is_empty());
        let report = refund_run(&env.svc).await;
        assert_eq!((report.failed, report.refunded), (1, 0), "{method}: {report:?}");
        let got = order_of(&env, &order).await;
        let (status, refund) = refund_of(&got, &id);
        assert_eq!(status, "refund_failed", "{got}");
        assert_eq!(refund["failure"], code);
        assert_eq!(refund_run(&env.svc).await.found, 0, "final: never sent again");
        failed.push(id);
    }
    set_refund_mode(&fakes, RefundMode::Succeed);
    assert_eq!(env.metrics.count_of(Metric::RefundFailed), 2);

    // A bank transfer has no provider to refund it: refund_failed at once, `manual_refund`
    let requests = (fakes.wechat.controls().requests(), fakes.alipay.controls().requests());
    let body = json!({"product_id": "fridge", "address_id": "alice-home", "quantity": 1, "payment_method": "bank"});
    let (_, created) = create_order(&env, Some("alice"), &body).await;
    let order = created["order"]["id"].as_str().unwrap().to_owned();
    let bank = created["payment"]["id"].as_str().unwrap().to_owned();
    assert_eq!(e2e::cancel_order(&env, Some("alice"), &order).await.0, 200);
    let late = event(&bank, "bank-late", ReportedStatus::Succeeded, "3299.00");
    assert!(deliver(&env, &[("late", &late)]).await.is_empty());
    let report = refund_run(&env.svc).await;
    assert_eq!((report.failed, report.provider_requests), (1, 0), "{report:?}");
    let (status, refund) = refund_of(&order_of(&env, &order).await, &bank);
    assert_eq!(
        (status.as_str(), refund["failure"].as_str()),
        ("refund_failed", Some("manual_refund"))
    );
    assert_eq!(
        (fakes.wechat.controls().requests(), fakes.alipay.controls().requests()),
        requests,
        "no provider asked"
    );
    failed.push(bank);

    // Every one is in the attention list, oldest first, across pages; none in the refund partition
    let listed: Vec<String> = work(&env, WorkKind::Attention)
        .await
        .into_iter()
        .map(|w| w.payment_id.to_string())
        .collect();
    assert_eq!(listed, failed, "oldest first");
    assert!(work(&env, WorkKind::Refund).await.is_empty());
    // and the oldest one's age is published for the alarm: more than the hour the clock moved since
    let report = refund_run(&env.svc).await;
    assert!(report.oldest_attention_seconds > 3600, "{report:?}");
    assert_eq!(
        env.metrics.last_value(Metric::AttentionOldestAgeSeconds),
        Some(report.oldest_attention_seconds as f64)
    );
}

pub async fn a_refund_notification_is_applied_once_in_order_with_the_payments_events(env: TestEnv) {
    let (env, fakes) = with_providers(env).await;
    set_refund_mode(&fakes, RefundMode::Processing { queries: 100 });
    let (order, id, lost) = paid_after_cancel(&env, &fakes, "wechat", "native").await;
    assert!(deliver(&env, &[("late", &lost)]).await.is_empty());
    assert_eq!(refund_run(&env.svc).await.pending, 1);
    let number = out_refund_no(&PaymentId::parse(&id).unwrap());

    // Given the refund settled at WeChat Pay, and its signed notification verified as the receiver does
    let posted = fakes.wechat.settle_refund(&number).expect("the refund");
    let header = |name: &str| posted.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    let refunded = match fakes
        .wechat_verifier
        .verify(&header, posted.body.as_bytes(), domain::Timestamp::now())
    {
        Ok(Verdict::Event(event)) => event,
        other => panic!("the refund notification did not verify: {other:?}"),
    };
    assert_eq!(refunded.status, ReportedStatus::Refunded);
    assert_eq!(refunded.payment_id.as_str(), id);

    // When it is delivered five times, interleaved with the payment's success delivered again
    let batch = [
        ("r1", &refunded),
        ("s1", &lost),
        ("r2", &refunded),
        ("r3", &refunded),
        ("s2", &lost),
        ("r4", &refunded),
        ("r5", &refunded),
    ];
    assert!(deliver(&env, &batch).await.is_empty());

    // Then it was applied once: refunded, with the provider's refund id; the success not again
    let got = order_of(&env, &order).await;
    let p = payment(&got, &id);
    assert_eq!(p["status"], "refunded", "{got}");
    assert_eq!(p["refund"]["provider_refund_id"], refunded.provider_txn_id.as_str());
    let with_id: Vec<&Value> = p["logs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["event_id"] == refunded.event_id.as_str())
        .collect();
    assert_eq!(with_id.len(), 1, "{p}");
    assert_eq!(with_id[0]["event"], "refunded");
    assert_eq!(logged(p, "refunded"), 1);
    assert_eq!(logged(p, "late_success") + logged(p, "refund_required"), 1, "{p}");
    assert_eq!(refund_run(&env.svc).await.found, 0);
    assert_eq!(refunds_at(&fakes, "wechat", &id).len(), 1);
}
