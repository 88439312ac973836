"""Ingest + analyze a large export: promptbot beside DuckDB's bare scan and plain pandas.

Generates (once, cached per --data folder) an export of `--rows` executions with duplicates
and bad rows in CSV and Parquet, then runs each contender of benchmarks/ingest_jobs.py in its
own process, so its peak RSS (/usr/bin/time) is its own; seconds are measured inside the
process, imports excluded:
  - promptbot: `bot.load.metrics.ingest` (bad rows per reason, dedupe, hourly sums, daily
    histograms, failure templates, per-version statistics), then the daily series that
    `promptbot analyze` reports (executions, success rate, latency p95, cost);
  - duckdb scan: DuckDB reads and decodes every column ingest reads, with promptbot's reader
    call, and does nothing else (sums of string lengths, numbers, epoch microseconds): the
    engine's own floor. Not `count(*)`, which on Parquet reads only metadata;
  - pandas: the same analysis written in plain, vectorized pandas, with the same outputs:
    bad rows with promptbot's reasons and priority, dedupe by trimmed execution_id (the
    earliest good row wins), hourly sums, per-version statistics with exact percentiles,
    daily series, failure templates (each distinct message masked once with the shapes
    bot.core.templates.mask recognises most often).

Per format it prints seconds and peak RSS per contender, the ratios promptbot / bare scan and
pandas / promptbot, and checksums of promptbot and pandas side by side (usable executions,
duplicates, bad rows and per reason, failures, templates, ...), which should agree, plus how
far promptbot's percentiles (read from 5 % log bins) are from pandas' exact ones.

    python benchmarks/ingest.py [--rows 10000000] [--data DIR] [--skip-pandas]

Prints figures; asserts nothing. The pandas baseline needs the bench extra (pandas, pyarrow).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

JOBS = Path(__file__).with_name("ingest_jobs.py")
CONTENDERS = {"promptbot": "promptbot", "duckdb scan": "scan", "pandas": "pandas"}
# Checksums of promptbot and pandas, which should agree (key in the jobs' output, label).
CHECKS = (
    ("rows", "rows read"), ("usable", "usable executions"), ("duplicates", "duplicates"),
    ("bad", "bad rows"), ("failures", "failures"), ("templated", "failures templated"),
    ("templates", "distinct templates"), ("template_days", "template-day groups"),
    ("versions", "agent versions"), ("days", "daily series points"),
    ("hours", "hourly buckets"),
)


# The pandas baseline masks each distinct message with the shapes bot.core.templates.mask
# recognises most often (quoted values, URLs, runs of letters and digits holding a digit),
# as vectorized regexes: the same work in plain pandas, not promptbot's code.
MASKS = (
    (r"'[^'\n]{0,200}'", "'<*>'"),
    (r'"[^"\n]{0,200}"', '"<*>"'),
    (r"https?://[^\s'\"<>`]+", "<*>"),
    (r"[A-Za-z0-9]*[0-9][A-Za-z0-9]*", "<*>"),
)


def config() -> dict[str, Any]:
    """promptbot's names and rules, handed to the jobs so scan and pandas never import it."""
    from bot.core.metrics import TAIL_GAP, TAIL_SHARE
    from bot.load.metrics import CANONICAL, MESSAGE_LIMIT, NUMERIC, STATUSES

    return {"columns": [c for c in CANONICAL if c != "model"],  # ingest never reads model
            "numeric": list(NUMERIC), "statuses": list(STATUSES), "masks": list(MASKS),
            "message_limit": MESSAGE_LIMIT, "tail_days": TAIL_GAP.days,
            "tail_share": TAIL_SHARE}


def run(job: str, path: Path, cfg: dict[str, Any]) -> tuple[float, float, dict[str, Any]]:
    """(seconds, peak RSS in MB, checksums) of one job in a fresh interpreter."""
    done = subprocess.run(
        ["/usr/bin/time", "-f", "%M", sys.executable, str(JOBS), job, str(path),
         json.dumps(cfg)],
        capture_output=True, text=True, check=False,
    )
    lines = done.stderr.strip().splitlines()  # the last one is /usr/bin/time's
    if done.returncode != 0:
        said = [x for x in lines[:-1] if not x.startswith("Command exited")]
        return float("nan"), float("nan"), {"error": said[-1][:200] if said else "failed"}
    rss_kb = float(lines[-1])
    seconds, checks = done.stdout.strip().splitlines()[-1].split(" ", 1)
    return float(seconds), rss_kb / 1024, json.loads(checks)


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


def compare(bot: dict[str, Any], pandas: dict[str, Any]) -> list[str]:
    """Checksums side by side, bad rows per reason, and how close promptbot's percentiles
    (read from 5 % log bins) are to pandas' exact ones."""
    lines = [f"{'checksum':<34}{'promptbot':>12}{'pandas':>12}"]
    for key, label in CHECKS:
        mark = "" if bot.get(key) == pandas.get(key) else "   DIFFERENT"
        lines.append(f"{label:<34}{bot.get(key, '-'):>12,}{pandas.get(key, '-'):>12,}{mark}")
    for reason in sorted(set(bot["bad_by_reason"]) | set(pandas["bad_by_reason"])):
        b, p = bot["bad_by_reason"].get(reason, 0), pandas["bad_by_reason"].get(reason, 0)
        lines.append(f"  {reason[:32]:<32}{b:>12,}{p:>12,}" + ("" if b == p else "   DIFFERENT"))
    gaps = [abs(b / p - 1) for key, ps in pandas["percentiles"].items()
            for b, p in zip(bot["percentiles"].get(key, ()), ps, strict=False)
            if b is not None and p is not None and math.isfinite(p) and p > 0]
    if gaps:
        lines.append(f"latency p50/p95/p99 of {len(pandas['percentiles'])} versions: promptbot's "
                     f"within {max(gaps):.1%} of pandas' exact ones (median "
                     f"{statistics.median(gaps):.2%})")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--data", default=str(Path(tempfile.gettempdir()) / "promptbot-bench"))
    parser.add_argument("--skip-pandas", action="store_true")
    args = parser.parse_args()
    folder = Path(args.data)
    folder.mkdir(parents=True, exist_ok=True)
    files = generate(args.rows, folder)
    cfg = config()
    pad = " " * 9
    for fmt, path in files.items():
        print(f"\n{'format':<9}{'contender':<14}{'seconds':>9}{'peak RSS MB':>13}")
        results = {name: run(job, path, cfg) for name, job in CONTENDERS.items()
                   if not (args.skip_pandas and job == "pandas")}
        for name, (seconds, rss, out) in results.items():
            note = (f"   {out['columns']} columns, {out['rows']:,} rows" if "columns" in out
                    else f"   {out['error']}" if "error" in out else "")
            print(f"{fmt:<9}{name:<14}{seconds:>9.2f}{rss:>13.0f}{note}")
        bot = results["promptbot"][0]
        ratios = f"promptbot / bare scan {bot / results['duckdb scan'][0]:.1f}x"
        if "pandas" in results:
            ratios += f", pandas / promptbot {results['pandas'][0] / bot:.1f}x"
        print(f"{pad}ratios: {ratios}")
        if "pandas" in results and "error" not in results["pandas"][2] \
                and "error" not in results["promptbot"][2]:
            for line in compare(results["promptbot"][2], results["pandas"][2]):
                print(pad + line)


if __name__ == "__main__":
    main()
