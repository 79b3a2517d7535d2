//! Measures the functions' `bootstrap` binaries under a loopback Lambda Runtime API and writes the table
//! into BENCHMARKS.md. Build them first (`cargo build --release -p create_order -p get_order`), then
//! `cargo run -p lambda-bench -- --invokes 200`. The harness itself may be a debug build: CPU and memory
//! are read from the function's own process.

use std::path::PathBuf;

use clap::Parser;

#[derive(Parser)]
struct Args {
    /// Where the built binaries are.
    #[arg(long, default_value = "target/release")]
    binaries: PathBuf,
    /// Warm invokes per function.
    #[arg(long, default_value_t = 200)]
    invokes: usize,
    /// Where to write the table.
    #[arg(long, default_value = "BENCHMARKS.md")]
    out: PathBuf,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let endpoint = e2e::moto_endpoint()?;
    let proxy = lambda_bench::CountingProxy::start(endpoint.clone()).await?;
    let (table, order) = lambda_bench::prepare(&endpoint).await?;
    let env = vec![
        ("TABLE_NAME".to_owned(), table),
        ("DYNAMODB_ENDPOINT".to_owned(), proxy.endpoint.clone()),
    ];
    let mut rows = Vec::new();
    for (name, event, status) in lambda_bench::api_functions(&order) {
        let bootstrap = args.binaries.join(name);
        let m = lambda_bench::measure(
            name,
            &bootstrap,
            &env,
            &proxy,
            args.invokes,
            event,
            lambda_bench::expect_status(status),
        )
        .await?;
        println!("{}", lambda_bench::row(&m));
        rows.push(lambda_bench::row(&m));
    }
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_default();
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let text = format!(
        "# Benchmarks\n\nMeasured by `cargo run -p lambda-bench` on {}, {cores} cores ({cpu}); release bootstraps from `target/release` (profile in Cargo.toml), DynamoDB on moto over loopback through a counting proxy. Latencies include the harness's own loopback Runtime API; CPU and peak RSS are the function process's own (`/proc`).\n\n\
         | function | bootstrap | spawn → first /next | spawn → first response | warm p50 / p99 | CPU per warm invoke | peak RSS | DynamoDB requests per invoke | invokes |\n\
         |---|---|---|---|---|---|---|---|---|\n{}\n",
        chrono::Utc::now().format("%Y-%m-%d"),
        rows.join("\n")
    );
    std::fs::write(&args.out, text)?;
    Ok(())
}
