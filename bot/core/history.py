"""An agent's history: every version the base branch served, who changed it and how, its
traffic, and the effect promptbot measured — as rows, text, JSON and a Mermaid chart.

Plain data in, plain data out: the shell (`bot/history.py`) reads git, the forge, the
results files and the metrics.
"""

from __future__ import annotations

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
    proposal_type: str | None = None


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


def rows(commits: list[Commit], changes: dict[str, Change], effects: dict[str, Effect],
         traffic: dict[str, tuple[int, float]], types: dict[str, str]) -> list[Row]:
    """One row per version change, oldest first: commits that left the version as it was
    (a comment, a reformat) fold into the row before; a version that comes back is a new
    row (a rollback serves the old version again)."""
    out: list[Row] = []
    seen: set[str] = set()
    for c in commits:
        if c.version is None or (out and out[-1].version == c.version):
            continue
        change = changes.get(c.sha)
        pid = change.proposal_id if change else None
        if change is not None and change.kind == "rollback":
            how = f"rollback of {pid} (#{change.number})"
        elif change is not None:
            kind = types.get(pid or "") or change.proposal_type
            how = f"{'canary step' if change.kind == 'canary' else 'proposal'} {pid} " \
                  f"(#{change.number}{', ' + kind if kind else ''})"
        elif not out:
            how = "first version"
        elif c.version in seen:
            how = "back to an earlier version (a revert by hand)"
        else:
            how = "edit by a person"
        seen.add(c.version)
        stats = traffic.get(c.version)
        effect = effects.get(pid or "") if change is not None and change.kind != "rollback" \
            else None
        out.append(Row(c.version, c.when.isoformat(timespec="minutes"), c.sha[:12], c.author,
                       how, change.number if change else None, pid,
                       types.get(pid or "") if change is not None else None,
                       stats[0] if stats else None, stats[1] if stats else None, effect))
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
                     f"{execs:>7} {rate:>8}  {r.how} ({r.author})")
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
    for r in found[1:]:
        day = r.since[:10]
        arrow = "▼" if r.how.startswith(("rollback", "back to")) else "▲"
        mark = f"{arrow}{r.version[:6]}"
        marks[day] = f"{marks[day]} {mark}" if day in marks else mark  # several in a day
    labels = [f"{d[5:]} {marks[d]}" if d in marks else d[5:] for d, _ in daily]
    values = ", ".join(f"{v * 100:.1f}" for _, v in daily)
    return "\n".join([
        "```mermaid", "xychart-beta",
        f'    title "{agent}: daily success rate (%), ▲ deploy, ▼ rollback"',
        "    x-axis [" + ", ".join(f'"{label}"' for label in labels) + "]",
        '    y-axis "success %"', f"    line [{values}]", "```"])
