"""Problems worth a proposal, found in the per-version statistics of one agent."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from bot.core import diagnosis
from bot.core.metrics import ErrorGroup, MetricsSnapshot, VersionStats
from bot.core.model import ProposePolicy

# What `propose --goal` can ask for (app.problems_for tries them in its own order).
GOALS = ("error_handling", "accuracy", "conciseness", "clarity", "safety", "speed")


@dataclass(frozen=True)
class Problem:
    kind: str  # "failure_mode" | "conciseness" | "clarity" | "safety" | "latency" | "accuracy"
    agent_id: str
    version: str
    signature: str  # stable across runs: the same failure mode gets the same signature
    failure: ErrorGroup | None  # None for a problem of the prompt text itself
    stats: VersionStats

    @property
    def share(self) -> float:
        if self.failure is None or not self.stats.executions:
            return 0.0
        return self.failure.count / self.stats.executions

    @property
    def problem_id(self) -> str:
        return hashlib.sha256(self.signature.encode()).hexdigest()[:10]


def health(stats: VersionStats | None, healthy_rate: float = 0.95) -> str:
    """Success rate bands: >= 98 % excellent, >= 95 % good, >= 90 % fair, else needs
    attention; moved by propose.healthy_success_rate so that the label says whether the
    agent gets failure-mode proposals: at or above it at least good, below it at most fair."""
    if stats is None or stats.executions == 0:
        return "no data"
    rate = stats.success_rate
    band = "excellent" if rate >= 0.98 else "good" if rate >= 0.95 else \
        "fair" if rate >= 0.90 else "needs attention"
    if rate >= healthy_rate and band in ("fair", "needs attention"):
        return "good"
    if rate < healthy_rate and band in ("excellent", "good"):
        return "fair"
    return band


def current_stats(snapshot: MetricsSnapshot, agent_id: str, version: str) -> VersionStats | None:
    """Stats of the version on main; without a version column, all of the agent's rows."""
    if snapshot.has_version:
        return snapshot.version(agent_id, version)
    rows = snapshot.for_agent(agent_id)
    return rows[0] if rows else None


def conciseness_problem(stats: VersionStats | None, agent_id: str, version: str,
                        filler: tuple[str, ...], policy: ProposePolicy) -> Problem | None:
    """Filler wording in the prompt of a version with enough traffic to measure a change."""
    if stats is None or stats.executions < policy.min_executions or not filler:
        return None
    digest = hashlib.sha256("\n".join(filler).encode()).hexdigest()[:12]
    return Problem("conciseness", agent_id, version, f"conciseness|{agent_id}|{digest}", None,
                   stats)


def clarity_problem(stats: VersionStats | None, agent_id: str, version: str,
                    hedged: tuple[str, ...], policy: ProposePolicy) -> Problem | None:
    """Hedged instructions ("try to", "you might want to") in the prompt of a version with
    enough traffic to measure a change."""
    if stats is None or stats.executions < policy.min_executions or not hedged:
        return None
    digest = hashlib.sha256("\n".join(hedged).encode()).hexdigest()[:12]
    return Problem("clarity", agent_id, version, f"clarity|{agent_id}|{digest}", None, stats)


def safety_problem(stats: VersionStats | None, agent_id: str, version: str,
                   unguarded: tuple[str, ...], policy: ProposePolicy) -> Problem | None:
    """User-supplied template variables (`unguarded`) reach a prompt that never says to
    treat them as data: a prompt-injection risk, found in the prompt itself."""
    if stats is None or stats.executions < policy.min_executions or not unguarded:
        return None
    return Problem("safety", agent_id, version, f"safety|{agent_id}|input_guard", None, stats)


def latency_problem(stats: VersionStats | None, agent_id: str, version: str,
                    sla_p95_ms: float, policy: ProposePolicy) -> Problem | None:
    """p95 latency of the version above the policy's SLA (triggers.sla_latency_p95_ms)."""
    if stats is None or stats.executions < policy.min_executions or sla_p95_ms <= 0:
        return None
    if stats.latency_p95_ms is None or stats.latency_p95_ms <= sla_p95_ms:
        return None
    return Problem("latency", agent_id, version, f"latency|{agent_id}|p95", None, stats)


def accuracy_problem(stats: VersionStats | None, agent_id: str, version: str,
                     policy: ProposePolicy) -> Problem | None:
    """Mean quality score of the version below the policy's propose.min_quality.

    Only with at least propose.min_executions scores from per-execution rows: the change is
    judged by the quality score (a ratio of means, so scores must be positive), which needs
    their squares — the daily form carries none — and enough of them to decide."""
    if stats is None or policy.min_quality <= 0 or stats.quality_sq_n < policy.min_executions:
        return None
    if stats.quality_mean is None or not 0 < stats.quality_mean < policy.min_quality:
        return None
    return Problem("accuracy", agent_id, version, f"accuracy|{agent_id}|quality", None, stats)


def healthy(stats: VersionStats | None, policy: ProposePolicy) -> bool:
    """An agent at or above propose.healthy_success_rate gets no failure-mode proposal."""
    return stats is not None and stats.executions > 0 and \
        stats.success_rate >= policy.healthy_success_rate


def failure_problems(
    stats: VersionStats | None, agent_id: str, version: str, policy: ProposePolicy
) -> list[Problem]:
    """Failure modes of the current version with enough evidence, most frequent first;
    none for a healthy agent (see `healthy`)."""
    if stats is None or stats.executions < policy.min_executions or healthy(stats, policy):
        return []
    out = []
    seen: set[str] = set()
    for group in stats.top_errors:
        share = group.count / stats.executions
        if group.count < policy.min_failure_count or share < policy.min_failure_share:
            continue
        # By error type and diagnosed category, not by template: a template can change when
        # the export does (a word becomes a variable once enough of them show), and the
        # proposal id, which a rejection or an open PR is found by, must not.
        category = diagnosis.of_failure(group.error_type, group.template, group.example)
        signature = f"failure_mode|{agent_id}|{group.error_type}|{category}"
        if category == "unknown":
            signature += f"|{group.template}"  # nothing else tells two of them apart
        if signature in seen:
            continue  # the same fix as a larger failure mode's, already listed
        seen.add(signature)
        out.append(Problem("failure_mode", agent_id, version, signature, group, stats))
    return out
