"""The dashboard at scale: body size against GitHub's 65,536-character limit, render time,
and the GitHub requests of a no-change cycle.

1. `bot.core.dashboard.body` for 20, 200 and 1,000 agents (one in ten needs attention and has
   a change in flight, every agent has skip reasons and triggers at the worst level), the size
   of the body, whether the healthy ones collapsed and how long rendering and reading the
   boxes back take.
2. A real cycle on the GitHub stand-in with 200 healthy agents (PyGithub over HTTP): the first
   run opens the dashboard, the second changes nothing; the requests each made.

    python benchmarks/dashboard.py

Prints figures; asserts nothing.
"""

from __future__ import annotations

import csv
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from bot.core import dashboard  # noqa: E402
from bot.core.dashboard import AgentLine, ResultLine, View  # noqa: E402
from bot.core.model import Policy  # noqa: E402

AGENT = """id: {id}
owner: "@acme/ops"
description: "Sorts tickets."
model: {{name: claude-sonnet-4-5, temperature: 0, max_tokens: 300}}
prompts:
  system: |
    You sort support tickets into billing, shipping or other. Answer with that one word.
  user_template: "Ticket: {{{{ ticket }}}}"
"""


def view(n: int) -> View:
    agents = tuple(
        AgentLine(f"agent-{i:04d}", "needs attention" if i % 10 == 0 else "excellent",
                  0.9 if i % 10 == 0 else 0.99, 10_000, f"{i:012x}", "2026-11-01",
                  f"#{i} open for review: agent-{i:04d}: fix invalid JSON output"
                  if i % 10 == 0 else "",
                  notes=(f"'Err{i}' failures: the prompt already says what the rule would "
                         "add",) * 3,
                  triggers=(f"repeated errors: 'Err{i}' 137 times in the last day",)
                  if i % 10 == 0 else ())
        for i in range(n))
    results = tuple(ResultLine(i, f"agent-{i:04d}", "t", "completed", "success", 0.03, 0.01,
                               0.05, 0.02, "2026-12-01", proposal_id=f"p-{i:010d}")
                    for i in range(min(n, 50)))
    return View(f"{n} agents", agents, results, (("error_handling", 7, 0.84),),
                ("at most 3 new proposal PR(s) per run",))


def render_figures() -> None:
    limit = Policy().dashboard.max_chars
    print(f"dashboard body (dashboard.max_chars {limit:,}; GitHub's limit 65,536)")
    print(f"{'agents':>7} {'chars':>8} {'collapsed':>10} {'render ms':>10} {'read ms':>8}")
    for n in (20, 200, 1000):
        v = view(n)
        start = time.perf_counter()
        for _ in range(20):
            text = dashboard.body(v, None, limit)
        render = (time.perf_counter() - start) / 20 * 1000
        start = time.perf_counter()
        for _ in range(20):
            dashboard.commands(text)
            dashboard.snoozes(text)
        read = (time.perf_counter() - start) / 20 * 1000
        collapsed = "healthy agent(s), nothing in flight" in text
        print(f"{n:>7} {len(text):>8,} {collapsed!s:>10} {render:>10.1f} {read:>8.2f}")


def git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True,
                   env={"GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@example.com",
                        "GIT_COMMITTER_NAME": "b", "GIT_COMMITTER_EMAIL": "b@example.com",
                        "PATH": "/usr/bin:/bin:/usr/local/bin", "HOME": str(cwd)})


def github_figures() -> None:
    from standin.github_server import GitHubStandIn

    from bot.app import run
    from bot.context import Context
    from bot.edges.git import Git
    from bot.edges.github_forge import GitHubForge
    from bot.edges.tokens import count_tokens

    with tempfile.TemporaryDirectory() as tmp:
        work, origin = Path(tmp) / "work", Path(tmp) / "origin.git"
        git(Path(tmp), "init", "--bare", "-q", "-b", "main", str(origin))
        work.mkdir()
        shutil.copytree(ROOT / "policies", work / "policies")
        ids = [f"agent-{i:03d}" for i in range(200)]
        for agent in ids:
            (work / "prompts" / agent).mkdir(parents=True)
            (work / "prompts" / agent / "agent.yaml").write_text(AGENT.format(id=agent))
        git(work, "init", "-q", "-b", "main")
        git(work, "add", "-A")
        git(work, "commit", "-qm", "200 agents")
        git(work, "remote", "add", "origin", str(origin))
        git(work, "push", "-q", "origin", "main")
        start = datetime.now().replace(microsecond=0) - timedelta(days=6)
        export = Path(tmp) / "export.csv"
        with export.open("w", newline="") as handle:
            out = csv.writer(handle)
            out.writerow(["timestamp", "agent_id", "execution_id", "status", "latency_ms"])
            out.writerows(((start + timedelta(minutes=37 * n)).isoformat(), a, f"{a}-{n}",
                           "success", 900) for a in ids for n in range(220))
        with GitHubStandIn(bare_repo=origin) as standin:
            def cycle() -> tuple[float, int, int]:
                standin.reset_log()
                g = Git(work)
                hub = GitHubForge(g, token="test-token", repository="acme/prompts",
                                  base_url=standin.base_url, bot_login=standin.actor,
                                  fast=True)
                began = time.perf_counter()
                run(Context(root=work, git=g, forge=hub, count_tokens=count_tokens),
                    [str(export)])
                return (time.perf_counter() - began, len(standin.requests),
                        len(standin.writes()))

            first, second = cycle(), cycle()
            body = standin.plain_issues()[0]["body"]
    print("\nGitHub stand-in, 200 healthy agents, 44,000 executions")
    print(f"first cycle (opens the dashboard): {first[0]:5.1f} s, {first[1]} requests, "
          f"{first[2]} write(s)")
    print(f"no-change cycle:                   {second[0]:5.1f} s, {second[1]} requests, "
          f"{second[2]} write(s)")
    print(f"dashboard body: {len(body):,} characters")


if __name__ == "__main__":
    render_figures()
    github_figures()
