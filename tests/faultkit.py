"""Fault injection: promptbot as a real process, killed before or after its k-th git call.

A `git` shim first on PATH counts the calls of one command (GitPython's too: it runs the
same executable) and, at call k, kills the whole process group — promptbot and the git
it started — before or after running the real git, or fails that call as git does on a
full disk ("full"). Each step of a scenario runs with
fixed commit dates, so an uninterrupted run and an interrupted-then-repeated one must
end in the very same refs, records and files (`state`). Used by tests/test_faults.py (a
sample) and benchmarks/faults.py (every kill point).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bot.core.markers import parse as parse_marker

PROJECT = Path(__file__).resolve().parents[1]
REAL_GIT = shutil.which("git") or "/usr/bin/git"

SHIM = """#!/bin/sh
n=$(($(cat "$FAULT_COUNTER" 2>/dev/null || echo 0) + 1))
echo "$n" > "$FAULT_COUNTER"
if [ "$n" = "$FAULT_AT" ] && [ "$FAULT_WHEN" = before ]; then kill -"$FAULT_SIGNAL" 0; sleep 5; fi
if [ "$n" = "$FAULT_AT" ] && [ "$FAULT_WHEN" = full ] && [ "$1" != version ]; then
  echo "fatal: unable to write new index file: No space left on device" >&2; exit 128
fi
"$FAULT_REAL_GIT" "$@"
rc=$?
if [ "$n" = "$FAULT_AT" ] && [ "$FAULT_WHEN" = after ]; then kill -"$FAULT_SIGNAL" 0; sleep 5; fi
exit $rc
"""

PERSON = {
    "GIT_AUTHOR_NAME": "Test Person", "GIT_AUTHOR_EMAIL": "person@example.com",
    "GIT_COMMITTER_NAME": "Test Person", "GIT_COMMITTER_EMAIL": "person@example.com",
}


@dataclass(frozen=True)
class Step:
    name: str
    argv: tuple[str, ...]
    date: str  # commit dates of this step (ISO 8601, UTC)
    faults: bool = True  # False: a step that only prepares input (simulate)
    atomic: bool = False  # one write that happens whole or not at all (a merge)
    # `pr merge N`: the marker kind PR N must have (the numbers shift when a run opens
    # another PR first; the baseline says so instead of merging the wrong one).
    merges: str = ""


@dataclass
class Outcome:
    code: int
    killed: bool
    stdout: str = ""
    stderr: str = ""
    calls: int = 0


@dataclass
class Harness:
    work: Path  # scratch space: the shim, counters, git config
    env: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        shim_dir = self.work / "shim"
        shim_dir.mkdir(parents=True, exist_ok=True)
        shim = shim_dir / "git"
        shim.write_text(SHIM)
        shim.chmod(0o755)
        self.shim_dir = shim_dir
        base = {k: v for k, v in os.environ.items()
                if not k.startswith(("GITHUB_", "ANTHROPIC_", "PROMPTBOT_", "GIT_"))}
        self.env = {**base, **PERSON, "GIT_CONFIG_GLOBAL": str(self.work / "gitconfig"),
                    "GIT_CONFIG_NOSYSTEM": "1", "FAULT_REAL_GIT": REAL_GIT,
                    "PATH": f"{shim_dir}{os.pathsep}{os.environ.get('PATH', '')}",
                    "PYTHONPATH": str(PROJECT), **self.env}

    def run(self, root: Path, step: Step, *, kill_at: int = 0, when: str = "before",
            sig: str = "KILL", extra_env: dict[str, str] | None = None,
            timeout: float = 300,
            started: Callable[[subprocess.Popen[str]], None] | None = None) -> Outcome:
        counter = self.work / f"counter-{os.getpid()}-{id(step)}"
        counter.unlink(missing_ok=True)
        env = {**self.env, "FAULT_COUNTER": str(counter), "FAULT_AT": str(kill_at),
               "FAULT_WHEN": when, "FAULT_SIGNAL": sig,
               "GIT_AUTHOR_DATE": step.date, "GIT_COMMITTER_DATE": step.date,
               **(extra_env or {})}
        code = ("import sys; sys.argv[0] = 'promptbot'; "
                "from bot.entry import main_entry; main_entry()")
        proc = subprocess.Popen([sys.executable, "-c", code, "-C", str(root), *step.argv],
                                cwd=root, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, start_new_session=True)
        if started is not None:
            started(proc)
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
        calls = int(counter.read_text().strip() or 0) if counter.exists() else 0
        counter.unlink(missing_ok=True)
        killed = proc.returncode < 0 or (kill_at > 0 and calls >= kill_at and when != "full")
        return Outcome(proc.returncode, killed, out, err, calls)


def git(root: Path, *args: str) -> str:
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("GIT_")}, **PERSON,
           "GIT_CONFIG_NOSYSTEM": "1"}
    return subprocess.run([REAL_GIT, *args], cwd=root, env=env, check=True,
                          capture_output=True, text=True).stdout.strip()


CANARY_EFFECTS = "canary-effects.yaml"


def make_repo(path: Path, date: str, canary: bool = False) -> Path:
    """The example repository as a team would have it: prompts, policies, example exports.
    `canary`: proposals merge as canaries (two stages), and an effects file for
    `simulate` that makes the support-triage candidate worse."""
    path.mkdir(parents=True)
    for name in ("prompts", "policies", "examples"):
        shutil.copytree(PROJECT / name, path / name)
    shutil.copy(PROJECT / ".gitignore", path / ".gitignore")
    if canary:
        policy = path / "policies" / "promptbot.yaml"
        policy.write_text(policy.read_text().replace("  canary_stages: []",
                                                     "  canary_stages: [0.25, 0.5]"))
        (path / CANARY_EFFECTS).write_text("agents:\n  support-triage: {effect: -0.06}\n")
    env_date = {"GIT_AUTHOR_DATE": date, "GIT_COMMITTER_DATE": date}
    for args in (["init", "-q", "-b", "main"], ["add", "-A"],
                 ["commit", "-q", "-m", "initial prompts"]):
        subprocess.run([REAL_GIT, *args], cwd=path, check=True, capture_output=True,
                       env={**os.environ, **PERSON, **env_date, "GIT_CONFIG_NOSYSTEM": "1"})
    return path


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def state(root: Path) -> dict[str, object]:
    """What a command may change, as comparable data: every ref, the forge's records (less
    their wall-clock creation time), the person's index and work tree, leftovers."""
    forge_path = root / ".promptbot" / "forge.json"
    forge = json.loads(forge_path.read_text()) if forge_path.exists() else {}
    for record in (*forge.get("prs", []), *forge.get("issues", [])):
        record.pop("created_at", None)
    # The dashboard and alert bodies: a kill must leave each one whole, and never two.
    forge["issue_bodies"] = {p.name: p.read_text() for p in
                             sorted((root / ".promptbot" / "issues").glob("*.md"))}
    untracked = sorted(
        p for p in git(root, "ls-files", "--others", "--exclude-standard", "-z").split("\0") if p)
    leftovers = sorted(
        str(p.relative_to(root)) for pattern in (".promptbot/.forge-*",
                                                 ".promptbot/issues/.issue-*",
                                                 ".git/index.lock",
                                                 ".git/promptbot-checkout.json",
                                                 ".git/promptbot-tmp/*", ".git/worktrees/*",
                                                 "reports/.*.tmp")
        for p in root.glob(pattern))
    return {
        "refs": git(root, "for-each-ref", "--format=%(refname) %(objectname)"),
        "head": git(root, "symbolic-ref", "HEAD"),
        "forge": forge,
        "status": git(root, "status", "--porcelain=v1", "--untracked-files=all"),
        "index_is_head": subprocess.run([REAL_GIT, "diff-index", "--cached", "--quiet", "HEAD"],
                                        cwd=root, capture_output=True).returncode == 0,
        "untracked": {p: _digest(root / p) for p in untracked},
        "leftovers": leftovers,
    }


def differences(want: object, got: object, where: str = "") -> list[str]:
    """Where two states differ, down to the record field."""
    if isinstance(want, dict) and isinstance(got, dict):
        out = []
        for key in sorted(set(want) | set(got), key=str):
            out += differences(want.get(key), got.get(key), f"{where}.{key}".lstrip("."))
        return out
    if isinstance(want, list) and isinstance(got, list) and len(want) == len(got):
        return [d for i, (a, b) in enumerate(zip(want, got, strict=True))
                for d in differences(a, b, f"{where}[{i}]")]
    if want != got:
        return [f"{where}: expected {str(want)[:160]!r}, got {str(got)[:160]!r}"]
    return []


def copy_repo(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, symlinks=True)
    return dst


def _days(date0: str) -> Callable[[int], str]:
    """Commit dates: day n of a scenario that starts at `date0`."""
    from datetime import datetime, timedelta

    t0 = datetime.fromisoformat(date0)
    return lambda n: (t0 + timedelta(days=n)).isoformat()


def walkthrough(date0: str = "2026-03-02T09:00:00+00:00") -> list[Step]:
    """The README's loop: propose, merge, measure, roll back, record the rollback."""
    day = _days(date0)
    sim = ("--metrics", "sim/*.csv")
    return [
        Step("run", ("run",), day(0)),
        Step("pr merge", ("pr", "merge", "3"), day(1), atomic=True),
        Step("simulate", ("simulate", "--out", "sim", "--days", "14", "--seed", "3"), day(1),
             faults=False),
        Step("measuring run", ("run", *sim), day(15)),
        Step("rollback", ("rollback", "3"), day(16)),
        # The measuring run opened the regression-case PR (#4) and a new proposal (#5).
        Step("merge the rollback", ("pr", "merge", "6"), day(16), atomic=True,
             merges="rollback"),
        Step("run after the revert", ("run", *sim), day(17)),
    ]


def canary_walkthrough(date0: str = "2026-03-02T09:00:00+00:00") -> list[Step]:
    """The canary variant (make_repo(canary=True)): a proposal merged as a canary, a worse
    candidate measured at its stage, the end-canary PR opened, merged and recorded."""
    day = _days(date0)
    sim = ("--metrics", "sim/*.csv")
    return [
        Step("run", ("run",), day(0)),
        Step("pr merge", ("pr", "merge", "3"), day(1), atomic=True),
        Step("simulate", ("simulate", "--out", "sim", "--days", "14", "--seed", "3",
                          "--effects", CANARY_EFFECTS), day(1), faults=False),
        Step("canary stage run", ("run", *sim), day(15)),
        Step("merge the end", ("pr", "merge", "4"), day(16), atomic=True, merges="canary"),
        Step("run after the end", ("run", *sim), day(17)),
    ]


def step_index(steps: Sequence[Step], name: str) -> int:
    return next(i for i, s in enumerate(steps) if s.name == name)


@dataclass
class Baseline:
    """The uninterrupted scenario: the repository before each step and its state after."""

    before: list[Path]
    after: list[dict[str, object]]
    calls: list[int]


def baseline(h: Harness, steps: Sequence[Step], where: Path, canary: bool = False
             ) -> Baseline:
    root = make_repo(where / "repo", steps[0].date, canary)
    before, after, calls = [], [], []
    for i, step in enumerate(steps):
        before.append(copy_repo(root, where / f"before-{i}"))
        if step.merges:
            prs = json.loads((root / ".promptbot" / "forge.json").read_text())["prs"]
            body = next(p["body"] for p in prs if str(p["number"]) == step.argv[-1])
            kind = (parse_marker(body) or {}).get("kind")
            if kind != step.merges:
                raise AssertionError(f"{step.name}: PR #{step.argv[-1]} is a {kind} PR, "
                                     f"not a {step.merges} one")
        result = h.run(root, step)
        if result.code != 0:
            raise AssertionError(f"{step.name} failed uninterrupted: {result.stderr[-2000:]}")
        after.append(state(root))
        calls.append(result.calls)
    return Baseline(before, after, calls)


def kill_point(h: Harness, base: Baseline, steps: Sequence[Step], index: int, k: int,
               when: str, where: Path, sig: str = "KILL") -> list[str]:
    """Kill step `index` at git call `k`, run it again, compare with the uninterrupted run.
    The violations found (empty: the point held)."""
    step = steps[index]
    root = copy_repo(base.before[index], where)
    first = h.run(root, step, kill_at=k, when=when, sig=sig)
    problems = []
    if when == "full":
        if first.code != 0 and "disk is full" not in first.stderr:
            problems.append(f"a full disk was not named: {first.stderr[-500:]}")
        if "internal error" in first.stderr:
            problems.append(f"internal error on a full disk: {first.stderr[-500:]}")
    elif not first.killed and first.code != 0:
        problems.append(f"failed without being killed: {first.stderr[-500:]}")
    if "Traceback" in first.stderr:
        problems.append(f"traceback on {sig}: {first.stderr[-500:]}")
    again = h.run(root, step)
    if again.code != 0:
        problems.append(f"the repeated command failed: {again.stderr[-800:]}")
    problems += differences(base.after[index], state(root))
    shutil.rmtree(root, ignore_errors=True)
    return problems


# ---------------------------------------------------------------- a real full disk

PAGE = 4096


def mount_tmpfs(path: Path, size: str = "24m") -> bool:
    """A small RAM disk that really fills up (needs root, as in CI's container)."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                          capture_output=True)
    return done.returncode == 0


def unmount(path: Path) -> None:
    subprocess.run(["umount", "-l", str(path)], capture_output=True)


def fill(disk: Path, leave_pages: int) -> Path:
    """Fill the file system of `disk`, then free `leave_pages` pages."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        for block in (b"\0" * (256 * PAGE), b"\0" * PAGE):
            try:
                while True:
                    os.write(fd, block)
            except OSError:
                pass
    finally:
        os.close(fd)
    size = filler.stat().st_size
    os.truncate(filler, max(0, size - leave_pages * PAGE))
    return filler


def full_disk_point(h: Harness, base: Baseline, steps: Sequence[Step], index: int,
                    leave_pages: int, disk: Path) -> list[str]:
    """Run step `index` with only `leave_pages` pages free: it either succeeds or names the
    full disk and changes nothing; with space again, it ends as the uninterrupted run."""
    root = copy_repo(base.before[index], disk / "repo")
    before = state(root)
    filler = fill(disk, leave_pages)
    first = h.run(root, steps[index])
    filler.unlink()
    problems = []
    if first.code != 0:
        if "disk is full" not in first.stderr:
            problems.append(f"a full disk was not named: {first.stderr[-600:]}")
        if "internal error" in first.stderr or "Traceback" in first.stderr:
            problems.append(f"not a clean error: {first.stderr[-600:]}")
        now = state(root)
        # The person's checkout is never left changed and nothing temporary stays; a
        # single-step command (a merge, a rollback) changes nothing at all. A run's steps
        # that finished before the disk filled (a comment, a label) may stand.
        keys = list(before) if steps[index].atomic else \
            ["status", "index_is_head", "untracked", "leftovers", "head"]
        problems += [f"half-written: {d}" for d in differences(
            {k: before[k] for k in keys}, {k: now[k] for k in keys})]
    again = h.run(root, steps[index])
    if again.code != 0:
        problems.append(f"the repeated command failed: {again.stderr[-600:]}")
    problems += differences(base.after[index], state(root))
    shutil.rmtree(root, ignore_errors=True)
    return problems
