//! Logging: one JSON line per event through `tracing`, with the keys of Powertools for AWS Lambda
//! (`level`, `message`, `timestamp`, `service`, `cold_start`, `function_name`, `function_request_id`,
//! `xray_trace_id`, and the API request id as `correlation_id`), then the fields of the spans the event
//! is in (outermost first) and the event's own fields. Levels come from `RUST_LOG` (default `info`).
//!
//! The invocation keys come from [`Invocation`], set by the Lambda runner around each invocation (an
//! execution environment runs one invocation at a time); outside Lambda (the local server, the tests)
//! they are left out.

use std::fmt::Write as _;
use std::io::Write as _;
use std::sync::{Arc, OnceLock, RwLock};

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Subscriber};
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

/// What every line logged during one invocation says about it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Invocation {
    /// The execution environment's first invocation.
    pub cold_start: bool,
    /// Lambda's request id.
    pub function_request_id: String,
    /// The X-Ray trace header, when Lambda passed one.
    pub xray_trace_id: Option<String>,
    /// The API Gateway request id, for API invocations.
    pub correlation_id: Option<String>,
}

static INVOCATION: RwLock<Option<Arc<Invocation>>> = RwLock::new(None);
static PROCESS: OnceLock<(String, Option<String>)> = OnceLock::new();

/// Marks the start of an invocation: every line logged until [`end_invocation`] carries it.
pub fn begin_invocation(invocation: Invocation) {
    if let Ok(mut current) = INVOCATION.write() {
        *current = Some(Arc::new(invocation));
    }
}

/// Records the API request id of the invocation under way (nothing outside one).
pub fn set_correlation_id(id: &str) {
    if let Ok(mut current) = INVOCATION.write() {
        if let Some(invocation) = current.as_mut() {
            Arc::make_mut(invocation).correlation_id = Some(id.to_owned());
        }
    }
}

/// The invocation under way, if any.
pub fn current_invocation() -> Option<Arc<Invocation>> {
    INVOCATION.read().ok().and_then(|current| current.clone())
}

/// Marks the end of the invocation under way.
pub fn end_invocation() {
    if let Ok(mut current) = INVOCATION.write() {
        *current = None;
    }
}

/// Installs the JSON subscriber on stdout once; later calls do nothing. `RUST_LOG` takes a level
/// (`info`) or per-target levels (`warn,infra=debug`), as `tracing_subscriber::filter::Targets` parses
/// them: the span and field filters of `EnvFilter` need a regex engine the functions do without
/// (BENCHMARKS.md). A value that does not parse is ignored for the default.
pub fn init() {
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|value| value.parse::<Targets>().ok())
        .unwrap_or_else(|| Targets::new().with_default(LevelFilter::INFO));
    let _ = tracing_subscriber::registry()
        .with(layer(std::io::stdout).with_filter(filter))
        .try_init();
}

/// The layer writing the lines to `writer` (stdout in the functions; a buffer in tests).
pub fn layer<W: for<'w> MakeWriter<'w> + Send + Sync + 'static>(writer: W) -> JsonLines<W> {
    let (service, function_name) = PROCESS.get_or_init(|| {
        (
            crate::metrics::service_name(),
            std::env::var("AWS_LAMBDA_FUNCTION_NAME")
                .ok()
                .filter(|name| !name.is_empty()),
        )
    });
    JsonLines {
        writer,
        service: service.clone(),
        function_name: function_name.clone(),
    }
}

/// Writes each event as one JSON line (see the module's documentation).
pub struct JsonLines<W> {
    writer: W,
    service: String,
    function_name: Option<String>,
}

/// A span's fields, kept in its extensions.
struct SpanFields(Map<String, Value>);

impl<S, W> Layer<S> for JsonLines<W>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut fields = Map::new();
        attrs.record(&mut Fields(&mut fields));
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(SpanFields(fields));
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id) {
            if let Some(fields) = span.extensions_mut().get_mut::<SpanFields>() {
                values.record(&mut Fields(&mut fields.0));
            }
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let mut line = Map::new();
        line.insert("level".into(), event.metadata().level().as_str().into());
        line.insert("message".into(), Value::Null);
        line.insert(
            "timestamp".into(),
            chrono::Utc::now()
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
                .into(),
        );
        line.insert("service".into(), self.service.clone().into());
        if let Some(name) = &self.function_name {
            line.insert("function_name".into(), name.clone().into());
        }
        if let Some(invocation) = current_invocation() {
            line.insert("cold_start".into(), invocation.cold_start.into());
            line.insert(
                "function_request_id".into(),
                invocation.function_request_id.clone().into(),
            );
            if let Some(trace) = &invocation.xray_trace_id {
                line.insert("xray_trace_id".into(), trace.clone().into());
            }
            if let Some(id) = &invocation.correlation_id {
                line.insert("correlation_id".into(), id.clone().into());
            }
        }
        line.insert("logger".into(), event.metadata().target().into());
        if let Some(scope) = ctx.event_scope(event) {
            for span in scope.from_root() {
                if let Some(fields) = span.extensions().get::<SpanFields>() {
                    for (key, value) in &fields.0 {
                        line.insert(key.clone(), value.clone());
                    }
                }
            }
        }
        event.record(&mut Fields(&mut line));
        if line.get("message").is_some_and(Value::is_null) {
            line.insert("message".into(), "".into());
        }
        let mut text = Value::Object(line).to_string();
        text.push('\n');
        let _ = self.writer.make_writer().write_all(text.as_bytes());
    }
}

/// Records fields into a JSON object: numbers and booleans as themselves, errors with their whole source
/// chain, everything else as its `Display` (for `%value`) or `Debug` text.
struct Fields<'a>(&'a mut Map<String, Value>);

impl Visit for Fields<'_> {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.0
            .insert(field.name().into(), domain::error::error_chain(value).into());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let mut text = String::new();
        let _ = write!(text, "{value:?}");
        self.0.insert(field.name().into(), text.into());
    }
}
