"""An agent's history: every version the base branch served, who changed it and how, its
traffic, and the effect promptbot measured — as rows, text, JSON and a Mermaid chart.

Plain data in, plain data out: the shell (`bot/history.py`) reads git, the forge, the
results files and the metrics.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class Commit:
    """A first-parent commit of the base branch that changed the agent's file."""

    sha: str
    when: datetime
    author: str
    subject: str
    version: str | None  # None: the file did not parse at that commit (or was deleted)


@dataclass(frozen=True)
class Change:
    """What git and the forge say about the PR a commit merged."""

    number: int
    kind: str  # "proposal" | "rollback" | "canary"
    proposal_id: str
    step: str = ""  # a canary step: "end" restores the baseline, a share or "promote"


@dataclass(frozen=True)
class Effect:
    """A results file's measurement."""

    state: str
    decision: str
    delta: float
    low: float
    high: float
    expected: float | None = None


@dataclass(frozen=True)
class Row:
    version: str
    since: str  # ISO time the base branch started serving it
    commit: str
    author: str
    how: str  # "first version", "proposal p-… (#3, error_handling)", "rollback of p-… (#5)",
    #          "revert by hand", "edit by a person"
    pr: int | None
    proposal_id: str | None
    proposal_type: str | None
    executions: int | None
    success_rate: float | None
    effect: Effect | None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


# (version, since, until) -> (executions, success rate); since None: from the export's start.
Traffic = Callable[[str, datetime | None, datetime | None], tuple[int, float] | None]


def _how(change: Change | None, first: bool, earlier: bool, kind: str | None) -> str:
    if change is not None and change.kind == "rollback":
        return f"rollback of {change.proposal_id} (#{change.number})"
    if change is not None and change.kind == "canary":
        if change.step == "end":
            return f"canary of {change.proposal_id} ended: back to the baseline " \
                   f"(#{change.number})"
        return f"canary of {change.proposal_id}: step {change.step or '?'} (#{change.number})"
    if change is not None:
        return f"proposal {change.proposal_id} (#{change.number}{', ' + kind if kind else ''})"
    if first:
        return "first version"
    return "back to an earlier version: a revert by hand" if earlier else "edit by a person"


def rows(commits: list[Commit], changes: dict[str, Change], effects: dict[str, Effect],
         traffic: Traffic, types: dict[str, str]) -> list[Row]:
    """One row per version change, oldest first: commits that left the version as it was
    (a comment, a reformat) fold into the row before; a version that comes back is a new
    row (a rollback serves the old version again). `traffic(version, since, until)`: the
    executions and success rate of that stretch (each row counts only its own)."""
    kept: list[tuple[Commit, Change | None, str]] = []
    seen: set[str] = set()
    for c in commits:
        if c.version is None or (kept and kept[-1][0].version == c.version):
            continue
        change = changes.get(c.sha)
        kind = types.get(change.proposal_id) if change is not None else None
        kept.append((c, change, _how(change, not kept, c.version in seen, kind)))
        seen.add(c.version)
    out: list[Row] = []
    for i, (c, change, how) in enumerate(kept):
        assert c.version is not None
        until = kept[i + 1][0].when if i + 1 < len(kept) else None
        # The first version also served before its commit reached this branch's history.
        stats = traffic(c.version, c.when if i else None, until)
        pid = change.proposal_id if change is not None else None
        deploys = change is not None and change.kind == "proposal"
        out.append(Row(c.version, c.when.isoformat(timespec="minutes") + "Z", c.sha[:12],
                       c.author, how, change.number if change else None, pid,
                       types.get(pid or "") if deploys else None,
                       stats[0] if stats else None, stats[1] if stats else None,
                       effects.get(pid or "") if deploys else None))
    return out


def _pts(x: float) -> str:
    return f"{x * 100:+.1f} pts"


def effect_text(e: Effect | None) -> str:
    if e is None:
        return "—"
    word = {"success": "success", "regression": "regression", "no_effect": "no effect",
            "inconclusive": "inconclusive"}.get(e.decision, "measuring")
    if e.state == "rolled_back":
        word = f"rolled back ({word})"
    return f"{word} {_pts(e.delta)} ({_pts(e.low)} … {_pts(e.high)})"


def text(agent: str, found: list[Row]) -> str:
    head = f"{agent}: {len(found)} version(s) on the base branch, oldest first"
    lines = [head, f"  {'since (UTC)':<17} {'version':<13} {'commit':<8} {'execs':>7} "
             f"{'success':>8}  change / measured effect"]
    for r in found:
        execs = f"{r.executions:,}" if r.executions is not None else "—"
        rate = f"{r.success_rate * 100:.1f} %" if r.success_rate is not None else "—"
        lines.append(f"  {r.since.replace('T', ' '):<17} {r.version:<13} {r.commit[:7]:<8} "
                     f"{execs:>7} {rate:>8}  {r.how} — {r.author}")
        if r.effect is not None:
            lines.append(f"  {'':<17} {'':<13} {'':<8} {'':>7} {'':>8}  measured: "
                         f"{effect_text(r.effect)}")
    return "\n".join(lines)


def chart(agent: str, daily: list[tuple[str, float]], found: list[Row]) -> str:
    """The agent's daily success rate as a Mermaid xychart; a deploy day's label carries
    ▲ (a proposal or a person's edit) or ▼ (a rollback or a revert) and the version."""
    if len(daily) < 2:
        return ""
    marks: dict[str, str] = {}
    days = [d for d, _ in daily]
    for r in found[1:]:
        # On the first day of data at or after the deploy; none when it came after the data.
        day = next((d for d in days if d >= r.since[:10]), None)
        if day is None:
            continue
        back = r.how.startswith(("rollback", "back to")) or "ended: back" in r.how
        arrow = "▼" if back else "▲"
        mark = f"{arrow}{r.version[:6]}"
        marks[day] = f"{marks[day]} {mark}" if day in marks else mark  # several in a day
    labels = [f"{d[5:]} {marks[d]}" if d in marks else d[5:] for d in days]
    values = ", ".join(f"{v * 100:.1f}" for _, v in daily)
    return "\n".join([
        "```mermaid", "xychart-beta",
        f'    title "{agent}: daily success rate (%), ▲ deploy, ▼ rollback"',
        "    x-axis [" + ", ".join(f'"{label}"' for label in labels) + "]",
        '    y-axis "success %"', f"    line [{values}]", "```"])
