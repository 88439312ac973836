"""Canary rollouts through git: a proposal merged as a canary, stage PRs, promote or end."""

from __future__ import annotations

import csv
import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pydantic
import pytest
import yaml
from conftest import Cli, git, snapshot_state

from bot import runtime
from bot.core.canary import next_step
from bot.core.model import MeasurePolicy
from bot.core.rollout import RolloutPlan

AGENT = "support-triage"
ROLLOUT = Path("prompts") / AGENT / "rollout.yaml"


@pytest.fixture(autouse=True)
def _fresh_cache() -> None:
    runtime._cache.clear()


def enable(repo: Path, stages: str = "[0.05, 0.25, 0.5]") -> None:
    path = repo / "policies" / "promptbot.yaml"
    text = path.read_text()
    assert "  canary_stages: []" in text
    path.write_text(text.replace("  canary_stages: []", f"  canary_stages: {stages}"))
    git(repo, "commit", "-qam", "policy: merge proposals as canaries")


def prs(cli: Cli) -> list[dict[str, Any]]:
    data = cli.json("pr", "list", "--json")
    assert isinstance(data, list)
    return data


def open_pr(cli: Cli, title_part: str) -> dict[str, Any]:
    found = [p for p in prs(cli) if p["state"] == "open" and title_part in p["title"]]
    assert len(found) == 1, [p["title"] for p in prs(cli)]
    return found[0]


def cycle(cli: Cli, repo: Path, effects: Path | None = None) -> str:
    """Traffic that follows main (the canary's split included), then a run."""
    args = ["simulate", "--out", str(repo / "sim"), "--days", "14", "--seed", "5"]
    code, _, err = cli(*args, *(["--effects", str(effects)] if effects else []))
    assert code == 0, err
    code, out, err = cli("run", "--metrics", str(repo / "sim" / "*.csv"))
    assert code == 0, err
    return out


def result_of(repo: Path, pid: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(
        (repo / "prompts" / AGENT / "results" / f"{pid}.json").read_text())
    return data


def test_a_canary_advances_by_pr_and_is_promoted(cli: Cli, repo: Path) -> None:
    enable(repo)
    assert cli("run")[0] == 0
    proposal = open_pr(cli, f"{AGENT}: fix")
    pid = proposal["proposal_id"]
    _, shown, _ = cli("pr", "show", str(proposal["number"]))
    assert "Merged as a canary" in shown and "5 % → 25 % → 50 % → 100 %" in shown
    base_text = (repo / "prompts" / AGENT / "agent.yaml").read_text()
    base_version = runtime.load_agent(repo, AGENT).version

    assert cli("pr", "merge", str(proposal["number"]))[0] == 0
    served = runtime.load_agent(repo, AGENT)
    assert served.rollout is not None and served.rollout.share == 5
    assert served.rollout.baseline.version == base_version
    assert served.version != base_version

    # The simulated export follows the split: about 5 % of the executions after the merge.
    cycle(cli, repo)
    merged_at = datetime.fromisoformat(git(repo, "log", "-1", "--format=%cI", "main~1"))
    with (repo / "sim" / "executions.csv").open() as handle:
        after = [r for r in csv.DictReader(handle) if r["agent_id"] == AGENT
                 and datetime.fromisoformat(r["timestamp"].replace("Z", "+00:00"))
                 > merged_at + timedelta(hours=1)]
    share = sum(r["prompt_version"] == served.version for r in after) / len(after)
    assert 0.035 < share < 0.065, share

    # Stage by stage: each a PR a person merges, until the decision's PR.
    seen = []
    for _ in range(4):
        step = [p for p in prs(cli) if p["state"] == "open" and p["agent"] == AGENT
                and "canary" in (p["labels"] and " ".join(p["labels"]))]
        assert len(step) == 1, [p["title"] for p in prs(cli)]
        seen.append(step[0]["title"])
        assert cli("pr", "merge", str(step[0]["number"]))[0] == 0
        if "promote" in step[0]["title"]:
            break
        cycle(cli, repo)
    assert seen[0] == f"{AGENT} canary: 5 % → 25 %"
    assert "promote" in seen[-1]
    assert not (repo / ROLLOUT).exists()
    promoted = runtime.load_agent(repo, AGENT)
    assert promoted.rollout is None and promoted.version == served.version
    assert (repo / "prompts" / AGENT / "agent.yaml").read_text() != base_text

    result = result_of(repo, pid)
    assert result["state"] == "completed" and result["comparison"]["decision"] == "success"
    assert "canary's current stage" in result["attribution"]
    cycle(cli, repo)  # the agent is free again: its next problem may get a proposal
    before = snapshot_state(repo)
    cycle(cli, repo)
    assert snapshot_state(repo) == before  # promoted and recorded: a rerun changes nothing


def test_a_bad_candidate_ends_the_canary(cli: Cli, repo: Path, tmp_path: Path) -> None:
    enable(repo, "[0.25, 0.5]")
    effects = tmp_path / "effects.yaml"
    effects.write_text(f"agents:\n  {AGENT}: {{effect: -0.06}}\n")
    assert cli("run")[0] == 0
    proposal = open_pr(cli, f"{AGENT}: fix")
    base_text = (repo / "prompts" / AGENT / "agent.yaml").read_text()
    assert cli("pr", "merge", str(proposal["number"]))[0] == 0
    out = cycle(cli, repo, effects)
    end = open_pr(cli, "end canary")
    assert "regression" in out
    _, shown, _ = cli("pr", "show", str(end["number"]))
    assert "the candidate is worse" in shown
    # A second run finds the same PR: no duplicate.
    cycle(cli, repo, effects)
    assert len([p for p in prs(cli) if "end canary" in p["title"]]) == 1

    assert cli("pr", "merge", str(end["number"]))[0] == 0
    assert (repo / "prompts" / AGENT / "agent.yaml").read_text() == base_text
    assert not (repo / ROLLOUT).exists()
    cycle(cli, repo, effects)
    result = result_of(repo, proposal["proposal_id"])
    assert result["state"] == "rolled_back"
    assert result["headline"].startswith("rolled back (regression")


def test_a_stage_a_person_closed_is_not_opened_again(cli: Cli, repo: Path) -> None:
    enable(repo)
    assert cli("run")[0] == 0
    proposal = open_pr(cli, f"{AGENT}: fix")
    assert cli("pr", "merge", str(proposal["number"]))[0] == 0
    cycle(cli, repo)
    stage = open_pr(cli, "canary: 5 % → 25 %")
    assert cli("pr", "close", str(stage["number"]), "--reason", "hold at 5 %")[0] == 0
    out = cycle(cli, repo)
    assert "closed by a person; not reopened" in out
    assert not [p for p in prs(cli) if p["state"] == "open" and "canary" in p["title"]]
    # The agent stays busy: no new proposal for it while its canary runs.
    assert not [p for p in prs(cli) if p["state"] == "open" and p["agent"] == AGENT]


def test_rollback_of_a_staged_canary_restores_the_baseline(cli: Cli, repo: Path) -> None:
    enable(repo)
    assert cli("run")[0] == 0
    proposal = open_pr(cli, f"{AGENT}: fix")
    base_text = (repo / "prompts" / AGENT / "agent.yaml").read_text()
    assert cli("pr", "merge", str(proposal["number"]))[0] == 0
    cycle(cli, repo)
    assert cli("pr", "merge", str(open_pr(cli, "canary: 5 % → 25 %")["number"]))[0] == 0
    # A plain revert of the first merge would conflict with the stage's edit.
    code, _, err = cli("rollback", proposal["proposal_id"])
    assert code == 0, err
    roll = open_pr(cli, "Roll back")
    assert cli("pr", "merge", str(roll["number"]))[0] == 0
    assert (repo / "prompts" / AGENT / "agent.yaml").read_text() == base_text
    assert not (repo / ROLLOUT).exists()
    assert runtime.load_agent(repo, AGENT).rollout is None


# ----------------------------------------------------------------- pure parts


PLAN = RolloutPlan("p-1", "cand", 5.0, (5.0, 25.0, 50.0), {}, "base")
T0 = datetime(2026, 3, 2, 12)


@pytest.mark.parametrize(("decision", "hours", "share", "action", "to"), [
    ("regression", 1, 5.0, "end", None),
    ("no_effect", 100, 50.0, "end", None),
    ("success", 2, 5.0, "promote", None),
    ("inconclusive", 100, 25.0, "wait", None),
    ("keep_measuring", 23, 5.0, "wait", None),
    ("keep_measuring", 24, 5.0, "advance", 25.0),
    ("insufficient_data", 30, 25.0, "advance", 50.0),
    ("keep_measuring", 500, 50.0, "wait", None),  # the last stage waits for a decision
])
def test_next_step(decision: str, hours: int, share: float, action: str,
                   to: float | None) -> None:
    plan = PLAN._replace(share=share)
    step = next_step(plan, decision, "why", T0, T0 + timedelta(hours=hours), MeasurePolicy())
    assert (step.action, step.share) == (action, to)
    assert step.reason


@pytest.mark.parametrize(("stages", "message"), [
    ([0.5, 0.25], "must increase"),
    ([0.05, 1.0], "below 1"),
    ([0.123456], "four decimals"),
])
def test_a_stage_plan_that_cannot_run_is_refused(stages: list[float], message: str) -> None:
    with pytest.raises(pydantic.ValidationError, match=message):
        MeasurePolicy(canary_stages=stages)
    with pytest.raises(pydantic.ValidationError, match=message):
        MeasurePolicy(canary_agents={"a": stages})
    with pytest.raises(pydantic.ValidationError, match="not an agent id"):
        MeasurePolicy(canary_agents={"../x": [0.1]})


def test_the_rollout_file_is_readable_by_yaml_1_2(cli: Cli, repo: Path) -> None:
    """Another language's runtime reads the file the bot writes with the same values."""
    from ruamel.yaml import YAML

    enable(repo)
    assert cli("run")[0] == 0
    proposal = open_pr(cli, f"{AGENT}: fix")
    branch = next(p["branch"] for p in prs(cli) if p["number"] == proposal["number"])
    text = git(repo, "show", f"{branch}:{ROLLOUT.as_posix()}")
    assert YAML(typ="safe", pure=True).load(text) == yaml.safe_load(text)
