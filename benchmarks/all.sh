#!/usr/bin/env bash
# Every figure in docs/PERFORMANCE.md, in one command (about 5 minutes; needs the bench extra:
# pip install -e '.[bench]'). Prints figures; asserts nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
echo "== cycle (200 agents)";        "$PY" benchmarks/cycle.py
echo; echo "== decision quality";    "$PY" benchmarks/decisions.py --sims 2000
echo; echo "== ingest (10 M rows)";  "$PY" benchmarks/ingest.py "$@"
