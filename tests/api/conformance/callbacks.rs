//! The callback processor: exactly once, in order per payment, every outcome of docs/api.md §8, through
//! the real SQS handler and both stores.

use std::sync::Arc;

use async_trait::async_trait;
use domain::change::{Judge, Updated};
use domain::ports::{Metric, OrderUpdates, StoreError};
use domain::{OrderId, PaymentId, ReportedStatus};
use e2e::{create_order, create_payment, deliver, event, get_order, TestEnv};
use serde_json::{json, Value};

use super::payments::cancel_through_the_port;

/// Given bob with an address and a pending order of one washer at 99.99 (stock 5): the create response.
async fn bobs_order(env: &TestEnv) -> Value {
    env.product("washer", "99.99", 5).await;
    env.address("bob-home", "bob").await;
    let body = json!({"product_id": "washer", "address_id": "bob-home", "quantity": 1});
    let (status, created) = create_order(env, Some("bob"), &body).await;
    assert_eq!(status, 201, "{created}");
    created
}

fn ids(created: &Value) -> (String, String) {
    (
        created["order"]["id"].as_str().unwrap().to_owned(),
        created["payment"]["id"].as_str().unwrap().to_owned(),
    )
}

/// The order and the payment `payment` as the store holds them now.
async fn state(env: &TestEnv, order: &str, payment: &str) -> (Value, Value) {
    let (status, got) = get_order(env, Some("bob"), order).await;
    assert_eq!(status, 200, "{got}");
    let payment = got["payments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == payment)
        .cloned()
        .expect("payment");
    (got["order"].clone(), payment)
}

fn log_events(payment: &Value) -> Vec<String> {
    payment["logs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["event"].as_str().unwrap().to_owned())
        .collect()
}

fn paid_entries(order: &Value) -> usize {
    order["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h["to"] == "paid")
        .count()
}

pub async fn a_success_is_applied_once_however_often_it_is_delivered(env: TestEnv) {
    // Given bob's pending order and the provider's success event for its payment
    let (order, payment) = ids(&bobs_order(&env).await);
    let success = event(&payment, "evt-1", ReportedStatus::Succeeded, "99.99");

    // When the event is delivered 5 times in sequence, 5 times concurrently, and once more much later
    // under a new deduplication id (as after SQS FIFO's five-minute window)
    for i in 0..5 {
        assert!(deliver(&env, &[(&format!("seq-{i}"), &success)]).await.is_empty());
    }
    let env = Arc::new(env);
    let concurrent = (0..5).map(|i| {
        let (env, success) = (env.clone(), success.clone());
        tokio::spawn(async move { deliver(&env, &[(&format!("par-{i}"), &success)]).await })
    });
    for failed in futures::future::join_all(concurrent).await {
        assert!(failed.expect("task").is_empty());
    }
    env.clock.advance(2 * 24 * 3600);
    assert!(deliver(&env, &[("days-later", &success)]).await.is_empty());

    // Then the payment succeeded once, the order was paid once, with one history entry and one log line
    let (order, payment) = state(&env, &order, &payment).await;
    assert_eq!(order["status"], "paid");
    assert_eq!(paid_entries(&order), 1, "{order}");
    let paid = order["history"].as_array().unwrap().last().unwrap();
    assert_eq!(paid["operator"], "payment-callback");
    assert_eq!(payment["status"], "succeeded");
    assert_eq!(
        payment["provider_txn_id"],
        format!("txn-{}", payment["id"].as_str().unwrap())
    );
    assert_eq!(payment["refund_required"], false);
    assert_eq!(log_events(&payment), ["created", "succeeded"]);
    assert_eq!(payment["logs"][1]["event_id"], "evt-1");
    assert_eq!(order["version"], 1);
    // And neither is left in the expiry index
    let index = env.expiry_index().await;
    assert!(!index.contains(order["id"].as_str().unwrap()) && !index.contains(payment["id"].as_str().unwrap()));
    assert_eq!(env.metrics.count_of(Metric::CallbackApplied), 11);
}

pub async fn events_out_of_order_follow_the_state_machine(env: TestEnv) {
    // succeeded, then a late processing: the payment stays succeeded
    let (order, payment) = ids(&bobs_order(&env).await);
    let succeeded = event(&payment, "evt-s", ReportedStatus::Succeeded, "99.99");
    let processing = event(&payment, "evt-p", ReportedStatus::Processing, "99.99");
    assert!(deliver(&env, &[("m1", &succeeded)]).await.is_empty());
    assert!(deliver(&env, &[("m2", &processing)]).await.is_empty());
    let (got_order, got_payment) = state(&env, &order, &payment).await;
    assert_eq!(
        (got_order["status"].as_str(), got_payment["status"].as_str()),
        (Some("paid"), Some("succeeded"))
    );
    assert_eq!(log_events(&got_payment), ["created", "succeeded", "stale_status"]);

    // processing, then failed, then succeeded: failed is terminal, so the success cannot pay the order;
    // the money it reports is flagged and its refund started in the same write, and the order waits for
    // another payment
    let (order, payment) = ids(&bobs_order(&env).await);
    let steps = [
        event(&payment, "evt-1", ReportedStatus::Processing, "99.99"),
        event(&payment, "evt-2", ReportedStatus::Failed, "99.99"),
        event(&payment, "evt-3", ReportedStatus::Succeeded, "99.99"),
    ];
    for (i, step) in steps.iter().enumerate() {
        assert!(deliver(&env, &[(&format!("f{i}"), step)]).await.is_empty());
    }
    let (got_order, got_payment) = state(&env, &order, &payment).await;
    assert_eq!(got_order["status"], "pending");
    assert_eq!(got_payment["status"], "refunding");
    assert_eq!(got_payment["refund_required"], true);
    assert_eq!(
        log_events(&got_payment),
        ["created", "processing", "failed", "refund_required", "refund_started"]
    );
    assert_eq!(env.metrics.count_of(Metric::RefundRequired), 1);
    // A failed payment leaves the expiry index; its pending order stays in it
    let index = env.expiry_index().await;
    assert!(!index.contains(&payment) && index.contains(&order), "{index:?}");
}

pub async fn amounts_within_a_fen_pay_and_beyond_are_mismatches(env: TestEnv) {
    // 0.01 off: the seed's rounding tolerance, accepted
    let (order, payment) = ids(&bobs_order(&env).await);
    let close = event(&payment, "evt-close", ReportedStatus::Succeeded, "100.00");
    assert!(deliver(&env, &[("m1", &close)]).await.is_empty());
    assert_eq!(state(&env, &order, &payment).await.0["status"], "paid");

    // 0.02 off: a mismatch, logged on the payment and counted, nothing moved, not retried
    let (order, payment) = ids(&bobs_order(&env).await);
    let off = event(&payment, "evt-off", ReportedStatus::Succeeded, "100.01");
    assert!(deliver(&env, &[("m2", &off)]).await.is_empty());
    let (got_order, got_payment) = state(&env, &order, &payment).await;
    assert_eq!(
        (got_order["status"].as_str(), got_payment["status"].as_str()),
        (Some("pending"), Some("init"))
    );
    let last = got_payment["logs"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["event"], "amount_mismatch");
    assert_eq!(last["details"]["amount"], "100.01");
    assert_eq!(last["details"]["expected"], "99.99");
    assert_eq!(env.metrics.count_of(Metric::AmountMismatch), 1);
    // Delivered again, it is recognised, not logged twice
    assert!(deliver(&env, &[("m3", &off)]).await.is_empty());
    assert_eq!(
        log_events(&state(&env, &order, &payment).await.1),
        ["created", "amount_mismatch"]
    );
}

pub async fn a_late_success_pays_a_pending_order_and_is_refunded_on_a_cancelled_one(env: TestEnv) {
    // The first payment was superseded (expired), but its success arrives while the order is pending
    let created = bobs_order(&env).await;
    let (order, first) = ids(&created);
    let (status, body) = create_payment(&env, Some("bob"), &order, &json!({})).await;
    assert_eq!(status, 201, "{body}");
    let second = body["payment"]["id"].as_str().unwrap().to_owned();
    let late = event(&first, "evt-late", ReportedStatus::Succeeded, "99.99");
    assert!(deliver(&env, &[("m1", &late)]).await.is_empty());
    let (got_order, got_first) = state(&env, &order, &first).await;
    assert_eq!(got_order["status"], "paid");
    assert_eq!(got_first["status"], "succeeded");
    assert_eq!(log_events(&got_first), ["created", "superseded", "late_success"]);
    // The other open payment can no longer be paid: it was expired in the same write
    assert_eq!(state(&env, &order, &second).await.1["status"], "expired");
    // A success for the second payment now finds the order paid by another: refund
    let second_success = event(&second, "evt-second", ReportedStatus::Succeeded, "99.99");
    assert!(deliver(&env, &[("m2", &second_success)]).await.is_empty());
    let (got_order, got_second) = state(&env, &order, &second).await;
    assert_eq!(
        (got_order["status"].as_str(), got_second["refund_required"].as_bool()),
        (Some("paid"), Some(true))
    );
    assert_eq!(paid_entries(&got_order), 1);

    // The order was cancelled and its stock returned before the success arrived
    let (order, payment) = ids(&bobs_order(&env).await);
    let product = domain::ProductId::parse("washer").unwrap();
    cancel_through_the_port(&env, &order).await;
    let stock = env.stock(&product).await;
    let success = event(&payment, "evt-after-cancel", ReportedStatus::Succeeded, "99.99");
    assert!(deliver(&env, &[("m3", &success)]).await.is_empty());
    let (got_order, got_payment) = state(&env, &order, &payment).await;
    assert_eq!(got_order["status"], "cancelled");
    assert_eq!(
        got_payment["status"], "refunding",
        "its refund decided in the same write"
    );
    assert_eq!(got_payment["refund_required"], true);
    assert_eq!(
        log_events(&got_payment)[log_events(&got_payment).len() - 2..],
        ["refund_required", "refund_started"]
    );
    assert_eq!(env.stock(&product).await, stock, "the callback must not touch stock");
    assert_eq!(env.metrics.count_of(Metric::RefundRequired), 2);
}

pub async fn unknown_payments_are_dropped(env: TestEnv) {
    bobs_order(&env).await;
    let before = env.snapshot().await;
    let stray = event("pay_unknown", "evt-stray", ReportedStatus::Succeeded, "1.00");
    assert!(deliver(&env, &[("m1", &stray)]).await.is_empty());
    assert_eq!(env.snapshot().await, before);
}

/// Fails the `nth` update (counting from 1) of one order with a transient store fault; every other
/// call goes through to the real store.
struct FaultOnce {
    inner: Arc<dyn OrderUpdates>,
    order: OrderId,
    nth: usize,
    seen: std::sync::Mutex<usize>,
}

#[async_trait]
impl OrderUpdates for FaultOnce {
    async fn order_of_payment(&self, id: &PaymentId) -> Result<Option<OrderId>, StoreError> {
        self.inner.order_of_payment(id).await
    }

    async fn update(&self, id: &OrderId, judge: Judge) -> Result<Updated, StoreError> {
        if id == &self.order {
            let mut seen = self.seen.lock().unwrap();
            *seen += 1;
            if *seen == self.nth {
                return Err(StoreError::Busy("injected ThrottlingException".into()));
            }
        }
        self.inner.update(id, judge).await
    }
}

pub async fn a_failure_holds_back_the_rest_of_its_group_and_redelivery_completes_it_in_order(mut env: TestEnv) {
    // Given three orders, and a store that fails the second write to order B once
    let (order_a, pay_a) = ids(&bobs_order(&env).await);
    let (order_b, pay_b) = ids(&bobs_order(&env).await);
    let (order_c, pay_c) = ids(&bobs_order(&env).await);
    env.svc.updates = Arc::new(FaultOnce {
        inner: env.svc.updates.clone(),
        order: OrderId::parse(&order_b).unwrap(),
        nth: 2,
        seen: Default::default(),
    });
    use ReportedStatus::*;
    let a = [
        event(&pay_a, "a1", Processing, "99.99"),
        event(&pay_a, "a2", Succeeded, "99.99"),
        event(&pay_a, "a3", Processing, "99.99"),
    ];
    let b = [
        event(&pay_b, "b1", Processing, "99.99"),
        event(&pay_b, "b2", Succeeded, "99.99"),
        event(&pay_b, "b3", Processing, "99.99"),
        event(&pay_b, "b4", Succeeded, "99.99"),
    ];
    let c = [
        event(&pay_c, "c1", Processing, "99.99"),
        event(&pay_c, "c2", Failed, "99.99"),
        event(&pay_c, "c3", Processing, "99.99"),
    ];
    // When one batch of 10 interleaves the three groups
    let batch: Vec<(&str, &domain::PaymentEvent)> = vec![
        ("ma1", &a[0]),
        ("mb1", &b[0]),
        ("mc1", &c[0]),
        ("ma2", &a[1]),
        ("mb2", &b[1]),
        ("mc2", &c[1]),
        ("ma3", &a[2]),
        ("mb3", &b[2]),
        ("mc3", &c[2]),
        ("mb4", &b[3]),
    ];
    let failed = deliver(&env, &batch).await;

    // Then the faulted message and everything after it in its group are reported, nothing else
    assert_eq!(failed, ["mb2", "mb3", "mb4"]);
    let env_ref = &env;
    let events_of = |order: String, payment: String| async move {
        let (status, got) = get_order(env_ref, Some("bob"), &order).await;
        assert_eq!(status, 200);
        let p = got["payments"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["id"] == payment.as_str())
            .cloned()
            .unwrap();
        let ids: Vec<String> = p["logs"]
            .as_array()
            .unwrap()
            .iter()
            .skip(1)
            .map(|l| l["event_id"].as_str().unwrap().to_owned())
            .collect();
        (got["order"]["status"].as_str().unwrap().to_owned(), ids)
    };
    let (status_a, applied_a) = events_of(order_a, pay_a.clone()).await;
    assert_eq!(
        (status_a.as_str(), applied_a),
        ("paid", vec!["a1".to_owned(), "a2".into(), "a3".into()])
    );
    let (status_c, applied_c) = events_of(order_c, pay_c.clone()).await;
    assert_eq!(
        (status_c.as_str(), applied_c),
        ("pending", vec!["c1".to_owned(), "c2".into(), "c3".into()])
    );
    let (status_b, applied_b) = events_of(order_b.clone(), pay_b.clone()).await;
    assert_eq!((status_b.as_str(), applied_b), ("pending", vec!["b1".to_owned()]));

    // When SQS redelivers the three, in order
    let redelivered: Vec<(&str, &domain::PaymentEvent)> = vec![("mb2", &b[1]), ("mb3", &b[2]), ("mb4", &b[3])];
    assert!(deliver(&env, &redelivered).await.is_empty());

    // Then group B is complete, applied in its order
    let (status_b, applied_b) = events_of(order_b.clone(), pay_b.clone()).await;
    assert_eq!(status_b, "paid");
    assert_eq!(applied_b, ["b1", "b2", "b3", "b4"]);
    let (_, payment) = state(&env, &order_b, &pay_b).await;
    assert_eq!(
        log_events(&payment),
        [
            "created",
            "processing",
            "succeeded",
            "stale_status",
            "duplicate_success"
        ]
    );
    assert_eq!(env.metrics.count_of(Metric::CallbackRetried), 1);
}

pub async fn one_event_id_shared_by_two_payments_is_applied_to_each(env: TestEnv) {
    // Given two pending orders of bob's, and one provider event id used for both payments' successes
    let (first_order, first_payment) = ids(&bobs_order(&env).await);
    let body = json!({"product_id": "washer", "address_id": "bob-home", "quantity": 1});
    let (status, second) = create_order(&env, Some("bob"), &body).await;
    assert_eq!(status, 201, "{second}");
    let (second_order, second_payment) = ids(&second);
    let first = event(&first_payment, "evt-shared", ReportedStatus::Succeeded, "99.99");
    let other = event(&second_payment, "evt-shared", ReportedStatus::Succeeded, "99.99");

    // When both are delivered in one batch, and again
    for _ in 0..2 {
        assert!(deliver(&env, &[("m1", &first), ("m2", &other)]).await.is_empty());
    }

    // Then each payment remembers the event as its own: both orders are paid, each once
    for (order, payment) in [(&first_order, &first_payment), (&second_order, &second_payment)] {
        let (order, payment) = state(&env, order, payment).await;
        assert_eq!(order["status"], "paid", "{order}");
        assert_eq!(paid_entries(&order), 1);
        assert_eq!(payment["status"], "succeeded");
    }
}
