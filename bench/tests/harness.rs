//! The harness runs a function end to end once (a debug build, a few invokes): a check that it works,
//! not a measurement; figures come from the command, never from tests.

use std::path::PathBuf;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_harness_runs_a_function_end_to_end() {
    let Some(endpoint) = e2e::emulator() else { return };
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let built = std::process::Command::new(cargo)
        .args(["build", "--quiet", "-p", "get_order", "-p", "create_order"])
        .current_dir(&root)
        .status()
        .expect("cargo build");
    assert!(built.success());
    let target = std::env::var("CARGO_TARGET_DIR").map_or_else(|_| root.join("target"), PathBuf::from);

    let proxy = lambda_bench::CountingProxy::start(endpoint.clone()).await.unwrap();
    let (table, order) = lambda_bench::prepare(&endpoint).await.unwrap();
    let env = vec![
        ("TABLE_NAME".to_owned(), table),
        ("DYNAMODB_ENDPOINT".to_owned(), proxy.endpoint.clone()),
    ];
    for (name, event, status) in lambda_bench::api_functions(&order) {
        let bootstrap = target.join("debug").join(name);
        let m = lambda_bench::measure(
            name,
            &bootstrap,
            &env,
            &proxy,
            3,
            event,
            lambda_bench::expect_status(status),
        )
        .await
        .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(m.invokes, 3);
        assert!(m.size_bytes > 0 && m.first_response >= m.first_next, "{m:?}");
        assert!(m.peak_rss_kib > 0, "{m:?}");
        assert!(m.dynamodb_requests_per_invoke >= 1.0, "{m:?}");
        eprintln!("{}", lambda_bench::row(&m));
    }
}
