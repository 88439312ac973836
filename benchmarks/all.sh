#!/usr/bin/env bash
# Every figure in docs/PERFORMANCE.md and docs/RELIABILITY.md, in one command (about 2 hours
# on 2 cores, most of it the decision benchmark: 44 cells of 1,000 experiments, and the
# kill-point sweep; needs the bench extra:
# pip install -e '.[bench]'). Prints figures; asserts nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
echo "== cycle (200 agents)";        "$PY" benchmarks/cycle.py
echo; echo "== decision quality";    "$PY" benchmarks/decisions.py --sims 1000
echo; echo "== failure templates (Loghub-2k) and diagnosis"; "$PY" benchmarks/templates.py
echo; echo "== ingest (10 M rows)";  "$PY" benchmarks/ingest.py "$@"
echo; echo "== install size and start-up"; "$PY" benchmarks/startup.py   # needs the package index
echo; echo "== crash safety (docs/RELIABILITY.md)"
"$PY" benchmarks/faults.py || true   # prints "N kill points, M held"; the violations above it
"$PY" benchmarks/faults.py --full || true
