#!/usr/bin/env bash
# The project's one test command (README and .ci/run call exactly this).
#  1. installs the pinned test tools (moto[server], cfn-lint, aws-sam-cli,
#     openapi-spec-validator, schemathesis) into ./.venv from PyPI,
#  2. lints template.yaml with cfn-lint, and validates it with `sam validate --lint` (any error fails);
#     validates docs/openapi.yaml with openapi-spec-validator,
#  3. checks formatting and clippy (warnings are errors), and runs every fuzz target for 10,000
#     executions (scripts/fuzz.sh smoke: the pinned cargo-fuzz, the nightly toolchain),
#  4. installs what the browser test needs (scripts/browser.sh: Debian's chromium and CJK fonts, and the
#     pinned playwright-core from npm),
#  5. runs every Rust test in the workspace. The DynamoDB tests start moto's server themselves
#     (scripts/moto_server.py, on a free loopback port) and fail if it cannot start (REQUIRE_EMULATORS=1);
#     moto's logs are kept in target/emulator-logs and their tails printed when a test fails.
set -euo pipefail
cd "$(dirname "$0")/.."

source scripts/venv.sh scripts/requirements-test.txt

echo "== cfn-lint template.yaml"
.venv/bin/cfn-lint template.yaml

echo "== sam validate --lint"
# No AWS account is needed: the SAM transform runs locally. No telemetry is sent.
SAM_CLI_TELEMETRY=0 .venv/bin/sam validate --lint --template template.yaml --region us-east-1

echo "== openapi-spec-validator docs/openapi.yaml"
.venv/bin/openapi-spec-validator docs/openapi.yaml

echo "== cargo fmt --check"
cargo fmt --all -- --check
(cd fuzz && cargo fmt -- --check)

echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "== fuzz smoke"
# Every fuzz target for 10,000 executions (scripts/fuzz.sh installs the pinned cargo-fuzz).
scripts/fuzz.sh smoke

echo "== browser test tools"
scripts/browser.sh

echo "== cargo test"
# This script installs every emulator and tool the tests use, so none may be missing: a test that
# cannot find one fails instead of saying SKIPPED (tests/support: tools_required).
export REQUIRE_EMULATORS=1
rm -rf target/emulator-logs
if ! cargo test --workspace --locked "$@"; then
  for log in target/emulator-logs/*.log; do
    [ -f "$log" ] || continue
    echo "== last lines of $log"
    tail -n 40 "$log"
  done
  exit 1
fi
