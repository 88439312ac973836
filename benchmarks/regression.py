"""Regression cases from production: what reading the failing inputs and building the cases
costs on a large export, and how much of real text the scrubber changes.

1. Builds the example repository in a temporary directory, merges the support-triage
   proposal and writes `promptbot simulate` traffic of `--rows` executions (failing ones
   carry an `input`, as a runtime that logs the user template's variables would write), as
   CSV and as Parquet.
2. Times `failing_inputs` (the one DuckDB query a fix costs) and `regression.plan` (matching
   the failure mode, scrubbing, neutralising, choosing three cases) on each.
3. Times the scrubber and the neutraliser on 100 KB of their patterns' worst shapes.
4. Scrubs the 16,000 lines of Loghub-2k (real logs: ids, IPs, sizes, times) and counts the
   lines it changes: every change there is a false positive, except real e-mail addresses.

    python benchmarks/regression.py [--rows 10000000]

Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from bot.core import diagnosis, regression, templating
from bot.core.model import Policy
from bot.load.metrics import failing_inputs

PROJECT = Path(__file__).resolve().parents[1]
LOGHUB = PROJECT.parent / "shared" / "reference" / "loghub-2k"
ENV = {**os.environ, "GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "b@example.com",
       "GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "b@example.com"}


def _cli(root: Path, *args: str) -> str:
    out = subprocess.run([sys.executable, "-m", "bot", "-C", str(root), *args], env=ENV,
                         check=True, capture_output=True, text=True)
    return out.stdout


def _repo(where: Path) -> Path:
    root = where / "repo"
    root.mkdir()
    for name in ("prompts", "policies", "examples"):
        shutil.copytree(PROJECT / name, root / name)
    shutil.copy(PROJECT / ".gitignore", root / ".gitignore")
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "init"]):
        subprocess.run(["git", *args], cwd=root, env=ENV, check=True, capture_output=True)
    _cli(root, "run")
    _cli(root, "pr", "merge", "3")
    return root


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        where = Path(tmp)
        root = _repo(where)
        days = 28
        per_day = max(1, args.rows // days // 3)  # three agents
        for fmt in ("csv", "parquet"):
            out = where / f"sim-{fmt}"
            t0 = time.perf_counter()
            _cli(root, "simulate", "--out", str(out), "--days", str(days), "--per-day",
                 str(per_day), "--format", fmt, "--seed", "3")
            made = time.perf_counter() - t0
            files = sorted(str(p) for p in out.iterdir() if p.suffix in (".csv", ".parquet"))
            size = sum(Path(f).stat().st_size for f in files)
            policy = Policy()
            agent = yaml.safe_load((root / "prompts/support-triage/agent.yaml").read_text())
            record = next((root / "prompts/support-triage/proposals").glob("*.yaml"))
            problem = yaml.safe_load(record.read_text())
            t0 = time.perf_counter()
            rows = failing_inputs(files, policy.metrics, policy.pricing, agent="support-triage",
                                  error_type=problem["problem"]["error_type"],
                                  version=problem["base_version"], before=None,
                                  template=problem["problem"]["template"])
            read = time.perf_counter() - t0
            assert rows is not None
            template = agent["prompts"]["user_template"]
            category = diagnosis.of_failure(problem["problem"]["error_type"],
                                            problem["problem"]["template"], "")
            t0 = time.perf_counter()
            p = regression.plan(rows, template=problem["problem"]["template"],
                                variables=templating.variables(template), category=category,
                                fmt="json", existing={},
                                renders=lambda inputs, t=template: _renders(t, inputs))
            planned = time.perf_counter() - t0
            print(f"{fmt}: {args.rows:,} rows requested, {size / 1e6:,.0f} MB "
                  f"(simulated in {made:.1f} s)")
            print(f"  failing_inputs: {len(rows):,} failing rows with an input in {read:.2f} s")
            print(f"  plan: {len(p.cases)} cases from {p.candidates:,} distinct inputs in "
                  f"{planned:.2f} s; scrubbed {dict(p.scrubbed)}, neutralised {p.neutralised}")
    # The worst shapes for the scrubber's and neutraliser's patterns, 100 KB each (one
    # input of a production export): an earlier secret pattern took 110 s on 8 KB.
    for name, text in (("x.", "x." * 50_000), ("secret_", "secret_" * 14_000),
                       ("pin-", "pin-" * 25_000), ("A", "A" * 100_000),
                       ("PEM header", "-----BEGIN RSA PRIVATE KEY-----" * 3_300)):
        t0 = time.perf_counter()
        regression.Scrubber().text(text)
        regression.neutralise(text)
        print(f"100 KB of {name!r}: scrubbed and neutralised in "
              f"{(time.perf_counter() - t0) * 1000:.0f} ms")
    if LOGHUB.is_dir():
        lines = changed = 0
        t0 = time.perf_counter()
        for path in sorted(LOGHUB.glob("*_structured.csv")):
            with path.open(newline="", encoding="utf-8", errors="replace") as f:
                for row in csv.DictReader(f):
                    lines += 1
                    if regression.Scrubber().text(row["Content"]) != row["Content"]:
                        changed += 1
        took = time.perf_counter() - t0
        print(f"Loghub-2k: {changed} of {lines:,} real log lines changed by the scrubber "
              f"({changed / lines:.3%}); {lines / took:,.0f} lines/s")


def _renders(template: str, inputs: dict[str, object]) -> str | None:
    try:
        templating.render(template, dict(inputs), strict=False)
    except templating.RenderError as exc:
        return str(exc)
    return None


if __name__ == "__main__":
    main()
