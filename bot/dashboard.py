"""The dashboard issue and the alert issues of one run (the shell around core/dashboard.py
and core/alerts.py).

One read per run: the bot's issues carry `<prefix>:issue`, so one list finds the
dashboard and every alert, open or closed (GitHub: one request). Early in the run the
dashboard's ticked boxes become this run's guardrail input (`read`); at the end the
alerts are opened, updated, reopened or closed and the dashboard is rendered again
(`publish`). Each write happens only when the text or state differs: a run that sees
the same facts writes nothing.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from bot.context import Context, RunReport, Tracked
from bot.core import alerts, dashboard, markers
from bot.core.analysis import current_stats
from bot.core.calibration import Outcome, calibrate
from bot.core.dashboard import AgentLine, AlertLine, Command, ResultLine, View
from bot.core.diagnosis import of_failure
from bot.core.metrics import MetricsSnapshot
from bot.core.model import Policy
from bot.core.results import COMPLETED, MEASURING, ROLLED_BACK
from bot.core.yamlparse import parse_yaml
from bot.edges.forge import Issue
from bot.errors import PromptbotError
from bot.load.repo import RepoState
from bot.measuring import Recorded


def issue_label(prefix: str) -> str:
    return f"{prefix}:issue"


@dataclass
class Board:
    """The bot's issues as this run found them."""

    dashboard: Issue | None = None
    duplicates: list[Issue] = field(default_factory=list)
    alerts: dict[str, Issue] = field(default_factory=dict)
    extra_alerts: list[Issue] = field(default_factory=list)  # a second issue of one key
    commands: list[Command] = field(default_factory=list)
    snoozed: dict[str, date] = field(default_factory=dict)  # from the dashboard's boxes
    done: list[str] = field(default_factory=list)


def read(ctx: Context, policy: Policy, agents: set[str], report: RunReport,
         prs: Sequence[Tracked] = (), base_sha: str = "") -> Board:
    """The bot's issues, and the guardrail input their boxes give this run (a box may
    measure again a proposal whose result on `base_sha` is completed)."""
    board = Board()
    found = ctx.forge.list_issues(issue_label(policy.forge.label_prefix))
    dashboards: list[Issue] = []
    for issue in sorted(found, key=lambda i: (i.state != "open", i.number)):
        marker = markers.parse(issue.body) or {}
        if marker.get("kind") == dashboard.KIND:
            dashboards.append(issue)
        elif marker.get("kind") == alerts.KIND and marker.get("alert"):
            if marker["alert"] in board.alerts:
                board.extra_alerts.append(issue)
            else:
                board.alerts[marker["alert"]] = issue
    if dashboards:
        board.dashboard, board.duplicates = dashboards[0], dashboards[1:]
    if board.dashboard is not None and policy.dashboard.enabled:
        # A disabled dashboard is never written, so its boxes would never clear: a ticked
        # snooze would renew itself on every run.
        board.commands = dashboard.commands(board.dashboard.body)
        board.snoozed = dashboard.snoozes(board.dashboard.body)
    today = ctx.clock().date()
    decided = _decided(ctx, prs, base_sha) if any(
        c.verb == "remeasure" for c in board.commands) else set()
    board.snoozed, report.open_now, board.done, report.remeasure = dashboard.apply(
        board.commands, board.snoozed, today, agents, decided)
    if not board.commands and board.dashboard is not None:
        board.done = dashboard.last_done(board.dashboard.body)
    merged = dict(board.snoozed)
    for agent, day in policy.guardrails.snooze.items():
        if day >= today:  # the later of the policy's day and the dashboard's
            merged[agent] = max(day, merged.get(agent, day))
    report.snoozed = {a: d.isoformat() for a, d in sorted(merged.items())}
    return board


def _decided(ctx: Context, prs: Sequence[Tracked], base_sha: str) -> set[str]:
    """The merged proposals whose results file on the base says completed."""
    out = set()
    for t in prs:
        if t.kind != "proposal" or t.pr.state != "merged" or not base_sha:
            continue
        text = ctx.git.read(base_sha, f"prompts/{t.agent}/results/{t.proposal_id}.json")
        try:
            if text and json.loads(text).get("state") == COMPLETED:
                out.add(t.proposal_id)
        except (json.JSONDecodeError, AttributeError):
            continue  # a hand-edited file: nothing to measure again from
    return out


def publish(ctx: Context, state: RepoState, board: Board,
            snapshot: MetricsSnapshot, prs: list[Tracked], results: dict[str, Recorded],
            report: RunReport, dry_run: bool, past: list[Outcome]) -> str:
    """Sync the alert issues, then the dashboard (`past`: the measured outcomes, for the
    calibration line); returns the dashboard's body."""
    policy = state.policy
    found = alerts.evaluate(facts(ctx, state, snapshot, prs, results, report), policy.alerts)
    lines = sync_alerts(ctx, policy, board, found, report, dry_run)
    view = build_view(state, board, snapshot, prs, results, report, lines, past)
    existing = board.dashboard.body if board.dashboard else None
    text = dashboard.body(view, existing, policy.dashboard.max_chars)
    if not policy.dashboard.enabled:
        return text
    if board.dashboard is None:
        report.actions.append("dashboard: opened")
        if not dry_run:
            prefix = policy.forge.label_prefix
            ctx.forge.open_issue(title=dashboard.TITLE, body=text,
                                 labels=[issue_label(prefix), f"{prefix}:dashboard"])
    elif text != board.dashboard.body:
        if not dry_run and _edited_since(ctx, policy, board.dashboard):
            # A person ticked a box or typed while this run worked: their edit wins, and
            # the cycle it started (or the next one) renders the dashboard from it.
            report.skipped.append(f"dashboard #{board.dashboard.number}: edited during this "
                                  "run; left for the next run")
            return text
        report.actions.append(f"dashboard #{board.dashboard.number}: updated")
        if not dry_run:
            ctx.forge.edit_issue(board.dashboard.number, body=text)
    for extra in board.duplicates:
        if extra.state == "open":
            # A dashboard made twice (a create whose answer was lost): one is enough.
            report.actions.append(f"dashboard #{extra.number}: closed as a duplicate")
            if not dry_run:
                ctx.forge.edit_issue(extra.number, state="closed")
    return text


def _edited_since(ctx: Context, policy: Policy, read: Issue) -> bool:
    """Whether the dashboard's body changed since the run read it (one more list request,
    made only when the run is about to write the dashboard)."""
    now = [i for i in ctx.forge.list_issues(issue_label(policy.forge.label_prefix))
           if i.number == read.number]
    return bool(now) and now[0].body != read.body


CLEARED = "cleared"  # the marker state of an alert the bot closed: it may reopen it


def sync_alerts(ctx: Context, policy: Policy, board: Board, found: list[alerts.Alert],
                report: RunReport, dry_run: bool) -> list[AlertLine]:
    prefix = policy.forge.label_prefix
    active = {a.key for a in found}
    out: list[AlertLine] = []
    for alert in found:
        body = markers.attach(alert.body, {"kind": alerts.KIND, "alert": alert.key})
        issue = board.alerts.get(alert.key)
        number = issue.number if issue else 0
        if issue is None:
            report.actions.append(f"alert opened: {alert.title}")
            if not dry_run:
                made = ctx.forge.open_issue(title=alert.title, body=body, labels=[
                    issue_label(prefix), f"{prefix}:alert"])
                number, issue = made.number, made
        elif issue.state == "closed" and (markers.parse(issue.body) or {}).get(
                "state") != CLEARED:
            pass  # a person closed it while it held: it stays closed until it clears
        elif issue.state == "closed":
            report.actions.append(f"alert #{issue.number} reopened: {alert.title}")
            if not dry_run:
                ctx.forge.edit_issue(issue.number, body=body, state="open")
        elif issue.body != body:
            report.actions.append(f"alert #{issue.number} updated: {alert.title}")
            if not dry_run:
                ctx.forge.edit_issue(issue.number, body=body)
        url = issue.url if issue and issue.url.startswith("http") else ""
        out.append(AlertLine(alert.title, number, url))
        report.alerts.append({"key": alert.key, "title": alert.title,
                              "issue": number or None})
    for key, issue in sorted(board.alerts.items()):
        marker = markers.parse(issue.body) or {}
        if key in active or marker.get("state") == CLEARED:
            continue
        # Cleared: closed, and marked so that the bot may reopen it when it comes back.
        cleared = markers.attach(dashboard.without_marker(issue.body),
                                 {"kind": alerts.KIND, "alert": key, "state": CLEARED})
        report.actions.append(f"alert #{issue.number} closed: the condition cleared")
        if not dry_run:
            ctx.forge.edit_issue(issue.number, body=cleared, state="closed")
    for extra in board.extra_alerts:
        if extra.state == "open":  # made twice (a create whose answer was lost)
            report.actions.append(f"alert #{extra.number} closed as a duplicate")
            if not dry_run:
                ctx.forge.edit_issue(extra.number, state="closed")
    return out


# ---------------------------------------------------------------- gathering


def facts(ctx: Context, state: RepoState, snapshot: MetricsSnapshot, prs: list[Tracked],
          results: dict[str, Recorded], report: RunReport) -> alerts.Facts:
    policy = state.policy
    numbers = {t.proposal_id: t for t in prs if t.kind == "proposal"}
    measured, fixed = [], []
    for pid, r in results.items():
        t = numbers.get(pid)
        c = r.result.comparison
        if t is None or r.state not in (COMPLETED, ROLLED_BACK) or \
                c.decision not in ("success", "regression", "no_effect"):
            continue
        measured.append(alerts.Measured(t.pr.number, t.agent, c.decision, r.state,
                                        r.result.data_through))
        if c.decision == "success" and r.state == COMPLETED and t.pr.merge_sha:
            problem = _problem(ctx, t)
            if problem is not None:
                fixed.append(alerts.Fixed(t.agent, number=t.pr.number, **problem))
    failing = []
    for agent in sorted({f.agent for f in fixed}):
        loaded = state.agents.get(agent)
        stats = current_stats(snapshot, agent, loaded.version) if loaded else None
        if stats is None or not stats.executions:
            continue
        for e in stats.top_errors:
            share = e.count / stats.executions
            if e.count >= policy.propose.min_failure_count and \
                    share >= policy.propose.min_failure_share:
                failing.append(alerts.Failing(agent, e.error_type,
                                              of_failure(e.error_type, e.template, e.example),
                                              e.count, share))
    degraded = tuple((t["agent"], t["message"]) for t in report.analysis.get("triggers", [])
                     if t["kind"] in ("degradation", "sla") and t["agent"] in state.agents)
    opened = tuple(alerts.OpenProposal(t.pr.number, t.agent, t.pr.title, t.pr.opened_at)
                   for t in prs if t.kind == "proposal" and t.pr.state == "open"
                   and t.pr.number not in report.superseded)
    return alerts.Facts(tuple(measured), degraded, opened, tuple(fixed), tuple(failing),
                        snapshot.newest, ctx.clock())


def _problem(ctx: Context, t: Tracked) -> dict[str, Any] | None:
    """Error type, category and share before the fix of the failure mode a merged proposal
    targeted, from its record as merged."""
    path = f"prompts/{t.agent}/proposals/{t.proposal_id}.yaml"
    assert t.pr.merge_sha is not None
    text = ctx.git.read(t.pr.merge_sha, path)
    try:
        data: Any = parse_yaml(text or "", path).data if text else None
    except PromptbotError:
        return None
    problem = data.get("problem") if isinstance(data, dict) else None
    if not isinstance(problem, dict) or problem.get("kind") != "failure_mode":
        return None
    error_type, template = str(problem.get("error_type", "")), str(problem.get("template", ""))
    share = problem.get("share")
    if not isinstance(share, (int, float)):
        return None
    return {"error_type": error_type, "category": of_failure(error_type, template, template),
            "share": float(share)}


def build_view(state: RepoState, board: Board, snapshot: MetricsSnapshot,
               prs: list[Tracked], results: dict[str, Recorded], report: RunReport,
               alert_lines: list[AlertLine], past: list[Outcome]) -> View:
    policy = state.policy
    info = report.analysis.get("agents", {})
    notes: dict[str, list[str]] = {}
    for line in report.skipped:
        agent, sep, reason = line.partition(": ")
        if sep and agent in state.agents:
            notes.setdefault(agent, []).append(reason)
    change = _in_flight(prs, results, report)
    lines = []
    for agent_id, loaded in sorted(state.agents.items()):
        a = info.get(agent_id, {})
        stats = current_stats(snapshot, agent_id, loaded.version)
        lines.append(AgentLine(
            agent_id, str(a.get("health", "no data")),
            stats.success_rate if stats and stats.executions else None,
            stats.executions if stats else 0, loaded.version,
            f"{stats.first_seen:%Y-%m-%d}" if stats and stats.executions else None,
            change.get(agent_id, ""), tuple(notes.get(agent_id, ())),
            tuple(str(t["message"]) for t in a.get("triggers", [])),
            agent_id in report.waiting))
    numbers = {t.proposal_id: t for t in prs if t.kind == "proposal"}
    rows = []
    for pid, r in results.items():
        t = numbers.get(pid)
        if t is None:
            continue
        c = r.result.comparison
        decide = ""
        if r.state == MEASURING and r.result.days_needed is not None:
            decide = _plus_days(r.result.data_through, r.result.days_needed)
        rows.append(ResultLine(t.pr.number, t.agent, t.pr.title, r.state, c.decision,
                               c.delta, c.ci_low, c.ci_high, r.result.expected_delta,
                               r.result.data_through[:10], r.result.simulated, decide, pid))
    rows.sort(key=lambda r: (r.through, r.number), reverse=True)
    kinds = sorted({o.proposal_type for o in past})
    calibration = tuple((k, c.n, c.factor) for k in kinds
                        for c in [calibrate(past, k)] if c.n)
    g = policy.guardrails
    guardrails = (
        "one change per agent at a time: an open proposal, a measurement or a canary holds "
        "its agent",
        f"at most {g.max_prs_per_run} new proposal PR(s) per run "
        "(`guardrails.max_prs_per_run`)",
        f"at most {g.max_open_proposals} proposal PR(s) open in the repository "
        "(`guardrails.max_open_proposals`)",
        f"a version is live {g.cooldown_days:g} day(s) before it gets a proposal "
        "(`guardrails.cooldown_days`)",
        f"opens at confidence {g.min_confidence} or higher (`guardrails.min_confidence`)",
        "snoozed: " + (", ".join(f"`{a}` until {d}" for a, d in report.snoozed.items())
                       or "none") + " (`guardrails.snooze` and the boxes below)",
    )
    newest = f"data through {snapshot.newest:%Y-%m-%d %H:%M} UTC" if snapshot.newest \
        else "no metrics rows"
    headline = (f"{len(state.agents)} agent(s) · {len(change)} change(s) in flight · "
                f"{len(alert_lines)} alert(s) · {newest}")
    return View(headline, tuple(lines), tuple(rows), calibration, guardrails,
                tuple(alert_lines), {a: d.isoformat() for a, d in board.snoozed.items()},
                policy.propose.hours_budget, policy.propose.hours_per_proposal,
                tuple(board.done), _learning(state, prs, report))


def _learning(state: RepoState, prs: list[Tracked], report: RunReport) -> tuple[str, ...]:
    """The learning loop's open PRs, then the rules promoted so far."""
    lines = [f"#{t.pr.number} {dashboard.plain(t.pr.title)}"
             for t in sorted(prs, key=lambda t: t.pr.number)
             if t.kind in ("promotion", "demotion") and t.pr.state == "open"
             and t.pr.number not in report.superseded]
    rules = [r.id for r in state.promoted.rules]
    lines.append("promoted rules (`policies/promoted_rules.yaml`): "
                 + (", ".join(f"`{r}`" for r in rules) if rules else "none yet"))
    return tuple(lines)


def _plus_days(through: str, days: int) -> str:
    try:
        start = datetime.fromisoformat(through[:19])
    except ValueError:
        return ""
    return date.fromordinal(start.date().toordinal() + max(days, 0)).isoformat()


def _in_flight(prs: list[Tracked], results: dict[str, Recorded],
               report: RunReport) -> dict[str, str]:
    """Per agent, what is in flight: a rollback first (it needs a person soonest), then a
    canary step, a measurement, an open proposal."""
    found: dict[str, list[tuple[int, str]]] = {}
    shown = {"rollback": (0, "rollback open"), "canary": (1, "canary step open"),
             "proposal": (3, "open for review"),
             "regression": (4, "regression cases open")}  # a measurement ranks 2
    for t in sorted(prs, key=lambda t: t.pr.number):
        if t.pr.state != "open" or t.pr.number in report.superseded or t.kind not in shown:
            continue
        rank, what = shown[t.kind]
        found.setdefault(t.agent, []).append(
            (rank, f"#{t.pr.number} {what}: {dashboard.plain(t.pr.title)}"))
    numbers = {t.proposal_id: t.pr.number for t in prs if t.kind == "proposal"}
    for pid, r in results.items():
        if r.state == MEASURING and pid in numbers:
            days = r.result.days_needed
            when = f", decision ~{_plus_days(r.result.data_through, days)}" \
                if days is not None else ""
            found.setdefault(r.result.agent_id, []).append(
                (2, f"#{numbers[pid]} measuring{when}: {dashboard.plain(r.result.headline)}"))
    return {agent: "; ".join(text for _, text in sorted(items))
            for agent, items in found.items()}
