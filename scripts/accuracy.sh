#!/usr/bin/env bash
# Regenerates docs/ACCURACY.md from real runs on ../shared/data (MovieLens),
# side by side with scikit-surprise and implicit in the same run.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p vitrine-train -p vitrine-quantize
venv=target/bench-venv
python=""
if command -v python3 >/dev/null; then
  [ -x "$venv/bin/python" ] || python3 -m venv "$venv" || true
  if [ -x "$venv/bin/python" ] && "$venv/bin/pip" install -q numpy scipy pandas implicit scikit-surprise >/dev/null 2>&1; then
    python="$venv/bin/python"
  else
    echo "accuracy: could not install the Python anchors; they will be reported as skipped" >&2
  fi
fi
exec python3 scripts/accuracy.py --anchor-python "$python" "$@"
