"""`promptbot history AGENT`: the agent's versions on the base branch, read from git, the
forge, the results files and (when there are any) the metrics; rendered by core/history.py."""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import datetime
from typing import Any

import yaml

from bot.context import Context, base_tree, tracked_prs
from bot.core.history import Change, Commit, Effect, Row, rows
from bot.errors import MetricsError, UsageError
from bot.load.repo import agent_path
from bot.measuring import version_at


def _effect(text: str | None) -> Effect | None:
    try:
        data = json.loads(text or "")
        c = data["comparison"]
        return Effect(str(data["state"]), str(c["decision"]), float(c["delta"]),
                      float(c["ci_low"]), float(c["ci_high"]), float(data["expected_delta"]))
    except (json.JSONDecodeError, KeyError, TypeError, ValueError):
        return None  # a hand-edited or foreign file: not shown as a measurement


def _type(text: str | None) -> str | None:
    try:
        data = yaml.safe_load(text or "")
    except yaml.YAMLError:
        return None
    kind = (data.get("type") or data.get("proposal_type")) if isinstance(data, dict) else None
    return str(kind) if isinstance(kind, str) else None


def history(ctx: Context, agent: str, patterns: list[str] | None
            ) -> tuple[list[Row], list[tuple[str, float]], str | None]:
    """(rows oldest first, the agent's daily success rate, why there is no traffic or None).
    `patterns` given and matching nothing is an error; the policy's source missing is a note."""
    from bot.app import load_metrics  # DuckDB only when the history is asked for

    base, base_sha, state = base_tree(ctx)
    path = agent_path(agent)
    commits = []
    for sha in ctx.git.first_parent_log(f"refs/heads/{base}", path):
        when, author, subject = ctx.git.commit_meta(sha)
        commits.append(Commit(sha, when, author, subject, version_at(ctx, sha, path)))
    if agent not in state.agents and not commits:
        known = ", ".join(sorted(state.agents)) or "none"
        raise UsageError(f"unknown agent '{agent[:80]}'", fix=f"known agents: {known}")
    changes: dict[str, Change] = {}
    effects: dict[str, Effect] = {}
    types: dict[str, str] = {}
    for t in tracked_prs(ctx):
        if not t.pr.merge_sha or t.agent != agent:
            continue
        pid = t.proposal_id
        changes[t.pr.merge_sha] = Change(t.pr.number, t.kind, pid, t.marker.get("step", ""))
        if t.kind != "proposal":
            continue
        results = ctx.git.read(base_sha, f"prompts/{agent}/results/{pid}.json")
        found = _effect(results)
        if found is not None:
            effects[pid] = found
        # The record as merged: a revert deletes it from the base branch.
        kind = _type(ctx.git.read(t.pr.merge_sha, f"prompts/{agent}/proposals/{pid}.yaml")) \
            or _type(results)
        if kind is not None:
            types[pid] = kind
    why: str | None = None
    try:
        snapshot = load_metrics(ctx, state.policy, patterns)
    except MetricsError as exc:
        if patterns:
            raise
        snapshot = None
        why = exc.message + (f" ({exc.fix})" if exc.fix else "")
    daily: list[tuple[str, float]] = []

    def traffic(version: str, since: datetime | None, until: datetime | None
                ) -> tuple[int, float] | None:
        if snapshot is None:
            return None
        start = since.replace(minute=0, second=0, microsecond=0) if since else None
        n = ok = 0
        for b in snapshot.buckets_of(agent):
            if (start is not None and b.hour < start) or (until is not None and b.hour >= until):
                continue
            if snapshot.has_version and b.prompt_version != version:
                continue
            n += b.executions
            ok += b.successes
        return (n, ok / n) if n else None

    if snapshot is not None:
        if not snapshot.has_version:
            why = "the export has no prompt_version: each version's traffic is counted by " \
                  "the time the base branch served it"
        days: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        for b in snapshot.buckets_of(agent):
            day = days[b.hour.date().isoformat()]
            day[0] += b.executions
            day[1] += b.successes
        daily = [(d, ok / n) for d, (n, ok) in sorted(days.items()) if n]
    return rows(commits, changes, effects, traffic, types), daily, why


def as_json(agent: str, found: list[Row], daily: list[tuple[str, float]],
            why: str | None) -> dict[str, Any]:
    return {"agent": agent, "versions": [r.to_json() for r in found],
            "daily_success_rate": [{"day": d, "success_rate": round(v, 6)} for d, v in daily],
            "traffic_note": why}
