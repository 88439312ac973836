"""Time one `promptbot run` on a repository with many agents (local forge, no LLM).

SPEC §15 target: a cycle on a 200-agent repo < 30 s. Prints figures; asserts nothing.

    python benchmarks/cycle.py [--agents 200] [--per-day 100] [--days 14]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from bot.app import Context, run
from bot.edges.clock import utc_now
from bot.edges.git import Git
from bot.edges.local_forge import LocalForge
from bot.edges.tokens import count_tokens
from bot.load.simulate import simulate

PROJECT = Path(__file__).resolve().parents[1]
TEMPLATES = ("support-triage", "sql-writer", "meeting-summarizer")
ENV = {**os.environ, "GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "b@example.com",
       "GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "b@example.com"}


def git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, env=ENV)


def make_repo(root: Path, agents: int) -> None:
    shutil.copytree(PROJECT / "policies", root / "policies")
    for i in range(agents):
        src = TEMPLATES[i % len(TEMPLATES)]
        agent_id = f"{src}-{i:03d}"
        text = (PROJECT / "prompts" / src / "agent.yaml").read_text()
        target = root / "prompts" / agent_id / "agent.yaml"
        target.parent.mkdir(parents=True)
        target.write_text(text.replace(f"id: {src}", f"id: {agent_id}", 1))
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "agents")


def timed(label: str, fn: object) -> float:
    start = time.perf_counter()
    result = fn()  # type: ignore[operator]
    seconds = time.perf_counter() - start
    print(f"{label:<44}{seconds:8.2f} s")
    return result  # type: ignore[no-any-return]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--agents", type=int, default=200)
    parser.add_argument("--per-day", type=int, default=100)
    parser.add_argument("--days", type=int, default=14)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "repo"
        root.mkdir()
        make_repo(root, args.agents)
        g = Git(root)
        written = timed("simulate", lambda: simulate(
            g, root / "sim", days=args.days, seed=1, per_day=args.per_day, effect=0.0,
            effects_file=None, version_column=True))
        rows = sum(n for _, n in written)
        ctx = Context(root=root, git=g, forge=LocalForge(g, utc_now),
                      count_tokens=count_tokens)
        metrics = [str(root / "sim" / "*.csv")]
        first = time.perf_counter()
        report = run(ctx, metrics)
        t_first = time.perf_counter() - first
        second = time.perf_counter()
        again = run(ctx, metrics)
        t_second = time.perf_counter() - second
        third = time.perf_counter()
        run(ctx, metrics, dry_run=True)
        t_third = time.perf_counter() - third
        print(f"agents {args.agents}, rows {rows:,}")
        print(f"first run (opens up to max_prs_per_run PRs)   {t_first:8.2f} s   "
              f"actions {len(report.actions)}, errors {len(report.errors)}, "
              f"skipped {len(report.skipped)}")
        for line in (report.errors + report.skipped)[:3]:
            print("  ", line[:200])
        print(f"second run (the next max_prs_per_run PRs)     {t_second:8.2f} s   "
              f"actions {len(again.actions)}")
        print(f"dry run                                       {t_third:8.2f} s")
        worst = max(t_first, t_second, t_third)
        print(f"target: < 30 s per cycle  ->  worst {worst:.2f} s, ratio {worst / 30:.2f}")


if __name__ == "__main__":
    main()
