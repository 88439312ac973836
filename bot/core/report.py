"""The analysis report: per agent and version, as JSON-ready data and as text."""

from __future__ import annotations

from typing import Any

from bot.core.analysis import current_stats, health
from bot.core.metrics import MetricsSnapshot, VersionStats, jsonable


def _version(v: VersionStats) -> dict[str, Any]:
    return {
        "prompt_version": v.prompt_version,
        "executions": v.executions,
        "successes": v.successes,
        "failures": v.failures,
        "timeouts": v.timeouts,
        "success_rate": round(v.success_rate, 6),
        "latency_p50_ms": v.latency_p50_ms,
        "latency_p95_ms": v.latency_p95_ms,
        "cost_per_execution_usd": v.cost_per_execution,
        "cost_total_usd": v.cost_total,
        "input_tokens_mean": v.input_tokens_mean,
        "output_tokens_mean": v.output_tokens_mean,
        "quality_mean": v.quality_mean,
        "first_seen": v.first_seen,
        "last_seen": v.last_seen,
        "top_errors": [
            {
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


def analysis(snapshot: MetricsSnapshot, current: dict[str, str]) -> dict[str, Any]:
    """`current` maps agent id -> the version on the base branch."""
    agents: dict[str, Any] = {}
    names = sorted({v.agent_id for v in snapshot.versions} | set(current))
    for agent in names:
        version = current.get(agent)
        stats = current_stats(snapshot, agent, version) if version else None
        agents[agent] = {
            "in_repository": agent in current,
            "current_version": version,
            "health": health(stats) if agent in current else "not in prompts/",
            "versions": [_version(v) for v in snapshot.for_agent(agent)],
        }
    data: dict[str, Any] = jsonable(
        {
            "input": {
                "sources": list(snapshot.sources),
                "rows_read": snapshot.rows_read,
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
            },
            "agents": agents,
        }
    )
    return data


def _num(value: float | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def analysis_text(data: dict[str, Any]) -> str:
    src = data["input"]
    span = (f"{src['data_from']} → {src['data_through']}, window {src['window_days']} days"
            if src["data_through"] else "no usable rows")
    lines = [
        f"metrics: {src['rows_used']} executions used of {src['rows_read']} rows "
        f"({src['duplicates_dropped']} duplicates, {src['bad_rows']} bad rows dropped), {span}",
    ]
    for skipped in src.get("skipped_files", []):
        lines.append(f"  skipped empty file: {skipped}")
    for reason, count in src["bad_rows_by_reason"].items():
        lines.append(f"  bad rows: {count} × {reason}")
    for agent, info in data["agents"].items():
        lines.append("")
        if info["in_repository"]:
            lines.append(f"{agent}  [{info['health']}]  version on main: "
                         f"{info['current_version']}")
        else:
            lines.append(f"{agent}  [unknown agent: in the metrics, not in prompts/]")
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
