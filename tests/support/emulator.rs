//! The DynamoDB and SQS emulator (moto's server, one per test binary) and clients pointed at it; a
//! missing emulator fails a test wherever the tools are required.

use aws_sdk_dynamodb::Client;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};

/// A client for the emulator with dummy credentials.
pub fn dynamo_client(endpoint: &str) -> Client {
    Client::from_conf(dynamo_config(endpoint))
}

pub(crate) fn dynamo_config(endpoint: &str) -> aws_sdk_dynamodb::Config {
    aws_sdk_dynamodb::Config::builder()
        .behavior_version(aws_sdk_dynamodb::config::BehaviorVersion::latest())
        .http_client(infra::aws::http_client())
        .endpoint_url(endpoint)
        .region(aws_sdk_dynamodb::config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
            "test", "test", None, None, "test",
        ))
        .build()
}

/// An SQS client for the emulator with dummy credentials.
pub fn sqs_client(endpoint: &str) -> aws_sdk_sqs::Client {
    aws_sdk_sqs::Client::from_conf(
        aws_sdk_sqs::Config::builder()
            .behavior_version(aws_sdk_sqs::config::BehaviorVersion::latest())
            .http_client(infra::aws::http_client())
            .endpoint_url(endpoint)
            .region(aws_sdk_sqs::config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_sqs::config::Credentials::new(
                "test", "test", None, None, "test",
            ))
            .build(),
    )
}

/// A fresh FIFO queue as the template makes it (content-based deduplication off, deduplication and
/// throughput per message group): its URL. moto accepts the per-group attributes but deduplicates
/// across the whole queue; the local queue's own tests check the per-group scope.
pub async fn fifo_queue(client: &aws_sdk_sqs::Client) -> Result<String, String> {
    use aws_sdk_sqs::types::QueueAttributeName;
    let created = client
        .create_queue()
        .queue_name(format!("callbacks-{}.fifo", uuid::Uuid::now_v7().simple()))
        .attributes(QueueAttributeName::FifoQueue, "true")
        .attributes(QueueAttributeName::ContentBasedDeduplication, "false")
        .attributes(QueueAttributeName::DeduplicationScope, "messageGroup")
        .attributes(QueueAttributeName::FifoThroughputLimit, "perMessageGroupId")
        .send()
        .await
        .map_err(|e| format!("create FIFO queue: {e}"))?;
    created
        .queue_url()
        .map(str::to_owned)
        .ok_or_else(|| "no queue url".to_owned())
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// Whether a missing emulator (or any tool a test needs) must fail the test: under `CI=true`, and
/// whenever `REQUIRE_EMULATORS=1` (scripts/test.sh sets it, since it installs them).
pub fn tools_required() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true") || std::env::var("REQUIRE_EMULATORS").is_ok_and(|v| v == "1")
}

/// The emulator's endpoint for a test that needs it. Where [`tools_required`], a missing emulator fails
/// the test; elsewhere the test says `SKIPPED` and why, and gets `None`.
pub fn emulator() -> Option<String> {
    match moto_endpoint() {
        Ok(endpoint) => Some(endpoint),
        Err(why) if tools_required() => {
            panic!("DynamoDB emulator unavailable (CI=true or REQUIRE_EMULATORS=1): {why}")
        }
        Err(why) => {
            eprintln!("SKIPPED (no DynamoDB emulator; run scripts/test.sh): {why}");
            None
        }
    }
}

/// The emulator's endpoint: `DYNAMODB_TEST_ENDPOINT` if set, else one moto server per test binary,
/// started from the project's virtualenv (scripts/test.sh creates it) and stopped when the binary exits.
pub fn moto_endpoint() -> Result<String, String> {
    static MOTO: OnceLock<Result<(String, Mutex<Child>), String>> = OnceLock::new();
    if let Ok(endpoint) = std::env::var("DYNAMODB_TEST_ENDPOINT") {
        return Ok(endpoint);
    }
    let started = MOTO.get_or_init(|| {
        let root = workspace_root();
        let python = root.join(".venv/bin/python");
        if !python.exists() {
            return Err(format!("{} not found", python.display()));
        }
        // The emulator's own log is kept (one file per test binary) and quoted when it fails to start;
        // scripts/test.sh prints the tails of these files when the tests fail.
        let logs = root.join("target/emulator-logs");
        std::fs::create_dir_all(&logs).map_err(|e| format!("cannot make {}: {e}", logs.display()))?;
        let log_path = logs.join(format!("moto-{}.log", std::process::id()));
        let log = std::fs::File::create(&log_path).map_err(|e| format!("cannot create {}: {e}", log_path.display()))?;
        let mut child = Command::new(&python)
            .arg(root.join("scripts/moto_server.py"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot start moto: {e}"))?;
        let log_tail = || {
            let text = std::fs::read_to_string(&log_path).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            format!(
                "{} ends:\n{}",
                log_path.display(),
                lines[lines.len().saturating_sub(20)..].join("\n")
            )
        };
        let stdout = child.stdout.take().ok_or("no stdout from moto")?;
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .map_err(|e| format!("moto did not report its port: {e}; {}", log_tail()))?;
        let port: u16 = line
            .trim()
            .parse()
            .map_err(|_| format!("moto printed {line:?}, not a port; {}", log_tail()))?;
        Ok((format!("http://127.0.0.1:{port}"), Mutex::new(child)))
    });
    started
        .as_ref()
        .map(|(endpoint, _)| endpoint.clone())
        .map_err(Clone::clone)
}
