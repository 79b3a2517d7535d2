#!/usr/bin/env bash
# Builds every function's bootstrap for Lambda with cargo-lambda (pinned, from PyPI, with its Zig; no
# Docker), in release, into target/lambda/<function>/bootstrap.
#   scripts/package.sh            arm64, as template.yaml deploys (needs `rustup target add aarch64-unknown-linux-gnu`)
#   scripts/package.sh --x86-64   x86_64 (for a machine without the aarch64 standard library)
# Extra arguments go to `cargo lambda build`.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/venv.sh scripts/requirements-package.txt
arch=--arm64
args=()
for arg in "$@"; do
  case $arg in
    --arm64|--x86-64) arch=$arg ;;
    *) args+=("$arg") ;;
  esac
done
# The venv's bin first: cargo-lambda finds Zig through its python (the ziglang package).
export PATH="$PWD/.venv/bin:$PATH"
functions=()
for dir in functions/*/; do
  functions+=(-p "$(basename "$dir")")
done
exec cargo lambda build --release "$arch" "${functions[@]}" "${args[@]}"
