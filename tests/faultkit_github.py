"""The kill-point sweep on GitHub: promptbot with `--forge github` against the stand-in.

Each step runs as Actions runs it: in a fresh clone of `origin` (the bare repository the
stand-in serves), as a real process killed before or after its k-th git call; the next
try is another fresh clone, as the next workflow run would be. The stand-in's records
(pull requests, comments, labels, statuses) and origin's refs must then be exactly as
after the uninterrupted step (`hub_state`). Between steps a person merges on GitHub
(`GitHubStandIn.merge`), outside the sweep.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import shutil
import signal
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from faultkit import PROJECT, REAL_GIT, Harness, Step, differences, git, make_repo
from standin.github_server import GitHubStandIn

REPOSITORY = "acme/prompts"


@dataclass(frozen=True)
class HubStep:
    step: Step
    merge_after: str | None = None  # a person merges this agent's PR after the step


def steps(sim: Path, date0: str = "2026-03-02T09:00:00+00:00") -> list[HubStep]:
    t0 = datetime.fromisoformat(date0)

    def day(n: int) -> str:
        return (t0 + timedelta(days=n)).isoformat()

    hub = ("--forge", "github")
    examples = ("--metrics", str(PROJECT / "examples" / "metrics" / "*.csv"))
    measured = ("--metrics", str(sim / "*.csv"))
    return [
        HubStep(Step("run", ("run", *hub, *examples), day(0)), merge_after="support-triage"),
        HubStep(Step("measuring run", ("run", *hub, *measured), day(15))),
        HubStep(Step("rollback", ("rollback", "3", *hub), day(16)), merge_after="rollback"),
        HubStep(Step("run after the revert", ("run", *hub, *measured), day(17))),
    ]


def hub_state(standin: GitHubStandIn, origin: Path) -> dict[str, object]:
    """What a run may change on GitHub, less ids and wall-clock times."""
    snap = standin.snapshot()
    issues: dict[str, Any] = {}
    for number, issue in sorted(snap["_issues"].items()):
        pull = issue.pull
        issues[str(number)] = {
            "title": issue.title, "body": issue.body, "state": issue.state,
            "labels": sorted(getattr(issue, "labels", []) or []),
            "head": pull.head_ref if pull else None, "merged": pull.merged if pull else None,
            "comments": [(c.user, c.body) for c in sorted(snap["_comments"].values(),
                                                             key=lambda c: c.id)
                         if c.issue_number == number],
        }
    statuses = {sha: {s["context"]: (s["state"], s.get("description")) for s in entries}
                for sha, entries in snap["_statuses"].items()}
    return {"origin": git(origin, "for-each-ref", "--format=%(refname) %(objectname)"),
            "issues": issues, "statuses": statuses,
            "validation_errors": list(standin.validation_errors)}


@dataclass
class HubWorld:
    """One stand-in over one origin; snapshots on disk so any process can start from one."""

    work: Path
    h: Harness

    def __post_init__(self) -> None:
        self.origin = self.work / "origin.git"
        self.standin: GitHubStandIn | None = None

    def start(self) -> GitHubStandIn:
        self.standin = GitHubStandIn(bare_repo=self.origin).start()
        return self.standin

    def save(self, where: Path) -> None:
        assert self.standin is not None
        shutil.rmtree(where, ignore_errors=True)
        where.mkdir(parents=True)
        shutil.copytree(self.origin, where / "origin.git", symlinks=True)
        (where / "standin.pickle").write_bytes(pickle.dumps(self.standin.snapshot()))

    def load(self, where: Path) -> None:
        assert self.standin is not None
        shutil.rmtree(self.origin, ignore_errors=True)
        shutil.copytree(where / "origin.git", self.origin, symlinks=True)
        self.standin.restore(pickle.loads((where / "standin.pickle").read_bytes()))
        self.standin.validation_errors.clear()

    def clone(self, name: str) -> Path:
        dest = self.work / name
        shutil.rmtree(dest, ignore_errors=True)
        subprocess.run([REAL_GIT, "clone", "-q", str(self.origin), str(dest)], check=True,
                       capture_output=True, env=self.h.env)
        return dest

    def env(self) -> dict[str, str]:
        assert self.standin is not None
        return {"GITHUB_TOKEN": self.standin.token, "GITHUB_REPOSITORY": REPOSITORY,
                "GITHUB_API_URL": self.standin.base_url, "PROMPTBOT_BOT_LOGIN":
                self.standin.actor, "PROMPTBOT_GITHUB_NO_DELAY": "1"}


@dataclass
class HubBaseline:
    snapshots: list[Path]  # before each step
    after: list[dict[str, object]]
    calls: list[int]
    writes: list[int]  # requests that change something on GitHub


def baseline(world: HubWorld, plan: Sequence[HubStep], sim: Path) -> HubBaseline:
    from bot.edges.git import Git
    from bot.load.simulate import simulate

    seed = make_repo(world.work / "seed", plan[0].step.date)
    subprocess.run([REAL_GIT, "init", "-q", "--bare", "-b", "main", str(world.origin)],
                   check=True, capture_output=True)
    subprocess.run([REAL_GIT, "push", "-q", str(world.origin), "main"], cwd=seed, check=True,
                   capture_output=True, env=world.h.env)
    standin = world.start()
    standin.set_permission("reviewer", "write")
    snapshots, after, calls, writes = [], [], [], []
    for i, hs in enumerate(plan):
        snap = world.work / f"before-{i}"
        world.save(snap)
        snapshots.append(snap)
        clone = world.clone("clone")
        standin.reset_log()
        done = world.h.run(clone, hs.step, extra_env=world.env())
        writes.append(len(standin.writes()))
        if done.code != 0:
            raise AssertionError(f"{hs.step.name} failed uninterrupted: {done.stderr[-2000:]}")
        after.append(hub_state(standin, world.origin))
        calls.append(done.calls)
        if hs.merge_after:
            number = _pr_of(standin, hs.merge_after)
            standin.merge(number, by="reviewer")
            if i == 0:  # traffic after the deploy, for the measuring run
                measured = world.clone("sim-clone")
                simulate(Git(measured), sim, days=14, seed=5, per_day=400, effect=0.04,
                         effects_file=None, version_column=True)
    return HubBaseline(snapshots, after, calls, writes)


def _pr_of(standin: GitHubStandIn, what: str) -> int:
    for number, issue in sorted(standin.snapshot()["_issues"].items()):
        if issue.pull is not None and issue.state == "open" and what in issue.pull.head_ref:
            return int(number)
    raise LookupError(f"no open PR for {what}")


def kill_point(world: HubWorld, base: HubBaseline, plan: Sequence[HubStep], index: int,
               k: int, when: str) -> list[str]:
    """Kill step `index` before/after its k-th git call, or ("request") right after GitHub
    carried out its k-th write and before the answer; then the next run, in a fresh clone."""
    world.load(base.snapshots[index])
    step = plan[index].step
    assert world.standin is not None
    pids: list[int] = []
    seen = [0]

    def at_write(method: str, path: str) -> None:
        seen[0] += 1
        if seen[0] == k and pids:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pids[0], signal.SIGKILL)

    if when == "request":
        world.standin.write_hook = at_write
    try:
        first = world.h.run(world.clone("killed"), step,
                            kill_at=0 if when == "request" else k,
                            when="before" if when == "request" else when,
                            extra_env=world.env(), started=lambda p: pids.append(p.pid))
    finally:
        world.standin.write_hook = None
    problems = []
    if not first.killed and first.code != 0 and when != "request":
        problems.append(f"failed without being killed: {first.stderr[-500:]}")
    again = world.h.run(world.clone("next"), step, extra_env=world.env())
    if again.code != 0:
        problems.append(f"the next run failed: {again.stderr[-800:]}")
    problems += differences(base.after[index], hub_state(world.standin, world.origin))
    return problems
