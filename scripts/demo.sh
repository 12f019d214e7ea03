#!/usr/bin/env bash
# The quickstart until the server lands: build, write the seeded demo model
# (1,000 shoppers × 5,000 SKUs, 32 dims) to demo/model.vtr, print what it
# holds, and show recommendations for one shopper from the artifact.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p vitrine-core -p vitrine-loadtest --bins
mkdir -p demo
target/release/vitrine-loadtest gen --out demo/model.vtr --dtype int8
target/release/vitrine-inspect demo/model.vtr
target/release/vitrine-inspect --verify demo/model.vtr
target/release/vitrine-inspect --user user-7 --k 5 demo/model.vtr
