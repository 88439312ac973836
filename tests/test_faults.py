"""Crash safety: kills at step boundaries, lost answers from GitHub, a held lock.

The full sweep over every kill point is benchmarks/faults.py; here a sample of it (the
merge around its commit point, every other step in the middle and at the end) and every
kind of lost answer on the GitHub stand-in.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import PROJECT, Cli, git, pull_count, read_only, snapshot_state
from conftest import github_context as context
from conftest import proposal_prs as bot_prs
from faultkit import (
    Baseline,
    Harness,
    Step,
    baseline,
    canary_walkthrough,
    copy_repo,
    kill_point,
    step_index,
    walkthrough,
)
from standin.github_server import GitHubStandIn

from bot.app import run
from bot.core import markers
from bot.core.markers import parse
from bot.edges.git import Git
from bot.edges.lock import repo_lock
from bot.errors import PromptbotError
from bot.load.simulate import simulate

METRICS = [str(PROJECT / "examples" / "metrics" / "*.csv")]


# ---------------------------------------------------------------- kill points (local forge)


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> tuple[Harness, list[Step], Baseline, Path]:
    where = tmp_path_factory.mktemp("faults")
    h = Harness(where / "harness")
    steps = walkthrough()
    return h, steps, baseline(h, steps, where), where


def _sample() -> list[tuple[str, float, str]]:
    """(step, position in its git calls 0..1, before/after): the merge around its commit
    point, the rest in the middle and at the end (the whole sweep: benchmarks/faults.py)."""
    points = [("pr merge", p, when) for p in (0.5, 0.8, 0.9, 1.0)
              for when in ("before", "after")]
    for step in ("run", "measuring run", "run after the revert"):
        points += [(step, 0.5, "before"), (step, 1.0, "before")]
    points += [("rollback", 0.5, "after"), ("merge the rollback", 0.8, "after")]
    return points


@pytest.mark.parametrize(("step_name", "position", "when"), _sample())
def test_a_kill_at_a_step_boundary_ends_as_an_uninterrupted_run(
    sweep: tuple[Harness, list[Step], Baseline, Path], step_name: str, position: float,
    when: str,
) -> None:
    h, steps, base, where = sweep
    index = step_index(steps, step_name)
    k = max(1, round(position * base.calls[index]))
    target = where / f"kill-{index}-{k}-{when}"
    assert kill_point(h, base, steps, index, k, when, target) == []


@pytest.fixture(scope="module")
def canary_sweep(tmp_path_factory: pytest.TempPathFactory
                 ) -> tuple[Harness, list[Step], Baseline, Path]:
    where = tmp_path_factory.mktemp("canary-faults")
    h = Harness(where / "harness")
    steps = canary_walkthrough()
    return h, steps, baseline(h, steps, where, canary=True), where


@pytest.mark.parametrize(("step_name", "position", "when"), [
    ("canary stage run", 0.5, "before"), ("canary stage run", 1.0, "after"),
    ("merge the end", 0.8, "after"),
])
def test_a_kill_in_the_canary_loop_ends_as_an_uninterrupted_run(
    canary_sweep: tuple[Harness, list[Step], Baseline, Path], step_name: str,
    position: float, when: str,
) -> None:
    """The end-canary PR (a branch that deletes the rollout file and restores agent.yaml)
    is opened once and merged once, whatever step a kill interrupts."""
    h, steps, base, where = canary_sweep
    index = step_index(steps, step_name)
    k = max(1, round(position * base.calls[index]))
    target = where / f"kill-{index}-{k}-{when}"
    assert kill_point(h, base, steps, index, k, when, target) == []


@pytest.mark.parametrize("sig", ["INT", "TERM"])
def test_ctrl_c_or_sigterm_during_the_merge_is_clean(
    sweep: tuple[Harness, list[Step], Baseline, Path], sig: str,
) -> None:
    h, steps, base, where = sweep
    index = step_index(steps, "pr merge")
    # Inside the merge's critical section (after the intent, around the ref update): the
    # signal waits for the section to end, so main and the record always agree.
    for k in range(base.calls[index] - 3, base.calls[index] + 1):
        problems = kill_point(h, base, steps, index, k, "after", where / f"{sig}-{k}", sig=sig)
        assert problems == [], (k, problems)


def test_a_merge_killed_after_main_moved_is_recorded_once_never_merged_twice(
    sweep: tuple[Harness, list[Step], Baseline, Path],
) -> None:
    h, steps, base, where = sweep
    index = step_index(steps, "pr merge")
    root = where / "double-merge"
    copy_repo(base.before[index], root)
    before = git(root, "rev-parse", "main")
    # Find the kill point right after main moved: the first one whose kill leaves main moved.
    for k in range(1, base.calls[index] + 1):
        copy = where / f"probe-{k}"
        copy_repo(base.before[index], copy)
        h.run(copy, steps[index], kill_at=k, when="after")
        if git(copy, "rev-parse", "main") != before:
            root = copy
            break
    else:
        pytest.fail("no kill point moved main")
    record = json.loads((root / ".promptbot/forge.json").read_text())
    assert record["prs"][2]["state"] == "open"  # the kill came before the record
    again = h.run(root, steps[index])
    assert again.code == 0, again.stderr
    merges = git(root, "rev-list", "--merges", "--count", "main")
    assert merges == "1"
    record = json.loads((root / ".promptbot/forge.json").read_text())
    assert record["prs"][2]["state"] == "merged"
    assert record["prs"][2]["merge_sha"] == git(root, "rev-parse", "main")
    assert git(root, "status", "--porcelain") == ""


# ---------------------------------------------------------------- the person's checkout


def test_stale_stat_info_is_not_mistaken_for_a_local_change(cli: Cli, repo: Path) -> None:
    assert cli("run")[0] == 0
    agent = repo / "prompts/support-triage/agent.yaml"
    os.utime(agent, (1, 1))  # touched: same content, new stat info
    code, _out, err = cli("pr", "merge", "3")
    assert code == 0, err
    assert "Reliability rules" in agent.read_text()
    assert git(repo, "status", "--porcelain") == ""


def test_local_changes_in_the_way_refuse_and_change_nothing(cli: Cli, repo: Path) -> None:
    assert cli("run")[0] == 0
    agent = repo / "prompts/support-triage/agent.yaml"
    agent.write_text(agent.read_text() + "# my edit\n")
    (repo / "notes.txt").write_text("mine\n")
    git(repo, "add", "notes.txt")
    head = git(repo, "rev-parse", "main")
    status = git(repo, "status", "--porcelain")
    code, _, err = cli("pr", "merge", "3")
    assert code == 3
    assert "local changes are in the way (prompts/support-triage/agent.yaml)" in err
    assert "commit or stash" in err
    assert git(repo, "rev-parse", "main") == head
    assert git(repo, "status", "--porcelain") == status
    assert agent.read_text().endswith("# my edit\n")
    record = json.loads((repo / ".promptbot/forge.json").read_text())
    assert record["prs"][2]["state"] == "open" and "merging" not in record["prs"][2]


def test_what_the_person_staged_elsewhere_stays_staged(cli: Cli, repo: Path) -> None:
    assert cli("run")[0] == 0
    (repo / "notes.txt").write_text("mine\n")
    git(repo, "add", "notes.txt")
    code, _, err = cli("pr", "merge", "3")
    assert code == 0, err
    assert git(repo, "status", "--porcelain") == "A  notes.txt"
    assert git(repo, "diff", "--cached", "--name-only") == "notes.txt"


def test_a_second_writing_command_says_who_holds_the_lock(cli: Cli, repo: Path) -> None:
    with repo_lock(repo / ".git", "run"):
        code, _, err = cli("pr", "merge", "1")
    assert code == 3
    assert f"held by pid {os.getpid()}, `promptbot run`" in err
    assert "wait for it to finish" in err
    code, _, err = cli("pr", "merge", "1")  # released: no stale lock
    assert "held by" not in err


# ---------------------------------------------------------------- lost answers (GitHub)


@pytest.mark.parametrize(("method", "path", "what"), [
    ("POST", "/pulls", "drop"), ("POST", "/pulls", "delay"), ("POST", "/pulls", "error"),
    ("POST", "/labels", "drop"), ("POST", "/statuses/", "drop"),
    ("POST", "/statuses/", "error"),
])
def test_a_lost_answer_while_proposing_leaves_no_duplicate_and_nothing_missing(
    clone: Path, standin: GitHubStandIn, method: str, path: str, what: str,
) -> None:
    standin.after_processing(method, path, what, delay=2.5)
    run(context(clone, standin, timeout=1), METRICS)
    run(context(clone, standin, timeout=1), METRICS)  # the next run
    prs = bot_prs(standin)
    assert pull_count(standin) == 3 and len(prs) == 3
    for pr in prs.values():
        number = int(str(pr["number"]))
        assert standin.labels(number) == ["promptbot", "promptbot:proposed"]
        head = pr["head"]
        assert isinstance(head, dict)
        if pr["title"].startswith("meeting-summarizer"):
            continue  # no tests.yaml: no offline eval, no status
        contexts = [s["context"] for s in standin.statuses(str(head["sha"]))]
        assert "promptbot/eval" in contexts


@pytest.mark.parametrize(("method", "path", "what"), [
    ("POST", "/comments", "drop"), ("POST", "/comments", "delay"),
    ("POST", "/comments", "error"), ("PATCH", "/issues/", "drop"),
    ("PATCH", "/issues/", "error"),
])
def test_a_lost_answer_on_the_results_comment_never_makes_two(
    clone: Path, standin: GitHubStandIn, method: str, path: str, what: str,
) -> None:
    run(context(clone, standin), METRICS)
    number = int(str(bot_prs(standin)["support-triage"]["number"]))
    standin.merge(number)
    git(clone, "pull", "-q", "--ff-only", "origin", "main")
    sim = clone.parent / "sim"
    simulate(Git(clone), sim, days=14, seed=5, per_day=400, effect=0.04, effects_file=None,
             version_column=True)
    standin.after_processing(method, path, what, delay=2.5)
    first = run(context(clone, standin, timeout=1), [str(sim / "*.csv")])
    run(context(clone, standin, timeout=1), [str(sim / "*.csv")])
    results = [c for c in standin.comments(number)
               if (parse(str(c["body"])) or {}).get("kind") == "results"]
    assert len(results) == 1, first.errors
    assert "promptbot:completed" in standin.labels(number)


def test_duplicate_bot_comments_are_retired_keeping_the_first(
    clone: Path, standin: GitHubStandIn,
) -> None:
    run(context(clone, standin), METRICS)
    number = int(str(bot_prs(standin)["support-triage"]["number"]))
    forge = context(clone, standin).forge
    body = markers.attach("results", {"kind": "results", "proposal_id": "p-1"})
    assert forge.upsert_comment(number, "results", body) == "created"
    # What an older promptbot's blind retry left behind: the same comment twice.
    standin.add_comment(number, str(standin.comments(number)[-1]["body"]), user=standin.actor)
    assert forge.upsert_comment(number, "results", body) == "unchanged"
    kinds = [(parse(str(c["body"])) or {}).get("kind") for c in standin.comments(number)]
    assert kinds.count("results") == 1 and kinds.count("duplicate") == 1
    assert kinds.index("results") < kinds.index("duplicate")  # the first one stays


def test_a_502_on_a_read_is_retried(clone: Path, standin: GitHubStandIn) -> None:
    standin.fail_next("GET", 502, "Bad Gateway", path="/pulls")
    report = run(context(clone, standin), METRICS)
    assert report.errors == []
    assert len(bot_prs(standin)) == 3


@pytest.mark.parametrize(("status", "says"), [
    (502, "GitHub had a server error (HTTP 502)"),
    (401, "did not accept the token (HTTP 401)"),
    (404, "GitHub answered 404"),
    (403, "check GITHUB_TOKEN's permissions"),
])
def test_each_refusal_says_what_it_is(clone: Path, standin: GitHubStandIn, status: int,
                                      says: str) -> None:
    standin.fail_next("GET", status, "Refused", path="/pulls", times=10)
    with pytest.raises(PromptbotError) as info:
        run(context(clone, standin), METRICS)
    text = info.value.render()
    assert says in text, text
    if status >= 500:
        assert "permissions" not in text


# ---------------------------------------------------------------- a real full disk


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Path]:
    from faultkit import mount_tmpfs, unmount

    where = tmp_path / "disk"
    if not mount_tmpfs(where):
        pytest.skip("needs a tmpfs it can mount (root, as in CI's container)")
    yield where
    unmount(where)


@pytest.mark.parametrize(("step_name", "pages"), [
    ("pr merge", 0), ("pr merge", 5), ("pr merge", 7), ("measuring run", 10),
    ("measuring run", 18),
])
def test_a_full_disk_names_itself_and_leaves_nothing_half_written(
    sweep: tuple[Harness, list[Step], Baseline, Path], disk: Path, step_name: str,
    pages: int,
) -> None:
    from faultkit import full_disk_point

    h, steps, base, _ = sweep
    index = step_index(steps, step_name)
    assert full_disk_point(h, base, steps, index, pages, disk) == []


def test_a_git_call_failing_as_on_a_full_disk_is_named(
    sweep: tuple[Harness, list[Step], Baseline, Path],
) -> None:
    """Portable (no mount): the merge's git calls fail in turn as git does on a full disk."""
    h, steps, base, where = sweep
    index = step_index(steps, "pr merge")
    for k in range(2, base.calls[index] + 1, 4):
        problems = kill_point(h, base, steps, index, k, "full", where / f"full-{k}")
        assert problems == [], (k, problems)


@pytest.mark.parametrize(("where", "argv"), [
    (".promptbot", ("pr", "close", "1")),
    ("reports", ("run",)),
    (".git/objects", ("pr", "merge", "3")),
    ("prompts/support-triage", ("pr", "merge", "3")),
])
def test_a_read_only_path_is_named_and_nothing_is_half_written(
        cli: Cli, repo: Path, where: str, argv: tuple[str, ...]) -> None:
    assert cli("run")[0] == 0
    (repo / "reports/analysis.md").unlink()  # run: a report to write again
    before = snapshot_state(repo)
    with read_only(repo / where):
        code, out, err = cli(*argv)
    assert code == 3, out
    assert "internal error" not in err and "Traceback" not in err
    assert ("Read-only file system" in err or "Permission denied" in err
            or "read-only or not permitted" in err), err
    assert "commit or stash" not in err
    assert snapshot_state(repo) == before
    assert not list((repo / ".promptbot").glob(".forge-*"))
    assert not (repo / ".git/index.lock").exists()


# ---------------------------------------------------------------- kill points (GitHub)


@pytest.fixture(scope="module")
def hub_sweep(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, Any, Any]]:
    import faultkit_github as fg

    where = tmp_path_factory.mktemp("hub")
    world = fg.HubWorld(where / "world", Harness(where / "harness"))
    world.work.mkdir()
    plan = fg.steps(where / "sim")
    base = fg.baseline(world, plan, where / "sim")
    yield world, plan, base
    assert world.standin is not None
    world.standin.stop()


@pytest.mark.parametrize(("step_name", "k", "when"), [
    ("rollback", 1, "request"),  # the rollback PR opened, killed before it was labelled
    ("measuring run", 1, "request"),  # the results comment made, killed before the answer
    ("measuring run", 2, "request"),
    ("run", 30, "after"),
])
def test_a_kill_on_github_ends_as_an_uninterrupted_run(
        hub_sweep: tuple[Any, Any, Any], step_name: str, k: int, when: str) -> None:
    import faultkit_github as fg

    world, plan, base = hub_sweep
    index = step_index([hs.step for hs in plan], step_name)
    assert k <= (base.writes[index] if when == "request" else base.calls[index])
    assert fg.kill_point(world, base, plan, index, k, when) == []


def test_ctrl_c_while_the_libraries_load_prints_no_traceback(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import builtins
    import sys

    from bot import entry

    real = builtins.__import__

    def interrupted(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "bot.cli":
            raise KeyboardInterrupt
        return real(name, *args, **kwargs)

    monkeypatch.delitem(sys.modules, "bot.cli", raising=False)
    monkeypatch.setattr(builtins, "__import__", interrupted)
    with pytest.raises(SystemExit) as stopped:
        entry.main_entry()
    assert stopped.value.code == 130
    err = capsys.readouterr().err
    assert "interrupted before anything was read or written" in err
    assert "Traceback" not in err
