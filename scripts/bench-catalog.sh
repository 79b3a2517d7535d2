#!/usr/bin/env bash
# Measures the catalogue loader at scale (BENCHMARKS.md, "Loading a catalogue"): a catalogue of N
# products (default 10,000) and 1,000 addresses loaded by the local server's loader into a DynamoDB table
# on moto (scripts/moto_server.py, over loopback), then loaded again (every product unchanged), then again
# with every tenth product's stock changed. Prints each run's summary line.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/venv.sh scripts/requirements-test.txt
products=${1:-10000}
work=$(mktemp -d)
trap 'exec 3>&-; rm -rf "$work"' EXIT
.venv/bin/python - "$products" "$work" <<'PY'
import json, sys
n, work = int(sys.argv[1]), sys.argv[2]
def catalogue(stock_of):
    return {
        "products": [{"id": f"sku-{i:06d}", "name": f"商品 {i}", "price": f"{100 + i % 900}.00",
                      "stock": stock_of(i), "stock_source": "local"} for i in range(n)],
        "addresses": [{"id": f"addr-{i:05d}", "user_id": f"user-{i:05d}", "city": "青岛"} for i in range(1000)],
    }
json.dump(catalogue(lambda i: 50), open(f"{work}/catalog.json", "w"), ensure_ascii=False)
json.dump(catalogue(lambda i: 60 if i % 10 == 0 else 50), open(f"{work}/changed.json", "w"), ensure_ascii=False)
PY
cargo build --release --locked -p local-server
# moto on a free port, stopped when this script ends (its stdin closes).
exec 3> >(.venv/bin/python scripts/moto_server.py > "$work/port" 2> "$work/moto.log")
for _ in $(seq 100); do [ -s "$work/port" ] && break; sleep 0.1; done
endpoint="http://127.0.0.1:$(head -n1 "$work/port")"
export AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench AWS_REGION=us-east-1
for file in catalog.json catalog.json changed.json; do
  target/release/local-server --dynamodb-endpoint "$endpoint" --dynamodb-table bench-catalog \
    --data-dir "$work/data" --catalog "$work/$file" --load-only | grep '^catalogue'
done
