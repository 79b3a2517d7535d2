//! WeChat Pay and Alipay notifications, verified their way by the receiver, then applied by the same
//! exactly-once processor.

use std::sync::Arc;

use domain::ports::SystemClock;
use domain::Timestamp;
use e2e::{create_order, get_order, read, MemoryQueue, TestEnv};
use infra::http::GatewayRequest;
use infra::providers::wechatpay::WechatPay;
use payment_callback::Receiver;
use serde_json::{json, Value};
use testkit::providers::{AlipaySimulator, Posted, SigningKey, WechatPaySimulator};

/// The receiver with a WeChat Pay merchant whose platform key is being rotated (two keys, same
/// merchant), an Alipay app, and an in-memory queue.
struct Providers {
    wechatpay: WechatPaySimulator,
    rotated: WechatPaySimulator,
    alipay: AlipaySimulator,
    queue: Arc<MemoryQueue>,
    rx: Receiver,
}

fn providers() -> Providers {
    let wechatpay = WechatPaySimulator::generate("PUB_KEY_ID_0114232134912410000000000000");
    let rotated = WechatPaySimulator {
        key_id: "PUB_KEY_ID_0114232134912410000000000001".into(),
        key: SigningKey::generate(),
        apiv3_key: wechatpay.apiv3_key.clone(),
        mchid: wechatpay.mchid.clone(),
        appid: wechatpay.appid.clone(),
    };
    let config = WechatPay::new(
        &wechatpay.mchid,
        &wechatpay.appid,
        &wechatpay.apiv3_key,
        &[
            (wechatpay.key_id.clone(), wechatpay.key.public_key_pem()),
            (rotated.key_id.clone(), rotated.key.public_key_pem()),
        ],
    )
    .unwrap();
    let alipay = AlipaySimulator::generate();
    let queue = Arc::new(MemoryQueue::default());
    let rx = Receiver {
        verifier: domain::SignatureVerifier::from_list("generic-secret").unwrap(),
        queue: queue.clone(),
        clock: Arc::new(SystemClock),
        wechatpay: Some(Arc::new(config)),
        alipay: Some(Arc::new(alipay.config())),
    };
    Providers {
        wechatpay,
        rotated,
        alipay,
        queue,
        rx,
    }
}

/// Posts a WeChat Pay notification to the receiver: status and raw body.
async fn post_wechatpay(rx: &Receiver, posted: &Posted) -> (u16, String) {
    let mut headers = posted.headers.clone();
    headers.push(("content-type".into(), "application/json".into()));
    let req = GatewayRequest {
        method: "POST",
        path: "/api/payments/callback/wechatpay/",
        route_key: "POST /api/payments/callback/wechatpay/",
        headers,
        body: posted.body.as_bytes(),
        request_id: "wx-request",
        ..Default::default()
    }
    .into_request()
    .unwrap();
    let resp = payment_callback::handle_any(rx, req).await;
    let status = resp.status().as_u16();
    (status, String::from_utf8(resp.body().to_vec()).unwrap())
}

/// Posts an Alipay notification to the receiver: its plain-text answer.
async fn post_alipay(rx: &Receiver, body: &str) -> String {
    let req = GatewayRequest {
        method: "POST",
        path: "/api/payments/callback/alipay/",
        route_key: "POST /api/payments/callback/alipay/",
        headers: vec![("content-type".into(), "application/x-www-form-urlencoded".into())],
        body: body.as_bytes(),
        request_id: "ali-request",
        ..Default::default()
    }
    .into_request()
    .unwrap();
    let resp = payment_callback::handle_any(rx, req).await;
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(resp.headers()["content-type"], "text/plain");
    String::from_utf8(resp.body().to_vec()).unwrap()
}

/// A pending order paid with `method`, 2 units at 99.50: (order id, payment id).
async fn order(env: &TestEnv, method: &str) -> (String, String) {
    let body = json!({"product_id": "fridge", "address_id": "carol-home", "quantity": 2, "payment_method": method});
    let (status, created) = create_order(env, Some("carol"), &body).await;
    assert_eq!(status, 201, "{created}");
    let payment = created["payment"]["id"].as_str().unwrap().to_owned();
    assert!(
        domain::PaymentId::parse(&payment).unwrap().is_provider_safe(),
        "{payment}"
    );
    (created["order"]["id"].as_str().unwrap().to_owned(), payment)
}

async fn given(env: &TestEnv) {
    env.product("fridge", "99.50", 1000).await;
    env.address("carol-home", "carol").await;
}

async fn state(env: &TestEnv, order: &str) -> (Value, Value) {
    let (status, got) = get_order(env, Some("carol"), order).await;
    assert_eq!(status, 200, "{got}");
    (got["order"].clone(), got["payments"][0].clone())
}

fn last_log(payment: &Value) -> String {
    payment["logs"].as_array().unwrap().last().unwrap()["event"]
        .as_str()
        .unwrap()
        .to_owned()
}

const FAIL_SIGNATURE: &str = r#"{"code":"FAIL","message":"签名错误"}"#;

pub async fn wechatpay_notifications_are_verified_decrypted_and_applied_once(env: TestEnv) {
    given(&env).await;
    let p = providers();
    let wx = &p.wechatpay;

    // A valid notification: 200 with no body, and the order is paid
    let (order_id, payment) = order(&env, "wechat").await;
    let valid = wx.notification("EV-2018022511223320873", &payment, "SUCCESS", 19900);
    assert_eq!(post_wechatpay(&p.rx, &valid).await, (200, String::new()));
    p.queue.drain_into(&env).await;
    let (got_order, got_payment) = state(&env, &order_id).await;
    assert_eq!(
        (got_order["status"].as_str(), got_payment["status"].as_str()),
        (Some("paid"), Some("succeeded"))
    );
    assert_eq!(got_payment["logs"][1]["event_id"], "EV-2018022511223320873");
    assert_eq!(got_payment["logs"][1]["details"]["source"], "wechatpay");

    // Refused before anything is read: one byte changed, an unknown serial, 301 s old, a probe signature
    let (_, other) = order(&env, "wechat").await;
    let fresh = wx.notification("EV-2", &other, "SUCCESS", 19900);
    let tampered = Posted {
        headers: fresh.headers.clone(),
        body: fresh.body.replacen("TRANSACTION", "TRANSACTIOM", 1),
    };
    let mut unknown_serial = Posted {
        headers: fresh.headers.clone(),
        body: fresh.body.clone(),
    };
    unknown_serial.headers[3].1 = "PUB_KEY_ID_UNKNOWN".into();
    let stale = wx.post(fresh.body.clone(), Timestamp::now().unix_seconds() - 301);
    let mut probe = Posted {
        headers: fresh.headers.clone(),
        body: fresh.body.clone(),
    };
    probe.headers[2].1 = format!("WECHATPAY/SIGNTEST/{}", probe.headers[2].1);
    for (name, posted) in [
        ("tampered body", &tampered),
        ("unknown serial", &unknown_serial),
        ("301 s old", &stale),
        ("probe signature", &probe),
    ] {
        assert_eq!(
            post_wechatpay(&p.rx, posted).await,
            (401, FAIL_SIGNATURE.to_owned()),
            "{name}"
        );
    }
    assert!(p.queue.sent.lock().unwrap().is_empty());

    // Either of the two rotated platform keys verifies
    let by_rotated = p.rotated.notification("EV-3", &other, "USERPAYING", 19900);
    assert_eq!(post_wechatpay(&p.rx, &by_rotated).await.0, 200);
    p.queue.drain_into(&env).await;

    // Verified but not ours or not readable: 400, nothing enqueued, nothing applied
    let (order_id, payment) = order(&env, "wechat").await;
    let before = env.snapshot().await;
    let other_key = WechatPaySimulator::body(
        "EV-4",
        "0123456789abcdef0123456789abcdef",
        &wx.transaction(&payment, "SUCCESS", 19900),
    );
    let mut foreign = wx.transaction(&payment, "SUCCESS", 19900);
    foreign["mchid"] = json!("1900000999");
    let other_mchid = WechatPaySimulator::body("EV-5", &wx.apiv3_key, &foreign);
    for (name, body) in [("another APIv3 key", other_key), ("another mchid", other_mchid)] {
        let (status, answer) = post_wechatpay(&p.rx, &wx.post(body, Timestamp::now().unix_seconds())).await;
        assert_eq!(status, 400, "{name}");
        assert_eq!(
            serde_json::from_str::<Value>(&answer).unwrap()["code"],
            "FAIL",
            "{name}"
        );
    }
    assert!(p.queue.sent.lock().unwrap().is_empty());
    assert_eq!(env.snapshot().await, before);

    // NOTPAY: acknowledged, nothing to apply
    let notpay = wx.notification("EV-6", &payment, "NOTPAY", 19900);
    assert_eq!(post_wechatpay(&p.rx, &notpay).await, (200, String::new()));
    assert!(p.queue.sent.lock().unwrap().is_empty());

    // One fen short: an amount mismatch on the payment (providers' amounts are exact)
    let short = wx.notification("EV-7", &payment, "SUCCESS", 19899);
    assert_eq!(post_wechatpay(&p.rx, &short).await.0, 200);
    p.queue.drain_into(&env).await;
    let (got_order, got_payment) = state(&env, &order_id).await;
    assert_eq!(
        (got_order["status"].as_str(), last_log(&got_payment)),
        (Some("pending"), "amount_mismatch".into())
    );

    // CLOSED: the payment failed
    let (order_id, payment) = order(&env, "wechat").await;
    let closed = wx.notification("EV-8", &payment, "CLOSED", 19900);
    assert_eq!(post_wechatpay(&p.rx, &closed).await.0, 200);
    p.queue.drain_into(&env).await;
    assert_eq!(state(&env, &order_id).await.1["status"], "failed");

    // The same notification posted 15 times (WeChat Pay's retry schedule): applied once
    let (order_id, payment) = order(&env, "wechat").await;
    let success = wx.notification("EV-9", &payment, "SUCCESS", 19900);
    for _ in 0..15 {
        assert_eq!(post_wechatpay(&p.rx, &success).await, (200, String::new()));
    }
    assert_eq!(p.queue.sent.lock().unwrap().len(), 15);
    p.queue.drain_into(&env).await;
    let (got_order, got_payment) = state(&env, &order_id).await;
    assert_eq!(got_order["status"], "paid");
    let history = got_order["history"].as_array().unwrap();
    assert_eq!(history.iter().filter(|h| h["to"] == "paid").count(), 1);
    assert_eq!(got_payment["logs"].as_array().unwrap().len(), 2, "{got_payment}");
}

pub async fn alipay_notifications_are_verified_and_applied_once(env: TestEnv) {
    given(&env).await;
    let p = providers();
    let ali = &p.alipay;

    // TRADE_SUCCESS pays the order and answers `success`
    let (order_id, payment) = order(&env, "alipay").await;
    let body = ali.notification("notify-1", &payment, "TRADE_SUCCESS", "199.00");
    assert_eq!(post_alipay(&p.rx, &body).await, "success");
    p.queue.drain_into(&env).await;
    let (got_order, got_payment) = state(&env, &order_id).await;
    assert_eq!(
        (got_order["status"].as_str(), got_payment["status"].as_str()),
        (Some("paid"), Some("succeeded"))
    );
    assert_eq!(got_payment["provider_txn_id"], "2026112522001400000000000001");

    // Re-ordered parameters and an empty parameter still verify
    let (order_id, payment) = order(&env, "alipay").await;
    let mut params = ali.sign(ali.params("notify-2", &payment, "WAIT_BUYER_PAY", "199.00"));
    params.reverse();
    assert_eq!(post_alipay(&p.rx, &AlipaySimulator::form(&params)).await, "success");
    let mut with_empty = ali.params("notify-3", &payment, "TRADE_CLOSED", "199.00");
    with_empty.push(("body".into(), String::new()));
    let signed = ali.sign(with_empty);
    assert!(AlipaySimulator::form(&signed).contains("body=&"));
    assert_eq!(post_alipay(&p.rx, &AlipaySimulator::form(&signed)).await, "success");
    p.queue.drain_into(&env).await;
    // ... and TRADE_CLOSED failed the payment
    let (_, got_payment) = state(&env, &order_id).await;
    assert_eq!(got_payment["status"], "failed");

    // Refused with `failure`, nothing enqueued: altered after signing, another app, a gbk charset
    let (order_id, payment) = order(&env, "alipay").await;
    let before = env.snapshot().await;
    let altered = ali
        .notification("notify-4", &payment, "TRADE_SUCCESS", "199.00")
        .replace("total_amount=199.00", "total_amount=1.00");
    let mut other_app = ali.params("notify-5", &payment, "TRADE_SUCCESS", "199.00");
    other_app.iter_mut().find(|(k, _)| k == "app_id").unwrap().1 = "2021000000000001".into();
    let mut gbk = ali.params("notify-6", &payment, "TRADE_SUCCESS", "199.00");
    gbk.iter_mut().find(|(k, _)| k == "charset").unwrap().1 = "gbk".into();
    for (name, body) in [
        ("altered amount", altered),
        ("another app_id", AlipaySimulator::form(&ali.sign(other_app))),
        ("charset gbk", AlipaySimulator::form(&ali.sign(gbk))),
        (
            "unsigned",
            AlipaySimulator::form(&ali.params("notify-7", &payment, "TRADE_SUCCESS", "199.00")),
        ),
    ] {
        assert_eq!(post_alipay(&p.rx, &body).await, "failure", "{name}");
    }
    assert!(p.queue.sent.lock().unwrap().is_empty());
    assert_eq!(env.snapshot().await, before);

    // The same notify_id 8 times: applied once
    let body = ali.notification("notify-8", &payment, "TRADE_SUCCESS", "199.00");
    for _ in 0..8 {
        assert_eq!(post_alipay(&p.rx, &body).await, "success");
    }
    p.queue.drain_into(&env).await;
    let (got_order, got_payment) = state(&env, &order_id).await;
    assert_eq!(got_order["status"], "paid");
    assert_eq!(got_payment["logs"].as_array().unwrap().len(), 2, "{got_payment}");
}

pub async fn a_provider_speaks_only_for_its_own_payments(env: TestEnv) {
    given(&env).await;
    let p = providers();
    let (order_id, payment) = order(&env, "alipay").await;
    let before = env.snapshot().await;
    let wrong = p.wechatpay.notification("EV-cross", &payment, "SUCCESS", 19900);
    assert_eq!(post_wechatpay(&p.rx, &wrong).await.0, 200);
    p.queue.drain_into(&env).await;
    assert_eq!(
        env.snapshot().await,
        before,
        "a WeChat Pay notification must not touch an Alipay payment"
    );
    assert_eq!(state(&env, &order_id).await.0["status"], "pending");
    // The generic receiver is unaffected by provider configuration
    let req = GatewayRequest {
        method: "POST",
        path: "/api/payments/callback/",
        body: b"{}",
        request_id: "generic",
        ..Default::default()
    }
    .into_request()
    .unwrap();
    let (status, body) = read(payment_callback::handle_any(&p.rx, req).await);
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (401, Some("INVALID_SIGNATURE"))
    );
}
