"""Triggers (seed 003): conditions that need a person's attention now.

All computed from the sufficient statistics, per agent (every version together,
since a new version is a likely cause), comparing the most recent stretch of data
(`recent_days`, ending at the newest row) with the week before it:

- degradation: success rate lower by more than `success_drop` points, and the drop is
  significant (two-proportion test at the policy's alpha, one look per run); or p95
  latency higher by more than `latency_increase` (e.g. 0.5 = +50 %);
- repeated errors: one failure mode more than `repeated_errors` times in the stretch;
- SLA: the stretch's success rate below `sla_success_rate`, or its p95 latency above
  `sla_latency_p95_ms` (each off when 0).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta

from bot.core.metrics import MetricsSnapshot, error_groups, quantile
from bot.core.model import TriggerPolicy
from bot.core.stats import Arm, two_proportion

BASELINE_DAYS = 7


@dataclass(frozen=True)
class Trigger:
    agent_id: str
    kind: str  # degradation | repeated_errors | sla
    message: str


def _window(snapshot: MetricsSnapshot, agent: str, lo: datetime, hi: datetime) -> Arm:
    items = [b for b in snapshot.buckets_of(agent) if lo <= b.hour < hi]
    return Arm(sum(b.executions for b in items), sum(b.successes for b in items))


def _p95(snapshot: MetricsSnapshot, agent: str, lo: datetime, hi: datetime) -> float | None:
    bins: dict[int, int] = defaultdict(int)
    for h in snapshot.histograms_of(agent):
        if h.metric == "latency" and lo <= h.day < hi:
            bins[h.index] += h.count
    return quantile(bins, 0.95)


def triggers(snapshot: MetricsSnapshot, policy: TriggerPolicy, alpha: float,
             agents: list[str]) -> list[Trigger]:
    if snapshot.newest is None:
        return []
    end = snapshot.newest.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    start = end - timedelta(days=policy.recent_days)
    base_start = start - timedelta(days=BASELINE_DAYS)
    day = timedelta(days=1)
    out: list[Trigger] = []
    for agent in agents:
        recent, before = _window(snapshot, agent, start, end), _window(
            snapshot, agent, base_start, start)
        if recent.executions == 0:
            continue
        if before.executions and policy.success_drop > 0:
            delta, _, _, p = two_proportion(before, recent, alpha)
            if -delta > policy.success_drop and p < alpha:
                out.append(Trigger(agent, "degradation",
                                   f"success rate {recent.rate:.1%} in the last "
                                   f"{policy.recent_days:g} day(s), down {-delta * 100:.1f} pts "
                                   f"from {before.rate:.1%} the week before (p = {p:.2g})"))
        # Latency histograms are daily: compare whole days.
        p95_recent = _p95(snapshot, agent, start.replace(hour=0), end + day)
        p95_before = _p95(snapshot, agent, base_start.replace(hour=0), start.replace(hour=0))
        if (p95_recent and p95_before and policy.latency_increase > 0
                and p95_recent > p95_before * (1 + policy.latency_increase)):
            out.append(Trigger(agent, "degradation",
                               f"p95 latency {p95_recent:.0f} ms, up "
                               f"{(p95_recent / p95_before - 1) * 100:.0f} % from "
                               f"{p95_before:.0f} ms the week before"))
        if policy.repeated_errors > 0:
            recent_errors = [e for e in snapshot.errors_of(agent)
                             if start <= e.last_seen < end]
            for group in error_groups(recent_errors, limit=3):
                if group.count > policy.repeated_errors:
                    out.append(Trigger(
                        agent, "repeated_errors",
                        f"{group.count} × [{group.error_type}] {group.template[:120]} in the "
                        f"last {policy.recent_days:g} day(s) ({group.failure_id})"))
        if policy.sla_success_rate > 0 and recent.rate < policy.sla_success_rate:
            out.append(Trigger(agent, "sla",
                               f"success rate {recent.rate:.1%} is below the SLA of "
                               f"{policy.sla_success_rate:.1%}"))
        if policy.sla_latency_p95_ms > 0 and p95_recent and p95_recent > policy.sla_latency_p95_ms:
            out.append(Trigger(agent, "sla",
                               f"p95 latency {p95_recent:.0f} ms is above the SLA of "
                               f"{policy.sla_latency_p95_ms:.0f} ms"))
    return out
