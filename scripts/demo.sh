#!/usr/bin/env bash
# The quickstart: build the server, publish the seeded demo model (1,000
# shoppers × 5,000 SKU-like items, 32 int8 dimensions, with biases, seen
# items, attributes, popularity and a holdout) as target/demo-models/demo/1,
# print curl examples, and serve it on 127.0.0.1:8080 (VITRINE_LISTEN or
# the first argument changes that). Ctrl-C stops it (graceful drain).
set -euo pipefail
cd "$(dirname "$0")/.."
listen="${1:-${VITRINE_LISTEN:-127.0.0.1:8080}}"
cargo build --release -q -p vitrine-server -p vitrine-loadtest
models=target/demo-models
if [ ! -f "$models/demo/1/model.vtr" ]; then
  mkdir -p "$models/demo/.tmp-1"
  target/release/vitrine-loadtest gen --out "$models/demo/.tmp-1/model.vtr" --dtype int8
  mv "$models/demo/.tmp-1" "$models/demo/1"   # versions appear by rename
fi
cat <<MSG

Serving the demo model on http://$listen — try, from another terminal:

  curl -s 'http://$listen/v1/models/demo/recommend?user=user-7&k=5'
  curl -s -X POST http://$listen/v1/models/demo/recommend -d '{"user": "user-7", "k": 5, "filter": {"category": "c3"}}'
  curl -s -X POST http://$listen/v1/models/demo/recommend -d '{"history": ["SKU-00001-M", "SKU-00100-S"], "k": 5}'
  curl -s -X POST http://$listen/v1/models/demo/similar -d '{"item": "SKU-00010-L", "k": 5}'
  curl -s http://$listen/v1/models/demo
  curl -s http://$listen/metrics | grep vitrine_

MSG
exec target/release/vitrine-server --models "$models" --listen "$listen"
