"""The size and time of each `promptbot sql` result on a simulated export (docs/WAREHOUSE.md,
"Figures").

Issue 18's target: the daily aggregate of 10 M rows is at most 1 % of the raw export's size.

Simulates an export with `promptbot simulate` (re-sent and bad rows included) into a
temporary directory, or takes `--csv PATH`; loads it into an in-process DuckDB table (session
time zone Asia/Kolkata, as the tests: days must be UTC days whatever the session says); runs
the SQL `promptbot sql --dialect duckdb` prints for each result on it, writes the result as
CSV, and prints per result its rows, bytes, share of the raw CSV and time. With `--check`,
also ingests the raw export and the results and prints whether their executions, bad rows and
duplicates agree (tests/test_warehouse.py compares everything, on smaller exports).

    python benchmarks/warehouse_sql.py [--per-day 8000] [--days 0] [--csv PATH] [--check]

`--per-day 8000` gives about 1 M rows (140 MB of CSV, ~20 s in all on 2 cores); `--per-day
80000` about 10 M (1.4 GB, a few minutes). Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import duckdb

from bot.cli import _parser, main
from bot.core.model import MetricsPolicy, PricingPolicy
from bot.load import metrics

# Each result: its option(s). Histograms only where this checkout's `promptbot sql` has them.
RESULTS = {"daily": [], "hourly": ["--hourly"], "failures": ["--failures"],
           "bad-rows": ["--bad-rows"], "histograms": ["--histograms"]}


def _options() -> set[str]:
    commands = next(a for a in _parser()._actions if a.dest == "command")
    sql = commands.choices["sql"]  # type: ignore[index]
    return {o for a in sql._actions for o in a.option_strings}


def _printed(root: Path, *args: str) -> str:
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        code = main(["-C", str(root), "sql", "--dialect", "duckdb", *args])
    if code != 0:
        raise SystemExit(f"promptbot sql {' '.join(args)} exited {code}")
    return buffer.getvalue().strip().removesuffix(";")


def _simulate(out: Path, per_day: int, days: int) -> Path:
    """The shipped agents' traffic, as `promptbot simulate` writes it in a fresh clone."""
    project, repo = Path(__file__).resolve().parents[1], out / "repo"
    for name in ("prompts", "policies", "examples"):
        shutil.copytree(project / name, repo / name)
    for command in (["init", "-q", "-b", "main"], ["add", "-A"],
                    ["-c", "user.name=bench", "-c", "user.email=b@example.com", "commit", "-q",
                     "-m", "prompts"]):
        subprocess.run(["git", *command], cwd=repo, check=True)
    args = ["-C", str(repo), "simulate", "--out", str(out / "sim"), "--per-day", str(per_day),
            "--duplicates", "0.001", "--bad-rows", "0.0005"]
    if days:
        args += ["--days", str(days)]
    with contextlib.redirect_stdout(io.StringIO()):
        if main(args) != 0:
            raise SystemExit("promptbot simulate failed")
    return out / "sim" / "executions.csv"


def main_() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--per-day", type=int, default=8000)
    parser.add_argument("--days", type=int, default=0, help="0: simulate's default")
    parser.add_argument("--csv", type=Path, help="an export to read instead of simulating")
    parser.add_argument("--check", action="store_true",
                        help="also compare with ingest of the raw export")
    args = parser.parse_args()
    have = _options()
    with tempfile.TemporaryDirectory(prefix="pb-warehouse-") as tmp:
        base = Path(tmp)
        started = time.perf_counter()
        export = args.csv or _simulate(base, args.per_day, args.days)
        if not args.csv:
            print(f"simulated in {time.perf_counter() - started:.1f} s")
        raw_bytes = export.stat().st_size
        con = duckdb.connect()
        con.execute("SET TimeZone = 'Asia/Kolkata'")
        started = time.perf_counter()
        con.execute(f"CREATE TABLE executions AS SELECT * FROM read_csv('{export}')")
        rows = con.execute("SELECT count(*) FROM executions").fetchall()[0]
        print(f"export: {rows[0] if rows else 0:,} rows, {raw_bytes / 1e6:,.1f} MB of CSV, "
              f"loaded in {time.perf_counter() - started:.1f} s")
        root = base / "policy"  # no policy: the defaults, as the simulated export needs
        root.mkdir()
        print(f"{'result':<11} {'rows':>9} {'bytes':>12} {'share':>9} {'DuckDB':>8}")
        written: dict[str, Path] = {}
        for name, option in RESULTS.items():
            if not set(option) <= have:
                continue
            sql = _printed(root, *option)
            path = base / f"{name}.csv"
            started = time.perf_counter()
            con.sql(sql).write_csv(str(path))
            seconds = time.perf_counter() - started
            out_rows = max(sum(1 for _ in path.open(encoding="utf-8")) - 1, 0)
            size = path.stat().st_size
            print(f"{name:<11} {out_rows:>9,} {size:>12,} {size / raw_bytes:>8.3%} "
                  f"{seconds:>7.1f}s")
            written[name] = path
        daily_form = [p for n, p in written.items() if n != "hourly"]
        total = sum(p.stat().st_size for p in daily_form)
        print(f"daily form ({', '.join(n for n in written if n != 'hourly')}): {total:,} bytes, "
              f"{total / raw_bytes:.3%} of the raw export (target <= 1 %)")
        if args.check:
            policy, pricing = MetricsPolicy(), PricingPolicy()
            raw = metrics.ingest_with([str(export)], policy, pricing)
            started = time.perf_counter()
            agg = metrics.ingest_with([str(p) for p in daily_form], policy, pricing)
            print(f"reading the daily form: {time.perf_counter() - started:.2f} s")
            for what in ("rows_used", "bad_rows", "duplicates"):
                print(f"  {what}: raw {getattr(raw, what):,}, daily form "
                      f"{getattr(agg, what):,}")
            print(f"  bad rows by reason equal: {raw.bad_by_reason == agg.bad_by_reason}")


if __name__ == "__main__":
    main_()
