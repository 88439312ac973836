"""The analysis report: per agent and version, as JSON-ready data and as text."""

from __future__ import annotations

import statistics
from collections import defaultdict
from datetime import datetime
from typing import Any

from bot.core.analysis import current_stats, health
from bot.core.metrics import MetricsSnapshot, VersionStats, jsonable
from bot.core.model import Policy
from bot.core.triggers import Trigger, triggers

TOKEN_BLOAT = 0.25  # input tokens per execution up by more than this vs the previous version
RETRY_SHARE = 0.05  # a retry pattern: at least this share of executions retried
COST_PER_EXECUTION = 2.0  # a cost sink per execution: this many times the median agent's


def _daily(snapshot: MetricsSnapshot, agent: str, version: str | None,
           since: datetime | None) -> list[dict[str, Any]]:
    days: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for b in snapshot.buckets_of(agent):
        if b.prompt_version == version and (since is None or b.hour >= since):
            day = days[b.hour.strftime("%Y-%m-%d")]
            day[0] += b.executions
            day[1] += b.successes
    return [{"date": d, "executions": n, "success_rate": round(ok / n, 6) if n else None}
            for d, (n, ok) in sorted(days.items())]


def _version(v: VersionStats) -> dict[str, Any]:
    return {
        "prompt_version": v.prompt_version,
        "executions": v.executions,
        "successes": v.successes,
        "failures": v.failures,
        "errors": v.errors,
        "timeouts": v.timeouts,
        "success_rate": round(v.success_rate, 6),
        "error_rate": round(v.errors / v.executions, 6) if v.executions else None,
        "timeout_rate": round(v.timeouts / v.executions, 6) if v.executions else None,
        "latency_p50_ms": v.latency_p50_ms,
        "latency_p95_ms": v.latency_p95_ms,
        "latency_p99_ms": v.latency_p99_ms,
        "cost_per_execution_usd": v.cost_per_execution,
        "cost_total_usd": v.cost_total,
        "input_tokens_mean": v.input_tokens_mean,
        "output_tokens_mean": v.output_tokens_mean,
        "quality_mean": v.quality_mean,
        "retries": None if not v.retries_n else {
            "executions_with_count": v.retries_n,
            "retried": v.retried,
            "retried_share": round(v.retried / v.retries_n, 6),
            "retries_total": int(v.retries_sum),
            "retries_per_retried": round(v.retries_sum / v.retried, 3) if v.retried else None,
        },
        "first_seen": v.first_seen,
        "last_seen": v.last_seen,
        "top_errors": [
            {
                "failure_id": e.failure_id,
                "error_type": e.error_type,
                "template": e.template,
                "count": e.count,
                "share": round(e.count / v.executions, 6) if v.executions else 0.0,
                "first_seen": e.first_seen,
                "last_seen": e.last_seen,
                "example": e.example,
            }
            for e in v.top_errors
        ],
    }


def _findings(snapshot: MetricsSnapshot, agent: str,
              current: VersionStats | None) -> list[str]:
    """Cost and token observations about the current version (not triggers)."""
    out: list[str] = []
    versions = [v for v in snapshot.for_agent(agent) if v.executions]
    total = sum(v.cost_total or 0 for v in snapshot.versions)
    mine = sum(v.cost_total or 0 for v in versions)
    if total and mine / total >= 0.4 and len({v.agent_id for v in snapshot.versions}) > 1:
        out.append(f"cost sink: {mine / total:.0%} of all spend in the window "
                   f"(${mine:,.2f} of ${total:,.2f})")
    per_agent: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
    for v in snapshot.versions:
        if v.cost_total is not None and v.executions:
            per_agent[v.agent_id][0] += v.cost_total
            per_agent[v.agent_id][1] += v.executions
    costs = [c / n for c, n in per_agent.values() if n]
    if current is not None and current.cost_per_execution and len(costs) >= 3:
        median = statistics.median(costs)
        if median > 0 and current.cost_per_execution >= COST_PER_EXECUTION * median:
            out.append(f"cost sink: ${current.cost_per_execution:.4f} per execution, "
                       f"{current.cost_per_execution / median:.1f}× the median agent's "
                       f"(${median:.4f})")
    if current is not None and current.input_tokens_mean:
        earlier = [v for v in versions if v.first_seen < current.first_seen
                   and v.input_tokens_mean]
        if earlier:
            prev = earlier[-1]
            assert prev.input_tokens_mean is not None
            growth = current.input_tokens_mean / prev.input_tokens_mean - 1
            if growth > TOKEN_BLOAT:
                out.append(f"token bloat: {current.input_tokens_mean:.0f} input tokens per "
                           f"execution, {growth:+.0%} vs version {prev.prompt_version}")
    if current is not None and current.retries_n and \
            current.retried / current.retries_n >= RETRY_SHARE:
        out.append(f"retry pattern: {current.retried / current.retries_n:.0%} of executions "
                   f"retried ({current.retried:,} of {current.retries_n:,}, "
                   f"{current.retries_sum / current.retried:.1f} retries each, "
                   f"{int(current.retries_sum):,} extra calls in the window)")
    return out


def analysis(snapshot: MetricsSnapshot, current: dict[str, str],
             policy: Policy | None = None) -> dict[str, Any]:
    """`current` maps agent id -> the version on the base branch."""
    policy = policy or Policy()
    agents: dict[str, Any] = {}
    names = sorted({v.agent_id for v in snapshot.versions} | set(current))
    fired = triggers(snapshot, policy.triggers, policy.measure.alpha, names)
    by_agent: dict[str, list[Trigger]] = defaultdict(list)
    for t in fired:
        by_agent[t.agent_id].append(t)
    # The daily series cover the analysis window.
    since = min((v.first_seen for v in snapshot.versions), default=None)
    for agent in names:
        version = current.get(agent)
        stats = current_stats(snapshot, agent, version) if version else None
        state = health(stats, policy.propose.healthy_success_rate) if agent in current \
            else "not in prompts/"
        if by_agent[agent] and agent in current:
            state = "needs attention"
        agents[agent] = {
            "in_repository": agent in current,
            "current_version": version,
            "health": state,
            "triggers": [{"kind": t.kind, "message": t.message} for t in by_agent[agent]],
            "findings": _findings(snapshot, agent, stats),
            "versions": [
                {**_version(v), "daily": _daily(snapshot, agent, v.prompt_version, since)}
                for v in snapshot.for_agent(agent)
            ],
        }
    data: dict[str, Any] = jsonable(
        {
            "input": {
                "sources": list(snapshot.sources),
                "rows_read": snapshot.rows_read,
                "daily_rows": snapshot.daily_rows,
                "rows_used": snapshot.rows_used,
                "duplicates_dropped": snapshot.duplicates,
                "bad_rows": snapshot.bad_rows,
                "bad_rows_by_reason": snapshot.bad_by_reason,
                "bad_row_samples": list(snapshot.bad_samples),
                "has_prompt_version": snapshot.has_version,
                "window_days": snapshot.window_days,
                "data_from": snapshot.oldest,
                "data_through": snapshot.newest,
                "skipped_files": list(snapshot.skipped_files),
                "warnings": [{"file": w.path, "line": w.line, "message": w.message,
                              "fix": w.fix} for w in snapshot.warnings],
            },
            "agents": agents,
            "triggers": [{"agent": t.agent_id, "kind": t.kind, "message": t.message}
                         for t in fired],
        }
    )
    return data


def _num(value: float | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def analysis_text(data: dict[str, Any]) -> str:
    src = data["input"]
    span = (f"{src['data_from']} → {src['data_through']}, window {src['window_days']} days"
            if src["data_through"] else "no usable rows")
    read = f"{src['rows_read']} rows"
    if src.get("daily_rows"):
        # The daily form alone (a warehouse's result): no per-execution row was read.
        read = (f"{read} + {src['daily_rows']} daily rows" if src["rows_read"]
                else f"{src['daily_rows']} daily-form rows")
    lines = [
        f"metrics: {src['rows_used']} executions used, from {read} "
        f"({src['duplicates_dropped']} duplicates, {src['bad_rows']} bad rows dropped), {span}",
    ]
    for skipped in src.get("skipped_files", []):
        lines.append(f"  skipped empty file: {skipped}")
    for reason, count in src["bad_rows_by_reason"].items():
        lines.append(f"  bad rows: {count} × {reason}")
    for w in src.get("warnings", []):
        where = f"{w['file']}:{w['line']}" if w["line"] else w["file"]
        lines.append(f"  warning: {where}: {w['message']}")
        lines.append(f"    fix: {w['fix']}")
    for agent, info in data["agents"].items():
        lines.append("")
        if info["in_repository"]:
            lines.append(f"{agent}  [{info['health']}]  version on main: "
                         f"{info['current_version']}")
        else:
            lines.append(f"{agent}  [unknown agent: in the metrics, not in prompts/]")
        for t in info["triggers"]:
            lines.append(f"  ! {t['kind']}: {t['message']}")
        for f in info["findings"]:
            lines.append(f"  · {f}")
        lines.append(f"  {'version':<14}{'execs':>8}{'success':>9}{'p50 ms':>9}{'p95 ms':>9}"
                     f"{'$/exec':>10}")
        for v in info["versions"]:
            current = info["in_repository"] and v["prompt_version"] == info["current_version"]
            star = "*" if current else " "
            lines.append(
                f" {star}{v['prompt_version'] or '-'!s:<14}{v['executions']:>8}"
                f"{v['success_rate'] * 100:>8.1f}%{_num(v['latency_p50_ms'], '.0f'):>9}"
                f"{_num(v['latency_p95_ms'], '.0f'):>9}"
                f"{_num(v['cost_per_execution_usd'], '.4f'):>10}"
            )
            for e in v["top_errors"][:3]:
                lines.append(f"      {e['count']:>6} × [{e['error_type']}] {e['template'][:90]}")
    return "\n".join(lines) + "\n"
