#!/usr/bin/env bash
# Regenerates docs/BENCHMARKS.md: builds the release binaries, installs the
# Python anchors (numpy, faiss-cpu, FastAPI, implicit, scikit-surprise) into a private venv, and measures every
# target side by side with its anchor in this one run.
#
#   scripts/bench.sh            # full run (~15 minutes)
#   BENCH_SECONDS=1 scripts/bench.sh   # quicker, noisier
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release -p vitrine-loadtest -p vitrine-core -p vitrine-server -p vitrine-train --bins
cargo build --release -p vitrine-server --example hello_hyper

venv=target/bench-venv
python=""
if command -v python3 >/dev/null; then
  if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv" || true
  fi
  if [ -x "$venv/bin/python" ] && "$venv/bin/pip" install -q numpy scipy faiss-cpu fastapi uvicorn implicit scikit-surprise >/dev/null 2>&1; then
    python="$venv/bin/python"
  else
    echo "bench: could not install the Python anchors; they will be reported as skipped" >&2
  fi
else
  echo "bench: no python3; the Python anchors will be reported as skipped" >&2
fi

exec python3 scripts/bench.py --anchor-python "${python}" --seconds "${BENCH_SECONDS:-3}"
