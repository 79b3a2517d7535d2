#!/usr/bin/env bash
# Measures every function as Lambda runs it: builds each bootstrap in release (the workspace's release
# profile, x86_64 on this machine), then runs the loopback Runtime API harness (bench/, package
# lambda-bench) against DynamoDB and SQS on moto, and writes the tables into BENCHMARKS.md between its
# markers. Arguments go to the harness: --invokes N (500), --runs N (3), --only <function>, --out <file>.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/venv.sh scripts/requirements-test.txt
packages=()
for dir in functions/*/; do
  packages+=(-p "$(basename "$dir")")
done
cargo build --release --locked "${packages[@]}"
cargo run --locked -p lambda-bench -- --binaries target/release "$@"
