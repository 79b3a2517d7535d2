//! Measures the functions' `bootstrap` binaries under a loopback Lambda Runtime API and writes the tables
//! into BENCHMARKS.md, between its `<!-- bench:start -->` and `<!-- bench:end -->` lines. Build the
//! functions first (`scripts/bench.sh` does both). The harness itself may be a debug build: CPU and
//! memory are read from the function's own process.

use std::path::PathBuf;

use clap::Parser;

#[derive(Parser)]
struct Args {
    /// Where the built binaries are: `target/release`, or cargo-lambda's `target/lambda`.
    #[arg(long, default_value = "target/release")]
    binaries: PathBuf,
    /// Warm invokes per function.
    #[arg(long, default_value_t = 500)]
    invokes: usize,
    /// Runs per function (each a fresh process); every figure reported is the median over the runs.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// `RUST_LOG` for the functions: `info` is what template.yaml deploys; `off` measures what the
    /// logging costs.
    #[arg(long, default_value = "info")]
    log: String,
    /// Only these functions (repeatable); every function by default.
    #[arg(long)]
    only: Vec<String>,
    /// Where to write the tables (the part between the markers is replaced); `-` prints them only.
    #[arg(long, default_value = "BENCHMARKS.md")]
    out: PathBuf,
}

const START: &str = "<!-- bench:start -->";
const END: &str = "<!-- bench:end -->";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let endpoint = e2e::moto_endpoint()?;
    let proxy = lambda_bench::CountingProxy::start(endpoint.clone()).await?;
    let runs = args.runs.max(1);
    let measured = |name: &str| args.only.is_empty() || args.only.iter().any(|o| o == name);
    let events = runs * (args.invokes + 1);
    let (mut rows, mut targets) = (Vec::new(), Vec::new());
    let names: Vec<&str> = lambda_bench::fixture::FUNCTIONS
        .iter()
        .copied()
        .filter(|n| measured(n))
        .collect();
    for name in names {
        // Each function gets a fresh table holding only what it acts on: the emulator's index queries
        // slow down as a table grows, so one shared table would make the later functions' runs long
        // (the emulator's time is reported apart either way).
        let fixture = lambda_bench::fixture::prepare(&endpoint, events, |n| n == name).await?;
        let Some(f) = lambda_bench::fixture::functions(&fixture, &proxy.endpoint)
            .into_iter()
            .find(|f| f.name == name)
        else {
            continue;
        };
        // target/release/<name>, or cargo-lambda's layout, target/lambda/<name>/bootstrap.
        let packaged = args.binaries.join(f.name).join("bootstrap");
        let bootstrap = if packaged.is_file() {
            packaged
        } else {
            args.binaries.join(f.name)
        };
        let mut env = f.env.clone();
        env.push(("RUST_LOG".to_owned(), args.log.clone()));
        let mut results = Vec::with_capacity(runs);
        for run in 0..runs {
            // Each run's events start where the last run's ended, so no order is acted on twice.
            let offset = run * (args.invokes + 1);
            let event = |n: usize| (f.event)(offset + n);
            let m = lambda_bench::measure(
                f.name,
                lambda_bench::Launch {
                    bootstrap: &bootstrap,
                    env: &env,
                    log: None,
                },
                &proxy,
                args.invokes,
                event,
                &f.check,
            )
            .await
            .map_err(|e| format!("{}: {e}", f.name))?;
            eprintln!("{}", lambda_bench::row(&m));
            results.push(m);
        }
        let m = lambda_bench::median(&results).ok_or("no runs")?;
        println!("{}", lambda_bench::row(&m));
        rows.push(lambda_bench::row(&m));
        targets.push(lambda_bench::target_row(&m));
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
    let tables = format!(
        "{START}\nMeasured by `scripts/bench.sh` on {}, {cores} cores ({cpu}), x86_64; bootstraps from `{}`, DynamoDB and SQS on moto over loopback through a counting proxy; `RUST_LOG={}`; {} warm invokes per function after one cold invoke, {} runs per function (fresh processes), medians. Latencies include the harness's own loopback Runtime API; CPU (time on the CPU, user and system, from the scheduler's `/proc/<pid>/task/*/schedstat`) and peak RSS (VmHWM) are the function process's own.\n\n{}\n{}\n\nAgainst the targets (bootstrap ≤ 5 MB, CPU per warm invoke ≤ 0.5 ms, spawn → first response ≤ 15 ms, peak RSS ≤ 10 MB):\n\n| function | bootstrap | CPU per warm invoke | spawn → first response | peak RSS |\n|---|---|---|---|---|\n{}\n{END}",
        chrono::Utc::now().format("%Y-%m-%d"),
        args.binaries.display(),
        args.log,
        args.invokes,
        runs,
        lambda_bench::TABLE_HEADER,
        rows.join("\n"),
        targets.join("\n"),
    );
    if args.out.as_os_str() == "-" {
        println!("{tables}");
        return Ok(());
    }
    let current = std::fs::read_to_string(&args.out).unwrap_or_default();
    let text = match (current.find(START), current.find(END)) {
        (Some(s), Some(e)) if s < e => format!("{}{tables}{}", &current[..s], &current[e + END.len()..]),
        _ => format!("# Benchmarks\n\n{tables}\n\n{current}"),
    };
    std::fs::write(&args.out, text)?;
    Ok(())
}
