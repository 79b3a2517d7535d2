//! create_payment: the seed's checks in its order, one open payment per order, all in one write.

use domain::change::{update_with, Change};
use domain::{OrderId, OrderStatus, ReportedStatus, Timestamp};
use e2e::{create_order, create_payment, deliver, event, get_order, TestEnv};
use serde_json::{json, Value};

/// Given alice with an address and a pending order of 2 fridges at 100.00 with a 30-minute deadline:
/// the create response.
async fn alices_order(env: &TestEnv) -> Value {
    env.product("fridge", "100.00", 10).await;
    env.address("alice-home", "alice").await;
    let body = json!({"product_id": "fridge", "address_id": "alice-home", "quantity": 2, "ttl_minutes": 30});
    let (status, created) = create_order(env, Some("alice"), &body).await;
    assert_eq!(status, 201, "{created}");
    created
}

fn id(created: &Value) -> &str {
    created["order"]["id"].as_str().expect("order id")
}

/// Cancels the order directly through the update port, as the shopper's cancel or the sweeper would.
pub async fn cancel_through_the_port(env: &TestEnv, order: &str) {
    let now = env.svc.clock.now();
    let order = OrderId::parse(order).unwrap();
    update_with(env.svc.updates.as_ref(), &order, move |state| {
        let mut change = Change::of(state, now);
        change
            .order
            .transition(OrderStatus::Cancelled, "test", "cancelled by the test", now)
            .expect("pending -> cancelled");
        change.release_stock();
        change.expire_open_payments(state, None, "cancelled_by_user", &json!({}), now);
        ((), Some(change))
    })
    .await
    .and_then(domain::change::Decided::without_key)
    .expect("cancel")
    .expect("order exists");
}

pub async fn a_new_payment_supersedes_the_open_one_in_the_same_write(env: TestEnv) {
    // Given a pending order with its first payment open
    let created = alices_order(&env).await;
    let first = created["payment"]["id"].as_str().unwrap().to_owned();

    // When alice asks for a new payment by alipay with a 10-minute window and the right amount
    let body = json!({"payment_method": "alipay", "ttl_minutes": 10, "amount": "200.00"});
    let (status, body) = create_payment(&env, Some("alice"), id(&created), &body).await;

    // Then the new payment is open and the first one expired as superseded, in the store too
    assert_eq!(status, 201, "{body}");
    let payment = &body["payment"];
    let second = payment["id"].as_str().unwrap().to_owned();
    assert_eq!(payment["status"], "init");
    assert_eq!(payment["method"], "alipay");
    assert_eq!(payment["amount"], "200.00");
    let created_at = Timestamp::parse(payment["created_at"].as_str().unwrap()).unwrap();
    assert_eq!(payment["expires_at"], json!(created_at.plus_minutes(10)));
    assert_eq!(body["order"]["status"], "pending");

    let (_, got) = get_order(&env, Some("alice"), id(&created)).await;
    let payments = got["payments"].as_array().unwrap();
    assert_eq!(payments.len(), 2, "{got}");
    let old = payments.iter().find(|p| p["id"] == first.as_str()).unwrap();
    assert_eq!(old["status"], "expired");
    assert_eq!(old["logs"].as_array().unwrap().last().unwrap()["event"], "superseded");
    assert_eq!(
        old["logs"].as_array().unwrap().last().unwrap()["details"]["by"],
        second.as_str()
    );
    assert_eq!(payments.iter().filter(|p| p["status"] == "init").count(), 1);

    // And the expired payment left the expiry index in that write; the order and new payment are in it
    let index = env.expiry_index().await;
    assert!(!index.contains(&first), "{index:?}");
    assert!(index.contains(&second) && index.contains(id(&created)), "{index:?}");
}

pub async fn a_new_payment_never_outlives_the_order(env: TestEnv) {
    let created = alices_order(&env).await;
    let (status, body) = create_payment(&env, Some("alice"), id(&created), &json!({"ttl_minutes": 1440})).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["payment"]["expires_at"], created["order"]["payment_deadline"]);
    assert_eq!(body["payment"]["method"], "wechat");
}

pub async fn refusals_follow_the_seeds_order_and_change_nothing(env: TestEnv) {
    let pending = alices_order(&env).await;
    let paid = alices_order(&env).await;
    let cancelled = alices_order(&env).await;
    let pay = event(
        paid["payment"]["id"].as_str().unwrap(),
        "evt-paid",
        ReportedStatus::Succeeded,
        "200.00",
    );
    assert!(deliver(&env, &[("m1", &pay)]).await.is_empty());
    cancel_through_the_port(&env, id(&cancelled)).await;
    let before = env.snapshot().await;

    /// (name, caller, order id, body, expected status, expected code)
    type Case<'a> = (&'a str, Option<&'a str>, &'a str, Value, u16, &'a str);
    let cases: Vec<Case> = vec![
        (
            "paid order",
            Some("alice"),
            id(&paid),
            json!({}),
            400,
            "INVALID_ORDER_STATUS",
        ),
        // The status is checked before the amount's format, as the seed does.
        (
            "paid order, bad amount",
            Some("alice"),
            id(&paid),
            json!({"amount": "abc"}),
            400,
            "INVALID_ORDER_STATUS",
        ),
        (
            "cancelled order",
            Some("alice"),
            id(&cancelled),
            json!({}),
            400,
            "INVALID_ORDER_STATUS",
        ),
        (
            "amount 0.02 off",
            Some("alice"),
            id(&pending),
            json!({"amount": "200.02"}),
            400,
            "AMOUNT_MISMATCH",
        ),
        (
            "amount 12.345",
            Some("alice"),
            id(&pending),
            json!({"amount": "12.345"}),
            400,
            "INVALID_AMOUNT_FORMAT",
        ),
        (
            "amount abc",
            Some("alice"),
            id(&pending),
            json!({"amount": "abc"}),
            400,
            "INVALID_AMOUNT_FORMAT",
        ),
        (
            "amount -1",
            Some("alice"),
            id(&pending),
            json!({"amount": "-1"}),
            400,
            "INVALID_AMOUNT_FORMAT",
        ),
        (
            "amount 1e3",
            Some("alice"),
            id(&pending),
            json!({"amount": "1e3"}),
            400,
            "INVALID_AMOUNT_FORMAT",
        ),
        // JSON numbers are never amounts: the parser has already turned them into binary floats.
        (
            "amount a float one ulp over",
            Some("alice"),
            id(&pending),
            json!({"amount": serde_json::from_str::<Value>("200.0000000000001").unwrap()}),
            400,
            "INVALID_AMOUNT_FORMAT",
        ),
        (
            "amount a number with an exponent",
            Some("alice"),
            id(&pending),
            json!({"amount": serde_json::from_str::<Value>("1e3").unwrap()}),
            400,
            "INVALID_AMOUNT_FORMAT",
        ),
        (
            "amount a whole number",
            Some("alice"),
            id(&pending),
            json!({"amount": 200}),
            400,
            "INVALID_AMOUNT_FORMAT",
        ),
        (
            "amount true",
            Some("alice"),
            id(&pending),
            json!({"amount": true}),
            400,
            "INVALID_AMOUNT_FORMAT",
        ),
        (
            "another user's order",
            Some("mallory"),
            id(&pending),
            json!({}),
            404,
            "ORDER_NOT_FOUND",
        ),
        (
            "unknown order",
            Some("alice"),
            "ord_nope",
            json!({}),
            404,
            "ORDER_NOT_FOUND",
        ),
        ("no identity", None, id(&pending), json!({}), 401, "UNAUTHENTICATED"),
        (
            "bad method",
            Some("alice"),
            id(&pending),
            json!({"payment_method": "cash"}),
            400,
            "VALIDATION_ERROR",
        ),
        (
            "bad ttl",
            Some("alice"),
            id(&pending),
            json!({"ttl_minutes": 0}),
            400,
            "VALIDATION_ERROR",
        ),
        (
            "not an object",
            Some("alice"),
            id(&pending),
            json!([1]),
            400,
            "VALIDATION_ERROR",
        ),
    ];
    for (name, user, order, body, status, code) in cases {
        let (got, reply) = create_payment(&env, user, order, &body).await;
        assert_eq!(
            (got, reply["error"]["code"].as_str()),
            (status, Some(code)),
            "{name}: {reply}"
        );
        assert_eq!(reply["request_id"], "test-request", "{name}");
        assert_eq!(env.snapshot().await, before, "{name} changed the store");
    }

    // Within 0.01 is the same amount (the seed's rounding tolerance).
    let (status, body) = create_payment(&env, Some("alice"), id(&pending), &json!({"amount": "199.99"})).await;
    assert_eq!(status, 201, "{body}");
}

pub async fn past_the_deadline_is_order_expired(env: TestEnv) {
    let created = alices_order(&env).await;
    let before = env.snapshot().await;
    env.clock.advance(30 * 60 + 1);
    let (status, body) = create_payment(&env, Some("alice"), id(&created), &json!({})).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("ORDER_EXPIRED")),
        "{body}"
    );
    assert_eq!(env.snapshot().await, before);
}

pub async fn twenty_concurrent_requests_leave_exactly_one_open_payment(env: TestEnv) {
    let created = alices_order(&env).await;
    let env = std::sync::Arc::new(env);
    let order = id(&created).to_owned();
    let calls = (0..20).map(|i| {
        let (env, order) = (env.clone(), order.clone());
        tokio::spawn(async move {
            let method = ["wechat", "alipay", "bank"][i % 3];
            create_payment(&env, Some("alice"), &order, &json!({"payment_method": method})).await
        })
    });
    let replies = futures::future::join_all(calls).await;
    for reply in &replies {
        let (status, body) = reply.as_ref().expect("task");
        assert_eq!(*status, 201, "{body}");
    }

    let (_, got) = get_order(&env, Some("alice"), &order).await;
    let payments = got["payments"].as_array().unwrap();
    assert_eq!(payments.len(), 21, "{got}");
    let open: Vec<_> = payments.iter().filter(|p| p["status"] == "init").collect();
    assert_eq!(open.len(), 1, "{got}");
    assert!(payments
        .iter()
        .filter(|p| p["status"] != "init")
        .all(|p| p["status"] == "expired"));
    // Every answer named a payment that existed; the open one is the last one written.
    assert_eq!(got["order"]["version"], 20);
}
