//! The benchmark harness: a Lambda Runtime API on loopback (`/2018-06-01/runtime/invocation/next`,
//! `/response`, `/error`, `/init/error`) that starts a built `bootstrap` with the environment Lambda sets,
//! feeds it events, checks each response, and measures the process as Lambda would run it.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

/// What one function's run measured.
#[derive(Debug, Clone)]
pub struct Measurement {
    /// The function.
    pub name: String,
    /// Size of the bootstrap file.
    pub size_bytes: u64,
    /// From spawning the process to its first `/next`.
    pub first_next: Duration,
    /// From spawning the process to its first response.
    pub first_response: Duration,
    /// Warm invoke latency (event handed out to response received), median.
    pub warm_p50: Duration,
    /// Warm invoke latency, 99th percentile.
    pub warm_p99: Duration,
    /// CPU (user + system) per warm invoke.
    pub cpu_per_invoke: Duration,
    /// Peak resident set (VmHWM), in KiB.
    pub peak_rss_kib: u64,
    /// DynamoDB requests per warm invoke, counted at a proxy in front of the emulator.
    pub dynamodb_requests_per_invoke: f64,
    /// Warm invokes measured.
    pub invokes: usize,
}

struct Invocation {
    id: String,
    payload: String,
}

#[derive(Default)]
struct Runtime {
    first_next: Mutex<Option<Instant>>,
    events: Mutex<Option<mpsc::Receiver<Invocation>>>,
    waiting: Mutex<HashMap<String, oneshot::Sender<Result<String, String>>>>,
    init_error: Mutex<Option<String>>,
}

async fn next(State(rt): State<Arc<Runtime>>) -> Response {
    rt.first_next.lock().unwrap().get_or_insert_with(Instant::now);
    let mut events = rt.events.lock().unwrap().take().expect("one /next at a time");
    let invocation = events.recv().await;
    *rt.events.lock().unwrap() = Some(events);
    let Some(invocation) = invocation else {
        return StatusCode::GONE.into_response();
    };
    let deadline = chrono::Utc::now().timestamp_millis() + 60_000;
    (
        [
            ("lambda-runtime-aws-request-id", invocation.id),
            ("lambda-runtime-deadline-ms", deadline.to_string()),
            (
                "lambda-runtime-invoked-function-arn",
                "arn:aws:lambda:us-east-1:123456789012:function:bench".to_owned(),
            ),
            (
                "lambda-runtime-trace-id",
                "Root=1-00000000-000000000000000000000000".to_owned(),
            ),
            ("content-type", "application/json".to_owned()),
        ],
        invocation.payload,
    )
        .into_response()
}

async fn respond(State(rt): State<Arc<Runtime>>, UrlPath(id): UrlPath<String>, body: Bytes) -> StatusCode {
    if let Some(tx) = rt.waiting.lock().unwrap().remove(&id) {
        let _ = tx.send(Ok(String::from_utf8_lossy(&body).into_owned()));
    }
    StatusCode::ACCEPTED
}

async fn error(State(rt): State<Arc<Runtime>>, UrlPath(id): UrlPath<String>, body: Bytes) -> StatusCode {
    if let Some(tx) = rt.waiting.lock().unwrap().remove(&id) {
        let _ = tx.send(Err(String::from_utf8_lossy(&body).into_owned()));
    }
    StatusCode::ACCEPTED
}

async fn init_error(State(rt): State<Arc<Runtime>>, _: HeaderMap, body: Bytes) -> StatusCode {
    *rt.init_error.lock().unwrap() = Some(String::from_utf8_lossy(&body).into_owned());
    StatusCode::ACCEPTED
}

/// A proxy in front of the DynamoDB emulator that counts the requests going through it.
pub struct CountingProxy {
    /// Its endpoint.
    pub endpoint: String,
    count: Arc<AtomicUsize>,
}

impl CountingProxy {
    /// Starts one forwarding to `upstream`.
    pub async fn start(upstream: String) -> std::io::Result<Self> {
        let count = Arc::new(AtomicUsize::new(0));
        let seen = count.clone();
        let client = reqwest::Client::new();
        let app = Router::new().fallback(move |headers: HeaderMap, body: Bytes| {
            let (seen, client, upstream) = (seen.clone(), client.clone(), upstream.clone());
            async move {
                seen.fetch_add(1, Ordering::SeqCst);
                let mut request = client.post(&upstream).body(body);
                for (name, value) in &headers {
                    if name != "host" && name != "content-length" {
                        request = request.header(name, value);
                    }
                }
                match request.send().await {
                    Ok(response) => {
                        let status =
                            StatusCode::from_u16(response.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
                        let text = response.text().await.unwrap_or_default();
                        (status, [("content-type", "application/x-amz-json-1.0")], text).into_response()
                    }
                    Err(_) => StatusCode::BAD_GATEWAY.into_response(),
                }
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let endpoint = format!("http://{}", listener.local_addr()?);
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok(CountingProxy { endpoint, count })
    }

    /// Requests so far.
    pub fn count(&self) -> usize {
        self.count.load(Ordering::SeqCst)
    }
}

/// User + system CPU of a process (all its threads), from `/proc`.
fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let (utime, stime): (u64, u64) = (fields.get(11)?.parse().ok()?, fields.get(12)?.parse().ok()?);
    // Linux reports in clock ticks of 1/100 s on every common configuration.
    Some(Duration::from_millis((utime + stime) * 10))
}

/// Peak resident set of a process, in KiB.
fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Runs `bootstrap` as Lambda would, with `env` added to Lambda's own variables: one cold invoke, then
/// `invokes` warm ones, every event from `event` (called with the invoke's number); `check` must accept
/// every response.
pub async fn measure(
    name: &str,
    bootstrap: &Path,
    env: &[(String, String)],
    proxy: &CountingProxy,
    invokes: usize,
    event: impl Fn(usize) -> Value,
    check: impl Fn(&Value) -> Result<(), String>,
) -> Result<Measurement, String> {
    let size_bytes = std::fs::metadata(bootstrap)
        .map_err(|e| format!("{}: {e}", bootstrap.display()))?
        .len();
    let (tx, rx) = mpsc::channel::<Invocation>(1);
    let rt = Arc::new(Runtime {
        events: Mutex::new(Some(rx)),
        ..Default::default()
    });
    let app = Router::new()
        .route("/2018-06-01/runtime/invocation/next", get(next))
        .route("/2018-06-01/runtime/invocation/{id}/response", post(respond))
        .route("/2018-06-01/runtime/invocation/{id}/error", post(error))
        .route("/2018-06-01/runtime/init/error", post(init_error))
        .with_state(rt.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    let api = listener.local_addr().map_err(|e| e.to_string())?.to_string();
    tokio::spawn(async move { axum::serve(listener, app).await });

    let spawned = Instant::now();
    let mut child = tokio::process::Command::new(bootstrap)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("AWS_LAMBDA_RUNTIME_API", &api)
        .env("AWS_LAMBDA_FUNCTION_NAME", name)
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_LAMBDA_LOG_GROUP_NAME", format!("/aws/lambda/{name}"))
        .env("AWS_LAMBDA_LOG_STREAM_NAME", "bench")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "bench")
        .env("AWS_SECRET_ACCESS_KEY", "bench")
        .env("RUST_LOG", "warn")
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("spawn {}: {e}", bootstrap.display()))?;
    let pid = child.id().ok_or("no pid")?;

    let invoke = |n: usize| {
        let (rt, tx, payload) = (rt.clone(), tx.clone(), event(n).to_string());
        async move {
            let id = uuid::Uuid::new_v4().to_string();
            let (done, answer) = oneshot::channel();
            rt.waiting.lock().unwrap().insert(id.clone(), done);
            let sent = Instant::now();
            tx.send(Invocation { id, payload })
                .await
                .map_err(|_| "runtime gone".to_owned())?;
            let answer = tokio::time::timeout(Duration::from_secs(30), answer)
                .await
                .map_err(|_| "no response within 30 s".to_owned())?
                .map_err(|_| "response channel dropped".to_owned())?;
            let body = answer.map_err(|e| format!("invocation error: {e}"))?;
            let value: Value = serde_json::from_str(&body).map_err(|e| format!("response not JSON: {e}"))?;
            Ok::<_, String>((sent.elapsed(), value))
        }
    };

    let (_, cold) = invoke(0)
        .await
        .map_err(|e| match rt.init_error.lock().unwrap().clone() {
            Some(init) => format!("{e}; init error: {init}"),
            None => e,
        })?;
    let first_response = spawned.elapsed();
    check(&cold)?;
    let first_next = rt.first_next.lock().unwrap().map_or(Duration::ZERO, |t| t - spawned);

    let cpu_before = cpu_time(pid).ok_or("cannot read /proc stat")?;
    let requests_before = proxy.count();
    let mut latencies = Vec::with_capacity(invokes);
    for n in 1..=invokes {
        let (latency, response) = invoke(n).await?;
        check(&response)?;
        latencies.push(latency);
    }
    let cpu = cpu_time(pid)
        .ok_or("cannot read /proc stat")?
        .saturating_sub(cpu_before);
    let requests = proxy.count() - requests_before;
    let peak_rss_kib = peak_rss_kib(pid).unwrap_or(0);
    let _ = child.kill().await;
    latencies.sort();
    let pick = |q: f64| latencies[((latencies.len() as f64 - 1.0) * q).round() as usize];
    Ok(Measurement {
        name: name.to_owned(),
        size_bytes,
        first_next,
        first_response,
        warm_p50: pick(0.5),
        warm_p99: pick(0.99),
        cpu_per_invoke: cpu / u32::try_from(invokes.max(1)).unwrap_or(1),
        peak_rss_kib,
        dynamodb_requests_per_invoke: requests as f64 / invokes.max(1) as f64,
        invokes,
    })
}

/// A markdown table row for a measurement.
pub fn row(m: &Measurement) -> String {
    let ms = |d: Duration| format!("{:.2}", d.as_secs_f64() * 1000.0);
    format!(
        "| {} | {:.1} MB | {} ms | {} ms | {} / {} ms | {} ms | {:.1} MB | {:.2} | {} |",
        m.name,
        m.size_bytes as f64 / 1_000_000.0,
        ms(m.first_next),
        ms(m.first_response),
        ms(m.warm_p50),
        ms(m.warm_p99),
        ms(m.cpu_per_invoke),
        m.peak_rss_kib as f64 / 1024.0,
        m.dynamodb_requests_per_invoke,
        m.invokes
    )
}

/// An API Gateway HTTP API (payload 2.0) event as `alice`, from the repository's recorded fixture.
pub fn api_event(method: &str, path: &str, route: &str, body: Option<&Value>, order_id: Option<&str>) -> Value {
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
    event["body"] = body.map_or(Value::Null, |b| Value::from(b.to_string()));
    event["isBase64Encoded"] = Value::from(false);
    match order_id {
        Some(id) => event["pathParameters"] = serde_json::json!({ "order_id": id }),
        None => {
            if let Some(obj) = event.as_object_mut() {
                obj.remove("pathParameters");
            }
        }
    }
    event
}

/// A fresh table in the emulator with a product (1,000,000 in stock) and alice's address, and an order
/// to read: (table name, order id).
pub async fn prepare(endpoint: &str) -> Result<(String, String), String> {
    use domain::ports::CatalogAdmin;
    let client = e2e::dynamo_client(endpoint);
    let table = format!("bench-{}", uuid::Uuid::now_v7().simple());
    infra::dynamodb::schema::TableSchema::bundled()
        .map_err(|e| e.to_string())?
        .create_table(&client, &table)
        .await
        .map_err(|e| e.to_string())?;
    let store = infra::dynamodb::DynamoStore::new(client, table.clone());
    let product = domain::Product {
        id: domain::ProductId::parse("bench-fridge").unwrap(),
        name: "bench fridge".into(),
        price: domain::Money::parse("10.00").unwrap(),
        stock: 1_000_000,
        stock_source: domain::StockSource::Local,
        active: true,
    };
    store.upsert_product(&product).await.map_err(|e| e.to_string())?;
    let address = domain::Address {
        id: domain::AddressId::parse("bench-home").unwrap(),
        user_id: domain::UserId::parse("alice").unwrap(),
        fields: serde_json::Map::new(),
    };
    store.upsert_address(&address).await.map_err(|e| e.to_string())?;
    let services = domain::usecases::Services {
        catalog: std::sync::Arc::new(store.clone()),
        orders: std::sync::Arc::new(store.clone()),
        updates: std::sync::Arc::new(store.clone()),
        expiry: std::sync::Arc::new(store.clone()),
        list: std::sync::Arc::new(store.clone()),
        supplier: std::sync::Arc::new(infra::supplier::NoSupplier),
        clock: std::sync::Arc::new(domain::ports::SystemClock),
        metrics: std::sync::Arc::new(infra::metrics::EmfMetrics),
    };
    let cmd = domain::usecases::request::parse_create_order(
        br#"{"product_id": "bench-fridge", "address_id": "bench-home", "quantity": 1}"#,
    )
    .map_err(|e| e.to_string())?;
    let user = domain::UserId::parse("alice").unwrap();
    let placed = domain::usecases::create_orders(&services, &user, &cmd, None)
        .await
        .map_err(|e| e.to_string())?;
    let domain::usecases::Placed::Created(created) = placed else {
        return Err("no order created".into());
    };
    Ok((table, created.orders[0].id.to_string()))
}

/// Makes the event of invoke `n`.
pub type EventMaker = Box<dyn Fn(usize) -> Value + Send + Sync>;

/// The functions the harness knows how to feed: name, event for invoke n, expected status.
pub fn api_functions(order_id: &str) -> Vec<(&'static str, EventMaker, u16)> {
    let order = order_id.to_owned();
    vec![
        (
            "create_order",
            Box::new(|_| {
                let body = serde_json::json!({"product_id": "bench-fridge", "address_id": "bench-home", "quantity": 1});
                api_event(
                    "POST",
                    "/api/orders/create_order/",
                    "POST /api/orders/create_order/",
                    Some(&body),
                    None,
                )
            }),
            201,
        ),
        (
            "get_order",
            Box::new(move |_| {
                let path = format!("/api/orders/{order}/");
                api_event("GET", &path, "GET /api/orders/{order_id}/", None, Some(&order))
            }),
            200,
        ),
    ]
}

/// Accepts an API Gateway response with `status`.
pub fn expect_status(status: u16) -> impl Fn(&Value) -> Result<(), String> {
    move |response: &Value| match response["statusCode"].as_u64() {
        Some(s) if s == u64::from(status) => Ok(()),
        _ => Err(format!("expected {status}, got {response}")),
    }
}
