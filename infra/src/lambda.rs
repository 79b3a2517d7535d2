//! Running the functions on Lambda: configuration read once, clients built once per cold start, and the
//! runtime loop for each kind of trigger (API Gateway, SQS).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use aws_lambda_events::eventbridge::EventBridgeEvent;
use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use domain::usecases::Services;
use lambda_http::{service_fn, Error, LambdaEvent};

use crate::http::Handler;

/// What the functions read from their environment, once per cold start.
#[derive(Debug, Clone)]
pub struct Config {
    /// `TABLE_NAME`: the orders table.
    pub table: String,
    /// `DYNAMODB_ENDPOINT`: a DynamoDB endpoint other than AWS's (local runs).
    pub dynamodb_endpoint: Option<String>,
    /// `SUPPLIER_BASE_URL`, `SUPPLIER_API_KEY`, `SUPPLIER_TIMEOUT_MS`: the supplier's stock API.
    pub supplier: Option<crate::supplier::SupplierConfig>,
}

impl Config {
    /// Reads the environment; a missing `TABLE_NAME` is a start-up error.
    pub fn from_env() -> Result<Self, Error> {
        Ok(Config {
            table: required("TABLE_NAME")?,
            dynamodb_endpoint: std::env::var("DYNAMODB_ENDPOINT").ok().filter(|v| !v.is_empty()),
            supplier: crate::supplier::SupplierConfig::from_env()?,
        })
    }
}

/// An environment variable that must be set.
pub fn required(name: &str) -> Result<String, Error> {
    match std::env::var(name) {
        Ok(value) if !value.is_empty() => Ok(value),
        _ => Err(format!("{name} is not set").into()),
    }
}

/// The services over the DynamoDB table the configuration names, its connection opened during init.
/// Supplier-held products answer `503` through them: only the functions that place orders need the
/// supplier's API ([`services_with_supplier`]), and only they link its HTTP client.
pub async fn services(config: &Config) -> Services {
    let store = Arc::new(crate::dynamodb::DynamoStore::new(
        crate::dynamodb::client(config.dynamodb_endpoint.as_deref()),
        config.table.clone(),
    ));
    store.warm_up().await;
    let clock: Arc<dyn domain::ports::Clock> = Arc::new(domain::ports::SystemClock);
    let mut services = Services::over(
        store,
        Arc::new(crate::supplier::NoSupplier),
        clock.clone(),
        Arc::new(crate::metrics::EmfMetrics),
    );
    // Warm invocations answer product and address reads from memory (docs/api.md §11).
    services.catalog = Arc::new(crate::cache::CachedCatalog::new(services.catalog, clock));
    services
}

/// [`services`] with the supplier's stock API when `SUPPLIER_BASE_URL` is set (without it,
/// supplier-held products answer `503`): for the functions that place orders.
pub async fn services_with_supplier(config: &Config) -> Services {
    let mut services = services(config).await;
    if let Some(supplier) = &config.supplier {
        match crate::supplier::HttpSupplier::new(supplier.clone()) {
            Ok(client) => services.supplier = Arc::new(client),
            Err(err) => {
                tracing::error!(error = %err, "supplier client could not be built; supplier-held products answer 503")
            }
        }
    }
    services
}

/// Runs an API function over the standard services: logging, configuration, clients, then the loop.
pub async fn run_api_function(handler: Handler) -> Result<(), Error> {
    crate::telemetry::init();
    let services = services(&Config::from_env()?).await;
    run_http(services, handler).await
}

/// [`run_api_function`] for the functions that place orders, which may ask the supplier for stock.
pub async fn run_order_placing_function(handler: Handler) -> Result<(), Error> {
    crate::telemetry::init();
    let services = services_with_supplier(&Config::from_env()?).await;
    run_http(services, handler).await
}

/// [`services`] with the payment providers configured in the environment (docs/api.md §16): for the
/// functions that check out, or let a checked-out payment go (closing its trade first). Unreadable
/// provider settings are a start-up error.
pub async fn services_with_providers(config: &Config) -> Result<Services, Error> {
    let mut services = services(config).await;
    services.gateway = Arc::new(crate::checkout::Providers::from_env()?);
    Ok(services)
}

/// [`run_api_function`] for the functions that talk to the payment providers: the checkout, and the
/// shopper's routes that let a payment go (create_payment, cancel_order).
pub async fn run_provider_function(handler: Handler) -> Result<(), Error> {
    crate::telemetry::init();
    let services = services_with_providers(&Config::from_env()?).await?;
    run_http(services, handler).await
}

/// Runs an API Gateway handler over `state`, built once and shared by every invocation. Each event is
/// guarded ([`crate::http::guard_event`]) before `lambda_http` turns it into a request, so no header a
/// client sent can panic the conversion.
pub async fn run_http<S: Sync + 'static>(state: S, handler: Handler<S>) -> Result<(), Error> {
    use lambda_http::request::LambdaRequest;
    use lambda_http::Service;
    observe();
    let state = &state;
    let answer = move |req| async move { Ok::<_, std::convert::Infallible>(handler(state, req).await) };
    lambda_http::lambda_runtime::run(service_fn(move |mut event: LambdaEvent<LambdaRequest>| {
        crate::http::guard_event(&mut event.payload);
        let context = event.context.clone();
        invocation(context, lambda_http::Adapter::from(service_fn(answer)).call(event))
    }))
    .await
}

/// Installs the metrics recorder for this function (its name from `AWS_LAMBDA_FUNCTION_NAME`); the
/// runners call it before their loop.
fn observe() {
    let name = std::env::var("AWS_LAMBDA_FUNCTION_NAME").unwrap_or_default();
    crate::metrics::install(&name);
}

static COLD_START: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);

/// Runs one invocation: its log lines carry its ids (`crate::telemetry`), the first one counts the cold
/// start, and what it recorded is flushed as one EMF document at its end, before Lambda is told the
/// answer.
async fn invocation<F: Future>(context: lambda_http::lambda_runtime::Context, work: F) -> F::Output {
    use domain::ports::Metrics as _;
    let cold_start = COLD_START.swap(false, std::sync::atomic::Ordering::Relaxed);
    crate::telemetry::begin_invocation(crate::telemetry::Invocation {
        cold_start,
        function_request_id: context.request_id.clone(),
        xray_trace_id: context.xray_trace_id.clone(),
        correlation_id: None,
    });
    if cold_start {
        crate::metrics::EmfMetrics.count(domain::ports::Metric::ColdStart);
    }
    let answer = work.await;
    let correlation = crate::telemetry::current_invocation().and_then(|i| i.correlation_id.clone());
    crate::metrics::flush(&[
        ("function_request_id", Some(context.request_id.as_str())),
        ("xray_trace_id", context.xray_trace_id.as_deref()),
        ("correlation_id", correlation.as_deref()),
    ]);
    crate::telemetry::end_invocation();
    answer
}

/// What an SQS-triggered function's handler is: its state and one batch in, the failed messages out.
pub type SqsHandler<S> = for<'a> fn(&'a S, SqsEvent) -> Pin<Box<dyn Future<Output = SqsBatchResponse> + Send + 'a>>;

/// Runs an SQS handler (with `ReportBatchItemFailures`) over `state`.
pub async fn run_sqs<S: Sync + 'static>(state: S, handler: SqsHandler<S>) -> Result<(), Error> {
    observe();
    let state = &state;
    lambda_http::lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| {
        invocation(event.context, async move {
            Ok::<_, Error>(handler(state, event.payload).await)
        })
    }))
    .await
}

/// What a scheduled function's handler is: its state, the EventBridge event and the invocation's
/// deadline in; a report (any serializable value) or an error out.
pub type ScheduledHandler<S, R, E> = for<'a> fn(
    &'a S,
    EventBridgeEvent,
    std::time::SystemTime,
) -> Pin<Box<dyn Future<Output = Result<R, E>> + Send + 'a>>;

/// Runs a handler for an EventBridge schedule over `state`, telling it when the invocation times out.
pub async fn run_scheduled<S, R, E>(state: S, handler: ScheduledHandler<S, R, E>) -> Result<(), Error>
where
    S: Sync + 'static,
    R: serde::Serialize + 'static,
    E: std::error::Error + Send + Sync + 'static,
{
    observe();
    let state = &state;
    lambda_http::lambda_runtime::run(service_fn(move |event: LambdaEvent<EventBridgeEvent>| {
        let deadline = std::time::UNIX_EPOCH + std::time::Duration::from_millis(event.context.deadline);
        invocation(event.context, async move {
            handler(state, event.payload, deadline).await.map_err(Error::from)
        })
    }))
    .await
}

/// The event an EventBridge schedule delivers (`rate(…)` rules): for the local server's ticker and the
/// benchmark harness.
#[cfg(feature = "local")]
pub fn scheduled_event(account: &str, region: &str, rule: &str) -> serde_json::Value {
    serde_json::json!({
        "version": "0",
        "id": uuid::Uuid::new_v4().to_string(),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": account,
        "time": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "region": region,
        "resources": [format!("arn:aws:events:{region}:{account}:rule/{rule}")],
        "detail": {},
    })
}
