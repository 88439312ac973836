"""After a merge: which state a proposal is in, and what the metrics say about it."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from scipy.stats import chisquare

from bot.core.metrics import Bucket, MetricsSnapshot, jsonable
from bot.core.model import MeasurePolicy
from bot.core.stats import (
    Arm,
    Comparison,
    arm_of,
    compare,
    legacy_rule,
    planning_tau2,
    success_sequence,
)

PROPOSED, MEASURING, COMPLETED, ROLLED_BACK, REJECTED, SUPERSEDED = (
    "proposed", "measuring", "completed", "rolled_back", "rejected", "superseded",
)


def state_label(prefix: str, state: str) -> str:
    return f"{prefix}:{state.replace('_', '-')}"


def labels_for(prefix: str, state: str) -> list[str]:
    return [prefix, state_label(prefix, state)]


@dataclass(frozen=True)
class Deployment:
    """What git says about a merged proposal."""

    proposal_id: str
    agent_id: str
    base_version: str
    new_version: str
    merged_at: datetime
    merge_sha: str
    current_version: str | None  # the agent's version on the base branch now
    reverted_at: datetime | None  # when the base version came back, if it did
    revert_sha: str | None
    expected_delta: float
    proposal_type: str = "error_handling"
    judged_by: str | None = None  # pre-registered rule; None: a file from before it was
    base_since: datetime | None = None  # when the base version went live, if known
    new_until: datetime | None = None  # when the new version stopped being live, if it did


@dataclass(frozen=True)
class Result:
    proposal_id: str
    agent_id: str
    base_version: str
    new_version: str
    state: str
    headline: str
    comparison: Comparison
    expected_delta: float
    recommend_rollback: bool
    attribution: str
    data_through: str
    days_needed: int | None
    merge_sha: str
    rolled_back_by: str | None
    daily: tuple[tuple[str, float | None, float | None], ...] = ()
    proposal_type: str = "error_handling"

    def to_json(self) -> str:
        data: dict[str, Any] = jsonable(self)
        return json.dumps(data, indent=2, sort_keys=True) + "\n"


def _hour(t: datetime) -> datetime:
    return t.replace(minute=0, second=0, microsecond=0)


@dataclass(frozen=True)
class Arms:
    base: Arm
    new: Arm
    how: str
    per_day: float  # executions per day of the new arm
    drift: str | None
    daily: tuple[tuple[str, float | None, float | None], ...]  # (day, base rate, new rate)
    planning_rate: float | None = None  # the base rate the test is tuned with


def _cost_bins(snapshot: MetricsSnapshot, agent: str, version: str | None,
               lo: datetime, hi: datetime) -> dict[int, int]:
    """Daily cost histograms of one version; none without versions (days mix both sides)."""
    if version is None:
        return {}
    bins: dict[int, int] = {}
    for h in snapshot.histograms_of(agent):
        if (h.metric == "cost" and lo <= h.day < hi
                and h.prompt_version == version):
            bins[h.index] = bins.get(h.index, 0) + h.count
    return bins


def _daily(buckets: list[Bucket]) -> dict[str, float]:
    days: dict[str, list[int]] = {}
    for b in buckets:
        n_ok = days.setdefault(b.hour.strftime("%Y-%m-%d"), [0, 0])
        n_ok[0] += b.executions
        n_ok[1] += b.successes
    return {d: ok / n for d, (n, ok) in days.items() if n}


def arms(dep: Deployment, snapshot: MetricsSnapshot, policy: MeasurePolicy) -> Arms:
    """The two arms, as adjacent windows of equal length around the deploy.

    Before/after is not a randomized experiment: the base side is the stretch of
    base-version traffic just before the deploy, as long as the new side has run,
    and a placebo comparison of the two stretches before that tells whether the
    baseline itself was moving (drift).
    """
    mine = snapshot.buckets_of(dep.agent_id)
    deploy = _hour(dep.merged_at)
    if snapshot.has_version:
        base_all = [b for b in mine if b.prompt_version == dep.base_version and b.hour < deploy]
        new = [b for b in mine if b.prompt_version == dep.new_version and b.hour >= deploy]
        how = ("before/after: the new version since the deploy against the same length of "
               "base-version traffic just before it (by prompt_version)")
        base_v: str | None = dep.base_version
        new_v: str | None = dep.new_version
    else:
        # No version column: attribute by deploy time. Each side is bounded by the commits
        # that put its version live and took it down, and the hours of those changes,
        # when two versions may have served traffic, are dropped.
        since = _hour(dep.base_since) if dep.base_since else None
        end = _hour(dep.new_until) if dep.new_until else None
        base_all = [b for b in mine if b.hour < deploy and (since is None or b.hour > since)]
        new = [b for b in mine if b.hour > deploy and (end is None or b.hour < end)]
        how = ("before/after by deploy time (the merge commit; the export has no "
               "prompt_version): the same length of traffic on each side")
        base_v = new_v = None
    # The new side's span, from its first hour (the deploy hour is dropped without a
    # version column), and the same span of base traffic right before the deploy.
    if new:
        length = max(b.hour for b in new) + timedelta(hours=1) - min(b.hour for b in new)
    else:
        length = timedelta(0)
    base = [b for b in base_all if b.hour >= deploy - length]
    # Both versions serving after the deploy is a canary split: compare them over the same
    # hours instead (a randomized comparison, no drift to worry about), and check the split.
    concurrent = [b for b in mine if snapshot.has_version and b.hour >= deploy
                  and b.prompt_version == dep.base_version]
    if arm_of(concurrent).executions >= policy.min_executions_per_arm and new:
        return _canary(dep, snapshot, policy, concurrent, new, length)
    earlier = [b for b in base_all if deploy - 2 * length <= b.hour < deploy - length]
    drift = None
    a, c = arm_of(earlier), arm_of(base)
    planning = arm_of(base_all).rate if base_all else None
    if min(a.executions, c.executions) >= policy.min_executions_per_arm:
        # The placebo is looked at every run too, so it gets the always-valid test as well.
        s = success_sequence(a, c, policy, planning_tau2(planning or 0.9, policy))
        if s.excludes_zero:
            drift = (f"the base version's success rate moved {s.estimate * 100:+.1f} pts "
                     "between the two stretches before the deploy (placebo, always-valid "
                     f"p = {s.p_value:.2g}): part of the measured change may be drift, not "
                     "the prompt")
    return _arms(snapshot, dep.agent_id, (base, base_v, _day(deploy - length), deploy),
                 (new, new_v, _day(deploy), deploy + length + timedelta(days=1)),
                 length, how, drift, planning)


Side = tuple[list[Bucket], str | None, datetime, datetime]  # buckets, version, cost-bin days


def _arms(snapshot: MetricsSnapshot, agent: str, base: Side, new: Side, length: timedelta,
          how: str, caution: str | None, planning_rate: float | None) -> Arms:
    base_arm = arm_of(base[0], _cost_bins(snapshot, agent, *base[1:]))
    new_arm = arm_of(new[0], _cost_bins(snapshot, agent, *new[1:]))
    before, after = _daily(base[0]), _daily(new[0])
    daily = tuple((d, before.get(d), after.get(d)) for d in sorted(set(before) | set(after)))
    span_days = length / timedelta(days=1)
    per_day = new_arm.executions / max(span_days, 1 / 24) if span_days else 0.0
    return Arms(base_arm, new_arm, how, per_day, caution, daily, planning_rate)


def _canary(dep: Deployment, snapshot: MetricsSnapshot, policy: MeasurePolicy,
            base: list[Bucket], new: list[Bucket], length: timedelta) -> Arms:
    n_base, n_new = arm_of(base).executions, arm_of(new).executions
    total = n_base + n_new
    share = n_new / total
    drift = None
    if policy.canary_share > 0:
        # Sample-ratio mismatch: a split far from the configured one means the runtime
        # routes differently than intended, and the arms may not be comparable.
        test = chisquare([n_new, n_base],
                         [total * policy.canary_share, total * (1 - policy.canary_share)])
        if float(test.pvalue) < 0.001:
            drift = (f"sample-ratio mismatch: the new version got {share:.1%} of the traffic, "
                     f"the policy expects {policy.canary_share:.1%} (p = "
                     f"{float(test.pvalue):.2g}); check the runtime's routing before trusting "
                     "this comparison")
    lo = _day(_hour(dep.merged_at))
    hi = lo + length + timedelta(days=2)
    how = (f"concurrent: both versions served after the deploy (canary split, "
           f"{share:.0%} new)")
    return _arms(snapshot, dep.agent_id, (base, dep.base_version, lo, hi),
                 (new, dep.new_version, lo, hi), length, how, drift, arm_of(base).rate)


def _day(t: datetime) -> datetime:
    return t.replace(hour=0, minute=0, second=0, microsecond=0)


def measure(dep: Deployment, snapshot: MetricsSnapshot, policy: MeasurePolicy) -> Result:
    sides = arms(dep, snapshot, policy)
    base, new, how, per_day = sides.base, sides.new, sides.how, sides.per_day
    comparison = compare(base, new, dep.expected_delta, policy, sides.drift,
                         sides.planning_rate,
                         judged_by=dep.judged_by or legacy_rule(dep.proposal_type))
    rolled_back = dep.current_version == dep.base_version and dep.reverted_at is not None
    decided = comparison.decision in ("success", "regression", "no_effect")
    state = ROLLED_BACK if rolled_back else COMPLETED if decided else MEASURING
    recommend = (
        not rolled_back
        and comparison.decision == "regression"
        and -comparison.delta > policy.rollback_threshold
    )
    days = (
        math.ceil(comparison.more_executions_needed / per_day)
        if comparison.more_executions_needed and per_day > 0 and not rolled_back
        else None
    )
    words = {
        "success": "success",
        "regression": "regression",
        "no_effect": "no measurable effect",
        "keep_measuring": "measuring",
        "insufficient_data": "measuring",
    }[comparison.decision]
    headline = f"{words}, {comparison.delta * 100:+.1f} pts" if new.executions else "measuring"
    if rolled_back:
        headline = f"rolled back ({headline})"
    elif comparison.decision in ("keep_measuring", "insufficient_data"):
        headline = f"measuring — about {comparison.more_executions_needed} more executions needed"
    through = snapshot.newest.strftime("%Y-%m-%d %H:%M UTC") if snapshot.newest else "no data"
    return Result(
        proposal_id=dep.proposal_id,
        agent_id=dep.agent_id,
        base_version=dep.base_version,
        new_version=dep.new_version,
        state=state,
        headline=headline,
        comparison=comparison,
        expected_delta=dep.expected_delta,
        recommend_rollback=recommend,
        attribution=how,
        data_through=through,
        days_needed=days,
        merge_sha=dep.merge_sha,
        rolled_back_by=dep.revert_sha if rolled_back else None,
        daily=sides.daily,
        proposal_type=dep.proposal_type,
    )
