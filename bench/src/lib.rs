//! The benchmark harness: a Lambda Runtime API on loopback (`/2018-06-01/runtime/invocation/next`,
//! `/response`, `/error`, `/init/error`) that starts a built `bootstrap` with the environment Lambda sets,
//! feeds it events, checks each response, and measures the process as Lambda would run it.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
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
    /// Of that, the time the emulator took to answer the process's requests (a real DynamoDB answers in
    /// single-digit milliseconds too, but not the same ones).
    pub first_response_emulator: Duration,
    /// Warm invoke latency (event handed out to response received), median.
    pub warm_p50: Duration,
    /// Warm invoke latency, 99th percentile.
    pub warm_p99: Duration,
    /// CPU (user + system) per warm invoke.
    pub cpu_per_invoke: Duration,
    /// Peak resident set (VmHWM), in KiB.
    pub peak_rss_kib: u64,
    /// AWS (DynamoDB and SQS) requests per warm invoke, counted at a proxy in front of the emulator.
    pub aws_requests_per_invoke: f64,
    /// Connections the process opened to AWS before its first `/next` (during init).
    pub connections_at_init: usize,
    /// Connections it opened while answering its first invoke.
    pub connections_at_first_invoke: usize,
    /// Connections it opened during the warm invokes.
    pub connections_warm: usize,
    /// Warm invokes measured.
    pub invokes: usize,
}

struct Invocation {
    id: String,
    payload: String,
}

#[derive(Default)]
struct Runtime {
    first_next: Mutex<Option<(Instant, usize)>>,
    connections: Arc<AtomicUsize>,
    events: Mutex<Option<mpsc::Receiver<Invocation>>>,
    waiting: Mutex<HashMap<String, oneshot::Sender<Result<String, String>>>>,
    init_error: Mutex<Option<String>>,
}

async fn next(State(rt): State<Arc<Runtime>>) -> Response {
    rt.first_next
        .lock()
        .unwrap()
        .get_or_insert_with(|| (Instant::now(), rt.connections.load(Ordering::SeqCst)));
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

/// A proxy in front of the AWS emulator that counts the requests going through it and the connections
/// opened to it.
pub struct CountingProxy {
    /// Its endpoint.
    pub endpoint: String,
    count: Arc<AtomicUsize>,
    connections: Arc<AtomicUsize>,
    upstream_micros: Arc<AtomicU64>,
    calls: Arc<Mutex<Vec<AwsCall>>>,
}

/// One request a function sent to AWS, as the proxy saw it.
#[derive(Debug, Clone)]
pub struct AwsCall {
    /// `X-Amz-Target`: `DynamoDB_20120810.TransactWriteItems`, `AmazonSQS.SendMessage`, ...
    pub target: String,
    /// The JSON body.
    pub body: Value,
}

impl CountingProxy {
    /// Starts one forwarding to `upstream`.
    pub async fn start(upstream: String) -> std::io::Result<Self> {
        let count = Arc::new(AtomicUsize::new(0));
        let seen = count.clone();
        let upstream_micros = Arc::new(AtomicU64::new(0));
        let waited = upstream_micros.clone();
        let client = reqwest::Client::new();
        let calls: Arc<Mutex<Vec<AwsCall>>> = Arc::default();
        let recorded = calls.clone();
        let app = Router::new().fallback(move |headers: HeaderMap, body: Bytes| {
            let (seen, waited, client, upstream) = (seen.clone(), waited.clone(), client.clone(), upstream.clone());
            let recorded = recorded.clone();
            async move {
                seen.fetch_add(1, Ordering::SeqCst);
                let target = headers
                    .get("x-amz-target")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned();
                let parsed = serde_json::from_slice(&body).unwrap_or(Value::Null);
                recorded.lock().unwrap().push(AwsCall { target, body: parsed });
                let started = Instant::now();
                let mut request = client.post(&upstream).body(body);
                for (name, value) in &headers {
                    if name != "host" && name != "content-length" {
                        request = request.header(name, value);
                    }
                }
                let response = match request.send().await {
                    Ok(response) => {
                        let status =
                            StatusCode::from_u16(response.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
                        let text = response.text().await.unwrap_or_default();
                        (status, [("content-type", "application/x-amz-json-1.0")], text).into_response()
                    }
                    Err(_) => StatusCode::BAD_GATEWAY.into_response(),
                };
                waited.fetch_add(started.elapsed().as_micros() as u64, Ordering::SeqCst);
                response
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let endpoint = format!("http://{}", listener.local_addr()?);
        let connections = Arc::new(AtomicUsize::new(0));
        let opened = connections.clone();
        let listener = axum::serve::ListenerExt::tap_io(listener, move |_| {
            opened.fetch_add(1, Ordering::SeqCst);
        });
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok(CountingProxy {
            endpoint,
            count,
            connections,
            upstream_micros,
            calls,
        })
    }

    /// Every request forwarded so far, in order.
    pub fn calls(&self) -> Vec<AwsCall> {
        self.calls.lock().unwrap().clone()
    }

    /// Time spent waiting on the emulator so far (requests forwarded one after another add up).
    pub fn upstream_time(&self) -> Duration {
        Duration::from_micros(self.upstream_micros.load(Ordering::SeqCst))
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// Requests so far.
    pub fn count(&self) -> usize {
        self.count.load(Ordering::SeqCst)
    }
}

/// CPU time of a process, all its threads, in nanoseconds: the scheduler's own accounting
/// (`/proc/<pid>/task/*/schedstat`, first field), far finer than the 10 ms ticks of `stat`'s utime and
/// stime, which it otherwise equals (user + system time on the CPU). A thread that exited before the
/// reading is not counted; the functions' threads live as long as the process.
fn cpu_time(pid: u32) -> Option<Duration> {
    let mut total = 0u64;
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).ok()? {
        let stat = std::fs::read_to_string(task.ok()?.path().join("schedstat")).ok()?;
        total += stat.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(Duration::from_nanos(total))
}

/// Peak resident set of a process, in KiB.
fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The process a measurement runs: its bootstrap, its environment beyond Lambda's own, and where its
/// stdout goes (a file the caller reads, or nowhere).
#[derive(Debug, Clone, Copy)]
pub struct Launch<'a> {
    /// The bootstrap binary.
    pub bootstrap: &'a Path,
    /// Environment beyond Lambda's own.
    pub env: &'a [(String, String)],
    /// Where its stdout is written; `None` drops it.
    pub log: Option<&'a Path>,
}

/// Runs `bootstrap` as Lambda would, with `env` added to Lambda's own variables: one cold invoke, then
/// `invokes` warm ones, every event from `event` (called with the invoke's number); `check` must accept
/// every response.
pub async fn measure(
    name: &str,
    launch: Launch<'_>,
    proxy: &CountingProxy,
    invokes: usize,
    event: impl Fn(usize) -> Value,
    check: impl Fn(&Value) -> Result<(), String>,
) -> Result<Measurement, String> {
    let Launch { bootstrap, env, log } = launch;
    let size_bytes = std::fs::metadata(bootstrap)
        .map_err(|e| format!("{}: {e}", bootstrap.display()))?
        .len();
    let (tx, rx) = mpsc::channel::<Invocation>(1);
    let rt = Arc::new(Runtime {
        events: Mutex::new(Some(rx)),
        connections: proxy.connections.clone(),
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

    let connections_at_spawn = proxy.connections();
    let emulator_at_spawn = proxy.upstream_time();
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
        .env("RUST_LOG", "info")
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdout(match log {
            Some(path) => std::fs::File::create(path)
                .map_err(|e| format!("{}: {e}", path.display()))?
                .into(),
            None => std::process::Stdio::null(),
        })
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
    let connections_after_first = proxy.connections();
    let first_response_emulator = proxy.upstream_time().saturating_sub(emulator_at_spawn);
    check(&cold)?;
    let (first_next, connections_at_next) = rt
        .first_next
        .lock()
        .unwrap()
        .map_or((Duration::ZERO, connections_at_spawn), |(t, c)| (t - spawned, c));

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
    let connections_warm = proxy.connections() - connections_after_first;
    let peak_rss_kib = peak_rss_kib(pid).unwrap_or(0);
    let _ = child.kill().await;
    latencies.sort();
    let pick = |q: f64| latencies[((latencies.len() as f64 - 1.0) * q).round() as usize];
    Ok(Measurement {
        name: name.to_owned(),
        size_bytes,
        first_next,
        first_response,
        first_response_emulator,
        warm_p50: pick(0.5),
        warm_p99: pick(0.99),
        cpu_per_invoke: cpu / u32::try_from(invokes.max(1)).unwrap_or(1),
        peak_rss_kib,
        aws_requests_per_invoke: requests as f64 / invokes.max(1) as f64,
        connections_at_init: connections_at_next - connections_at_spawn,
        connections_at_first_invoke: connections_after_first - connections_at_next,
        connections_warm,
        invokes,
    })
}

/// Per figure, the median of several runs of one function (connections: the most any run opened).
pub fn median(runs: &[Measurement]) -> Option<Measurement> {
    fn mid<T: Copy + PartialOrd>(mut v: Vec<T>) -> T {
        v.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
        v[v.len() / 2]
    }
    let first = runs.first()?;
    let of = |f: fn(&Measurement) -> Duration| mid(runs.iter().map(f).collect());
    Some(Measurement {
        name: first.name.clone(),
        size_bytes: first.size_bytes,
        first_next: of(|m| m.first_next),
        first_response: of(|m| m.first_response),
        first_response_emulator: of(|m| m.first_response_emulator),
        warm_p50: of(|m| m.warm_p50),
        warm_p99: of(|m| m.warm_p99),
        cpu_per_invoke: of(|m| m.cpu_per_invoke),
        peak_rss_kib: mid(runs.iter().map(|m| m.peak_rss_kib).collect()),
        aws_requests_per_invoke: mid(runs.iter().map(|m| m.aws_requests_per_invoke).collect()),
        connections_at_init: runs.iter().map(|m| m.connections_at_init).max().unwrap_or(0),
        connections_at_first_invoke: runs.iter().map(|m| m.connections_at_first_invoke).max().unwrap_or(0),
        connections_warm: runs.iter().map(|m| m.connections_warm).max().unwrap_or(0),
        invokes: first.invokes,
    })
}

/// The measurement table's header.
pub const TABLE_HEADER: &str = "| function | bootstrap | spawn → first /next | spawn → first response (of which the emulator) | warm p50 / p99 | CPU per warm invoke | peak RSS | AWS requests per invoke | connections: init / first invoke / warm | invokes |\n|---|---|---|---|---|---|---|---|---|---|";

/// A markdown table row for a measurement.
pub fn row(m: &Measurement) -> String {
    let ms = |d: Duration| format!("{:.2}", d.as_secs_f64() * 1000.0);
    format!(
        "| {} | {:.2} MB | {} ms | {} ms ({} ms) | {} / {} ms | {:.3} ms | {:.1} MB | {:.2} | {} / {} / {} | {} |",
        m.name,
        m.size_bytes as f64 / 1_000_000.0,
        ms(m.first_next),
        ms(m.first_response),
        ms(m.first_response_emulator),
        ms(m.warm_p50),
        ms(m.warm_p99),
        m.cpu_per_invoke.as_secs_f64() * 1000.0,
        m.peak_rss_kib as f64 / 1024.0,
        m.aws_requests_per_invoke,
        m.connections_at_init,
        m.connections_at_first_invoke,
        m.connections_warm,
        m.invokes
    )
}

/// The targets: bootstrap ≤ 5 MB, CPU per warm invoke ≤ 0.5 ms, spawn → first response ≤ 15 ms,
/// peak RSS ≤ 10 MB; a row saying which a measurement meets.
pub fn target_row(m: &Measurement) -> String {
    let mark = |ok: bool| if ok { "met" } else { "missed" };
    let own = m.first_response.saturating_sub(m.first_response_emulator);
    format!(
        "| {} | {:.2} MB {} | {:.3} ms {} | {:.2} ms {}; {:.2} ms {} without the emulator's {:.2} ms | {:.1} MB {} |",
        m.name,
        m.size_bytes as f64 / 1_000_000.0,
        mark(m.size_bytes <= 5_000_000),
        m.cpu_per_invoke.as_secs_f64() * 1000.0,
        mark(m.cpu_per_invoke <= Duration::from_micros(500)),
        m.first_response.as_secs_f64() * 1000.0,
        mark(m.first_response <= Duration::from_millis(15)),
        own.as_secs_f64() * 1000.0,
        mark(own <= Duration::from_millis(15)),
        m.first_response_emulator.as_secs_f64() * 1000.0,
        m.peak_rss_kib as f64 / 1024.0,
        mark(m.peak_rss_kib <= 10 * 1024),
    )
}

pub mod fixture;
pub mod iam;
