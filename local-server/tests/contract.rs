//! The contract test: docs/openapi.yaml against the running local server. Every documented route is
//! driven over real HTTP through every status it documents; each real answer must be a status the
//! operation documents (an undocumented one fails), carry the headers it promises (`Retry-After` on a
//! `503`, `Idempotent-Replayed` on a replay), and its body must validate against the documented schema
//! (the error codes included: each response lists the codes it can carry).
//!
//! A few statuses cannot be caused from outside a healthy local server: `500 INTERNAL_ERROR`, a `503
//! SERVICE_BUSY` (the store or the queue failing), and WeChat Pay's `500` (its queue down). They are
//! exempt here by rule (a response whose only codes are those), and each is produced by fault injection
//! in tests/api (faults.rs, callback_receiver.rs); every other documented (route, status) pair must be
//! seen here.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde_json::{json, Value};

mod common;

/// The document, and what the test saw of it.
struct Contract {
    doc: Value,
    seen: BTreeSet<(String, u16)>,
    checked: usize,
}

/// One answer, as received.
struct Answer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    text: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or(Value::Null)
    }
}

/// Requests through the server, each checked against the contract.
struct Client {
    base: String,
    http: reqwest::Client,
    contract: Contract,
}

/// A request: method, the path as documented, the path as sent, who asks, extra headers, the body.
struct Call<'a> {
    method: &'a str,
    template: &'a str,
    path: String,
    auth: Option<&'a str>,
    headers: Vec<(String, String)>,
    body: Option<String>,
}

fn call<'a>(method: &'a str, template: &'a str, path: impl Into<String>) -> Call<'a> {
    Call {
        method,
        template,
        path: path.into(),
        auth: None,
        headers: Vec::new(),
        body: None,
    }
}

impl<'a> Call<'a> {
    fn by(mut self, auth: &'a str) -> Self {
        self.auth = Some(auth);
        self
    }

    fn json(mut self, body: Value) -> Self {
        self.body = Some(body.to_string());
        self
    }

    fn raw(mut self, body: impl Into<String>) -> Self {
        self.body = Some(body.into());
        self
    }

    fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }
}

impl Contract {
    fn load() -> Self {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/openapi.yaml");
        let text = std::fs::read_to_string(path).expect("docs/openapi.yaml");
        let doc: Value = serde_norway::from_str(&text).expect("docs/openapi.yaml parses");
        Contract {
            doc,
            seen: BTreeSet::new(),
            checked: 0,
        }
    }

    /// `#/components/...` resolved, once.
    fn resolve<'v>(&'v self, value: &'v Value) -> &'v Value {
        match value.get("$ref").and_then(Value::as_str) {
            Some(pointer) => self
                .doc
                .pointer(pointer.trim_start_matches('#'))
                .unwrap_or_else(|| panic!("{pointer} is not in the document")),
            None => value,
        }
    }

    fn operation(&self, method: &str, template: &str) -> &Value {
        self.doc["paths"][template]
            .get(method.to_ascii_lowercase())
            .unwrap_or_else(|| panic!("{method} {template} is not documented"))
    }

    /// Every documented (operation, status) pair.
    fn documented(&self) -> BTreeMap<(String, u16), Value> {
        let mut pairs = BTreeMap::new();
        for (template, item) in self.doc["paths"].as_object().expect("paths") {
            for (method, op) in item.as_object().expect("path item") {
                for (status, response) in op["responses"].as_object().expect("responses") {
                    let key = (
                        format!("{} {template}", method.to_ascii_uppercase()),
                        status.parse().expect("a status"),
                    );
                    pairs.insert(key, response.clone());
                }
            }
        }
        pairs
    }

    /// Whether a documented response can only be caused by a fault inside the service (see the module's
    /// documentation).
    fn fault_only(&self, operation: &str, status: u16, response: &Value) -> bool {
        let reference = response.get("$ref").and_then(Value::as_str).unwrap_or_default();
        reference.ends_with("/InternalError")
            || reference.ends_with("/ServiceBusy")
            || (operation == "POST /api/payments/callback/wechatpay/" && status == 500)
    }

    /// Checks one answer against the operation's documentation.
    fn check(&mut self, method: &str, template: &str, answer: &Answer) {
        let op = self.operation(method, template).clone();
        let label = format!("{method} {template} → {}", answer.status);
        let response = op["responses"]
            .get(answer.status.to_string())
            .unwrap_or_else(|| panic!("{label}: an undocumented status; body {}", answer.text));
        let response = self.resolve(response).clone();
        for (name, header) in response["headers"].as_object().into_iter().flatten() {
            let header = self.resolve(header);
            let value = answer.headers.get(name.as_str()).and_then(|v| v.to_str().ok());
            if header["required"] == true {
                assert!(value.is_some(), "{label}: no {name} header");
            }
            if let Some(value) = value {
                let value = value.parse::<i64>().map_or_else(|_| json!(value), Value::from);
                self.validate(&label, &header["schema"], &value);
            }
        }
        let content_type = answer
            .headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .split(';')
            .next()
            .unwrap_or_default()
            .to_owned();
        match response.get("content").and_then(Value::as_object) {
            None => assert!(
                answer.text.is_empty(),
                "{label}: a body where none is documented: {}",
                answer.text
            ),
            Some(content) => {
                let media = content
                    .get(&content_type)
                    .unwrap_or_else(|| panic!("{label}: content type {content_type:?} is not documented"));
                let instance = if content_type == "application/json" {
                    serde_json::from_str(&answer.text)
                        .unwrap_or_else(|e| panic!("{label}: not JSON ({e}): {}", answer.text))
                } else {
                    Value::from(answer.text.clone())
                };
                self.validate(&label, &media["schema"], &instance);
            }
        }
        self.seen.insert((format!("{method} {template}"), answer.status));
        self.checked += 1;
    }

    /// Validates `instance` against `schema`, whose `#/components/...` references resolve in the
    /// document (JSON Schema 2020-12, as OpenAPI 3.1 uses it, formats asserted).
    fn validate(&self, label: &str, schema: &Value, instance: &Value) {
        let mut root = schema.clone();
        match root.as_object_mut() {
            Some(object) => {
                object.insert("components".into(), self.doc["components"].clone());
            }
            None => return,
        }
        let validator = jsonschema::draft202012::options()
            .should_validate_formats(true)
            .build(&root)
            .unwrap_or_else(|e| panic!("{label}: the documented schema does not compile: {e}"));
        let errors: Vec<String> = validator
            .iter_errors(instance)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        assert!(
            errors.is_empty(),
            "{label}: the body does not match its schema: {errors:#?}\n{instance:#}"
        );
    }
}

impl Client {
    async fn send(&mut self, call: Call<'_>) -> Answer {
        let url = format!("{}{}", self.base, call.path);
        let mut req = match call.method {
            "GET" => self.http.get(&url),
            _ => self.http.post(&url),
        };
        if let Some(auth) = call.auth {
            req = req.header("authorization", format!("Bearer {auth}"));
        }
        let has_content_type = call.headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("content-type"));
        if call.body.is_some() && !has_content_type {
            req = req.header("content-type", "application/json");
        }
        for (name, value) in &call.headers {
            req = req.header(name.as_str(), value.as_str());
        }
        if let Some(body) = call.body {
            req = req.body(body);
        }
        let resp = req.send().await.expect("the local server answers");
        let answer = Answer {
            status: resp.status().as_u16(),
            headers: resp.headers().clone(),
            text: resp.text().await.expect("a body"),
        };
        self.contract.check(call.method, call.template, &answer);
        answer
    }

    /// Sends `call` and insists on `status`.
    async fn expect(&mut self, status: u16, call: Call<'_>) -> Value {
        let label = format!("{} {}", call.method, call.path);
        let answer = self.send(call).await;
        assert_eq!(answer.status, status, "{label}: {}", answer.text);
        answer.json()
    }

    async fn poll_status(&mut self, order: &str, want: &str) {
        for _ in 0..200 {
            let got = self
                .expect(200, call("GET", ORDER, format!("/api/orders/{order}/")).by(ALICE))
                .await;
            if got["order"]["status"] == want {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("order {order} never became {want}");
    }
}

const ALICE: &str = "alice";
const BOB: &str = "bob";
const CAROL: &str = "carol";
const OPS: &str = "ops orders:admin";
const CREATE: &str = "/api/orders/create_order/";
const BATCH: &str = "/api/orders/create_batch_orders/";
const LIST: &str = "/api/orders/";
const ORDER: &str = "/api/orders/{order_id}/";
const CANCEL: &str = "/api/orders/{order_id}/cancel/";
const PAYMENTS: &str = "/api/orders/{order_id}/payments/";
const CHECKOUT: &str = "/api/orders/{order_id}/payments/{payment_id}/checkout/";
const CALLBACK: &str = "/api/payments/callback/";
const WECHATPAY: &str = "/api/payments/callback/wechatpay/";
const ALIPAY: &str = "/api/payments/callback/alipay/";
const ADMIN_ORDER: &str = "/api/admin/orders/{order_id}/";
const ATTENTION: &str = "/api/admin/attention/";
const RESOLVE: &str = "/api/admin/orders/{order_id}/payments/{payment_id}/resolve/";
const SECRET: &str = "contract-test-secret";

fn order_body(product: &str, quantity: u32, method: &str) -> Value {
    json!({"product_id": product, "address_id": "addr-alice-home", "quantity": quantity, "payment_method": method})
}

fn too_large() -> String {
    json!({"product_id": "fridge-bcd-470", "address_id": "addr-alice-home", "quantity": 1, "pad": "x".repeat(70 * 1024)})
        .to_string()
}

/// A generic callback signed with the server's secret.
fn generic(payment: &str, amount: &str, event: &str) -> (String, String) {
    let body = json!({
        "event_id": event, "payment_id": payment, "provider_txn_id": format!("txn-{event}"),
        "status": "succeeded", "amount": amount,
        "occurred_at": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    })
    .to_string();
    let t = chrono::Utc::now().timestamp();
    let tag = testkit::generic::sign_with(SECRET.as_bytes(), t, body.as_bytes());
    (format!("t={t},v1={tag}"), body)
}

/// The order and payment ids of a `201 {"order", "payment"}`.
fn ids(created: &Value) -> (String, String) {
    (
        created["order"]["id"].as_str().expect("order id").to_owned(),
        created["payment"]["id"].as_str().expect("payment id").to_owned(),
    )
}

fn start(dir: &std::path::Path, env: &[(&str, &str)]) -> (common::Spawned, String) {
    let mut command = common::command();
    command
        .env("LOCAL_DATA_DIR", dir)
        .env("PAYMENT_CALLBACK_SECRETS", SECRET)
        .env("PROVIDER_KEYS", dir.join("dev-providers.json"))
        .envs(env.iter().copied());
    common::spawned(command)
}

#[tokio::test]
async fn every_documented_route_and_status_is_answered_as_documented() {
    let dir = tempfile::tempdir().unwrap();
    // A hot product (docs/api.md §19) beside the demo, which still loads: the store holds none of its
    // products yet.
    let hot_catalog = dir.path().join("hot.json");
    std::fs::write(
        &hot_catalog,
        r#"{"products": [{"id": "flash-rice-cooker", "name": "电饭煲（秒杀）", "price": "299.00", "stock": 6, "shards": 4}],
            "addresses": [{"id": "addr-carol-home", "user_id": "carol", "city": "杭州"}]}"#,
    )
    .unwrap();
    common::load_only(dir.path(), &hot_catalog);
    let (_server, base) = start(dir.path(), &[]);
    let mut c = Client {
        base,
        http: reqwest::Client::new(),
        contract: Contract::load(),
    };
    let keys = dir.path().join("dev-providers.json");
    let keys = keys.to_str().unwrap().to_owned();

    // create_order
    let first = order_body("fridge-bcd-470", 1, "wechat");
    let created = c
        .expect(
            201,
            call("POST", CREATE, CREATE)
                .by(ALICE)
                .header("idempotency-key", "k-1")
                .json(first.clone()),
        )
        .await;
    let (wechat_order, wechat_payment) = ids(&created);
    let replay = c
        .send(
            call("POST", CREATE, CREATE)
                .by(ALICE)
                .header("idempotency-key", "k-1")
                .json(first),
        )
        .await;
    assert_eq!(
        (
            replay.status,
            replay.headers.get("idempotent-replayed").map(|v| v.to_str().unwrap())
        ),
        (201, Some("true"))
    );
    c.expect(
        422,
        call("POST", CREATE, CREATE)
            .by(ALICE)
            .header("idempotency-key", "k-1")
            .json(order_body("washer-eg100", 1, "wechat")),
    )
    .await;
    let refused = [
        (order_body("fridge-bcd-470", 0, "wechat"), "VALIDATION_ERROR"),
        (order_body("no-such-product", 1, "wechat"), "PRODUCT_NOT_FOUND"),
        (order_body("discontinued-tv", 1, "wechat"), "PRODUCT_NOT_FOUND"),
        (
            json!({"product_id": "fridge-bcd-470", "address_id": "addr-bob-home", "quantity": 1}),
            "ADDRESS_INVALID",
        ),
    ];
    for (body, code) in refused {
        let got = c.expect(400, call("POST", CREATE, CREATE).by(ALICE).json(body)).await;
        assert_eq!(got["error"]["code"], code);
    }
    c.expect(
        400,
        call("POST", CREATE, CREATE)
            .by(ALICE)
            .header("idempotency-key", "a,b")
            .json(order_body("fridge-bcd-470", 1, "bank")),
    )
    .await;
    c.expect(
        401,
        call("POST", CREATE, CREATE).json(order_body("fridge-bcd-470", 1, "wechat")),
    )
    .await;
    let short = c
        .expect(
            409,
            call("POST", CREATE, CREATE)
                .by(ALICE)
                .json(order_body("aircon-kfr35", 999, "wechat")),
        )
        .await;
    assert_eq!(short["error"]["details"][0]["available"], 5);
    c.expect(413, call("POST", CREATE, CREATE).by(ALICE).raw(too_large()))
        .await;

    // create_batch_orders
    let batch = |items: Value| json!({"items": items, "address_id": "addr-alice-home", "payment_method": "bank"});
    let made = c
        .expect(
            201,
            call("POST", BATCH, BATCH)
                .by(ALICE)
                .header("idempotency-key", "b-1")
                .json(batch(json!([
                    {"product_id": "washer-eg100", "quantity": 1}, {"product_id": "fridge-bcd-470", "quantity": 1}
                ]))),
        )
        .await;
    assert_eq!(made["orders"].as_array().unwrap().len(), 2);
    c.expect(
        422,
        call("POST", BATCH, BATCH)
            .by(ALICE)
            .header("idempotency-key", "b-1")
            .json(batch(json!([{"product_id": "washer-eg100", "quantity": 2}]))),
    )
    .await;
    let many: Vec<Value> = (0..33)
        .map(|i| json!({"product_id": format!("p-{i}"), "quantity": 1}))
        .collect();
    for (body, code) in [
        (batch(json!([])), "VALIDATION_ERROR"),
        (batch(Value::from(many)), "BATCH_TOO_LARGE"),
        (
            batch(json!([{"product_id": "no-such-product", "quantity": 1}])),
            "PRODUCT_NOT_FOUND",
        ),
        (
            json!({"items": [{"product_id": "washer-eg100", "quantity": 1}], "address_id": "addr-bob-home"}),
            "ADDRESS_INVALID",
        ),
    ] {
        let got = c.expect(400, call("POST", BATCH, BATCH).by(ALICE).json(body)).await;
        assert_eq!(got["error"]["code"], code);
    }
    c.expect(
        401,
        call("POST", BATCH, BATCH).json(batch(json!([{"product_id": "washer-eg100", "quantity": 1}]))),
    )
    .await;
    c.expect(
        409,
        call("POST", BATCH, BATCH)
            .by(ALICE)
            .json(batch(json!([{"product_id": "aircon-kfr35", "quantity": 999}]))),
    )
    .await;
    c.expect(413, call("POST", BATCH, BATCH).by(ALICE).raw(too_large()))
        .await;

    // list_orders and get_order
    let page = c.expect(200, call("GET", LIST, "/api/orders/?limit=1").by(ALICE)).await;
    let cursor = page["next_cursor"].as_str().expect("a next cursor").to_owned();
    let cursor = form_urlencoded::byte_serialize(cursor.as_bytes()).collect::<String>();
    c.expect(
        200,
        call("GET", LIST, format!("/api/orders/?limit=2&cursor={cursor}")).by(ALICE),
    )
    .await;
    c.expect(200, call("GET", LIST, LIST).by(BOB)).await;
    c.expect(400, call("GET", LIST, "/api/orders/?limit=0").by(ALICE)).await;
    c.expect(400, call("GET", LIST, format!("/api/orders/?cursor={cursor}")).by(BOB))
        .await;
    c.expect(401, call("GET", LIST, LIST)).await;
    let path = format!("/api/orders/{wechat_order}/");
    c.expect(200, call("GET", ORDER, path.clone()).by(ALICE)).await;
    c.expect(401, call("GET", ORDER, path.clone())).await;
    c.expect(404, call("GET", ORDER, path.clone()).by(BOB)).await;
    c.expect(404, call("GET", ORDER, "/api/orders/ord_nope/").by(ALICE))
        .await;

    // checkout_payment: each method's default scene, then the refusals
    let checkout = |order: &str, payment: &str| format!("/api/orders/{order}/payments/{payment}/checkout/");
    let native = c
        .expect(
            200,
            call("POST", CHECKOUT, checkout(&wechat_order, &wechat_payment)).by(ALICE),
        )
        .await;
    assert!(native["checkout"]["code_url"].is_string(), "{native}");
    let alipay = c
        .expect(
            201,
            call("POST", CREATE, CREATE)
                .by(ALICE)
                .json(order_body("washer-eg100", 1, "alipay")),
        )
        .await;
    let (alipay_order, alipay_payment) = ids(&alipay);
    let page_pay = c
        .expect(
            200,
            call("POST", CHECKOUT, checkout(&alipay_order, &alipay_payment))
                .by(ALICE)
                .json(json!({"scene": "page"})),
        )
        .await;
    assert!(page_pay["checkout"]["url"].is_string(), "{page_pay}");
    c.expect(
        200,
        call("POST", CHECKOUT, checkout(&alipay_order, &alipay_payment))
            .by(ALICE)
            .json(json!({"scene": "page"})),
    )
    .await;
    let bank = c
        .expect(
            201,
            call("POST", CREATE, CREATE)
                .by(ALICE)
                .json(order_body("washer-eg100", 1, "bank")),
        )
        .await;
    let (bank_order, bank_payment) = ids(&bank);
    let transfer = c
        .expect(
            200,
            call("POST", CHECKOUT, checkout(&bank_order, &bank_payment)).by(ALICE),
        )
        .await;
    assert!(transfer["checkout"]["account"].is_object(), "{transfer}");
    c.expect(
        400,
        call("POST", CHECKOUT, checkout(&wechat_order, &wechat_payment))
            .by(ALICE)
            .json(json!({"scene": "transfer"})),
    )
    .await;
    c.expect(401, call("POST", CHECKOUT, checkout(&wechat_order, &wechat_payment)))
        .await;
    c.expect(
        404,
        call("POST", CHECKOUT, checkout(&wechat_order, &wechat_payment)).by(BOB),
    )
    .await;
    c.expect(
        404,
        call("POST", CHECKOUT, checkout(&wechat_order, &bank_payment)).by(ALICE),
    )
    .await;
    c.expect(
        409,
        call("POST", CHECKOUT, checkout(&alipay_order, &alipay_payment))
            .by(ALICE)
            .json(json!({"scene": "qr"})),
    )
    .await;
    c.expect(
        413,
        call("POST", CHECKOUT, checkout(&wechat_order, &wechat_payment))
            .by(ALICE)
            .raw(too_large()),
    )
    .await;

    // A provider outage: checkout, create_payment, the shopper's cancel and the operator's cancel of an
    // order checked out there all answer 503 and change nothing.
    let outage = |down: bool| json!({ "down": down });
    let dev = |c: &Client| (c.http.clone(), format!("{}/dev/wechatpay/outage", c.base));
    let (http, outage_url) = dev(&c);
    let switched = http
        .post(&outage_url)
        .body(outage(true).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(switched.status(), 200);
    let fresh = c
        .expect(
            201,
            call("POST", CREATE, CREATE)
                .by(ALICE)
                .json(order_body("fridge-bcd-470", 1, "wechat")),
        )
        .await;
    let (fresh_order, fresh_payment) = ids(&fresh);
    let down = c
        .send(call("POST", CHECKOUT, checkout(&fresh_order, &fresh_payment)).by(ALICE))
        .await;
    assert_eq!(
        (down.status, down.json()["error"]["code"].as_str()),
        (503, Some("PROVIDER_UNAVAILABLE"))
    );
    let payments_path = format!("/api/orders/{wechat_order}/payments/");
    let got = c
        .expect(
            503,
            call("POST", PAYMENTS, payments_path.clone())
                .by(ALICE)
                .json(json!({"payment_method": "wechat"})),
        )
        .await;
    assert_eq!(got["error"]["code"], "PROVIDER_UNAVAILABLE");
    let got = c
        .expect(
            503,
            call("POST", CANCEL, format!("/api/orders/{wechat_order}/cancel/")).by(ALICE),
        )
        .await;
    assert_eq!(got["error"]["code"], "PROVIDER_UNAVAILABLE");
    let admin = |order: &str, action: &str| format!("/api/admin/orders/{order}/{action}/");
    let admin_cancel = "/api/admin/orders/{order_id}/cancel/";
    let got = c
        .expect(
            503,
            call("POST", admin_cancel, admin(&wechat_order, "cancel"))
                .by(OPS)
                .json(json!({"reason": "缺货"})),
        )
        .await;
    assert_eq!(got["error"]["code"], "PROVIDER_UNAVAILABLE");
    http.post(&outage_url)
        .body(outage(false).to_string())
        .send()
        .await
        .unwrap();

    // create_payment
    c.expect(
        201,
        call("POST", PAYMENTS, payments_path.clone())
            .by(ALICE)
            .header("idempotency-key", "p-1")
            .json(json!({"payment_method": "bank"})),
    )
    .await;
    let replay = c
        .send(
            call("POST", PAYMENTS, payments_path.clone())
                .by(ALICE)
                .header("idempotency-key", "p-1")
                .json(json!({"payment_method": "bank"})),
        )
        .await;
    assert_eq!(
        replay.headers.get("idempotent-replayed").map(|v| v.to_str().unwrap()),
        Some("true")
    );
    c.expect(
        422,
        call("POST", PAYMENTS, payments_path.clone())
            .by(ALICE)
            .header("idempotency-key", "p-1")
            .json(json!({"payment_method": "alipay"})),
    )
    .await;
    for (body, code) in [
        (
            json!({"payment_method": "wechat", "ttl_minutes": 0}),
            "VALIDATION_ERROR",
        ),
        (
            json!({"payment_method": "wechat", "amount": 3299}),
            "INVALID_AMOUNT_FORMAT",
        ),
        (json!({"payment_method": "wechat", "amount": "1.00"}), "AMOUNT_MISMATCH"),
    ] {
        let got = c
            .expect(400, call("POST", PAYMENTS, payments_path.clone()).by(ALICE).json(body))
            .await;
        assert_eq!(got["error"]["code"], code);
    }
    c.expect(
        401,
        call("POST", PAYMENTS, payments_path.clone()).json(json!({"payment_method": "wechat"})),
    )
    .await;
    c.expect(
        404,
        call("POST", PAYMENTS, payments_path.clone())
            .by(BOB)
            .json(json!({"payment_method": "wechat"})),
    )
    .await;
    c.expect(
        413,
        call("POST", PAYMENTS, payments_path.clone()).by(ALICE).raw(too_large()),
    )
    .await;

    // the generic callback pays the bank order; then paying it again is refused
    let amount = bank["payment"]["amount"].as_str().unwrap().to_owned();
    let (signature, body) = generic(&bank_payment, &amount, "evt-contract-1");
    let got = c
        .expect(
            200,
            call("POST", CALLBACK, CALLBACK)
                .header("x-payment-signature", &signature)
                .raw(body),
        )
        .await;
    assert_eq!(got, json!({"code": "SUCCESS"}));
    c.poll_status(&bank_order, "paid").await;
    let got = c
        .expect(
            400,
            call("POST", PAYMENTS, format!("/api/orders/{bank_order}/payments/"))
                .by(ALICE)
                .json(json!({"payment_method": "wechat"})),
        )
        .await;
    assert_eq!(got["error"]["code"], "INVALID_ORDER_STATUS");
    c.expect(
        409,
        call("POST", CHECKOUT, checkout(&bank_order, &bank_payment)).by(ALICE),
    )
    .await;
    let (signature, _) = generic(&bank_payment, &amount, "evt-contract-2");
    c.expect(
        401,
        call("POST", CALLBACK, CALLBACK)
            .header("x-payment-signature", &signature)
            .raw("{}"),
    )
    .await;
    let malformed = r#"{"event_id": "evt-contract-3"}"#;
    let t = chrono::Utc::now().timestamp();
    let tag = testkit::generic::sign_with(SECRET.as_bytes(), t, malformed.as_bytes());
    c.expect(
        400,
        call("POST", CALLBACK, CALLBACK)
            .header("x-payment-signature", &format!("t={t},v1={tag}"))
            .raw(malformed),
    )
    .await;
    c.expect(
        413,
        call("POST", CALLBACK, CALLBACK)
            .header("x-payment-signature", &signature)
            .raw(too_large()),
    )
    .await;

    // the shopper's cancel
    let pending = c
        .expect(
            201,
            call("POST", CREATE, CREATE)
                .by(ALICE)
                .json(order_body("washer-eg100", 1, "bank")),
        )
        .await;
    let (pending_order, _) = ids(&pending);
    let cancel = |order: &str| format!("/api/orders/{order}/cancel/");
    c.expect(200, call("POST", CANCEL, cancel(&pending_order)).by(ALICE))
        .await;
    c.expect(200, call("POST", CANCEL, cancel(&pending_order)).by(ALICE))
        .await;
    c.expect(401, call("POST", CANCEL, cancel(&pending_order))).await;
    c.expect(404, call("POST", CANCEL, cancel(&pending_order)).by(BOB))
        .await;
    c.expect(409, call("POST", CANCEL, cancel(&bank_order)).by(ALICE)).await;

    // WeChat Pay and Alipay notifications, signed by the development keys' helpers
    let curl = common::helper(
        &keys,
        &["sign-wechatpay", "--payment-id", &wechat_payment, "--amount", "3299.00"],
    );
    let (_, headers, body) = common::parse_curl(&curl);
    let mut notification = call("POST", WECHATPAY, WECHATPAY).raw(body.clone());
    for (name, value) in &headers {
        notification = notification.header(name, value);
    }
    c.expect(200, notification).await;
    c.poll_status(&wechat_order, "paid").await;
    let mut altered = call("POST", WECHATPAY, WECHATPAY).raw(body.replacen('1', "2", 1));
    for (name, value) in &headers {
        altered = altered.header(name, value);
    }
    c.expect(401, altered).await;
    let platform = wechatpay_platform(&keys);
    let posted = platform.post(
        r#"{"id": "not-a-notification"}"#.to_owned(),
        chrono::Utc::now().timestamp(),
    );
    let mut unreadable = call("POST", WECHATPAY, WECHATPAY).raw(posted.body);
    for (name, value) in &posted.headers {
        unreadable = unreadable.header(name, value);
    }
    c.expect(400, unreadable).await;
    let curl = common::helper(
        &keys,
        &["sign-alipay", "--payment-id", &alipay_payment, "--amount", "2199.00"],
    );
    let (_, headers, body) = common::parse_curl(&curl);
    let mut form = call("POST", ALIPAY, ALIPAY).raw(body.clone());
    for (name, value) in &headers {
        form = form.header(name, value);
    }
    let answer = c.send(form).await;
    assert_eq!((answer.status, answer.text.as_str()), (200, "success"));
    c.poll_status(&alipay_order, "paid").await;
    let answer = c
        .send(
            call("POST", ALIPAY, ALIPAY)
                .header("content-type", "application/x-www-form-urlencoded")
                .raw(body.replacen('1', "2", 1)),
        )
        .await;
    assert_eq!((answer.status, answer.text.as_str()), (200, "failure"));

    // The merchant's routes: ship and complete the WeChat Pay order, refund the Alipay one, cancel a
    // pending one; each refused the ways the contract lists.
    let admin_order = format!("/api/admin/orders/{wechat_order}/");
    c.expect(200, call("GET", ADMIN_ORDER, admin_order.clone()).by(OPS))
        .await;
    c.expect(401, call("GET", ADMIN_ORDER, admin_order.clone())).await;
    c.expect(403, call("GET", ADMIN_ORDER, admin_order.clone()).by(ALICE))
        .await;
    c.expect(404, call("GET", ADMIN_ORDER, "/api/admin/orders/ord_nope/").by(OPS))
        .await;
    let ship = "/api/admin/orders/{order_id}/ship/";
    let complete = "/api/admin/orders/{order_id}/complete/";
    let refund = "/api/admin/orders/{order_id}/refund/";
    let parcel = json!({"carrier": "顺丰", "tracking_no": "SF1234567890"});
    c.expect(
        409,
        call("POST", complete, admin(&wechat_order, "complete"))
            .by(OPS)
            .json(json!({})),
    )
    .await;
    c.expect(
        200,
        call("POST", ship, admin(&wechat_order, "ship"))
            .by(OPS)
            .json(parcel.clone()),
    )
    .await;
    c.expect(
        200,
        call("POST", complete, admin(&wechat_order, "complete"))
            .by(OPS)
            .json(json!({"note": "签收"})),
    )
    .await;
    c.expect(
        409,
        call("POST", admin_cancel, admin(&wechat_order, "cancel"))
            .by(OPS)
            .json(json!({"reason": "晚了"})),
    )
    .await;
    c.expect(
        409,
        call("POST", ship, admin(&pending_order, "ship"))
            .by(OPS)
            .json(parcel.clone()),
    )
    .await;
    c.expect(
        409,
        call("POST", refund, admin(&pending_order, "refund"))
            .by(OPS)
            .json(json!({"reason": "不要了"})),
    )
    .await;
    c.expect(
        200,
        call("POST", refund, admin(&alipay_order, "refund"))
            .by(OPS)
            .json(json!({"reason": "不要了"})),
    )
    .await;
    let another = c
        .expect(
            201,
            call("POST", CREATE, CREATE)
                .by(ALICE)
                .json(order_body("washer-eg100", 1, "bank")),
        )
        .await;
    let (another_order, _) = ids(&another);
    c.expect(
        200,
        call("POST", admin_cancel, admin(&another_order, "cancel"))
            .by(OPS)
            .json(json!({"reason": "缺货"})),
    )
    .await;
    for (template, action, good) in [
        (ship, "ship", parcel.clone()),
        (complete, "complete", json!({})),
        (refund, "refund", json!({"reason": "r"})),
        (admin_cancel, "cancel", json!({"reason": "r"})),
    ] {
        let path = admin(&wechat_order, action);
        c.expect(400, call("POST", template, path.clone()).by(OPS).raw("not json"))
            .await;
        c.expect(401, call("POST", template, path.clone()).json(good.clone()))
            .await;
        c.expect(403, call("POST", template, path.clone()).by(ALICE).json(good.clone()))
            .await;
        c.expect(
            404,
            call("POST", template, admin("ord_nope", action))
                .by(OPS)
                .json(good.clone()),
        )
        .await;
        c.expect(413, call("POST", template, path.clone()).by(OPS).raw(too_large()))
            .await;
    }

    // The attention list, and settling an amount mismatch by hand
    let odd = c
        .expect(
            201,
            call("POST", CREATE, CREATE)
                .by(ALICE)
                .json(order_body("washer-eg100", 1, "bank")),
        )
        .await;
    let (odd_order, odd_payment) = ids(&odd);
    let (signature, body) = generic(&odd_payment, "1.00", "evt-contract-mismatch");
    c.expect(
        200,
        call("POST", CALLBACK, CALLBACK)
            .header("x-payment-signature", &signature)
            .raw(body),
    )
    .await;
    let mut listed = Value::Null;
    for _ in 0..200 {
        listed = c.expect(200, call("GET", ATTENTION, ATTENTION).by(OPS)).await;
        if listed["items"]
            .as_array()
            .is_some_and(|items| items.iter().any(|i| i["order_id"] == odd_order.as_str()))
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(
        listed["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["order_id"] == odd_order.as_str()),
        "{listed}"
    );
    c.expect(200, call("GET", ATTENTION, "/api/admin/attention/?limit=1").by(OPS))
        .await;
    c.expect(400, call("GET", ATTENTION, "/api/admin/attention/?limit=0").by(OPS))
        .await;
    c.expect(401, call("GET", ATTENTION, ATTENTION)).await;
    c.expect(403, call("GET", ATTENTION, ATTENTION).by(ALICE)).await;
    let resolve = |order: &str, payment: &str| format!("/api/admin/orders/{order}/payments/{payment}/resolve/");
    let note = json!({"note": "与顾客核对后已线下处理"});
    c.expect(
        200,
        call("POST", RESOLVE, resolve(&odd_order, &odd_payment))
            .by(OPS)
            .json(note.clone()),
    )
    .await;
    c.expect(
        400,
        call("POST", RESOLVE, resolve(&odd_order, &odd_payment))
            .by(OPS)
            .raw("not json"),
    )
    .await;
    c.expect(
        401,
        call("POST", RESOLVE, resolve(&odd_order, &odd_payment)).json(note.clone()),
    )
    .await;
    c.expect(
        403,
        call("POST", RESOLVE, resolve(&odd_order, &odd_payment))
            .by(ALICE)
            .json(note.clone()),
    )
    .await;
    c.expect(
        404,
        call("POST", RESOLVE, resolve("ord_nope", &odd_payment))
            .by(OPS)
            .json(note.clone()),
    )
    .await;
    c.expect(
        413,
        call("POST", RESOLVE, resolve(&odd_order, &odd_payment))
            .by(OPS)
            .raw(too_large()),
    )
    .await;

    // The supplier down (a second server, its supplier API unreachable): 503 SUPPLIER_UNAVAILABLE.
    let other = tempfile::tempdir().unwrap();
    let (_down, down_base) = start(
        other.path(),
        &[
            ("SUPPLIER_BASE_URL", "http://127.0.0.1:9"),
            ("SUPPLIER_TIMEOUT_MS", "500"),
        ],
    );
    let mut d = Client {
        base: down_base,
        http: reqwest::Client::new(),
        contract: Contract::load(),
    };
    let heater = order_body("haier-water-heater-ec6002", 1, "wechat");
    let got = d.expect(503, call("POST", CREATE, CREATE).by(ALICE).json(heater)).await;
    assert_eq!(got["error"]["code"], "SUPPLIER_UNAVAILABLE");
    let got = d
        .expect(
            503,
            call("POST", BATCH, BATCH).by(ALICE).json(batch(
                json!([{"product_id": "haier-water-heater-ec6002", "quantity": 1}]),
            )),
        )
        .await;
    assert_eq!(got["error"]["code"], "SUPPLIER_UNAVAILABLE");
    c.contract.seen.extend(d.contract.seen);
    c.contract.checked += d.contract.checked;

    // A hot product's order carries the shards it took from, as created, read and listed.
    let body = json!({"product_id": "flash-rice-cooker", "address_id": "addr-carol-home", "quantity": 2});
    let hot = c.expect(201, call("POST", CREATE, CREATE).by(CAROL).json(body)).await;
    assert!(hot["order"]["stock_shards"].is_array(), "{hot}");
    let (hot_order, _) = ids(&hot);
    let read = c
        .expect(200, call("GET", ORDER, format!("/api/orders/{hot_order}/")).by(CAROL))
        .await;
    assert_eq!(read["order"]["stock_shards"], hot["order"]["stock_shards"]);
    let listed = c.expect(200, call("GET", LIST, LIST).by(CAROL)).await;
    assert!(listed.to_string().contains("stock_shards"), "{listed}");

    // Every documented pair was seen, but those only a fault inside the service can cause.
    let contract = &c.contract;
    let documented = contract.documented();
    let mut exempt = Vec::new();
    let mut missing = Vec::new();
    for ((operation, status), response) in &documented {
        if contract.seen.contains(&(operation.clone(), *status)) {
            continue;
        }
        if contract.fault_only(operation, *status, response) {
            exempt.push(format!("{operation} {status}"));
        } else {
            missing.push(format!("{operation} {status}"));
        }
    }
    assert!(missing.is_empty(), "documented but never seen: {missing:#?}");
    eprintln!(
        "contract: {} answers checked; {} of {} documented (route, status) pairs seen; {} only a fault inside the service causes: {exempt:?}",
        contract.checked,
        contract.seen.len(),
        documented.len(),
        exempt.len()
    );
}

/// The fake WeChat Pay platform of the server's development keys (to sign a notification by hand).
fn wechatpay_platform(keys: &str) -> testkit::providers::WechatPaySimulator {
    let stored: Value = serde_json::from_str(&std::fs::read_to_string(keys).expect("dev keys")).expect("JSON");
    let text = |name: &str| stored[name].as_str().expect(name).to_owned();
    testkit::providers::WechatPaySimulator {
        key_id: text("wechatpay_key_id"),
        key: testkit::providers::SigningKey::from_pkcs8_base64(&text("wechatpay_key")).expect("key"),
        apiv3_key: text("wechatpay_apiv3_key"),
        mchid: text("wechatpay_mchid"),
        appid: text("wechatpay_appid"),
    }
}
