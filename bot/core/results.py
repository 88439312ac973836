"""After a merge: which state a proposal is in, and what the metrics say about it."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from bot.core.metrics import Bucket, MetricsSnapshot, jsonable
from bot.core.model import MeasurePolicy
from bot.core.stats import Arm, Comparison, compare

PROPOSED, MEASURING, COMPLETED, ROLLED_BACK, REJECTED, SUPERSEDED = (
    "proposed", "measuring", "completed", "rolled_back", "rejected", "superseded",
)
STATES = (PROPOSED, MEASURING, COMPLETED, ROLLED_BACK, REJECTED, SUPERSEDED)


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

    def to_json(self) -> str:
        data: dict[str, Any] = jsonable(self)
        return json.dumps(data, indent=2, sort_keys=True) + "\n"


def _sum(buckets: list[Bucket]) -> Arm:
    return Arm(sum(b.executions for b in buckets), sum(b.successes for b in buckets))


def arms(dep: Deployment, snapshot: MetricsSnapshot) -> tuple[Arm, Arm, str, float]:
    """(base, new, how attributed, executions/day of the new arm)."""
    mine = [b for b in snapshot.buckets if b.agent_id == dep.agent_id]
    if snapshot.has_version:
        base = [b for b in mine if b.prompt_version == dep.base_version]
        new = [b for b in mine if b.prompt_version == dep.new_version]
        how = "by prompt_version column"
    else:
        # No version column: attribute by deploy time. Each side is bounded by the commits
        # that put its version live and took it down, and the hours of those changes,
        # when two versions may have served traffic, are dropped.
        def hour(t: datetime) -> datetime:
            return t.replace(minute=0, second=0, microsecond=0)

        start = hour(dep.merged_at)
        since = hour(dep.base_since) if dep.base_since else None
        end = hour(dep.new_until) if dep.new_until else None
        base = [b for b in mine if b.hour < start and (since is None or b.hour > since)]
        new = [b for b in mine if b.hour > start and (end is None or b.hour < end)]
        how = "by deploy time (merge commit time; the export has no prompt_version column)"
    hours = {b.hour for b in new}
    span_days = (
        max((max(hours) - min(hours)) / timedelta(days=1), 1.0) if hours else 0.0
    )
    new_arm = _sum(new)
    per_day = new_arm.executions / span_days if span_days else 0.0
    return _sum(base), new_arm, how, per_day


def measure(dep: Deployment, snapshot: MetricsSnapshot, policy: MeasurePolicy) -> Result:
    base, new, how, per_day = arms(dep, snapshot)
    comparison = compare(base, new, dep.expected_delta, policy)
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
    )
