//! An outside fuzzer on the contract: schemathesis (pinned in scripts/requirements-test.txt, installed
//! into ./.venv by scripts/test.sh), driven by docs/openapi.yaml, against the local server over HTTP. Its
//! checks for server errors, status codes the document does not list, and bodies that do not conform to
//! their schemas must find nothing, as a shopper (every route but the merchant's) and as an operator
//! (the merchant's routes). Bounded (`--max-examples`) and seeded, so a failure reproduces.

use std::path::PathBuf;
use std::process::Command;

mod common;

/// The pinned schemathesis, or `None` (after saying SKIPPED) outside scripts/test.sh and CI, where its
/// absence fails the test.
fn schemathesis() -> Option<PathBuf> {
    let bin = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/schemathesis");
    if bin.exists() {
        return Some(bin);
    }
    if e2e::tools_required() {
        panic!("schemathesis is not installed in .venv (scripts/test.sh installs it): CI=true or REQUIRE_EMULATORS=1");
    }
    eprintln!("SKIPPED (no schemathesis; run scripts/test.sh)");
    None
}

#[test]
fn schemathesis_finds_no_server_error_undocumented_status_or_nonconforming_body() {
    let Some(bin) = schemathesis() else { return };
    let dir = tempfile::tempdir().unwrap();
    let mut server = common::command();
    server
        .env("LOCAL_DATA_DIR", dir.path())
        .env("PAYMENT_CALLBACK_SECRETS", "schemathesis-secret")
        .env("PROVIDER_KEYS", dir.path().join("dev-providers.json"));
    let (_server, base) = common::spawned(server);
    let spec = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/openapi.yaml");
    for (who, filter) in [
        ("alice", "--exclude-path-regex"),
        ("ops orders:admin", "--include-path-regex"),
    ] {
        let out = Command::new(&bin)
            .arg("run")
            .arg(&spec)
            .args(["--url", &base])
            .args(["--header", &format!("Authorization: Bearer {who}")])
            .args([filter, "^/api/admin/"])
            .args([
                "--checks",
                "not_a_server_error,status_code_conformance,response_schema_conformance",
            ])
            .args(["--max-examples", "25", "--seed", "20261201", "--no-color"])
            .env("SCHEMATHESIS_TELEMETRY", "false")
            .output()
            .expect("run schemathesis");
        let text = String::from_utf8_lossy(&out.stdout);
        let summary: Vec<&str> = text.lines().filter(|l| l.contains("generated")).collect();
        eprintln!("schemathesis as {who}: {summary:?}");
        assert!(
            out.status.success(),
            "schemathesis as {who} found failures:\n{text}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
