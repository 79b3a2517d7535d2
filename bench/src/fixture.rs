//! What the harness feeds each function: a fresh table and FIFO queue in the emulator, the orders the
//! functions act on, and per function its environment, its event for invoke `n` and its check.

use std::sync::Arc;

use domain::callback::{EventSource, ReportedStatus};
use domain::ports::{CatalogAdmin, Clock};
use domain::usecases::{Answered, Services};
use domain::Timestamp;
use futures::{StreamExt, TryStreamExt};
use serde_json::{json, Value};

/// Every function the harness runs, in its order: one per crate under `functions/`.
pub const FUNCTIONS: [&str; 12] = [
    "create_order",
    "create_batch_orders",
    "get_order",
    "admin_orders",
    "create_payment",
    "checkout_payment",
    "cancel_order",
    "list_orders",
    "payment_callback",
    "process_payment_callbacks",
    "expire_payments",
    "refund_payments",
];

/// Makes the event of invoke `n` (0 is the cold invoke).
pub type EventMaker = Box<dyn Fn(usize) -> Value + Send + Sync>;

/// Accepts or refuses one response.
pub type Check = Box<dyn Fn(&Value) -> Result<(), String> + Send + Sync>;

/// One function as the harness runs it.
pub struct Function {
    /// The function (and its binary's name).
    pub name: &'static str,
    /// Environment beyond Lambda's own.
    pub env: Vec<(String, String)>,
    /// The event of invoke `n`.
    pub event: EventMaker,
    /// What every response must be.
    pub check: Check,
}

/// An order placed for the harness, with its open payment.
#[derive(Debug, Clone)]
pub struct Placement {
    /// The order.
    pub order_id: String,
    /// Its open payment.
    pub payment_id: String,
}

/// Everything the functions act on, made once per run.
pub struct Fixture {
    /// The table.
    pub table: String,
    /// The callback FIFO queue's URL.
    pub queue_url: String,
    /// An order `get_order` reads.
    pub order_to_read: String,
    /// One fresh unpaid order per invoke for `create_payment`.
    pub for_payment: Vec<Placement>,
    /// One fresh WeChat Pay payment per invoke for `checkout_payment`.
    pub for_checkout: Vec<Placement>,
    /// The fake WeChat Pay `checkout_payment` prepays at, and the settings that point it there.
    pub wechatpay: Option<(testkit::fake_wechatpay::FakeWechatPay, Vec<(String, String)>)>,
    /// One per invoke for `cancel_order`.
    pub for_cancel: Vec<Placement>,
    /// One per invoke for `process_payment_callbacks` to pay.
    pub for_callback: Vec<Placement>,
    /// Unpaid orders already past their deadline, for the sweeper's cold invoke.
    pub due: usize,
}

const USER: &str = "alice";
const PRODUCT: &str = "bench-fridge";
const ADDRESS: &str = "bench-home";
/// The address's phone and street: no log line may hold them (the harness test checks).
pub const ADDRESS_PHONE: &str = "13800138000";
/// See [`ADDRESS_PHONE`].
pub const ADDRESS_DETAIL: &str = "北京市朝阳区幸福路88号";
const PRICE: &str = "10.00";
/// The generic callback format's signing secret in the harness (not a real secret).
pub const CALLBACK_SECRET: &str = "bench-callback-secret";
/// The list cursor key in the harness (not a real secret).
pub const CURSOR_SECRET: &str = "bench-list-cursor-secret";

struct Held(Timestamp);

impl Clock for Held {
    fn now(&self) -> Timestamp {
        self.0
    }
}

fn services(store: &infra::dynamodb::DynamoStore, clock: Arc<dyn Clock>) -> Services {
    Services::over(
        Arc::new(store.clone()),
        Arc::new(infra::supplier::NoSupplier),
        clock,
        Arc::new(infra::metrics::EmfMetrics),
    )
}

async fn place(svc: &Services) -> Result<Placement, String> {
    place_paid_by(svc, "wechat").await
}

async fn place_paid_by(svc: &Services, method: &str) -> Result<Placement, String> {
    let body =
        serde_json::json!({"product_id": PRODUCT, "address_id": ADDRESS, "quantity": 1, "payment_method": method});
    let cmd = domain::usecases::request::parse_create_order(&body).map_err(|e| e.to_string())?;
    let user = domain::UserId::parse(USER).map_err(|e| e.to_string())?;
    match domain::usecases::create_orders(&svc.placing(), &user, &cmd, None)
        .await
        .map_err(|e| e.to_string())?
    {
        Answered::Made(created) => Ok(Placement {
            order_id: created.orders[0].id.to_string(),
            payment_id: created.payments[0].id.to_string(),
        }),
        Answered::Replayed(_) => Err("a create without a key was replayed".into()),
    }
}

async fn place_many(svc: &Services, n: usize) -> Result<Vec<Placement>, String> {
    futures::stream::iter(0..n)
        .map(|_| place(svc))
        .buffered(8)
        .try_collect()
        .await
}

/// A fresh table and FIFO queue in the emulator at `endpoint`, holding a product with 1,000,000 in stock,
/// alice's address, and the orders `events` invokes (cold and warm, over every run) of each function
/// `measured` selects (by name) act on.
pub async fn prepare(endpoint: &str, events: usize, measured: impl Fn(&str) -> bool) -> Result<Fixture, String> {
    let client = e2e::dynamo_client(endpoint);
    let table = format!("bench-{}", uuid::Uuid::now_v7().simple());
    infra::dynamodb::schema::TableSchema::bundled()
        .map_err(|e| e.to_string())?
        .create_table(&client, &table)
        .await
        .map_err(|e| e.to_string())?;
    let store = infra::dynamodb::DynamoStore::new(client, table.clone());
    store
        .upsert_product(&domain::Product {
            id: domain::ProductId::parse(PRODUCT).map_err(|e| e.to_string())?,
            name: "bench fridge".into(),
            price: domain::Money::parse(PRICE).map_err(|e| e.to_string())?,
            stock: 1_000_000,
            stock_source: domain::StockSource::Local,
            active: true,
            reserved: 0,
            shards: 1,
        })
        .await
        .map_err(|e| e.to_string())?;
    store
        .upsert_address(&domain::Address {
            id: domain::AddressId::parse(ADDRESS).map_err(|e| e.to_string())?,
            user_id: domain::UserId::parse(USER).map_err(|e| e.to_string())?,
            fields: serde_json::json!({ "receiver": "张三", "phone": ADDRESS_PHONE, "detail": ADDRESS_DETAIL })
                .as_object()
                .cloned()
                .unwrap_or_default(),
        })
        .await
        .map_err(|e| e.to_string())?;

    let now = services(&store, Arc::new(domain::ports::SystemClock));
    let order_to_read = place(&now).await?.order_id;
    let wanted = |names: &[&str]| if names.iter().any(|n| measured(n)) { events } else { 0 };
    let for_payment = place_many(&now, wanted(&["create_payment"])).await?;
    let for_cancel = place_many(&now, wanted(&["cancel_order"])).await?;
    let mut for_checkout = Vec::new();
    for _ in 0..wanted(&["checkout_payment"]) {
        for_checkout.push(place_paid_by(&now, "wechat").await?);
    }
    let wechatpay = if measured("checkout_payment") {
        Some(fake_wechatpay().await?)
    } else {
        None
    };
    let for_callback = place_many(&now, wanted(&["payment_callback", "process_payment_callbacks"])).await?;
    // A full first page for list_orders.
    if measured("list_orders") {
        place_many(&now, 25).await?;
    }
    // Placed two hours ago with the default 30-minute payment window: due now.
    let due = 10;
    let past = services(&store, Arc::new(Held(Timestamp::now().plus_seconds(-7200))));
    place_many(&past, due).await?;

    let queue_url = e2e::fifo_queue(&e2e::sqs_client(endpoint)).await?;
    Ok(Fixture {
        table,
        queue_url,
        order_to_read,
        for_payment,
        for_checkout,
        wechatpay,
        for_cancel,
        for_callback,
        due,
    })
}

/// A fake WeChat Pay on loopback (it checks every request's signature and signs its answers, as the real
/// one does), and the settings that make `checkout_payment` prepay there with a fresh merchant key.
async fn fake_wechatpay() -> Result<(testkit::fake_wechatpay::FakeWechatPay, Vec<(String, String)>), String> {
    use testkit::providers::{SigningKey, WechatPaySimulator};
    let merchant = SigningKey::generate();
    let platform = WechatPaySimulator::generate("PUB_KEY_ID_BENCH");
    let settings = [
        ("WECHATPAY_MCHID", platform.mchid.clone()),
        ("WECHATPAY_APPID", platform.appid.clone()),
        ("WECHATPAY_APIV3_KEY", platform.apiv3_key.clone()),
        (
            "WECHATPAY_PUBLIC_KEYS",
            format!("{}={}", platform.key_id, platform.key.public_key_base64()),
        ),
        ("WECHATPAY_MERCHANT_PRIVATE_KEY", merchant.pkcs8_base64()),
        ("WECHATPAY_MERCHANT_SERIAL", "BENCH_MERCHANT_SERIAL".to_owned()),
        (
            "WECHATPAY_NOTIFY_URL",
            "https://bench.example/api/payments/callback/wechatpay/".to_owned(),
        ),
    ];
    let mut env: Vec<(String, String)> = settings.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
    let fake = testkit::fake_wechatpay::FakeWechatPay::start(platform, &merchant.public_key_pem())
        .await
        .map_err(|e| e.to_string())?;
    env.push(("WECHATPAY_BASE_URL".to_owned(), fake.base_url.clone()));
    Ok((fake, env))
}

/// An API Gateway HTTP API (payload 2.0) event as `alice`, from the repository's recorded fixture.
pub fn api_event(method: &str, path: &str, route: &str, body: Option<&str>, order_id: Option<&str>) -> Value {
    let mut event: Value =
        serde_json::from_str(include_str!("../../tests/fixtures/apigw/create_order.json")).expect("fixture");
    if let Some(headers) = event["headers"].as_object_mut() {
        headers.remove("idempotency-key");
        headers.remove("content-length");
    }
    event["routeKey"] = Value::from(route);
    event["rawPath"] = Value::from(path);
    event["requestContext"]["routeKey"] = Value::from(route);
    event["requestContext"]["http"]["method"] = Value::from(method);
    event["requestContext"]["http"]["path"] = Value::from(path);
    event["requestContext"]["requestId"] = Value::from(uuid::Uuid::new_v4().to_string());
    event["body"] = body.map_or(Value::Null, Value::from);
    event["isBase64Encoded"] = Value::from(false);
    match order_id {
        Some(id) => event["pathParameters"] = json!({ "order_id": id }),
        None => {
            if let Some(obj) = event.as_object_mut() {
                obj.remove("pathParameters");
            }
        }
    }
    event
}

/// Accepts an API Gateway response with `status`.
pub fn expect_status(status: u16) -> Check {
    Box::new(move |response: &Value| match response["statusCode"].as_u64() {
        Some(s) if s == u64::from(status) => Ok(()),
        _ => Err(format!("expected {status}, got {response}")),
    })
}

fn at(list: &[Placement], n: usize) -> &Placement {
    &list[n % list.len()]
}

/// Every function, fed from `fx`; `proxy` is the counting proxy's endpoint, where DynamoDB and SQS
/// requests go.
pub fn functions(fx: &Fixture, proxy: &str) -> Vec<Function> {
    let base = vec![
        ("TABLE_NAME".to_owned(), fx.table.clone()),
        ("DYNAMODB_ENDPOINT".to_owned(), proxy.to_owned()),
    ];
    let with = |extra: &[(&str, &str)]| {
        let mut env = base.clone();
        env.extend(extra.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
        env
    };
    let create_body = format!(r#"{{"product_id": "{PRODUCT}", "address_id": "{ADDRESS}", "quantity": 1}}"#);
    let batch_body = format!(
        r#"{{"address_id": "{ADDRESS}", "items": [{{"product_id": "{PRODUCT}", "quantity": 1}}, {{"product_id": "{PRODUCT}", "quantity": 2}}]}}"#
    );
    let read = fx.order_to_read.clone();
    let admin_read = read.clone();
    let (for_payment, for_cancel, for_callback) =
        (fx.for_payment.clone(), fx.for_cancel.clone(), fx.for_callback.clone());
    let for_checkout = fx.for_checkout.clone();
    let for_receiver = fx.for_callback.clone();
    let due = fx.due;
    vec![
        Function {
            name: "create_order",
            env: base.clone(),
            event: Box::new(move |_| {
                api_event(
                    "POST",
                    "/api/orders/create_order/",
                    "POST /api/orders/create_order/",
                    Some(&create_body),
                    None,
                )
            }),
            check: expect_status(201),
        },
        Function {
            name: "create_batch_orders",
            env: base.clone(),
            event: Box::new(move |_| {
                api_event(
                    "POST",
                    "/api/orders/create_batch_orders/",
                    "POST /api/orders/create_batch_orders/",
                    Some(&batch_body),
                    None,
                )
            }),
            check: expect_status(201),
        },
        Function {
            name: "get_order",
            env: base.clone(),
            event: Box::new(move |_| {
                api_event(
                    "GET",
                    &format!("/api/orders/{read}/"),
                    "GET /api/orders/{order_id}/",
                    None,
                    Some(&read),
                )
            }),
            check: expect_status(200),
        },
        Function {
            name: "admin_orders",
            env: with(&[("LIST_CURSOR_SECRET", CURSOR_SECRET)]),
            event: Box::new(move |_| {
                let mut event = api_event(
                    "GET",
                    &format!("/api/admin/orders/{admin_read}/"),
                    "GET /api/admin/orders/{order_id}/",
                    None,
                    Some(&admin_read),
                );
                event["requestContext"]["authorizer"]["jwt"]["claims"]["scope"] = Value::from("orders:admin");
                event
            }),
            check: expect_status(200),
        },
        Function {
            name: "create_payment",
            env: base.clone(),
            event: Box::new(move |n| {
                let order = &at(&for_payment, n).order_id;
                api_event(
                    "POST",
                    &format!("/api/orders/{order}/payments/"),
                    "POST /api/orders/{order_id}/payments/",
                    Some(r#"{"payment_method": "wechat"}"#),
                    Some(order),
                )
            }),
            check: expect_status(201),
        },
        Function {
            name: "checkout_payment",
            env: {
                let mut env = base.clone();
                env.extend(fx.wechatpay.iter().flat_map(|(_, settings)| settings.clone()));
                env
            },
            event: Box::new(move |n| {
                let placed = at(&for_checkout, n);
                let (order, payment) = (&placed.order_id, &placed.payment_id);
                let mut event = api_event(
                    "POST",
                    &format!("/api/orders/{order}/payments/{payment}/checkout/"),
                    "POST /api/orders/{order_id}/payments/{payment_id}/checkout/",
                    None,
                    Some(order),
                );
                event["pathParameters"]["payment_id"] = Value::from(payment.as_str());
                event
            }),
            check: expect_status(200),
        },
        Function {
            name: "cancel_order",
            env: base.clone(),
            event: Box::new(move |n| {
                let order = &at(&for_cancel, n).order_id;
                api_event(
                    "POST",
                    &format!("/api/orders/{order}/cancel/"),
                    "POST /api/orders/{order_id}/cancel/",
                    None,
                    Some(order),
                )
            }),
            check: expect_status(200),
        },
        Function {
            name: "list_orders",
            env: with(&[("LIST_CURSOR_SECRET", CURSOR_SECRET)]),
            event: Box::new(|_| {
                let mut event = api_event("GET", "/api/orders/", "GET /api/orders/", None, None);
                event["rawQueryString"] = Value::from("limit=20");
                event["queryStringParameters"] = json!({ "limit": "20" });
                event
            }),
            check: Box::new(|response| {
                expect_status(200)(response)?;
                let body: Value = serde_json::from_str(response["body"].as_str().unwrap_or_default())
                    .map_err(|e| format!("list body: {e}"))?;
                match body["orders"].as_array().map(Vec::len) {
                    Some(20) => Ok(()),
                    _ => Err(format!("expected a page of 20 orders, got {body}")),
                }
            }),
        },
        Function {
            name: "payment_callback",
            env: with(&[
                ("PAYMENT_CALLBACK_SECRETS", CALLBACK_SECRET),
                ("CALLBACK_QUEUE_URL", &fx.queue_url),
                ("SQS_ENDPOINT", proxy),
            ]),
            event: Box::new(move |n| {
                let payment = &at(&for_receiver, n).payment_id;
                let body = json!({
                    "event_id": format!("evt-bench-receiver-{n}"),
                    "payment_id": payment,
                    "provider_txn_id": format!("txn-{n}"),
                    "status": "succeeded",
                    "amount": PRICE,
                    "occurred_at": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                })
                .to_string();
                let t = chrono::Utc::now().timestamp();
                let tag = testkit::generic::sign_with(CALLBACK_SECRET.as_bytes(), t, body.as_bytes());
                let mut event = api_event(
                    "POST",
                    "/api/payments/callback/",
                    "POST /api/payments/callback/",
                    Some(&body),
                    None,
                );
                event["headers"]["x-payment-signature"] = Value::from(format!("t={t},v1={tag}"));
                if let Some(ctx) = event["requestContext"].as_object_mut() {
                    ctx.remove("authorizer");
                }
                event
            }),
            check: expect_status(200),
        },
        Function {
            name: "process_payment_callbacks",
            env: base.clone(),
            event: Box::new(move |n| {
                let payment = &at(&for_callback, n).payment_id;
                let mut event = e2e::event(payment, &format!("evt-bench-{n}"), ReportedStatus::Succeeded, PRICE);
                event.source = EventSource::Generic;
                serde_json::to_value(e2e::sqs_event(&[(&format!("msg-{n}"), &event)], 1)).expect("SQS event")
            }),
            check: Box::new(|response| match response["batchItemFailures"].as_array() {
                Some(failures) if failures.is_empty() => Ok(()),
                _ => Err(format!("expected no failed messages, got {response}")),
            }),
        },
        Function {
            name: "expire_payments",
            env: base.clone(),
            event: Box::new(|_| infra::lambda::scheduled_event("123456789012", "us-east-1", "expire-payments")),
            // The cold invoke finds the due orders; later ones find the index empty.
            check: Box::new(move |report| {
                let ok = report["complete"] == true && report["failed"] == 0;
                let cancelled = report["cancelled"].as_u64().unwrap_or(0) as usize;
                if ok && (cancelled == due || cancelled == 0) {
                    Ok(())
                } else {
                    Err(format!("expected a complete sweep, got {report}"))
                }
            }),
        },
        Function {
            name: "refund_payments",
            env: base,
            event: Box::new(|_| infra::lambda::scheduled_event("123456789012", "us-east-1", "refund-payments")),
            // No refund is due: a query of the work index's refund partition, and one of its attention
            // partition for the oldest item's age, per run.
            check: Box::new(|report| {
                if report["complete"] == true && report["errors"] == 0 && report["found"] == 0 {
                    Ok(())
                } else {
                    Err(format!("expected a complete run with nothing due, got {report}"))
                }
            }),
        },
    ]
}
