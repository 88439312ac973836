"""`promptbot history AGENT`: versions from git, the PR that made each, traffic, the measured
effect, rollbacks marked, and nothing written."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from conftest import Cli, snapshot_state


def _rows(cli: Cli, *args: str) -> dict[str, Any]:
    data = cli.json("history", "support-triage", "--json", *args)
    assert isinstance(data, dict)
    return data


def test_history_shows_each_version_its_pr_traffic_effect_and_the_rollback(
    cli: Cli, repo: Path
) -> None:
    before = snapshot_state(repo)
    first = _rows(cli)
    assert snapshot_state(repo) == before  # reads only
    assert [r["how"] for r in first["versions"]] == ["first version"]
    [only] = first["versions"]
    assert only["executions"] > 2000 and 0.85 < only["success_rate"] < 0.95

    assert cli("run")[0] == 0
    prs = {p["agent"]: p for p in cli.json("pr", "list", "--json")}  # type: ignore[union-attr]
    pr = prs["support-triage"]
    assert cli("pr", "merge", str(pr["number"]))[0] == 0
    sim = repo / "sim"
    cli("simulate", "--out", str(sim), "--effect", "0.04")
    metrics = ("--metrics", str(sim / "*.csv"))
    assert cli("run", *metrics)[0] == 0
    after = _rows(cli, *metrics)["versions"]
    assert len(after) == 2
    fix = after[1]
    assert fix["pr"] == pr["number"] and fix["proposal_id"] == pr["proposal_id"]
    assert fix["how"].startswith(f"proposal {pr['proposal_id']} (#{pr['number']}, error_handling")
    assert fix["proposal_type"] == "error_handling"
    assert fix["effect"]["decision"] == "success" and fix["effect"]["delta"] > 0
    assert fix["effect"]["low"] < fix["effect"]["delta"] < fix["effect"]["high"]
    assert fix["executions"] > 1000 and fix["success_rate"] > after[0]["success_rate"]

    assert cli("rollback", pr["proposal_id"])[0] == 0
    back = next(p for p in cli.json("pr", "list", "--json")  # type: ignore[union-attr]
                if p["state"] == "open" and p["proposal_id"] == pr["proposal_id"]
                and "promptbot:rollback" in p["labels"])
    assert cli("pr", "merge", str(back["number"]))[0] == 0
    rolled = _rows(cli, *metrics)["versions"]
    assert rolled[-1]["how"] == f"rollback of {pr['proposal_id']} (#{back['number']})"
    assert rolled[-1]["version"] == rolled[0]["version"]
    # The revert deleted the proposal record from main: the type is read as merged.
    assert rolled[1]["proposal_type"] == "error_handling"
    assert rolled[1]["effect"]["decision"] == "success"
    # Each row counts its own stretch: the first version's traffic is not counted again on
    # the rollback row (only what the hour of the rollback holds).
    assert (rolled[-1]["executions"] or 0) < rolled[0]["executions"] / 100
    assert rolled[0]["executions"] == after[0]["executions"]

    code, text, _ = cli("history", "support-triage", *metrics)
    assert code == 0 and "```mermaid" in text and "xychart-beta" in text
    assert f"▲{fix['version'][:6]}" in text and f"▼{rolled[0]['version'][:6]}" in text
    assert "measured: success +" in text


def test_history_of_an_unknown_agent_names_the_known_ones(cli: Cli) -> None:
    code, _, err = cli("history", "nope")
    assert code == 2 and "known agents" in err and "support-triage" in err
    # An export the person named that is not there is an error, not an empty history.
    code, _, err = cli("history", "support-triage", "--metrics", "nowhere/*.csv")
    assert code != 0 and "nowhere" in err


def test_rows_fold_edits_that_keep_the_version_and_name_a_revert_by_hand() -> None:
    from datetime import datetime

    from bot.core.history import Change, Commit, Effect, rows

    t = datetime(2026, 11, 1, 9)
    commits = [Commit("a" * 40, t, "Ann", "add agent", "v1"),
               Commit("b" * 40, t, "Ann", "comment only", "v1"),
               Commit("c" * 40, t, "bot", "merge #3", "v2"),
               Commit("d" * 40, t, "Bob", "broken edit", None),
               Commit("e" * 40, t, "Bob", "git revert", "v1")]
    changes = {"c" * 40: Change(3, "proposal", "p-1")}
    effects = {"p-1": Effect("completed", "regression", -0.03, -0.05, -0.01, 0.02)}
    asked: list[tuple[str, datetime | None, datetime | None]] = []

    def traffic(version: str, since: datetime | None, until: datetime | None
                ) -> tuple[int, float] | None:
        asked.append((version, since, until))
        return (900, 0.9) if len(asked) == 1 else None

    found = rows(commits, changes, effects, traffic, {"p-1": "error_handling"})
    assert [(r.version, r.how) for r in found] == [
        ("v1", "first version"), ("v2", "proposal p-1 (#3, error_handling)"),
        ("v1", "back to an earlier version: a revert by hand")]
    assert found[0].executions == 900 and found[1].executions is None
    assert found[1].effect == effects["p-1"] and found[2].effect is None
    assert [a[2] for a in asked] == [t, t, None]  # each row up to the next one's start
    assert [a[1] for a in asked] == [None, t, t]  # the first from the export's start


def test_a_canary_end_is_a_way_back_not_a_second_deploy() -> None:
    from datetime import datetime, timedelta

    from bot.core.history import Change, Commit, Effect, chart, rows

    t = datetime(2026, 11, 1, 9)
    commits = [Commit("a" * 40, t, "Ann", "add", "v1"),
               Commit("b" * 40, t + timedelta(days=1), "bot", "canary", "v2"),
               Commit("c" * 40, t + timedelta(days=3), "bot", "end", "v1")]
    changes = {"b" * 40: Change(3, "proposal", "p-1"),
               "c" * 40: Change(5, "canary", "p-1", "end")}
    effects = {"p-1": Effect("rolled_back", "regression", -0.03, -0.05, -0.01)}
    found = rows(commits, changes, effects, lambda v, s, u: None, {})
    assert found[2].how == "canary of p-1 ended: back to the baseline (#5)"
    assert found[2].effect is None and found[1].effect == effects["p-1"]
    # Marks land on the first day of data at or after the change.
    daily = [("2026-11-01", 0.9), ("2026-11-03", 0.88), ("2026-11-05", 0.9)]
    drawn = chart("a", daily, found)
    assert '"11-03 ▲v2"' in drawn and '"11-05 ▼v1"' in drawn
