//! What one invocation's metrics cost on the CPU (BENCHMARKS.md, "Metrics"): create_order's metrics
//! recorded through the `metrics` facade and written as one EMF document by `metrics_cloudwatch_embedded`
//! (what the functions do), against the same figures written as one hand-built EMF line each with
//! `serde_json` (what they did before). Both write to a sink, so only the work is measured.

use criterion::{criterion_group, criterion_main, Criterion};
use domain::ports::{Metric, Metrics, StockKind};
use infra::metrics::EmfMetrics;

fn one_invocation(c: &mut Criterion) {
    infra::metrics::install("bench");
    let properties = [
        ("function_request_id", Some("8f5e0a7c-1d2b-4c3e-9f80-123456789abc")),
        ("xray_trace_id", Some("Root=1-00000000-000000000000000000000000")),
        ("correlation_id", Some("b1c2d3e4-f5a6-4b7c-8d9e-0f1a2b3c4d5e")),
    ];
    c.bench_function(
        "metrics_cloudwatch_embedded: create_order's metrics, one document",
        |b| {
            b.iter(|| {
                let metrics = EmfMetrics;
                metrics.count(Metric::OrderCreateSucceeded);
                metrics.add(Metric::OrdersCreated, 1);
                metrics.count(Metric::StockCheck(StockKind::Local));
                metrics.measure(Metric::PaymentCreationLatency, 7.5);
                infra::metrics::flush_to(&mut std::io::sink(), &properties);
            })
        },
    );
    c.bench_function("hand-built serde_json EMF lines: the same four figures", |b| {
        b.iter(|| {
            use std::io::Write;
            let mut sink = std::io::sink();
            let millis = chrono::Utc::now().timestamp_millis();
            for (name, unit, value) in [
                ("OrderCreateSucceeded", "Count", 1.0),
                ("OrdersCreated", "Count", 1.0),
                ("StockCheckLocal", "Count", 1.0),
                ("PaymentCreationLatency", "Milliseconds", 7.5),
            ] {
                let mut doc = serde_json::json!({
                    "_aws": {"Timestamp": millis, "CloudWatchMetrics": [{
                        "Namespace": "OrderService", "Dimensions": [["service", "function"]],
                        "Metrics": [{"Name": name, "Unit": unit}]}]},
                    "service": "order-service", "function": "bench",
                });
                doc[name] = serde_json::json!(value);
                let _ = writeln!(sink, "{doc}");
            }
        })
    });
}

criterion_group!(benches, one_invocation);
criterion_main!(benches);
