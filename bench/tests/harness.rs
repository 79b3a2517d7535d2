//! The harness runs every function end to end (debug builds, a cold invoke and two warm ones): a check
//! that each bootstrap starts under the Runtime API and answers its events, not a measurement; figures
//! come from the command (`scripts/bench.sh`), never from tests.

use std::path::PathBuf;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_harness_runs_every_function_end_to_end() {
    let Some(endpoint) = e2e::emulator() else { return };
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf();
    let proxy = lambda_bench::CountingProxy::start(endpoint.clone()).await.unwrap();
    let fixture = lambda_bench::fixture::prepare(&endpoint, 3, |_| true).await.unwrap();
    let functions = lambda_bench::fixture::functions(&fixture, &proxy.endpoint);
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut build = std::process::Command::new(cargo);
    build.args(["build", "--quiet"]).current_dir(&root);
    for f in &functions {
        build.args(["-p", f.name]);
    }
    assert!(build.status().expect("cargo build").success());
    let target = std::env::var("CARGO_TARGET_DIR").map_or_else(|_| root.join("target"), PathBuf::from);

    // Every crate under functions/ is benchmarked, in FUNCTIONS' order.
    let mut crates: Vec<String> = std::fs::read_dir(root.join("functions"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    crates.sort();
    let mut names: Vec<&str> = functions.iter().map(|f| f.name).collect();
    assert_eq!(names, lambda_bench::fixture::FUNCTIONS);
    names.sort_unstable();
    assert_eq!(names, crates, "every function is benchmarked");
    let template = std::fs::read_to_string(root.join("template.yaml")).unwrap();
    let mut privileges = Vec::new();
    let logs = target.join("harness-logs");
    std::fs::create_dir_all(&logs).unwrap();
    for f in &functions {
        let bootstrap = target.join("debug").join(f.name);
        let log = logs.join(format!("{}.log", f.name));
        let calls_before = proxy.calls().len();
        let m = lambda_bench::measure(
            f.name,
            lambda_bench::Launch {
                bootstrap: &bootstrap,
                env: &f.env,
                log: Some(&log),
            },
            &proxy,
            2,
            &f.event,
            &f.check,
        )
        .await
        .unwrap_or_else(|e| panic!("{}: {e}", f.name));
        check_output(f, &std::fs::read_to_string(&log).unwrap(), 3);
        // Least privilege: every request this function sent is granted by its policy, and every grant
        // was used by some request.
        let needs: std::collections::BTreeSet<_> = proxy.calls()[calls_before..]
            .iter()
            .flat_map(|call| lambda_bench::iam::needs(call, "CallbackQueue"))
            .collect();
        let grants = lambda_bench::iam::grants(&template, f.name).unwrap();
        let (missing, unused) = lambda_bench::iam::compare(&needs, &grants);
        eprintln!(
            "{}: {} distinct needs, {} statements; missing {missing:?}; unused {unused:?}",
            f.name,
            needs.len(),
            grants.len()
        );
        privileges.push((f.name, missing, unused));
        assert_eq!(m.invokes, 2);
        assert!(m.size_bytes > 0 && m.first_response >= m.first_next, "{m:?}");
        assert!(m.peak_rss_kib > 0, "{m:?}");
        // The AWS requests each warm invoke costs, as BENCHMARKS.md reports them.
        let expected = match f.name {
            // a read of the order and the conditional write judged from it (the checkout's read plans
            // the provider call and is judged again by its write)
            "create_payment" | "cancel_order" | "checkout_payment" => 2.0,
            "process_payment_callbacks" => 3.0,
            // a sweep that finds the index empty reads each of its shards
            "expire_payments" => 8.0,
            // the refund partition of the work index, then the oldest attention item (its age metric)
            "refund_payments" => 2.0,
            _ => 1.0,
        };
        assert_eq!(m.aws_requests_per_invoke, expected, "{}: {m:?}", f.name);
        // The connection to AWS is opened during init (the warm-up request), not by the first invoke.
        assert_eq!(m.connections_at_init, 1, "{m:?}");
        assert_eq!((m.connections_at_first_invoke, m.connections_warm), (0, 0), "{m:?}");
        eprintln!("{}", lambda_bench::row(&m));
    }
    // A grant no request used is an extra grant, unless it is listed here: what a path the harness's
    // events do not take needs, each with the path (and each checked to be unused still, so the list
    // cannot go stale).
    let mut disagreements = Vec::new();
    for (name, missing, unused) in &privileges {
        let unused: Vec<&str> = unused
            .iter()
            .map(|u| u.split_once(": ").map_or(u.as_str(), |(_, g)| g))
            .collect();
        let listed: Vec<&str> = UNOBSERVED_PATHS
            .iter()
            .filter(|(f, _, _)| f == name)
            .map(|(_, g, _)| *g)
            .collect();
        let extra: Vec<&&str> = unused.iter().filter(|g| !listed.contains(g)).collect();
        let stale: Vec<&&str> = listed.iter().filter(|g| !unused.contains(g)).collect();
        if !missing.is_empty() || !extra.is_empty() || !stale.is_empty() {
            disagreements.push(format!("{name}: not granted {missing:?}; granted, never used {extra:?}; listed as unobserved but used or not granted {stale:?}"));
        }
    }
    assert!(
        disagreements.is_empty(),
        "template.yaml's policies and the functions' requests disagree: {disagreements:#?}"
    );
}

/// Grants the harness's events never exercise, each with the path that needs it (docs/testing.md).
const UNOBSERVED_PATHS: &[(&str, &str, &str)] = &[
    (
        "admin_orders",
        "dynamodb:PutItem on table",
        "an action's conditional write (ship, complete, refund, cancel, resolve); the harness reads an order",
    ),
    (
        "admin_orders",
        "dynamodb:UpdateItem on table",
        "a paid order's cancel returns its stock in the action's write",
    ),
    (
        "admin_orders",
        "dynamodb:Query on index/by_work",
        "GET /api/admin/attention/ pages the attention partition",
    ),
    (
        "admin_orders",
        "dynamodb:Query on index/by_payment",
        "a pending order's cancel finds its trade paid on closing and applies the success by payment id",
    ),
    (
        "create_payment",
        "dynamodb:Query on index/by_payment",
        "superseding a checked-out payment finds its trade paid on closing and applies the success by payment id",
    ),
    (
        "checkout_payment",
        "dynamodb:Query on index/by_payment",
        "the provider answers the trade is already paid: the success is applied by payment id",
    ),
    (
        "cancel_order",
        "dynamodb:Query on index/by_payment",
        "the shopper's cancel finds the trade paid on closing and applies the success by payment id",
    ),
    (
        "expire_payments",
        "dynamodb:Query on index/by_payment",
        "the sweeper finds a trade paid on closing and applies the success by payment id",
    ),
    (
        "refund_payments",
        "dynamodb:Query on table",
        "a refund due: its order read before the provider is asked",
    ),
    (
        "refund_payments",
        "dynamodb:PutItem on table",
        "a refund answered: the order and payment written with the verdict (both put)",
    ),
];

/// What a function wrote on stdout over `invocations` invocations (docs/api.md §13): JSON lines with the
/// Powertools keys, at most one EMF document per invocation with the dimensions `service` and `function`
/// only and at most 100 metrics, the cold start counted once, and no secret, token, signature or address
/// anywhere.
fn check_output(f: &lambda_bench::fixture::Function, output: &str, invocations: usize) {
    let name = f.name;
    let lines: Vec<serde_json::Value> = output
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{name}: not JSON ({e}): {line}")))
        .collect();
    let (documents, logs): (Vec<_>, Vec<_>) = lines.iter().partition(|line| line.get("_aws").is_some());

    assert!(
        !documents.is_empty() && documents.len() <= invocations,
        "{name}: {} EMF documents",
        documents.len()
    );
    let mut request_ids = std::collections::HashSet::new();
    for (n, doc) in documents.iter().enumerate() {
        let spec = &doc["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(spec["Namespace"], "OrderService", "{name}: {doc}");
        assert_eq!(
            spec["Dimensions"],
            serde_json::json!([["service", "function"]]),
            "{name}: {doc}"
        );
        assert_eq!(
            (doc["service"].as_str(), doc["function"].as_str()),
            (Some("order-service"), Some(name))
        );
        let metrics = spec["Metrics"].as_array().unwrap();
        assert!(!metrics.is_empty() && metrics.len() <= 100, "{name}: {doc}");
        for metric in metrics {
            let metric_name = metric["Name"].as_str().unwrap();
            assert!(
                doc.get(metric_name).is_some(),
                "{name}: {metric_name} has no value in {doc}"
            );
        }
        assert_eq!(
            doc.get("ColdStart").is_some(),
            n == 0,
            "{name}: the cold start is the first document's only"
        );
        let id = doc["function_request_id"]
            .as_str()
            .unwrap_or_else(|| panic!("{name}: {doc}"));
        assert!(
            request_ids.insert(id.to_owned()),
            "{name}: two documents for one invocation"
        );
    }
    let expected: &[&str] = match name {
        "create_order" | "create_batch_orders" => &[
            "OrderCreateSucceeded",
            "OrdersCreated",
            "PaymentCreationLatency",
            "StockCheckLocal",
        ],
        "create_payment" | "checkout_payment" => &["PaymentCreationLatency"],
        "process_payment_callbacks" => &["CallbackApplied"],
        "expire_payments" => &["PaymentsExpired", "OrdersCancelledBySweeper"],
        "refund_payments" => &["AttentionOldestAgeSeconds"],
        _ => &[],
    };
    for metric in expected {
        assert!(
            documents.iter().any(|doc| doc.get(*metric).is_some()),
            "{name}: no {metric} in {documents:?}"
        );
    }

    for line in &logs {
        for key in ["level", "message", "timestamp", "service", "function_name"] {
            assert!(line.get(key).is_some(), "{name}: no {key} in {line}");
        }
        assert_eq!(line["function_name"], name, "{line}");
        if line.get("function_request_id").is_some() {
            assert!(
                line["cold_start"].is_boolean() && line["xray_trace_id"].is_string(),
                "{name}: {line}"
            );
            if f.event.as_ref()(0).get("requestContext").is_some() && line["logger"] != "lambda_runtime" {
                assert!(line["correlation_id"].is_string(), "{name}: {line}");
            }
        }
    }
    let logged_in_invocation = logs.iter().any(|line| line.get("function_request_id").is_some());
    if matches!(name, "create_order" | "process_payment_callbacks" | "expire_payments") {
        assert!(
            logged_in_invocation,
            "{name}: nothing logged during an invocation: {output}"
        );
    }

    // Nothing that must stay secret: the settings' secrets and keys, the shopper's token, the callback's
    // signature header, the address.
    let mut secrets: Vec<String> = f
        .env
        .iter()
        .filter(|(k, _)| ["SECRET", "KEY", "PRIVATE"].iter().any(|s| k.contains(s)))
        .flat_map(|(_, v)| v.split([',', '=']).map(str::to_owned).collect::<Vec<_>>())
        .filter(|v| v.len() >= 8)
        .collect();
    secrets.extend(
        [
            lambda_bench::fixture::ADDRESS_PHONE,
            lambda_bench::fixture::ADDRESS_DETAIL,
            "eyJ",
            "Bearer",
            "v1=",
        ]
        .map(String::from),
    );
    let event = f.event.as_ref()(1);
    for header in [
        "x-signature",
        "x-payment-signature",
        "wechatpay-signature",
        "authorization",
    ] {
        if let Some(value) = event["headers"][header].as_str() {
            secrets.push(value.to_owned());
        }
    }
    for secret in &secrets {
        assert!(
            !output.contains(secret.as_str()),
            "{name}: a secret, token or address in the output"
        );
    }
    for line in &logs {
        for key in line.as_object().unwrap().keys() {
            let key = key.to_ascii_lowercase();
            assert!(
                !["signature", "token", "secret", "password", "authorization", "private"]
                    .iter()
                    .any(|s| key.contains(s)),
                "{name}: a field named {key}"
            );
        }
    }
}
