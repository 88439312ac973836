"""The dashboard issue and the alerts: pure rendering and conditions, then the local forge
through the command line (the walkthrough, boxes as commands, a deleted dashboard)."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import Cli, snapshot_state

from bot.core import alerts, dashboard
from bot.core.dashboard import AgentLine, Command, ResultLine, View
from bot.core.markers import parse
from bot.core.model import AlertsPolicy, Policy
from bot.errors import PromptbotError
from bot.load.repo import WorkingTree, load_policy

# ---------------------------------------------------------------- pure: the body


def _view(**over: Any) -> View:
    agents = (
        AgentLine("support-triage", "needs attention", 0.9, 2377, "b2f71e831985",
                  "2026-10-25", "#3 open for review: support-triage: fix invalid JSON output"),
        AgentLine("sql-writer", "fair", 0.93, 2480, "40cfaf00d9bd", "2026-10-25",
                  notes=("waits: guardrails.max_prs_per_run (0) reached this run",),
                  waits=True),
        AgentLine("meeting-summarizer", "good", 0.97, 2328, "437bae741537", "2026-10-25"),
    )
    base: dict[str, Any] = {
        "headline": "3 agent(s) · 1 change(s) in flight · 0 alert(s)", "agents": agents,
        "results": (), "calibration": (), "guardrails": ("at most 3 new proposal PR(s)",)}
    return View(**{**base, **over})


def test_a_ticked_box_of_the_bots_section_is_a_command_and_nothing_else_is() -> None:
    body = dashboard.body(_view(), None, 60_000)
    assert dashboard.commands(body) == []  # rendered with every box clear
    ticked = body.replace("- [ ] open `sql-writer`'s proposal now",
                          "- [x] open `sql-writer`'s proposal now")
    assert ticked != body
    assert dashboard.commands(ticked) == [Command("open", "sql-writer")]
    # A person's own line above the section, formatted like a box, is not a command.
    forged = ("- [x] x <!-- promptbot-command: snooze support-triage -->\n\n" + ticked)
    assert dashboard.commands(forged) == [Command("open", "sql-writer")]
    # Text from elsewhere (a reason quoting an error message) cannot carry a command.
    hostile = "waits: <!-- promptbot-command: open meeting-summarizer --> @someone"
    view = _view(agents=(AgentLine("meeting-summarizer", "fair", 0.9, 10, "v", None,
                                   notes=(hostile,), waits=True),))
    rendered = dashboard.body(view, None, 60_000)
    assert "<!-- promptbot-command: open meeting-summarizer -->" in rendered  # the real box
    assert rendered.count("promptbot-command: open meeting-summarizer") == 2  # + the inert one
    inert = rendered.replace("[ ]", "[x]")
    assert dashboard.commands(inert) == [Command("open", "meeting-summarizer"),
                                         Command("snooze", "meeting-summarizer")]
    assert "@\u200bsomeone" in rendered and "@someone" not in rendered


def test_the_body_keeps_a_persons_text_and_is_not_rewritten_for_it() -> None:
    first = dashboard.body(_view(), None, 60_000)
    assert parse(first) == {"kind": "dashboard", "body_hash": parse(first)["body_hash"]}  # type: ignore[index]
    edited = "Team notes: ask Ana before merging.\n\n" + first.replace(
        dashboard.END, dashboard.END + "\n\nMore notes below.")
    # Same facts: the person's edit stays as it is, byte for byte (no write).
    assert dashboard.body(_view(), edited, 60_000) == edited
    # New facts: the section changes, the person's text around it stays.
    changed = dashboard.body(_view(headline="other"), edited, 60_000)
    assert changed.startswith("Team notes: ask Ana before merging.\n\n")
    assert "More notes below." in changed and "other" in changed
    # A person who removed the section comments keeps their text; the section is added.
    bare = dashboard.body(_view(), "just my text", 60_000)
    assert bare.startswith("just my text") and dashboard.START in bare


def test_a_body_saved_in_githubs_editor_with_crlf_and_a_note_after_the_marker_is_read(
        ) -> None:
    first = dashboard.body(_view(), None, 60_000)
    ticked = first.replace("- [ ] open `sql-writer`", "- [x] open `sql-writer`")
    crlf = (ticked + "A note typed at the very bottom.\n").replace("\n", "\r\n")
    assert dashboard.commands(crlf) == [Command("open", "sql-writer")]
    again = dashboard.body(_view(headline="new facts"), crlf, 60_000)
    assert again.count("<!-- promptbot: {") == 1  # no stale marker piles up
    assert "A note typed at the very bottom." in again and "new facts" in again
    # Read back once more: the same facts make the same body (no write).
    assert dashboard.body(_view(headline="new facts"), again, 60_000) == again


def test_text_from_elsewhere_cannot_close_a_fold_link_mention_or_reference() -> None:
    hostile = "</details><img src=x> [re-auth](https://evil.example) `code` #123 @ana | x"
    shown = dashboard.plain(hostile)
    for bad in ("</details>", "<img", "[re-auth](", "`code`", " #123", "@ana", " | "):
        assert bad not in shown, bad
    body = dashboard.body(_view(agents=(AgentLine("a", "fair", 0.9, 1, "v", None,
                                                  notes=(hostile,)),)), None, 60_000)
    assert "</details>" in body and body.count("</details>") == 1  # only the bot's own


def test_the_snooze_state_survives_the_hardest_cut() -> None:
    agents = tuple(AgentLine(f"agent-{i:03d}", "needs attention", 0.5, 10, "v", None,
                             triggers=("x" * 250,) * 3) for i in range(200))
    view = _view(agents=agents, snoozed={"agent-007": "2026-12-21"})
    person = "p" * 50_000 + "\n\n"
    body = dashboard.body(view, person + dashboard.body(view, None, 60_000), 60_000)
    assert len(body) <= 65_536 - 1_000  # inside what the forges' cap leaves alone
    assert dashboard.snoozes(body) == {"agent-007": date(2026, 12, 21)}
    assert body.startswith(person) and dashboard.bot_section(body) is not None


def test_boxes_snooze_wake_and_open_and_the_state_survives_the_body() -> None:
    today = date(2026, 12, 7)
    agents = {"support-triage", "sql-writer"}
    snoozed, now, done, again = dashboard.apply(
        [Command("snooze", "support-triage"), Command("open", "sql-writer"),
         Command("open", "ghost"), Command("remeasure", "p-0000000001"),
         Command("remeasure", "p-0000000002")], {"sql-writer": date(2026, 12, 1)}, today,
        agents, decided={"p-0000000002"})
    assert snoozed == {"support-triage": date(2026, 12, 21)}  # the expired one dropped
    assert now == {"sql-writer"}
    assert again == {"p-0000000002"}  # only a completed result is measured again
    assert any("ghost" in d and "no such agent" in d for d in done)
    assert any("p-0000000001" in d and "not a completed result" in d for d in done)
    body = dashboard.body(_view(snoozed={"support-triage": "2026-12-21"}, done=tuple(done)),
                          None, 60_000)
    assert dashboard.snoozes(body) == {"support-triage": date(2026, 12, 21)}
    assert dashboard.last_done(body) == done
    assert "wake `support-triage` (snoozed until 2026-12-21)" in body
    woke, _, said, _ = dashboard.apply([Command("wake", "support-triage")],
                                    dashboard.snoozes(body), today, agents)
    assert woke == {} and said == ["woke `support-triage`: proposals again"]
    # A state comment a person mangled is ignored, not an error.
    assert dashboard.snoozes(body.replace('"2026-12-21"', '"soon"')) == {}


def test_two_hundred_agents_stay_under_githubs_limit_with_the_unhealthy_ones_shown() -> None:
    agents = tuple(
        AgentLine(f"agent-{i:03d}", "needs attention" if i % 10 == 0 else "excellent",
                  0.9 if i % 10 == 0 else 0.99, 10_000, f"{i:012x}", "2026-11-01",
                  f"#{i} open for review: agent-{i:03d}: fix invalid JSON output" if i % 10 == 0
                  else "", notes=(f"'Err{i}' failures: " + "x" * 150,) * 4)
        for i in range(200))
    results = tuple(ResultLine(i, f"agent-{i:03d}", "t", "completed", "success", 0.03, 0.01,
                               0.05, 0.02, "2026-12-01") for i in range(200))
    view = _view(agents=agents, results=results)
    full = dashboard.section(view, 10**7)
    assert len(full) > 65_536  # the case the limit is about
    body = dashboard.body(view, None, Policy().dashboard.max_chars)
    assert len(body) <= 65_536
    assert "180 healthy agent(s)" in body  # collapsed to names
    for i in range(0, 200, 10):
        assert f"| `agent-{i:03d}` | needs attention" in body
    assert body.rstrip().endswith("-->") and parse(body) is not None  # the marker survives


# ---------------------------------------------------------------- pure: the alerts

NOW = datetime(2026, 12, 7, 6, 0)


def _measured(*kinds: str) -> tuple[alerts.Measured, ...]:
    out = []
    for i, kind in enumerate(kinds):
        state = "rolled_back" if kind == "rb" else "completed"
        decision = {"ok": "success", "reg": "regression", "rb": "success",
                    "none": "no_effect"}[kind]
        out.append(alerts.Measured(i + 1, f"a{i}", decision, state, f"2026-11-{10 + i}"))
    return tuple(out)


def _keys(facts: alerts.Facts, policy: AlertsPolicy | None = None) -> list[str]:
    return [a.key for a in alerts.evaluate(facts, policy or AlertsPolicy())]


def test_the_rollback_rate_counts_the_latest_measured_proposals_only() -> None:
    assert _keys(alerts.Facts(_measured("ok", "reg", "ok", "ok", "ok"))) == []
    assert _keys(alerts.Facts(_measured("ok", "reg", "ok", "rb", "ok"))) == ["rollback-rate"]
    # Two bad ones that fell out of the window of 5 no longer count.
    assert _keys(alerts.Facts(_measured("reg", "rb", "ok", "ok", "ok", "none", "ok"))) == []
    assert _keys(alerts.Facts(_measured("ok", "rb")), AlertsPolicy(max_rollbacks=0)) == []
    body = alerts.evaluate(alerts.Facts(_measured("reg", "rb")), AlertsPolicy())[0].body
    assert "#1 `a0`: regressed" in body and "#2 `a1`: rolled back" in body


def test_backlog_recurring_and_stale_export_have_their_boundaries() -> None:
    old = alerts.OpenProposal(4, "a", "a: fix", NOW - timedelta(days=14, minutes=1))
    young = alerts.OpenProposal(5, "b", "b: fix", NOW - timedelta(days=13))
    assert _keys(alerts.Facts(open_proposals=(young,), now=NOW)) == []
    assert _keys(alerts.Facts(open_proposals=(old, young), now=NOW)) == ["backlog"]
    fixed = (alerts.Fixed("a", "JSONDecodeError", "invalid_json", 3, 0.10),)
    low = alerts.Failing("a", "JSONDecodeError", "invalid_json", 300, 0.03)
    back = alerts.Failing("a", "JSONDecodeError", "invalid_json", 900, 0.09)
    other = alerts.Failing("a", "Timeout", "timeout", 900, 0.09)
    assert _keys(alerts.Facts(fixed=fixed, failing=(low, other))) == []
    assert _keys(alerts.Facts(fixed=fixed, failing=(back,))) == ["recurring-a-invalid_json"]
    fresh = alerts.Facts(newest_row=NOW - timedelta(hours=47), now=NOW)
    stale = alerts.Facts(newest_row=NOW - timedelta(hours=49), now=NOW)
    assert _keys(fresh) == [] and _keys(stale) == ["stale-export"]
    assert _keys(stale, AlertsPolicy(stale_export_hours=0)) == []
    assert _keys(alerts.Facts(degraded=(("a", "success rate 80 % < 95 %"),))) == ["degraded-a"]


def test_a_policy_written_before_guardrails_existed_still_loads(repo: Path) -> None:
    path = repo / "policies/promptbot.yaml"
    data = yaml.safe_load(path.read_text())
    data["propose"]["max_prs_per_run"] = data["guardrails"].pop("max_prs_per_run")
    data["propose"]["cooldown_days"] = 5
    del data["guardrails"]["cooldown_days"]
    path.write_text(yaml.safe_dump(data))
    policy = load_policy(WorkingTree(repo))
    assert (policy.guardrails.max_prs_per_run, policy.guardrails.cooldown_days) == (3, 5)
    data["guardrails"]["cooldown_days"] = 2
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(PromptbotError) as caught:
        load_policy(WorkingTree(repo))
    assert "keep guardrails.cooldown_days" in caught.value.render()


# ---------------------------------------------------------------- the local forge


def _dashboard(cli: Cli) -> dict[str, Any]:
    data = cli.json("dashboard", "--json")
    assert isinstance(data, dict) and data["dashboard"] is not None
    found: dict[str, Any] = data["dashboard"]
    return found


def _policy(repo: Path, **guardrails: Any) -> None:
    path = repo / "policies/promptbot.yaml"
    data = yaml.safe_load(path.read_text())
    data["guardrails"].update(guardrails)
    path.write_text(yaml.safe_dump(data))
    from conftest import git

    git(repo, "commit", "-qam", "policy")


def test_the_dashboard_follows_a_merge_a_result_and_a_rollback(cli: Cli, repo: Path) -> None:
    assert cli("run")[0] == 0
    first = _dashboard(cli)
    assert first["state"] == "open" and Path(first["url"]).is_file()
    for agent in ("support-triage", "sql-writer", "meeting-summarizer"):
        assert f"`{agent}`: #" in first["body"]  # in flight, on the roadmap
    assert "Nothing needs a person now." in first["body"]  # the sample's stale alert is off
    before = (snapshot_state(repo), Path(first["url"]).read_text())
    assert cli("run")[0] == 0
    assert (snapshot_state(repo), Path(first["url"]).read_text()) == before  # no write

    prs = cli.json("pr", "list", "--json")
    assert isinstance(prs, list)
    pr = next(p for p in prs if p["agent"] == "support-triage")
    assert cli("pr", "merge", str(pr["number"]))[0] == 0
    # A clear true effect: decided a success whatever the time of day the test runs at.
    cli("simulate", "--out", str(repo / "sim"), "--days", "14", "--seed", "3", "--effect",
        "0.06")
    assert cli("run", "--metrics", str(repo / "sim" / "*.csv"))[0] == 0
    merged = _dashboard(cli)
    assert merged["number"] == first["number"]  # edited in place
    assert f"| #{pr['number']} | `support-triage` | success (simulated data) |" in \
        merged["body"]

    # More traffic does not move a decided result ...
    result_file = repo / f"prompts/support-triage/results/{pr['proposal_id']}.json"
    decided = json.loads(result_file.read_text())
    cli("simulate", "--out", str(repo / "sim"), "--days", "20", "--seed", "5")
    assert cli("run", "--metrics", str(repo / "sim" / "*.csv"))[0] == 0
    assert json.loads(result_file.read_text()) == decided
    # ... unless a person ticks "measure again": then it is measured on all the data.
    box = f"- [ ] measure #{pr['number']} (`support-triage`, success) again"
    board = _dashboard(cli)
    assert box in board["body"]
    Path(board["url"]).write_text(board["body"].replace(box, box.replace("[ ]", "[x]")))
    assert cli("run", "--metrics", str(repo / "sim" / "*.csv"))[0] == 0
    again = json.loads(result_file.read_text())
    assert again["data_through"] > decided["data_through"]
    assert "measuring `" + pr["proposal_id"] + "` again" in _dashboard(cli)["body"]

    assert cli("rollback", pr["proposal_id"])[0] == 0
    prs = cli.json("pr", "list", "--json")
    assert isinstance(prs, list)
    back = next(p for p in prs if p["branch"].endswith(f"rollback-{pr['proposal_id']}"))
    assert cli("run", "--metrics", str(repo / "sim" / "*.csv"))[0] == 0
    assert f"#{back['number']} rollback open" in _dashboard(cli)["body"]
    assert cli("pr", "merge", str(back["number"]))[0] == 0
    cli("simulate", "--out", str(repo / "sim"), "--days", "3", "--seed", "4")
    code, out, _ = cli("run", "--metrics", str(repo / "sim" / "*.csv"), "--json")
    after = _dashboard(cli)["body"]
    assert f"| #{pr['number']} | `support-triage` | rolled back (simulated data) |" in after
    assert code == 0 and json.loads(out)["alerts"] == []  # 1 of 2: below max_rollbacks


def test_ticked_boxes_open_a_waiting_proposal_and_snooze_an_agent(cli: Cli,
                                                                   repo: Path) -> None:
    _policy(repo, max_prs_per_run=0)
    assert cli("run")[0] == 0
    assert cli.json("pr", "list", "--json") == []
    board = _dashboard(cli)
    path = Path(board["url"])
    assert "- [ ] open `sql-writer`'s proposal now" in board["body"]
    path.write_text(board["body"].replace("- [ ] open `sql-writer`'s proposal now",
                                          "- [x] open `sql-writer`'s proposal now")
                    .replace("- [ ] snooze `support-triage` for 14 days",
                             "- [X] snooze `support-triage` for 14 days"))
    code, _, _ = cli("run", "--json")
    assert code == 0
    prs = cli.json("pr", "list", "--json")
    assert isinstance(prs, list) and [p["agent"] for p in prs] == ["sql-writer"]
    body = _dashboard(cli)["body"]
    assert "[x]" not in body.lower()  # every box clear again
    assert "`sql-writer`: max_prs_per_run and max_open_proposals did not hold it back" in body
    assert "snoozed `support-triage` until" in body and "wake `support-triage`" in body
    # The next run: still snoozed, nothing more opened, and no write at all.
    before = (snapshot_state(repo), path.read_text())
    assert cli("run")[0] == 0
    assert (snapshot_state(repo), path.read_text()) == before

    _policy(repo, max_prs_per_run=3)
    assert cli("run")[0] == 0
    prs = cli.json("pr", "list", "--json")
    assert isinstance(prs, list)
    assert sorted(p["agent"] for p in prs) == ["meeting-summarizer", "sql-writer"]
    path.write_text(_dashboard(cli)["body"].replace("- [ ] wake", "- [x] wake"))
    assert cli("run")[0] == 0
    prs = cli.json("pr", "list", "--json")
    assert isinstance(prs, list) and len(prs) == 3  # awake: support-triage proposed


def test_a_deleted_dashboard_is_made_once_more_and_a_closed_one_stays_closed(
        cli: Cli, repo: Path) -> None:
    assert cli("run")[0] == 0
    first = _dashboard(cli)
    Path(first["url"]).unlink()  # a person deleted the issue
    code, out, _ = cli("run")
    assert code == 0 and "dashboard: opened" in out
    second = _dashboard(cli)
    assert second["number"] != first["number"]  # numbers are never reused
    forge = json.loads((repo / ".promptbot/forge.json").read_text())
    assert len(forge["issues"]) == 2  # the old record is left, not reused
    before = snapshot_state(repo)
    assert cli("run")[0] == 0
    assert snapshot_state(repo) == before  # found again: not made a third time

    for record in forge["issues"]:
        record["state"] = "closed"  # a person closed it
    (repo / ".promptbot/forge.json").write_text(json.dumps(forge))
    _policy(repo, max_open_proposals=1)  # new facts: the body changes
    assert cli("run")[0] == 0
    again = _dashboard(cli)
    assert again["number"] == second["number"] and again["state"] == "closed"
    assert "at most 1 proposal PR(s) open" in again["body"]


def test_an_issues_event_runs_the_cycle_only_for_a_box_ticked_on_the_bots_dashboard() -> None:
    from conftest import PROJECT

    from bot.core.events import CYCLE, IGNORE, classify

    # GitHub's `issues.edited` carries the same issue object as this real comment payload.
    real = json.loads((PROJECT / "tests/reference/webhooks/issue_comment.created.json")
                      .read_text())
    body = dashboard.body(_view(), None, 60_000)
    ticked = body.replace("- [ ] open `sql-writer`", "- [x] open `sql-writer`")

    def plan(issue_body: str, author: str = "promptbot-app[bot]", sender: str = "ana",
             action: str = "edited") -> str:
        payload = {"action": action, "issue": {**real["issue"], "body": issue_body,
                                               "user": {**real["issue"]["user"],
                                                        "login": author}},
                   "changes": {"body": {"from": body}}, "repository": real["repository"],
                   "sender": {**real["sender"], "login": sender}}
        return classify("issues", payload, base_branch="main",
                        bot_login="promptbot-app[bot]").handler

    assert plan(ticked) == CYCLE
    assert plan(body) == IGNORE  # edited, nothing ticked
    assert plan(ticked, author="mallory") == IGNORE  # a person's look-alike issue
    assert plan(ticked, sender="promptbot-app[bot]") == IGNORE  # the bot's own edit
    assert plan(ticked, action="opened") == IGNORE


# ---------------------------------------------------------------- GitHub (the stand-in)


def test_a_rollback_rate_alert_opens_on_github_and_closes_when_it_clears(
        clone: Path, standin: Any) -> None:
    from conftest import github_context

    from bot.context import RunReport
    from bot.dashboard import read, sync_alerts

    ctx = github_context(clone, standin)
    policy = Policy()
    high = alerts.Facts(_measured("ok", "reg", "ok", "rb", "ok"))
    cleared = alerts.Facts(_measured("ok", "reg", "ok", "rb", "ok", "ok", "ok", "ok"))

    def sync(facts: alerts.Facts) -> RunReport:
        report = RunReport()
        board = read(ctx, policy, set(), report)
        sync_alerts(ctx, policy, board, alerts.evaluate(facts, policy.alerts), report, False)
        return report

    standin.reset_log()
    report = sync(high)
    [issue] = standin.plain_issues()
    assert issue["state"] == "open" and issue["title"] == "promptbot alert: high rollback rate"
    assert {lab["name"] for lab in issue["labels"]} == {"promptbot:issue", "promptbot:alert"}
    assert "#2 `a1`: regressed" in issue["body"] and "#4 `a3`: rolled back" in issue["body"]
    assert report.alerts == [{"key": "rollback-rate", "title": issue["title"],
                              "issue": issue["number"]}]
    assert [(w.method, w.path) for w in standin.writes()] == [
        ("POST", "/repos/acme/prompts/issues")]

    standin.reset_log()
    sync(high)  # the same facts: one list request, no write
    assert standin.writes() == [] and len(standin.requests) == 1

    sync(cleared)
    [closed] = standin.plain_issues()
    assert (closed["number"], closed["state"]) == (issue["number"], "closed")
    standin.reset_log()
    sync(cleared)
    assert standin.writes() == []  # a closed alert stays closed while the condition is away

    sync(alerts.Facts(_measured("reg", "rb")))  # it came back: the same issue, reopened
    [again] = standin.plain_issues()
    assert (again["number"], again["state"]) == (issue["number"], "open")
    assert "#1 `a0`: regressed" in again["body"]

    # A person closes it while it holds: it stays closed (no reopen loop) ...
    ctx.forge.edit_issue(issue["number"], state="closed")
    standin.reset_log()
    sync(alerts.Facts(_measured("reg", "rb")))
    assert standin.writes() == [] and standin.plain_issues()[0]["state"] == "closed"
    # ... until it clears and comes back.
    sync(cleared)
    sync(alerts.Facts(_measured("reg", "rb")))
    [back] = standin.plain_issues()
    assert (back["number"], back["state"]) == (issue["number"], "open")


def test_github_pull_requests_carry_their_opening_time_for_the_backlog_alert(
        clone: Path, standin: Any) -> None:
    from conftest import PROJECT, github_context

    from bot.app import run
    from bot.context import tracked_prs

    ctx = github_context(clone, standin)
    run(ctx, [str(PROJECT / "examples/metrics/*.csv")])
    opened = [t.pr.opened_at for t in tracked_prs(github_context(clone, standin))]
    assert len(opened) == 3
    now = datetime.now(UTC).replace(tzinfo=None)
    assert all(o is not None and abs((now - o).total_seconds()) < 600 for o in opened)
    later = alerts.Facts(open_proposals=tuple(
        alerts.OpenProposal(i, "a", "t", o) for i, o in enumerate(opened)),
        now=now + timedelta(days=15))
    assert _keys(later) == ["backlog"]


SMALL_AGENT = """id: {id}
owner: "@acme/ops"
description: "Sorts tickets."
model: {{name: claude-sonnet-4-5, temperature: 0, max_tokens: 300}}
prompts:
  system: |
    You sort support tickets into billing, shipping or other. Answer with that one word.
  user_template: "Ticket: {{{{ ticket }}}}"
"""


def test_two_hundred_healthy_agents_make_a_no_change_run_of_two_requests(
        clone: Path, standin: Any, origin: Path) -> None:
    import shutil

    from conftest import git, github_context, write_csv

    from bot.app import run

    shutil.rmtree(clone / "prompts")
    ids = [f"agent-{i:03d}" for i in range(200)]
    for agent in ids:
        (clone / "prompts" / agent).mkdir(parents=True)
        (clone / "prompts" / agent / "agent.yaml").write_text(SMALL_AGENT.format(id=agent))
    git(clone, "add", "-A")
    git(clone, "commit", "-qm", "200 agents")
    git(clone, "push", "-q", "origin", "main")
    start = datetime.now().replace(microsecond=0) - timedelta(days=6)
    rows = [((start + timedelta(minutes=37 * n)).isoformat(), agent, f"{agent}-{n}",
             "success", 900) for agent in ids for n in range(220)]
    export = write_csv(clone.parent / "export.csv", rows,
                       ["timestamp", "agent_id", "execution_id", "status", "latency_ms"])

    first = run(github_context(clone, standin), [str(export)])
    assert first.errors == [] and first.actions == ["dashboard: opened"], first.actions
    [board] = standin.plain_issues()
    assert len(board["body"]) <= 65_536
    assert "200 healthy agent(s), nothing in flight" in board["body"]
    standin.reset_log()
    second = run(github_context(clone, standin), [str(export)])
    assert second.actions == [] and standin.writes() == []
    assert [(r.method, r.path) for r in standin.requests] == [
        ("GET", "/repos/acme/prompts/pulls"), ("GET", "/repos/acme/prompts/issues")]


def test_min_confidence_medium_holds_every_proposal_until_three_are_measured(
        cli: Cli, repo: Path) -> None:
    _policy(repo, min_confidence="medium")
    code, out, _ = cli("run", "--json")
    assert code == 0 and cli.json("pr", "list", "--json") == []
    skipped = json.loads(out)["skipped"]
    assert any("min_confidence medium needs 3 measured proposals; this repository has 0"
               in line for line in skipped)
    assert "opens at confidence medium or higher" in _dashboard(cli)["body"]


def test_a_disabled_dashboard_is_not_written_and_its_boxes_do_nothing(
        cli: Cli, repo: Path) -> None:
    _policy(repo, max_prs_per_run=0)
    assert cli("run")[0] == 0
    board = _dashboard(cli)
    path = Path(board["url"])
    path.write_text(board["body"].replace("- [ ] open `sql-writer`", "- [x] open `sql-writer`"))
    data = yaml.safe_load((repo / "policies/promptbot.yaml").read_text())
    data["dashboard"]["enabled"] = False
    (repo / "policies/promptbot.yaml").write_text(yaml.safe_dump(data))
    from conftest import git

    git(repo, "commit", "-qam", "no dashboard")
    ticked = path.read_text()
    assert cli("run")[0] == 0
    assert cli.json("pr", "list", "--json") == []  # the box opened nothing
    assert path.read_text() == ticked  # and the issue was left as it was


def test_the_learning_loop_has_its_own_lines() -> None:
    plain_view = dashboard.body(_view(), None, 60_000)
    assert "### Learning" not in plain_view
    shown = dashboard.body(_view(learning=(
        "#7 promote the invalid-json rule", "promoted rules: `invalid-json`")), None, 60_000)
    section = shown.split("### Learning", 1)[1].split("###", 1)[0]
    assert "- #7 promote the invalid-json rule" in section
    assert "- promoted rules: `invalid-json`" in section
