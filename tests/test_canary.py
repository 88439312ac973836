"""Canary rollouts through git: a proposal merged as a canary, stage PRs, promote or end."""

from __future__ import annotations

import csv
import json
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pydantic
import pytest
import yaml
from conftest import Cli, git, snapshot_state

from bot import runtime
from bot.core.canary import next_step
from bot.core.metrics import Bucket, MetricsSnapshot
from bot.core.model import MeasurePolicy
from bot.core.results import Deployment, measure
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


def cycle(cli: Cli, repo: Path, effects: Path | None = None, hourly: bool = False) -> str:
    """Traffic that follows main (the canary's split included), then a run. `hourly`: the
    run reads the hourly form a warehouse would compute (`promptbot sql --hourly`, with its
    failure rows and rows left out) instead of the rows."""
    # Enough traffic that a 5 % stage gets its own comparison within the week; a true
    # +3 pts is not shown at 5 % but is at 25 %.
    args = ["simulate", "--out", str(repo / "sim"), "--days", "7", "--seed", "5",
            "--per-day", "2000", "--effect", "0.03"]
    code, _, err = cli(*args, *(["--effects", str(effects)] if effects else []))
    assert code == 0, err
    source = repo / "sim" / "*.csv"
    if hourly:
        con = duckdb.connect()
        con.execute(f"CREATE TABLE executions AS SELECT * FROM "
                    f"read_csv('{repo / 'sim' / 'executions.csv'}')")
        out_dir = repo.parent / "warehouse"
        out_dir.mkdir(exist_ok=True)
        for name, option in (("hourly", "--hourly"), ("failures", "--failures"),
                             ("bad-rows", "--bad-rows")):
            code, sql, err = cli("sql", "--dialect", "duckdb", option)
            assert code == 0, err
            con.sql(sql.strip().removesuffix(";")).write_csv(str(out_dir / f"{name}.csv"))
        source = out_dir / "*.csv"
    code, out, err = cli("run", "--metrics", str(source))
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


def test_the_hourly_form_of_a_warehouse_ends_a_bad_canary_as_the_rows_do(
        cli: Cli, repo: Path, tmp_path: Path) -> None:
    """A canary is compared over the hours both versions served: the hourly form carries
    them, so a team whose rows stay in its warehouse gets the same decision."""
    enable(repo, "[0.25, 0.5]")
    effects = tmp_path / "effects.yaml"
    effects.write_text(f"agents:\n  {AGENT}: {{effect: -0.06}}\n")
    assert cli("run")[0] == 0
    proposal = open_pr(cli, f"{AGENT}: fix")
    assert cli("pr", "merge", str(proposal["number"]))[0] == 0
    out = cycle(cli, repo, effects, hourly=True)
    assert "daily-form rows" in out and "regression" in out
    end = open_pr(cli, "end canary")
    _, shown, _ = cli("pr", "show", str(end["number"]))
    assert "the candidate is worse" in shown


def test_a_stage_a_person_closed_is_not_opened_again(cli: Cli, repo: Path) -> None:
    enable(repo)
    assert cli("run")[0] == 0
    proposal = open_pr(cli, f"{AGENT}: fix")
    assert cli("pr", "merge", str(proposal["number"]))[0] == 0
    cycle(cli, repo)
    stage = open_pr(cli, "canary: 5 % → 25 %")
    assert cli("pr", "close", str(stage["number"]), "--reason", "hold at 5 %")[0] == 0
    out = cycle(cli, repo)
    assert "was closed; not reopened" in out
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


@pytest.mark.parametrize(("decision", "caution", "hours", "share", "action", "to"), [
    ("regression", None, 1, 5.0, "end", None),
    ("no_effect", None, 100, 50.0, "end", None),
    ("success", None, 2, 5.0, "promote", None),
    ("inconclusive", None, 100, 25.0, "wait", None),
    ("keep_measuring", None, 29, 5.0, "wait", None),  # 24 h counted from 6 h after merge
    ("keep_measuring", None, 30, 5.0, "advance", 25.0),
    ("insufficient_data", None, 300, 25.0, "wait", None),  # no comparison: no advance
    ("keep_measuring", "sample-ratio mismatch", 300, 5.0, "wait", None),
    ("keep_measuring", None, 500, 50.0, "wait", None),  # the last stage waits for a decision
])
def test_next_step(decision: str, caution: str | None, hours: int, share: float, action: str,
                   to: float | None) -> None:
    plan = PLAN._replace(share=share)
    step = next_step(plan, decision, "why", caution, T0, T0 + timedelta(hours=hours),
                     MeasurePolicy())
    assert (step.action, step.share) == (action, to)
    assert step.reason
    if caution:
        assert caution in step.reason


# ------------------------------------------------ the comparison of a canary's stage


def hourly(start: datetime, hours: int, n: int, rates: dict[str, float],
           share: float) -> list[Bucket]:
    """Deterministic hourly buckets: `n` executions an hour, `share` to v2."""
    out = []
    for h in range(hours):
        hour = start + timedelta(hours=h)
        n_new = round(n * share)
        for version, count in (("v1", n - n_new), ("v2", n_new)):
            if count:
                out.append(Bucket(AGENT, version, hour, count,
                                  round(count * rates[version]), 0, 0))
    return out


def snapshot(buckets: list[Bucket], has_version: bool = True) -> MetricsSnapshot:
    return MetricsSnapshot(
        sources=(), rows_read=0, rows_used=0, duplicates=0, bad_rows=0, bad_by_reason={},
        bad_samples=(), has_version=has_version, oldest=buckets[0].hour,
        newest=max(b.hour for b in buckets) + timedelta(hours=1), window_days=28,
        versions=(), buckets=tuple(buckets))


def deployment(**canary: Any) -> Deployment:
    return Deployment("p-1", AGENT, "v1", "v2", T0, "sha", "v2", None, None, 0.02, **canary)


def test_a_stage_is_compared_over_its_own_hours_only() -> None:
    """Stage 1 (5 %) ran through a bad day for both versions; stage 2 (50 %) is clean. Pooled,
    the baseline's rate would carry the bad day at 95 % weight and the candidate's at 5 %:
    a fake gain. The stage's own comparison sees no difference."""
    stage2 = T0 + timedelta(days=2)
    buckets = (hourly(T0, 48, 200, {"v1": 0.80, "v2": 0.80}, 0.05)
               + hourly(stage2, 96, 200, {"v1": 0.90, "v2": 0.90}, 0.5))
    pooled = measure(deployment(), snapshot(buckets), MeasurePolicy())
    assert pooled.comparison.delta > 0.02  # what pooling across stages would claim
    staged = measure(deployment(canary_share=0.5, canary_since=stage2, canary_stages=3),
                     snapshot(buckets), MeasurePolicy())
    assert abs(staged.comparison.delta) < 0.005
    assert staged.comparison.decision in ("keep_measuring", "no_effect")
    assert "canary's current stage" in staged.attribution and "0.0167" in staged.attribution
    # Ended or promoted at hour 60 of stage 2: nothing after it counts.
    until = stage2 + timedelta(hours=60)
    bounded = measure(deployment(canary_share=0.5, canary_since=stage2, canary_stages=3,
                                 canary_until=until), snapshot(buckets), MeasurePolicy())
    assert bounded.comparison.new.executions == 100 * (60 - 6)


def test_a_split_the_file_does_not_explain_holds_the_canary() -> None:
    buckets = hourly(T0, 96, 400, {"v1": 0.90, "v2": 0.80}, 0.30)  # the file says 5 %
    result = measure(deployment(canary_share=0.05, canary_since=T0, canary_stages=3),
                     snapshot(buckets), MeasurePolicy())
    comparison = result.comparison
    assert comparison.decision == "keep_measuring"
    assert comparison.drift is not None and "sample-ratio mismatch" in comparison.drift
    step = next_step(PLAN, comparison.decision, comparison.reason, comparison.drift, T0,
                     T0 + timedelta(hours=96), MeasurePolicy())
    assert step.action == "wait" and "sample-ratio mismatch" in step.reason
    # All traffic to the candidate, yet the baseline served: a caution, not a crash.
    full = measure(deployment(canary_share=1.0, canary_since=T0, canary_stages=3),
                   snapshot(buckets), MeasurePolicy())
    assert full.comparison.drift is not None and "routing" in full.comparison.drift


def test_a_canary_without_a_version_column_is_never_judged_before_after() -> None:
    buckets = [replace(b, prompt_version=None)
               for b in hourly(T0, 96, 400, {"v1": 0.9, "v2": 0.5}, 0.05)]
    result = measure(deployment(canary_share=0.05, canary_since=T0, canary_stages=3),
                     snapshot(buckets, has_version=False), MeasurePolicy())
    assert result.state == "measuring"
    assert result.comparison.decision == "insufficient_data"
    assert "prompt_version" in result.comparison.reason


def test_stale_stage_prs_are_closed_when_the_canary_is_decided(
        cli: Cli, repo: Path, tmp_path: Path) -> None:
    enable(repo, "[0.05, 0.25, 0.5]")
    effects = tmp_path / "effects.yaml"
    effects.write_text(f"agents:\n  {AGENT}: {{effect: -0.08}}\n")
    assert cli("run")[0] == 0
    assert cli("pr", "merge", str(open_pr(cli, f"{AGENT}: fix")["number"]))[0] == 0
    cycle(cli, repo)  # no harm yet at 5 % on the default effect: the 25 % stage PR
    stage = open_pr(cli, "canary: 5 % → 25 %")
    # Nobody merged it; meanwhile the candidate shows its harm at 5 % (more traffic).
    code, _, err = cli("simulate", "--out", str(repo / "sim"), "--days", "14", "--seed", "9",
                       "--per-day", "2000", "--effects", str(effects))
    assert code == 0, err
    code, out, err = cli("run", "--metrics", str(repo / "sim" / "*.csv"))
    assert code == 0, err
    assert "end canary" in out and f"#{stage['number']}" in out
    states = {p["number"]: p["state"] for p in prs(cli)}
    assert states[stage["number"]] == "closed"
    assert open_pr(cli, "end canary")


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


def test_keys_a_yaml_1_2_reader_would_read_otherwise_are_quoted() -> None:
    from ruamel.yaml import YAML

    from bot.core.agentfile import portability_findings
    from bot.core.canary import rollout_text

    baseline = {"model": {"name": "m", "temperature": 0.0, "max_tokens": 10},
                "prompts": {"system": "s", "user_template": "u"},
                "tools": [{"name": "t", "description": "d", "parameters": {
                    "type": "object", "properties": {"1e3": {}, "on": {}, "0o17": {},
                                                     "plain_key": {}}}}],
                "examples": []}
    text = rollout_text("r-1", baseline, "1234e5678901", 5, (5,))
    assert portability_findings(text, "rollout.yaml", ("rollout", "candidate",
                                                       "baseline")) == []
    assert YAML(typ="safe", pure=True).load(text) == yaml.safe_load(text)
    assert "plain_key:" in text and '"1e3":' in text


def test_no_effect_only_once_the_interval_rules_out_a_change_worth_having() -> None:
    """A narrow interval that still holds +2 pts is not "no effect" (that ended canaries of
    real +2 pt changes); one within ±min_detectable_effect is."""
    from bot.core.stats import Arm, compare

    policy = MeasurePolicy()
    gain = compare(Arm(6000, 5400), Arm(6000, 5490), 0.02, policy)  # +1.5 pts so far
    assert gain.ci_high > policy.min_detectable_effect
    assert gain.decision == "keep_measuring"
    flat = compare(Arm(19000, 17100), Arm(19000, 17110), 0.02, policy)
    assert -policy.min_detectable_effect < flat.ci_low and \
        flat.ci_high < policy.min_detectable_effect
    assert flat.decision == "no_effect" and "min_detectable_effect" in flat.reason


def test_a_candidate_that_looks_worse_is_not_given_more_traffic() -> None:
    hours = T0 + timedelta(hours=100)
    worse = next_step(PLAN, "keep_measuring", "why", None, T0, hours, MeasurePolicy(),
                      delta=-0.06)
    assert worse.action == "wait" and "-6.0 pts worse so far" in worse.reason
    slightly = next_step(PLAN, "keep_measuring", "why", None, T0, hours, MeasurePolicy(),
                         delta=-0.01)
    assert slightly.action == "advance"
