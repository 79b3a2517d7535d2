//! Metrics as CloudWatch Embedded Metric Format lines on stdout: CloudWatch Logs turns each into a
//! metric, with no API call in the request path.

use domain::ports::{Metric, Metrics};

/// The namespace every metric of the service is published under.
pub const NAMESPACE: &str = "OrderService";

/// Writes one EMF line per count.
#[derive(Debug, Clone, Copy, Default)]
pub struct EmfMetrics;

impl EmfMetrics {
    /// The EMF document for one count of `metric` at `millis` since the epoch.
    pub fn document(metric: Metric, millis: i64) -> serde_json::Value {
        Self::measurement(metric, 1.0, "Count", millis)
    }

    /// The EMF document for one `value` of `metric` in `unit` at `millis` since the epoch.
    pub fn measurement(metric: Metric, value: f64, unit: &str, millis: i64) -> serde_json::Value {
        let name = metric.name();
        let mut doc = serde_json::json!({
            "_aws": {
                "Timestamp": millis,
                "CloudWatchMetrics": [{
                    "Namespace": NAMESPACE,
                    "Dimensions": [[]],
                    "Metrics": [{"Name": name, "Unit": unit}],
                }],
            },
        });
        doc[name] = serde_json::json!(value);
        doc
    }
}

impl Metrics for EmfMetrics {
    fn count(&self, metric: Metric) {
        println!("{}", Self::document(metric, chrono::Utc::now().timestamp_millis()));
    }

    fn measure(&self, metric: Metric, value: f64) {
        let unit = match metric {
            Metric::AttentionOldestAgeSeconds => "Seconds",
            _ => "None",
        };
        println!(
            "{}",
            Self::measurement(metric, value, unit, chrono::Utc::now().timestamp_millis())
        );
    }
}
