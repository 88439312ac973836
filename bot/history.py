"""`promptbot history AGENT`: the agent's versions on the base branch, read from git, the
forge, the results files and (when there are any) the metrics; rendered by core/history.py."""

from __future__ import annotations

import json
from collections import defaultdict
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
    kind = data.get("type") if isinstance(data, dict) else None
    return str(kind) if isinstance(kind, str) else None


def history(ctx: Context, agent: str, patterns: list[str] | None
            ) -> tuple[list[Row], list[tuple[str, float]], str | None]:
    """(rows oldest first, the agent's daily success rate, why there is no traffic or None)."""
    from bot.app import load_metrics  # DuckDB only when the history is asked for

    base, base_sha, state = base_tree(ctx)
    if agent not in state.agents:
        known = ", ".join(sorted(state.agents)) or "none"
        raise UsageError(f"unknown agent '{agent[:80]}'", fix=f"known agents: {known}")
    path = agent_path(agent)
    commits = []
    for sha in ctx.git.first_parent_log(f"refs/heads/{base}", path):
        when, author, subject = ctx.git.commit_meta(sha)
        commits.append(Commit(sha, when, author, subject, version_at(ctx, sha, path)))
    changes = {t.pr.merge_sha: Change(t.pr.number, t.kind, t.proposal_id)
               for t in tracked_prs(ctx) if t.pr.merge_sha and t.agent == agent}
    effects: dict[str, Effect] = {}
    types: dict[str, str] = {}
    for change in changes.values():
        pid = change.proposal_id
        found = _effect(ctx.git.read(base_sha, f"prompts/{agent}/results/{pid}.json"))
        if found is not None:
            effects[pid] = found
        kind = _type(ctx.git.read(base_sha, f"prompts/{agent}/proposals/{pid}.yaml"))
        if kind is not None:
            types[pid] = kind
    traffic: dict[str, tuple[int, float]] = {}
    daily: list[tuple[str, float]] = []
    why: str | None = None
    try:
        snapshot = load_metrics(ctx, state.policy, patterns)
    except MetricsError as exc:
        why = exc.message
    else:
        for v in snapshot.versions:
            if v.agent_id == agent and v.prompt_version and v.executions:
                traffic[v.prompt_version] = (v.executions, v.success_rate)
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
