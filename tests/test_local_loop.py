"""The README walkthrough on the embedded default (local forge, offline generator)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import Cli, git, snapshot_state

from bot.core.markers import parse


def _prs(cli: Cli) -> list[dict[str, Any]]:
    data = cli.json("pr", "list", "--json")
    assert isinstance(data, list)
    return data


def _by_agent(cli: Cli, agent: str) -> dict[str, Any]:
    matches = [p for p in _prs(cli) if p["agent"] == agent and p["state"] != "closed"]
    assert len(matches) == 1, matches
    return matches[0]


def test_first_run_opens_proposals_with_diff_and_estimate(cli: Cli, repo: Path) -> None:
    code, _out, err = cli("run")
    assert code == 0, err
    prs = _prs(cli)
    assert {p["agent"] for p in prs} == {"support-triage", "sql-writer", "meeting-summarizer"}
    for pr in prs:
        assert pr["state"] == "open"
        assert pr["branch"] == f"promptbot/{pr['agent']}/{pr['proposal_id']}"
        assert pr["labels"] == ["promptbot", "promptbot:proposed"]
        assert git(repo, "rev-parse", "--verify", pr["branch"])
    support = _by_agent(cli, "support-triage")
    code, shown, _ = cli("pr", "show", str(support["number"]))
    assert code == 0
    assert "```diff" in shown and "+    Reliability rules" in shown
    assert "Impact estimate" in shown and "Rollback plan" in shown
    # The branch changes exactly the agent file (minimal diff) and adds the proposal record.
    changed = git(repo, "diff", "--name-only", "main", support["branch"]).splitlines()
    assert sorted(changed) == sorted([
        "prompts/support-triage/agent.yaml",
        f"prompts/support-triage/proposals/{support['proposal_id']}.yaml",
    ])
    diff = git(repo, "diff", "-U0", "main", support["branch"], "--",
               "prompts/support-triage/agent.yaml")
    removed = [ln for ln in diff.splitlines() if ln.startswith("-") and not ln.startswith("---")]
    assert removed == []  # only added lines: comments and formatting survived
    # The working copy and the checked-out branch were not touched.
    assert git(repo, "status", "--porcelain") == ""
    assert git(repo, "rev-parse", "--abbrev-ref", "HEAD") == "main"


def test_second_run_changes_nothing(cli: Cli, repo: Path) -> None:
    assert cli("run")[0] == 0
    before = snapshot_state(repo)
    code, out, _ = cli("run")
    assert code == 0
    assert "nothing (everything is up to date)" in out
    assert snapshot_state(repo) == before


def test_dry_run_writes_nothing(cli: Cli, repo: Path) -> None:
    before = snapshot_state(repo)
    code, out, _ = cli("run", "--dry-run")
    assert code == 0
    assert "would do" in out and "open PR" in out
    assert snapshot_state(repo) == before
    assert not (repo / "reports").exists()


def test_merge_measure_revert_loop(cli: Cli, repo: Path) -> None:
    assert cli("run")[0] == 0
    pr = _by_agent(cli, "support-triage")
    old_agent = (repo / "prompts/support-triage/agent.yaml").read_text()
    code, out, _ = cli("pr", "merge", str(pr["number"]))
    assert code == 0
    # Merge = deploy: main carries the new prompt, with a real merge commit.
    merge_sha = git(repo, "rev-parse", "main")
    assert len(git(repo, "rev-list", "--parents", "-n", "1", merge_sha).split()) == 3
    new_agent = (repo / "prompts/support-triage/agent.yaml").read_text()
    assert new_agent != old_agent and "Reliability rules" in new_agent

    code, out, _ = cli("simulate", "--out", str(repo / "sim"), "--days", "14", "--seed", "3")
    assert code == 0 and "wrote" in out
    code, _out, err = cli("run", "--metrics", str(repo / "sim" / "*.csv"))
    assert code == 0, err
    pid = pr["proposal_id"]
    result_json = repo / f"prompts/support-triage/results/{pid}.json"
    result = json.loads(result_json.read_text())
    assert result["state"] == "completed"
    assert result["comparison"]["decision"] == "success"
    assert result["comparison"]["new"]["executions"] > 1000
    assert git(repo, "log", "-1", "--format=%s", "main") == "promptbot: record measured results"
    record = cli.json("pr", "list", "--json")
    merged = next(p for p in record if p["number"] == pr["number"])  # type: ignore[union-attr]
    assert merged["state"] == "merged"
    assert "promptbot:completed" in merged["labels"]
    comments = _results_comments(repo, pr["number"])
    assert len(comments) == 1 and "success" in comments[0]

    before = snapshot_state(repo)
    assert cli("run", "--metrics", str(repo / "sim" / "*.csv"))[0] == 0
    assert snapshot_state(repo) == before

    # A person reverts the merge: the bot records the rollback.
    git(repo, "revert", "-m", "1", "--no-edit", merge_sha)
    assert cli("run", "--metrics", str(repo / "sim" / "*.csv"))[0] == 0
    result = json.loads(result_json.read_text())
    assert result["state"] == "rolled_back"
    assert result["rolled_back_by"] == git(repo, "rev-parse", "HEAD~1")
    comments = _results_comments(repo, pr["number"])
    assert len(comments) == 1 and "rolled back" in comments[0]
    labels = next(p for p in _prs(cli) if p["number"] == pr["number"])["labels"]
    assert "promptbot:rolled-back" in labels and "promptbot:completed" not in labels

    before = snapshot_state(repo)
    assert cli("run", "--metrics", str(repo / "sim" / "*.csv"))[0] == 0
    assert snapshot_state(repo) == before


def _results_comments(repo: Path, number: int) -> list[str]:
    data = json.loads((repo / ".promptbot" / "forge.json").read_text())
    pr = next(p for p in data["prs"] if p["number"] == number)
    return [c["body"] for c in pr["comments"]
            if (parse(c["body"]) or {}).get("kind") == "results"]


def test_measuring_before_enough_data(cli: Cli, repo: Path) -> None:
    assert cli("run")[0] == 0
    pr = _by_agent(cli, "sql-writer")
    assert cli("pr", "merge", str(pr["number"]))[0] == 0
    # One day after the deploy at 30 executions a day is not enough to decide.
    cli("simulate", "--out", str(repo / "sim"), "--days", "1", "--per-day", "30")
    assert cli("run", "--metrics", str(repo / "sim" / "*.csv"))[0] == 0
    result = json.loads(
        (repo / f"prompts/sql-writer/results/{pr['proposal_id']}.json").read_text()
    )
    assert result["state"] == "measuring"
    assert result["comparison"]["more_executions_needed"] > 0
    assert "more executions needed" in result["headline"]


def test_closed_proposal_is_rejected_and_never_reopened(cli: Cli, repo: Path) -> None:
    assert cli("run")[0] == 0
    pr = _by_agent(cli, "meeting-summarizer")
    code, out, _ = cli("pr", "close", str(pr["number"]), "--reason", "we prefer longer notes")
    assert code == 0
    code, out, _ = cli("run")
    assert code == 0
    prs = [p for p in _prs(cli) if p["agent"] == "meeting-summarizer"]
    closed = [p for p in prs if p["proposal_id"] == pr["proposal_id"]]
    assert len(closed) == 1 and closed[0]["state"] == "closed"
    assert "promptbot:rejected" in closed[0]["labels"]
    assert "not reopened" in out
    before = snapshot_state(repo)
    assert cli("run")[0] == 0
    assert snapshot_state(repo) == before


def test_rollback_command_opens_a_revert_pr(cli: Cli, repo: Path) -> None:
    assert cli("run")[0] == 0
    pr = _by_agent(cli, "support-triage")
    assert cli("pr", "merge", str(pr["number"]))[0] == 0
    code, out, err = cli("rollback", pr["proposal_id"])
    assert code == 0, err
    rollback = next(p for p in _prs(cli) if p["branch"].endswith(f"rollback-{pr['proposal_id']}"))
    assert rollback["state"] == "open"
    # The rollback branch restores the base version of the agent file.
    base_text = git(repo, "show", f"{pr['branch']}~1:prompts/support-triage/agent.yaml")
    assert git(repo, "show", f"{rollback['branch']}:prompts/support-triage/agent.yaml") == base_text
    # Asking twice finds the same PR instead of opening another.
    code, out, _ = cli("rollback", str(pr["number"]))
    assert code == 0 and "already open" in out
    assert cli("pr", "merge", str(rollback["number"]))[0] == 0
    cli("simulate", "--out", str(repo / "sim"), "--days", "3")
    assert cli("run", "--metrics", str(repo / "sim" / "*.csv"))[0] == 0
    result = json.loads(
        (repo / f"prompts/support-triage/results/{pr['proposal_id']}.json").read_text()
    )
    assert result["state"] == "rolled_back"


def test_no_version_column_falls_back_to_deploy_time(cli: Cli, repo: Path) -> None:
    assert cli("run")[0] == 0
    pr = _by_agent(cli, "support-triage")
    assert cli("pr", "merge", str(pr["number"]))[0] == 0
    cli("simulate", "--out", str(repo / "sim"), "--no-version-column", "--effect", "0.05")
    assert "prompt_version" not in (repo / "sim" / "executions.csv").read_text().splitlines()[0]
    assert cli("run", "--metrics", str(repo / "sim" / "*.csv"))[0] == 0
    result = json.loads(
        (repo / f"prompts/support-triage/results/{pr['proposal_id']}.json").read_text()
    )
    assert "deploy time" in result["attribution"]
    assert result["comparison"]["decision"] == "success"


def test_results_as_pr_where_main_is_protected(cli: Cli, repo: Path) -> None:
    policy = repo / "policies/promptbot.yaml"
    policy.write_text(policy.read_text().replace("results: commit", "results: pr"))
    git(repo, "commit", "-qam", "results through a PR")
    assert cli("run")[0] == 0
    pr = _by_agent(cli, "support-triage")
    assert cli("pr", "merge", str(pr["number"]))[0] == 0
    main_before = git(repo, "rev-parse", "main")
    cli("simulate", "--out", str(repo / "sim"))
    assert cli("run", "--metrics", str(repo / "sim" / "*.csv"))[0] == 0
    assert git(repo, "rev-parse", "main") == main_before  # nothing pushed to main
    path = f"prompts/support-triage/results/{pr['proposal_id']}.json"
    assert json.loads(git(repo, "show", f"promptbot/results:{path}"))["state"] == "completed"
    results_prs = [p for p in _prs(cli) if p["branch"] == "promptbot/results"]
    assert len(results_prs) == 1 and results_prs[0]["state"] == "open"
    before = snapshot_state(repo)
    assert cli("run", "--metrics", str(repo / "sim" / "*.csv"))[0] == 0
    assert snapshot_state(repo) == before


def test_run_killed_after_branch_is_finished_by_next_run(
    cli: Cli, repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bot.edges.local_forge import LocalForge

    def die(*_args: object, **_kwargs: object) -> None:
        raise KeyboardInterrupt  # the run is killed between the push and the PR

    with monkeypatch.context() as patch:
        patch.setattr(LocalForge, "open_pr", die)
        code, _, _ = cli("run")
    assert code == 130
    branches = git(repo, "branch", "--list", "promptbot/*").split()
    assert len(branches) == 1  # one branch made, no PR record yet
    assert cli("run")[0] == 0
    prs = _prs(cli)
    assert len(prs) == 3 and len({p["branch"] for p in prs}) == 3
    assert git(repo, "branch", "--list", "promptbot/*").split().count(branches[0]) == 1


def test_a_decided_result_is_not_rewritten_by_later_traffic(cli: Cli, repo: Path) -> None:
    assert cli("run")[0] == 0
    pr = _by_agent(cli, "support-triage")
    assert cli("pr", "merge", str(pr["number"]))[0] == 0
    cli("simulate", "--out", str(repo / "sim"), "--seed", "1")
    assert cli("run", "--metrics", str(repo / "sim" / "*.csv"))[0] == 0
    path = repo / f"prompts/support-triage/results/{pr['proposal_id']}.json"
    decided = path.read_text()
    assert json.loads(decided)["state"] == "completed"
    # New traffic with other numbers: the recorded decision stands, no new commit.
    cli("simulate", "--out", str(repo / "sim"), "--seed", "2", "--per-day", "500")
    head = git(repo, "rev-parse", "main")
    assert cli("run", "--metrics", str(repo / "sim" / "*.csv"))[0] == 0
    assert path.read_text() == decided
    assert git(repo, "log", "--format=%s", f"{head}..main", "--",
               "prompts/support-triage/results") == ""
