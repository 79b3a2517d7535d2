//! Metrics through the `metrics` facade, written by `metrics_cloudwatch_embedded` as CloudWatch Embedded
//! Metric Format: one document per invocation, flushed to stdout at its end ([`flush`]), which CloudWatch
//! Logs turns into metrics with no API call in the request path. Every metric carries the dimensions
//! `service` and `function` only; the invocation's ids are the document's properties.

use std::sync::OnceLock;

use domain::ports::{Metric, MetricUnit, Metrics};
use metrics_cloudwatch_embedded::Collector;

/// The namespace every metric of the service is published under.
pub const NAMESPACE: &str = "OrderService";

/// The `service` dimension (and log key) when `POWERTOOLS_SERVICE_NAME` is not set.
pub const DEFAULT_SERVICE: &str = "order-service";

/// The service's name: `POWERTOOLS_SERVICE_NAME`, or [`DEFAULT_SERVICE`].
pub fn service_name() -> String {
    std::env::var("POWERTOOLS_SERVICE_NAME")
        .ok()
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| DEFAULT_SERVICE.to_owned())
}

static COLLECTOR: OnceLock<&'static Collector> = OnceLock::new();

/// Installs the EMF collector as the process's recorder, with the dimensions `service` and `function`
/// (`function_name`, the Lambda function's name). Before this (the local server, the tests) every metric
/// is dropped. Later calls do nothing.
pub fn install(function_name: &str) {
    if COLLECTOR.get().is_some() {
        return;
    }
    let built = metrics_cloudwatch_embedded::Builder::new()
        .cloudwatch_namespace(NAMESPACE)
        .with_dimension("service", service_name())
        .with_dimension("function", function_name.to_owned())
        .init();
    match built {
        Ok(collector) => {
            let _ = COLLECTOR.set(collector);
            describe();
        }
        Err(err) => tracing::error!(error = %err, "metrics recorder not installed; metrics are dropped"),
    }
}

/// The units of the metrics whose names are fixed (a refusal's code is described when counted), and of
/// the refusals' total.
fn describe() {
    for metric in Metric::FIXED {
        describe_one(metric);
    }
    metrics::describe_counter!("OrderCreateRefused", metrics::Unit::Count, "");
}

fn describe_one(metric: Metric) {
    let name = metric.name();
    match metric.unit() {
        MetricUnit::Count => metrics::describe_counter!(name, metrics::Unit::Count, ""),
        MetricUnit::Milliseconds => metrics::describe_histogram!(name, metrics::Unit::Milliseconds, ""),
        MetricUnit::Seconds => metrics::describe_gauge!(name, metrics::Unit::Seconds, ""),
    }
}

/// Writes what this invocation recorded as one EMF document on stdout, with `properties` (the request
/// id, the trace id, the API request id) beside the metrics; nothing when nothing was recorded or no
/// collector is installed.
pub fn flush(properties: &[(&'static str, Option<&str>)]) {
    flush_to(&mut std::io::stdout().lock(), properties);
}

/// [`flush`] to `out` (the benchmark writes to a sink).
pub fn flush_to(out: &mut dyn std::io::Write, properties: &[(&'static str, Option<&str>)]) {
    let Some(collector) = COLLECTOR.get() else { return };
    for (name, value) in properties {
        match value {
            Some(value) => collector.set_property(*name, (*value).to_owned()),
            None => collector.remove_property(*name),
        };
    }
    if let Err(err) = collector.flush(out) {
        tracing::error!(error = %err, "metrics could not be written");
    }
}

/// The domain's metrics port, recording through the `metrics` facade (to the installed collector, or
/// nowhere).
#[derive(Debug, Clone, Copy, Default)]
pub struct EmfMetrics;

impl Metrics for EmfMetrics {
    fn add(&self, metric: Metric, n: u64) {
        if let Metric::OrderCreateRefused(_) = metric {
            // Every refusal counts in the total too; its code's counter is described on first use.
            metrics::counter!("OrderCreateRefused").increment(n);
            describe_one(metric);
        }
        metrics::counter!(metric.name()).increment(n);
    }

    fn measure(&self, metric: Metric, value: f64) {
        match metric.unit() {
            MetricUnit::Milliseconds => metrics::histogram!(metric.name()).record(value),
            MetricUnit::Count | MetricUnit::Seconds => metrics::gauge!(metric.name()).set(value),
        }
    }
}
