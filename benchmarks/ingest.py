"""Ingest + analyze a large export: promptbot beside DuckDB's bare scan and plain pandas.

Generates (once, cached) an export of `--rows` executions with duplicates and bad
rows in CSV and Parquet, then runs each contender in its own process so peak RSS is
its own:
  - promptbot: `bot.load.metrics.ingest` (dedupe, bad rows, hourly sums, histograms,
    failure templates, per-version statistics);
  - duckdb scan: `SELECT count(*)` over the file, the engine's floor;
  - pandas: the same core job written plainly (read, drop bad rows, dedupe by
    execution_id, per agent/version counts, success rate, p50/p95 latency, cost).

    python benchmarks/ingest.py [--rows 10000000] [--data DIR] [--skip-pandas]

Prints figures and ratios; asserts nothing. Needs `pip install pandas pyarrow` for
the pandas baseline.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

PROMPTBOT = """
import time
from bot.load.metrics import ingest
t = time.perf_counter()
s = ingest([{path!r}], window_days=3650)
print(time.perf_counter() - t, s.rows_read, s.rows_used, s.duplicates, s.bad_rows)
"""
SCAN = """
import time, duckdb
c = duckdb.connect()
t = time.perf_counter()
reader = "read_parquet" if {path!r}.endswith(".parquet") else "read_csv"
n = c.execute(f"SELECT count(*) FROM {{reader}}('{{{path!r}}}')").fetchone()[0]
print(time.perf_counter() - t, n)
"""
PANDAS = """
import time
import numpy as np
import pandas as pd
t = time.perf_counter()
path = {path!r}
df = pd.read_parquet(path) if path.endswith(".parquet") else pd.read_csv(path)
ts = pd.to_datetime(df["timestamp"], errors="coerce", utc=True, format="ISO8601")
ok = ts.notna() & df["status"].isin(["success", "failure", "error", "timeout"]) \\
    & (df["latency_ms"] >= 0)
df = df[ok].drop_duplicates("execution_id")
g = df.groupby(["agent_id", "prompt_version"])
out = g.agg(n=("status", "size"), ok=("status", lambda s: (s == "success").sum()),
            p50=("latency_ms", "median"), p95=("latency_ms", lambda s: s.quantile(0.95)),
            cost=("cost_usd", "mean"))
print(time.perf_counter() - t, len(df))
"""


def run(code: str, path: Path) -> tuple[float, float, str]:
    """(seconds, peak RSS in MB, output) of `code` in a fresh interpreter."""
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as handle:
        handle.write(code.format(path=str(path)))
    done = subprocess.run(
        ["/usr/bin/time", "-f", "%M", sys.executable, handle.name],
        capture_output=True, text=True, check=False,
    )
    if done.returncode != 0:
        return float("nan"), float("nan"), done.stderr.strip().splitlines()[-1][:200]
    rss_kb = float(done.stderr.strip().splitlines()[-1])
    out = done.stdout.strip()
    return float(out.split()[0]), rss_kb / 1024, out


def generate(rows: int, folder: Path) -> dict[str, Path]:
    from bot.core.simulate import Options, Timeline, query
    from bot.load.simulate import write

    csv, parquet = folder / "executions.csv", folder / "executions.parquet"
    meta = folder / "meta.json"
    if meta.exists() and json.loads(meta.read_text()).get("rows") == rows:
        return {"csv": csv, "parquet": parquet}
    start, days, agents = datetime(2026, 9, 1), 60, 20
    per_day = max(1, rows // (days * agents))
    timelines = [
        Timeline(f"{['support', 'sql', 'summary'][i % 3]}-agent-{i:02d}",
                 ((start, f"v{i}a"), (start + timedelta(days=30), f"v{i}b")), per_day=per_day,
                 rates={f"v{i}a": 0.9, f"v{i}b": 0.91})
        for i in range(agents)
    ]
    sql = query(timelines, start, start + timedelta(days=days),
                Options(seed=11, duplicate_rate=0.001, bad_rate=0.0005))
    t = time.perf_counter()
    written = write(sql, folder, ["csv", "parquet"])
    print(f"generated {written[0][1]:,} rows in {time.perf_counter() - t:.1f} s "
          f"(CSV {csv.stat().st_size / 1e9:.2f} GB, Parquet {parquet.stat().st_size / 1e6:.0f} MB)")
    meta.write_text(json.dumps({"rows": rows}))
    return {"csv": csv, "parquet": parquet}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--data", default=str(Path(tempfile.gettempdir()) / "promptbot-bench"))
    parser.add_argument("--skip-pandas", action="store_true")
    args = parser.parse_args()
    folder = Path(args.data)
    folder.mkdir(parents=True, exist_ok=True)
    files = generate(args.rows, folder)
    print(f"\n{'format':<9}{'contender':<14}{'seconds':>9}{'peak RSS MB':>13}   output")
    for fmt, path in files.items():
        results = {"promptbot": run(PROMPTBOT, path), "duckdb scan": run(SCAN, path)}
        if not args.skip_pandas:
            results["pandas"] = run(PANDAS, path)
        for name, (seconds, rss, out) in results.items():
            print(f"{fmt:<9}{name:<14}{seconds:>9.2f}{rss:>13.0f}   {out[:60]}")
        bot = results["promptbot"][0]
        print(f"{'':<9}ratios: promptbot / bare scan {bot / results['duckdb scan'][0]:.1f}x"
              + (f", pandas / promptbot {results['pandas'][0] / bot:.1f}x"
                 if "pandas" in results else ""))


if __name__ == "__main__":
    main()
