"""Alerts (seed 003): conditions that need a person, each one labelled issue.

Pure: the shell (bot/dashboard.py) gathers the facts, `evaluate` says which alerts hold
now, and the shell opens, updates, reopens or closes one issue per alert key. A body is
rendered from the facts alone (dates, not ages), so a run that sees the same facts
writes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from bot.core.dashboard import plain
from bot.core.model import AlertsPolicy
from bot.core.render import untrusted

KIND = "alert"
RECURRING_LEVEL = 0.8  # a fixed failure mode is back at this share of its level before


@dataclass(frozen=True)
class Alert:
    key: str  # one issue per key: rollback-rate, degraded-<agent>, backlog, ...
    title: str
    body: str


@dataclass(frozen=True)
class Measured:
    """A measured proposal, for the rollback rate."""

    number: int
    agent: str
    decision: str
    state: str
    through: str  # its results' data-through time, the order of "latest"


@dataclass(frozen=True)
class OpenProposal:
    number: int
    agent: str
    title: str
    opened: datetime | None


@dataclass(frozen=True)
class Fixed:
    """A failure mode a merged proposal fixed (measured success)."""

    agent: str
    error_type: str
    category: str
    number: int
    share: float  # its share of the executions before the fix


@dataclass(frozen=True)
class Failing:
    """A failure mode of an agent's current version, with enough evidence to matter."""

    agent: str
    error_type: str
    category: str
    count: int
    share: float


@dataclass(frozen=True)
class Facts:
    measured: tuple[Measured, ...] = ()
    degraded: tuple[tuple[str, str], ...] = ()  # (agent, trigger message)
    open_proposals: tuple[OpenProposal, ...] = ()
    fixed: tuple[Fixed, ...] = ()
    failing: tuple[Failing, ...] = ()
    newest_row: datetime | None = None
    now: datetime | None = None


CLOSE_NOTE = "\n\nThe bot closes this issue when the condition clears and reopens it if it " \
    "comes back."


def evaluate(facts: Facts, policy: AlertsPolicy) -> list[Alert]:
    """The alerts that hold now, in a stable order."""
    out = [*_rollback_rate(facts, policy), *_degraded(facts, policy),
           *_backlog(facts, policy), *_recurring(facts, policy), *_stale(facts, policy)]
    return sorted(out, key=lambda a: a.key)


def _rollback_rate(facts: Facts, policy: AlertsPolicy) -> list[Alert]:
    if policy.max_rollbacks == 0:
        return []
    latest = sorted(facts.measured, key=lambda m: (m.through, m.number))[
        -policy.rollback_window:]
    bad = [m for m in latest if m.decision == "regression" or m.state == "rolled_back"]
    if len(bad) < policy.max_rollbacks:
        return []
    rows = "\n".join(f"- #{m.number} `{m.agent}`: "
                     + ("rolled back" if m.state == "rolled_back" else "regressed")
                     for m in bad)
    # Titles stay the same while an alert holds (the body carries the numbers): the issue is
    # edited, never retitled.
    return [Alert("rollback-rate", "promptbot alert: high rollback rate",
                  f"{len(bad)} of the last {len(latest)} measured proposals regressed or "
                  f"were rolled back (the alert holds from {policy.max_rollbacks} of the "
                  f"latest {policy.rollback_window}: `alerts.max_rollbacks`, "
                  f"`alerts.rollback_window`):\n\n{rows}\n\nWhat to do: read their "
                  "results comments for a common cause (an estimate that is too hopeful, a "
                  "kind of change that does not work for these agents); raise "
                  "`guardrails.min_confidence` to `medium` or lower "
                  "`guardrails.max_prs_per_run` while you look." + CLOSE_NOTE)]


def _degraded(facts: Facts, policy: AlertsPolicy) -> list[Alert]:
    if not policy.degraded:
        return []
    by_agent: dict[str, list[str]] = {}
    for agent, message in facts.degraded:
        by_agent.setdefault(agent, []).append(message)
    return [Alert(f"degraded-{agent}", f"promptbot alert: {agent} is degraded",
                  f"`{agent}` fired its triggers (`triggers` in the policy):\n\n"
                  + "\n".join(f"- {plain(m)}" for m in messages)
                  + "\n\nWhat to do: check what changed (a deploy, a model, the traffic) in "
                  f"`promptbot history {agent}` and the run's analysis report." + CLOSE_NOTE)
            for agent, messages in sorted(by_agent.items())]


def _backlog(facts: Facts, policy: AlertsPolicy) -> list[Alert]:
    if policy.backlog_days == 0 or facts.now is None:
        return []
    limit = facts.now - timedelta(days=policy.backlog_days)
    old = sorted((p for p in facts.open_proposals if p.opened is not None
                  and p.opened < limit), key=lambda p: p.number)
    if not old:
        return []
    rows = "\n".join(f"- #{p.number} `{p.agent}`: {plain(p.title)} (open since "
                     f"{p.opened:%Y-%m-%d})" for p in old if p.opened is not None)
    return [Alert("backlog", "promptbot alert: proposals wait too long for review",
                  f"Proposals wait for review longer than `alerts.backlog_days` "
                  f"({policy.backlog_days:g}):\n\n{rows}\n\nWhat to do: merge or close "
                  "them; while one is open its agent gets no other change." + CLOSE_NOTE)]


def _recurring(facts: Facts, policy: AlertsPolicy) -> list[Alert]:
    if not policy.recurring:
        return []
    out = []
    fixed = {(f.agent, f.error_type, f.category): f for f in facts.fixed}
    for now in sorted(facts.failing, key=lambda f: (f.agent, f.error_type, f.category)):
        before = fixed.get((now.agent, now.error_type, now.category))
        # A fix rarely removes every such failure: "back" is most of the level before it.
        if before is None or now.share < RECURRING_LEVEL * before.share:
            continue
        out.append(Alert(
            f"recurring-{now.agent}-{now.category}",
            f"promptbot alert: {now.agent}'s {now.category.replace('_', ' ')} failures are back",
            f"#{before.number} fixed `{now.agent}`'s {untrusted(now.error_type, 80)} failures "
            f"({now.category.replace('_', ' ')}; measured success), and the current version "
            f"fails that way again: {now.count:,} executions ({now.share * 100:.1f} %, "
            f"{before.share * 100:.1f} % before the fix).\n\n"
            "What to do: a later edit may have undone the fix (see `promptbot history "
            f"{now.agent}`), or the traffic changed; the bot proposes again only once the "
            "agent has no change in flight." + CLOSE_NOTE))
    return out


def _stale(facts: Facts, policy: AlertsPolicy) -> list[Alert]:
    if policy.stale_export_hours == 0 or facts.now is None or facts.newest_row is None:
        return []
    if facts.now - facts.newest_row <= timedelta(hours=policy.stale_export_hours):
        return []
    return [Alert("stale-export", "promptbot alert: the metrics export stopped arriving",
                  f"The newest metrics row is from {facts.newest_row:%Y-%m-%d %H:%M} UTC, "
                  f"more than `alerts.stale_export_hours` ({policy.stale_export_hours:g} hours) "
                  "before this run: measurements and proposals rest on old traffic until "
                  "it arrives.\n\nWhat to do: check the job that writes the export "
                  "(`metrics.source` in the policy). For a fixed sample, set "
                  "`alerts.stale_export_hours: 0`." + CLOSE_NOTE)]
