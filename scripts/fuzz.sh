#!/usr/bin/env bash
# The fuzz targets in fuzz/ (docs/testing.md, "Fuzzing"), with libFuzzer through cargo-fuzz on the nightly
# toolchain. Installs the pinned cargo-fuzz from crates.io when missing (and the nightly toolchain, when
# rustup has none).
#
#   scripts/fuzz.sh smoke             every target for 10,000 executions (the test command runs this)
#   scripts/fuzz.sh run TARGET [N]    one target for N executions (default 1,000,000)
#   scripts/fuzz.sh all [N]           every target for N executions (default 1,000,000), one after another
#
# Each target starts from its seeds (fuzz/seeds/TARGET, committed) and the corpus it grew before
# (fuzz/corpus/TARGET, not committed). A crash, a panic or a failed assertion stops the run with the
# input that caused it in fuzz/artifacts/TARGET and a non-zero exit. Built without a sanitizer: the code
# fuzzed is safe Rust, and what is looked for is a panic, an assertion, a hang or runaway memory.
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_FUZZ_VERSION=0.13.2
if ! cargo fuzz --version 2>/dev/null | grep -q " $CARGO_FUZZ_VERSION\$"; then
  echo "== installing cargo-fuzz $CARGO_FUZZ_VERSION from crates.io"
  cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked
fi
if ! rustup run nightly rustc --version >/dev/null 2>&1; then
  echo "== installing the nightly toolchain"
  rustup toolchain install nightly --profile minimal
fi

# The versions fuzz/Cargo.lock pins, as --locked holds the main workspace (cargo-fuzz has no such flag).
cargo +nightly metadata --manifest-path fuzz/Cargo.toml --locked --format-version 1 >/dev/null

fuzz() {
  local command=$1
  shift
  cargo +nightly fuzz "$command" --fuzz-dir fuzz --sanitizer none "$@"
}

run() {
  local target=$1 runs=$2 log status=0
  mkdir -p "fuzz/corpus/$target"
  echo "== fuzz $target: $runs executions"
  log=$(mktemp)
  fuzz run "$target" "fuzz/corpus/$target" "fuzz/seeds/$target" -- \
    -runs="$runs" -max_len=4096 -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 >"$log" 2>&1 || status=$?
  # libFuzzer's final figures; on a failure, the end of its output (the input is in fuzz/artifacts).
  grep -E "^(Done|stat::(number_of_executed_units|average_exec_per_sec|new_units_added|peak_rss_mb))" "$log" || true
  echo "corpus: $(find "fuzz/corpus/$target" -type f | wc -l) inputs"
  if [ "$status" -ne 0 ]; then
    tail -n 60 "$log"
  fi
  rm -f "$log"
  return "$status"
}

targets() {
  cargo +nightly fuzz list --fuzz-dir fuzz
}

case "${1:-smoke}" in
  smoke)
    fuzz build
    for target in $(targets); do run "$target" 10000; done
    ;;
  run)
    fuzz build "$2"
    run "$2" "${3:-1000000}"
    ;;
  all)
    fuzz build
    for target in $(targets); do run "$target" "${2:-1000000}"; done
    ;;
  *)
    echo "usage: $0 smoke | run TARGET [RUNS] | all [RUNS]" >&2
    exit 2
    ;;
esac
