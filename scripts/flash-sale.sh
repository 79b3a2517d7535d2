#!/usr/bin/env bash
# Flash sales against the model of DynamoDB's hot-item behaviour (BENCHMARKS.md, "Flash sales"): one
# product's stock in one item (today's design) and in 8 shards, at 100, 1,000 and 5,000 buyers a second,
# then past 2,000 orders a second, the sell-out of 1,000 units among 5,000 buyers, and the sensitivity to
# the transaction window. Virtual time: the figures are the model's, not this machine's. Prints one
# markdown row per run.
set -euo pipefail
cd "$(dirname "$0")/.."
FLASH_SALE_MATRIX=1 cargo test --release --locked -p e2e --test api flash_sale::matrix -- --nocapture \
  | grep '^|'
