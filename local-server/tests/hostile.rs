//! The hostile-input table: every route of the local server, over real HTTP, fed what an attacker or a
//! broken client sends. Each case names its expected status and catalogue code (or the provider's own
//! answer on the provider routes), and after each the whole store (every row of every table of the
//! embedded database: orders, payments, products, addresses, idempotency records) is unchanged.

use serde_json::{json, Value};

mod common;

/// One hostile request and what it must be answered.
struct Case {
    name: String,
    method: &'static str,
    path: String,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
    status: u16,
    /// The catalogue code, or for the provider routes the exact body.
    expect: Expect,
}

enum Expect {
    Code(&'static str),
    Body(&'static str),
}

fn case(name: impl Into<String>, method: &'static str, path: impl Into<String>, status: u16, expect: Expect) -> Case {
    Case {
        name: name.into(),
        method,
        path: path.into(),
        headers: Vec::new(),
        body: Vec::new(),
        status,
        expect,
    }
}

impl Case {
    fn by(mut self, who: &str) -> Self {
        self.headers.push(("authorization", format!("Bearer {who}")));
        self
    }

    fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }
}

use Expect::{Body, Code};

/// The routes that take a JSON body, as (method, path, who may call it).
fn json_routes(order: &str, payment: &str) -> Vec<(&'static str, String, &'static str)> {
    vec![
        ("POST", "/api/orders/create_order/".into(), "alice"),
        ("POST", "/api/orders/create_batch_orders/".into(), "alice"),
        ("POST", format!("/api/orders/{order}/payments/"), "alice"),
        (
            "POST",
            format!("/api/orders/{order}/payments/{payment}/checkout/"),
            "alice",
        ),
        ("POST", format!("/api/admin/orders/{order}/ship/"), "ops orders:admin"),
        (
            "POST",
            format!("/api/admin/orders/{order}/complete/"),
            "ops orders:admin",
        ),
        ("POST", format!("/api/admin/orders/{order}/refund/"), "ops orders:admin"),
        ("POST", format!("/api/admin/orders/{order}/cancel/"), "ops orders:admin"),
        (
            "POST",
            format!("/api/admin/orders/{order}/payments/{payment}/resolve/"),
            "ops orders:admin",
        ),
    ]
}

fn cases(order: &str, payment: &str) -> Vec<Case> {
    let mut all = Vec::new();
    let shopper_routes: Vec<(&'static str, String)> = vec![
        ("POST", "/api/orders/create_order/".into()),
        ("POST", "/api/orders/create_batch_orders/".into()),
        ("GET", "/api/orders/".into()),
        ("GET", format!("/api/orders/{order}/")),
        ("POST", format!("/api/orders/{order}/cancel/")),
        ("POST", format!("/api/orders/{order}/payments/")),
        ("POST", format!("/api/orders/{order}/payments/{payment}/checkout/")),
    ];
    let admin_routes: Vec<(&'static str, String)> = vec![
        ("GET", format!("/api/admin/orders/{order}/")),
        ("GET", "/api/admin/attention/".into()),
        ("POST", format!("/api/admin/orders/{order}/ship/")),
        ("POST", format!("/api/admin/orders/{order}/complete/")),
        ("POST", format!("/api/admin/orders/{order}/refund/")),
        ("POST", format!("/api/admin/orders/{order}/cancel/")),
        ("POST", format!("/api/admin/orders/{order}/payments/{payment}/resolve/")),
    ];

    // Who asks: nobody, two identities at once, a shopper on the merchant's routes.
    for (method, path) in shopper_routes.iter().chain(&admin_routes) {
        all.push(
            case(
                format!("{method} {path}: no token"),
                method,
                path.clone(),
                401,
                Code("UNAUTHENTICATED"),
            )
            .body("{}"),
        );
        all.push(
            case(
                format!("{method} {path}: two Authorization headers"),
                method,
                path.clone(),
                401,
                Code("UNAUTHENTICATED"),
            )
            .by("alice")
            .by("bob")
            .body("{}"),
        );
    }
    for (method, path) in &admin_routes {
        all.push(
            case(
                format!("{method} {path}: a shopper's token"),
                method,
                path.clone(),
                403,
                Code("FORBIDDEN"),
            )
            .by("alice")
            .body("{}"),
        );
        all.push(
            case(
                format!("{method} {path}: another scope"),
                method,
                path.clone(),
                403,
                Code("FORBIDDEN"),
            )
            .by("ops orders:read")
            .body("{}"),
        );
    }

    // What the body is: not JSON, not an object, too large, wrong types.
    for (method, path, who) in json_routes(order, payment) {
        let bad = [
            ("not JSON", b"{\"product_id\": ".to_vec()),
            ("a JSON array", b"[1, 2, 3]".to_vec()),
            ("a JSON string", b"\"order\"".to_vec()),
            ("NUL bytes", b"{\"a\": \"\x00\"}\x00".to_vec()),
            ("invalid UTF-8", b"{\"product_id\": \"\xff\xfe\"}".to_vec()),
        ];
        for (what, body) in bad {
            all.push(
                case(
                    format!("{method} {path}: {what}"),
                    method,
                    path.clone(),
                    400,
                    Code("VALIDATION_ERROR"),
                )
                .by(who)
                .body(body),
            );
        }
        let huge = format!("{{\"note\": \"{}\"}}", "x".repeat(70 * 1024));
        all.push(
            case(
                format!("{method} {path}: 70 KiB"),
                method,
                path.clone(),
                413,
                Code("PAYLOAD_TOO_LARGE"),
            )
            .by(who)
            .body(huge),
        );
    }

    // Field by field on create_order and create_batch_orders.
    let create = "/api/orders/create_order/";
    let fields = [
        (
            json!({"product_id": "fridge-bcd-470", "address_id": "addr-alice-home", "quantity": 0}),
            "VALIDATION_ERROR",
        ),
        (
            json!({"product_id": "fridge-bcd-470", "address_id": "addr-alice-home", "quantity": 1000}),
            "VALIDATION_ERROR",
        ),
        (
            json!({"product_id": "fridge-bcd-470", "address_id": "addr-alice-home", "quantity": -1}),
            "VALIDATION_ERROR",
        ),
        (
            json!({"product_id": "fridge-bcd-470", "address_id": "addr-alice-home", "quantity": 1.5}),
            "VALIDATION_ERROR",
        ),
        (
            json!({"product_id": "fridge-bcd-470", "address_id": "addr-alice-home", "quantity": "1"}),
            "VALIDATION_ERROR",
        ),
        (
            json!({"product_id": "fridge-bcd-470", "address_id": "addr-alice-home", "quantity": 1e20}),
            "VALIDATION_ERROR",
        ),
        (
            json!({"product_id": "fridge-bcd-470", "address_id": "addr-alice-home"}),
            "VALIDATION_ERROR",
        ),
        (
            json!({"product_id": null, "address_id": "addr-alice-home", "quantity": 1}),
            "VALIDATION_ERROR",
        ),
        (
            json!({"product_id": "", "address_id": "addr-alice-home", "quantity": 1}),
            "VALIDATION_ERROR",
        ),
        (
            json!({"product_id": "x".repeat(300), "address_id": "addr-alice-home", "quantity": 1}),
            "VALIDATION_ERROR",
        ),
        (
            json!({"product_id": ["fridge-bcd-470"], "address_id": "addr-alice-home", "quantity": 1}),
            "VALIDATION_ERROR",
        ),
        (
            json!({"product_id": "fridge-bcd-470", "address_id": "addr-alice-home", "quantity": 1, "payment_method": "cash"}),
            "VALIDATION_ERROR",
        ),
        (
            json!({"product_id": "fridge-bcd-470", "address_id": "addr-alice-home", "quantity": 1, "ttl_minutes": 0}),
            "VALIDATION_ERROR",
        ),
        (
            json!({"product_id": "fridge-bcd-470", "address_id": "addr-alice-home", "quantity": 1, "ttl_minutes": 1441}),
            "VALIDATION_ERROR",
        ),
        (
            json!({"product_id": "no-such-product", "address_id": "addr-alice-home", "quantity": 1}),
            "PRODUCT_NOT_FOUND",
        ),
        (
            json!({"product_id": "discontinued-tv", "address_id": "addr-alice-home", "quantity": 1}),
            "PRODUCT_NOT_FOUND",
        ),
        (
            json!({"product_id": "fridge-bcd-470", "address_id": "addr-bob-home", "quantity": 1}),
            "ADDRESS_INVALID",
        ),
        (
            json!({"product_id": "fridge-bcd-470", "address_id": "no-such-address", "quantity": 1}),
            "ADDRESS_INVALID",
        ),
    ];
    for (body, code) in fields {
        let status = if code == "INSUFFICIENT_STOCK" { 409 } else { 400 };
        all.push(
            case(format!("create_order {body}"), "POST", create, status, Code(code))
                .by("alice")
                .body(body.to_string()),
        );
    }
    all.push(
        case(
            "create_order: more than the stock",
            "POST",
            create,
            409,
            Code("INSUFFICIENT_STOCK"),
        )
        .by("alice")
        .body(json!({"product_id": "aircon-kfr35", "address_id": "addr-alice-home", "quantity": 6}).to_string()),
    );
    all.push(
        case(
            "create_order: the key of another request",
            "POST",
            create,
            422,
            Code("IDEMPOTENCY_KEY_REUSED"),
        )
        .by("alice")
        .header("idempotency-key", "hostile-key")
        .body(json!({"product_id": "washer-eg100", "address_id": "addr-alice-home", "quantity": 1}).to_string()),
    );
    for (key, what) in [
        ("a,b", "a comma"),
        ("密钥", "non-ASCII"),
        (&"k".repeat(256) as &str, "256 characters"),
        (" ", "a space"),
    ] {
        all.push(
            case(
                format!("create_order: Idempotency-Key with {what}"),
                "POST",
                create,
                400,
                Code("VALIDATION_ERROR"),
            )
            .by("alice")
            .header("idempotency-key", key)
            .body(json!({"product_id": "fridge-bcd-470", "address_id": "addr-alice-home", "quantity": 1}).to_string()),
        );
    }
    let batch = "/api/orders/create_batch_orders/";
    let many: Vec<Value> = (0..33)
        .map(|i| json!({"product_id": format!("p{i}"), "quantity": 1}))
        .collect();
    for (body, status, code) in [
        (
            json!({"address_id": "addr-alice-home", "items": []}),
            400,
            "VALIDATION_ERROR",
        ),
        (json!({"address_id": "addr-alice-home"}), 400, "VALIDATION_ERROR"),
        (
            json!({"address_id": "addr-alice-home", "items": {"product_id": "fridge-bcd-470"}}),
            400,
            "VALIDATION_ERROR",
        ),
        (
            json!({"address_id": "addr-alice-home", "items": [{"product_id": "fridge-bcd-470", "quantity": 600}, {"product_id": "fridge-bcd-470", "quantity": 400}]}),
            400,
            "VALIDATION_ERROR",
        ),
        (
            json!({"address_id": "addr-alice-home", "items": many}),
            400,
            "BATCH_TOO_LARGE",
        ),
        (
            json!({"address_id": "addr-alice-home", "items": [{"product_id": "fridge-bcd-470", "quantity": 1}, {"product_id": "no-such", "quantity": 1}]}),
            400,
            "PRODUCT_NOT_FOUND",
        ),
        (
            json!({"address_id": "addr-alice-home", "items": [{"product_id": "fridge-bcd-470", "quantity": 1}, {"product_id": "aircon-kfr35", "quantity": 6}]}),
            409,
            "INSUFFICIENT_STOCK",
        ),
    ] {
        all.push(
            case(format!("create_batch_orders {body}"), "POST", batch, status, Code(code))
                .by("alice")
                .body(body.to_string()),
        );
    }

    // Orders and payments that are not the caller's, or cannot exist.
    for id in [
        "ord_00000000000000000000000000000000",
        "%ff%fe",
        "..%2F..%2Fetc",
        "ord_' OR '1'='1",
    ] {
        let id = id.replace(' ', "%20").replace('\'', "%27");
        all.push(
            case(
                format!("get {id}"),
                "GET",
                format!("/api/orders/{id}/"),
                404,
                Code("ORDER_NOT_FOUND"),
            )
            .by("alice"),
        );
        all.push(
            case(
                format!("cancel {id}"),
                "POST",
                format!("/api/orders/{id}/cancel/"),
                404,
                Code("ORDER_NOT_FOUND"),
            )
            .by("alice"),
        );
        all.push(
            case(
                format!("pay again {id}"),
                "POST",
                format!("/api/orders/{id}/payments/"),
                404,
                Code("ORDER_NOT_FOUND"),
            )
            .by("alice")
            .body(r#"{"payment_method": "wechat"}"#),
        );
        all.push(
            case(
                format!("admin read {id}"),
                "GET",
                format!("/api/admin/orders/{id}/"),
                404,
                Code("ORDER_NOT_FOUND"),
            )
            .by("ops orders:admin"),
        );
    }
    for (method, path, body) in [
        ("GET", format!("/api/orders/{order}/"), ""),
        ("POST", format!("/api/orders/{order}/cancel/"), ""),
        (
            "POST",
            format!("/api/orders/{order}/payments/"),
            r#"{"payment_method": "wechat"}"#,
        ),
        ("POST", format!("/api/orders/{order}/payments/{payment}/checkout/"), ""),
    ] {
        all.push(
            case(
                format!("{method} {path} as bob"),
                method,
                path,
                404,
                Code("ORDER_NOT_FOUND"),
            )
            .by("bob")
            .body(body),
        );
    }
    all.push(
        case(
            "checkout: another order's payment id",
            "POST",
            format!("/api/orders/{order}/payments/pay_00000000000000000000000000/checkout/"),
            404,
            Code("ORDER_NOT_FOUND"),
        )
        .by("alice"),
    );
    let checkout = format!("/api/orders/{order}/payments/{payment}/checkout/");
    for body in [
        json!({"scene": "transfer"}),
        json!({"scene": "jsapi"}),
        json!({"scene": 7}),
        json!({"return_url": "javascript:alert(1)"}),
    ] {
        all.push(
            case(
                format!("checkout {body}"),
                "POST",
                checkout.clone(),
                400,
                Code("VALIDATION_ERROR"),
            )
            .by("alice")
            .body(body.to_string()),
        );
    }
    let pay_again = format!("/api/orders/{order}/payments/");
    for (body, code) in [
        (
            json!({"payment_method": "wechat", "amount": 3299}),
            "INVALID_AMOUNT_FORMAT",
        ),
        (
            json!({"payment_method": "wechat", "amount": "3299.001"}),
            "INVALID_AMOUNT_FORMAT",
        ),
        (
            json!({"payment_method": "wechat", "amount": "-3299.00"}),
            "INVALID_AMOUNT_FORMAT",
        ),
        (
            json!({"payment_method": "wechat", "amount": "NaN"}),
            "INVALID_AMOUNT_FORMAT",
        ),
        (json!({"payment_method": "wechat", "amount": "1.00"}), "AMOUNT_MISMATCH"),
        (json!({"payment_method": "paypal"}), "VALIDATION_ERROR"),
    ] {
        all.push(
            case(format!("pay again {body}"), "POST", pay_again.clone(), 400, Code(code))
                .by("alice")
                .body(body.to_string()),
        );
    }

    // The lists' paging.
    for query in [
        "limit=0",
        "limit=101",
        "limit=abc",
        "limit=-1",
        "limit=1e2",
        "cursor=garbage",
        "cursor=",
        "limit=%00",
    ] {
        all.push(
            case(
                format!("list ?{query}"),
                "GET",
                format!("/api/orders/?{query}"),
                400,
                Code("VALIDATION_ERROR"),
            )
            .by("alice"),
        );
        all.push(
            case(
                format!("attention ?{query}"),
                "GET",
                format!("/api/admin/attention/?{query}"),
                400,
                Code("VALIDATION_ERROR"),
            )
            .by("ops orders:admin"),
        );
    }

    // The merchant's actions with bodies that are not theirs, and transitions the order refuses.
    let admin = |action: &str| format!("/api/admin/orders/{order}/{action}/");
    for (action, body, status, code) in [
        ("ship", json!({"carrier": "顺丰"}), 400, "VALIDATION_ERROR"),
        (
            "ship",
            json!({"carrier": "", "tracking_no": "SF1"}),
            400,
            "VALIDATION_ERROR",
        ),
        (
            "ship",
            json!({"carrier": "顺丰", "tracking_no": "SF1"}),
            409,
            "ORDER_TRANSITION_NOT_ALLOWED",
        ),
        ("complete", json!({"note": 5}), 400, "VALIDATION_ERROR"),
        ("complete", json!({}), 409, "ORDER_TRANSITION_NOT_ALLOWED"),
        ("refund", json!({}), 400, "VALIDATION_ERROR"),
        (
            "refund",
            json!({"reason": "不要了"}),
            409,
            "ORDER_TRANSITION_NOT_ALLOWED",
        ),
        ("cancel", json!({"reason": ""}), 400, "VALIDATION_ERROR"),
    ] {
        all.push(
            case(
                format!("admin {action} {body}"),
                "POST",
                admin(action),
                status,
                Code(code),
            )
            .by("ops orders:admin")
            .body(body.to_string()),
        );
    }

    // The callback routes: signatures missing, wrong or stale; bodies that are not events.
    let generic = "/api/payments/callback/";
    let event = json!({"event_id": "evt-hostile", "payment_id": payment, "provider_txn_id": "t", "status": "succeeded", "amount": "3299.00", "occurred_at": "2026-12-01T00:00:00Z"}).to_string();
    let now = chrono::Utc::now().timestamp();
    let sign = |t: i64, body: &str| {
        format!(
            "t={t},v1={}",
            testkit::generic::sign_with(b"hostile-secret", t, body.as_bytes())
        )
    };
    for (what, signature) in [
        ("no signature", None),
        ("garbage", Some("nonsense".to_owned())),
        (
            "another secret",
            Some(format!(
                "t={now},v1={}",
                testkit::generic::sign_with(b"not-ours", now, event.as_bytes())
            )),
        ),
        // (well past the 300 s allowed, whenever in the run the case is sent)
        ("330 s old", Some(sign(now - 330, &event))),
        ("330 s ahead", Some(sign(now + 330, &event))),
        ("for another body", Some(sign(now, "{}"))),
        ("empty v1", Some(format!("t={now},v1="))),
    ] {
        let mut c = case(
            format!("generic callback: {what}"),
            "POST",
            generic,
            401,
            Code("INVALID_SIGNATURE"),
        )
        .body(event.clone());
        if let Some(signature) = signature {
            c = c.header("x-payment-signature", signature);
        }
        all.push(c);
    }
    for (what, body, code) in [
        (
            "a number amount",
            event.replace("\"3299.00\"", "3299"),
            "INVALID_AMOUNT_FORMAT",
        ),
        (
            "no event id",
            json!({"payment_id": payment, "status": "succeeded", "amount": "1.00"}).to_string(),
            "VALIDATION_ERROR",
        ),
        (
            "an unknown status",
            event.replace("succeeded", "refunded"),
            "VALIDATION_ERROR",
        ),
    ] {
        all.push(
            case(format!("generic callback: {what}"), "POST", generic, 400, Code(code))
                .header("x-payment-signature", sign(now, &body))
                .body(body),
        );
    }
    let wechat = "/api/payments/callback/wechatpay/";
    let fail = r#"{"code":"FAIL","message":"签名错误"}"#;
    all.push(case("wechatpay: no headers", "POST", wechat, 401, Body(fail)).body(r#"{"id": "x"}"#));
    all.push(
        case("wechatpay: an unknown serial", "POST", wechat, 401, Body(fail))
            .header("wechatpay-serial", "PUB_KEY_ID_NOT_OURS")
            .header("wechatpay-timestamp", now.to_string())
            .header("wechatpay-nonce", "n")
            .header("wechatpay-signature", "c2lnbmF0dXJl")
            .body(r#"{"id": "x"}"#),
    );
    let alipay = "/api/payments/callback/alipay/";
    for (what, form) in [
        (
            "unsigned",
            "notify_id=1&out_trade_no=x&trade_status=TRADE_SUCCESS&total_amount=1.00".to_owned(),
        ),
        (
            "a garbage sign",
            "notify_id=1&out_trade_no=x&trade_status=TRADE_SUCCESS&sign=abc&sign_type=RSA2".to_owned(),
        ),
        ("not a form", "{\"sign\": 1}".to_owned()),
    ] {
        all.push(
            case(format!("alipay: {what}"), "POST", alipay, 200, Body("failure"))
                .header("content-type", "application/x-www-form-urlencoded")
                .body(form),
        );
    }

    // The edge: routes that do not exist, methods they do not have.
    for (method, path, status, code) in [
        ("GET", "/api/orders/create_order/", 405, "METHOD_NOT_ALLOWED"),
        ("DELETE", "/api/orders/", 405, "METHOD_NOT_ALLOWED"),
        ("PUT", "/api/admin/attention/", 405, "METHOD_NOT_ALLOWED"),
        ("POST", "/api/orders/create_order", 404, "NOT_FOUND"),
        ("GET", "/api/orders/../../etc/passwd", 404, "NOT_FOUND"),
        ("GET", "/api/admin/", 404, "NOT_FOUND"),
    ] {
        all.push(case(format!("{method} {path}"), method, path, status, Code(code)).by("alice"));
    }
    all
}

#[tokio::test]
async fn every_hostile_request_is_refused_with_its_code_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("shop.sqlite3");
    let mut server = common::command();
    server
        .env("LOCAL_DATA_DIR", dir.path())
        .env("PAYMENT_CALLBACK_SECRETS", "hostile-secret")
        .env("PROVIDER_KEYS", dir.path().join("dev-providers.json"))
        .args(["--db", db.to_str().unwrap()]);
    let (_server, base) = common::spawned(server);
    let http = reqwest::Client::new();

    // One pending order with its open payment, for the routes that name them.
    let created: Value = http
        .post(format!("{base}/api/orders/create_order/"))
        .header("authorization", "Bearer alice")
        .header("content-type", "application/json")
        .header("idempotency-key", "hostile-key")
        .body(json!({"product_id": "fridge-bcd-470", "address_id": "addr-alice-home", "quantity": 1}).to_string())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let order = created["order"]["id"].as_str().expect("an order").to_owned();
    let payment = created["payment"]["id"].as_str().expect("a payment").to_owned();

    let cases = cases(&order, &payment);
    assert!(cases.len() >= 120, "{} cases", cases.len());
    let before = e2e::sqlite_snapshot(&db);
    for table in ["products|", "addresses|", "orders|", "payments|", "idempotency|"] {
        assert!(
            before.keys().any(|k| k.starts_with(table)),
            "the snapshot holds {table}"
        );
    }
    let mut failures = Vec::new();
    for case in &cases {
        let method = reqwest::Method::from_bytes(case.method.as_bytes()).unwrap();
        let mut req = http.request(method, format!("{base}{}", case.path));
        for (name, value) in &case.headers {
            req = req.header(*name, value.as_str());
        }
        if !case.body.is_empty() && !case.headers.iter().any(|(n, _)| *n == "content-type") {
            req = req.header("content-type", "application/json");
        }
        let resp = req.body(case.body.clone()).send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        let answered = match &case.expect {
            Code(code) => {
                let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
                let shaped = body["error"]["message"].is_string() && body["request_id"].is_string();
                status == case.status && body["error"]["code"] == *code && shaped
            }
            Body(expected) => status == case.status && text == *expected,
        };
        if !answered {
            failures.push(format!("{}: {status} {text}", case.name));
        }
        if e2e::sqlite_snapshot(&db) != before {
            failures.push(format!("{}: the store changed", case.name));
            break;
        }
    }
    // A callback wrongly enqueued would be applied a moment later, by the in-process queue.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    if e2e::sqlite_snapshot(&db) != before {
        failures.push("the store changed after the last case".to_owned());
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases answered otherwise:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    eprintln!(
        "hostile: {} cases, each refused with its code, the store unchanged after each",
        cases.len()
    );
}
