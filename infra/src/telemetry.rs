//! Logging: JSON lines through `tracing`, levels from `RUST_LOG` (default `info`).

use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Installs the JSON subscriber once, without timestamps (CloudWatch stamps every line); later calls do
/// nothing. `RUST_LOG` takes a level (`info`) or per-target levels (`warn,infra=debug`), as
/// `tracing_subscriber::filter::Targets` parses them: the span and field filters of `EnvFilter` need a
/// regex engine the functions do without (BENCHMARKS.md). A value that does not parse is ignored for the
/// default.
pub fn init() {
    install(false);
}

/// [`init`] with a timestamp on every line, for the local server (no CloudWatch to stamp them).
pub fn init_local() {
    install(true);
}

fn install(timestamps: bool) {
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|value| value.parse::<Targets>().ok())
        .unwrap_or_else(|| Targets::new().with_default(LevelFilter::INFO));
    let json = tracing_subscriber::fmt::layer()
        .json()
        .with_current_span(true)
        .with_span_list(false);
    let _ = if timestamps {
        tracing_subscriber::registry().with(json).with(filter).try_init()
    } else {
        tracing_subscriber::registry()
            .with(json.without_time())
            .with(filter)
            .try_init()
    };
}
