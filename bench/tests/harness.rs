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
    for f in &functions {
        let bootstrap = target.join("debug").join(f.name);
        let m = lambda_bench::measure(f.name, &bootstrap, &f.env, &proxy, 2, &f.event, &f.check)
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", f.name));
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
}
