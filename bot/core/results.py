"""After a merge: which state a proposal is in, and what the metrics say about it."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from bot.core.metrics import Bucket, MetricsSnapshot, jsonable
from bot.core.model import MeasurePolicy
from bot.core.stats import Arm, Comparison, arm_of, compare, legacy_rule

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
    # The estimate before the calibration in force then (None: a record from before it was
    # kept): what later calibration compares the measured change with.
    expected_uncalibrated: float | None = None
    expected_interval: tuple[float, float] | None = None  # as pre-registered, if it was
    base_since: datetime | None = None  # when the base version went live, if known
    new_until: datetime | None = None  # when the new version stopped being live, if it did
    # Other agents whose version did not change around the deploy (git says so); None: let
    # the export's prompt_version tell.
    controls: tuple[str, ...] | None = None
    # A canary promptbot runs (prompts/<agent>/rollout.yaml on the base branch now): the
    # candidate's share of request keys (fraction), since when (the commit that set it),
    # and how many stages the plan has (each stage is its own comparison).
    canary_share: float | None = None
    canary_since: datetime | None = None
    canary_stages: int = 0
    # When the canary's file stopped splitting (a promote or an end, by PR or by hand): its
    # last stage is measured up to here, never pooled with what came after.
    canary_until: datetime | None = None


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
    expected_interval: tuple[float, float] | None = None
    simulated: bool = False  # measured on `promptbot simulate` data: never calibrates
    expected_uncalibrated: float | None = None  # see Deployment

    @property
    def versus_registered(self) -> str | None:
        """Where the measured change fell against the pre-registered interval: "inside",
        "above" or "below"; None without an interval."""
        if self.expected_interval is None:
            return None
        low, high = self.expected_interval
        delta = self.comparison.delta
        return "above" if delta > high else "below" if delta < low else "inside"

    def to_json(self) -> str:
        data: dict[str, Any] = jsonable(self)
        return json.dumps(data, indent=2, sort_keys=True) + "\n"


def _hour(t: datetime) -> datetime:
    return t.replace(minute=0, second=0, microsecond=0)


def _daily(buckets: list[Bucket]) -> dict[str, float]:
    days: dict[str, list[int]] = {}
    for b in buckets:
        n_ok = days.setdefault(b.hour.strftime("%Y-%m-%d"), [0, 0])
        n_ok[0] += b.executions
        n_ok[1] += b.successes
    return {d: ok / n for d, (n, ok) in days.items() if n}


def _srm_p(observed: tuple[int, int], share: float) -> float:
    """p-value of a chi-square test (1 degree of freedom) of a two-way split against
    `share`: erfc(sqrt(X2 / 2)) is the chi-square(1) tail."""
    total = sum(observed)
    expected = (total * share, total * (1 - share))
    stat = sum((o - e) ** 2 / e for o, e in zip(observed, expected, strict=True))
    return math.erfc(math.sqrt(stat / 2))


CANARY_GRACE = timedelta(hours=6)
CANARY_HOURS = 24


@dataclass(frozen=True)
class Measured:
    comparison: Comparison
    how: str
    daily: tuple[tuple[str, float | None, float | None], ...]  # (day, base rate, new rate)


def concurrent(dep: Deployment, snapshot: MetricsSnapshot,
               policy: MeasurePolicy) -> Measured | None:
    """Both versions serving after the deploy (a canary split): compared over the same hours,
    a randomized comparison that day-level shocks hit on both sides alike, and the split
    checked against `measure.canary_share` (sample-ratio mismatch). None: not a canary."""
    ours = dep.canary_share is not None
    if not snapshot.has_version:
        if not ours:
            return None
        # Without the column every post-merge row would count as the candidate's.
        return Measured(_waiting(arm_of([]), arm_of([]), 0, policy,
                                 "a canary is measured only by prompt_version: the export "
                                 "has no such column (docs/RUNTIME.md: stamp it on each "
                                 "execution)"), "concurrent: the canary's current stage", ())
    # The merge hour and a rollout's lag (replicas reloading) are not a split: only hours
    # from CANARY_GRACE on, in which both versions served, and enough of them.
    deploy = _hour(dep.merged_at) + CANARY_GRACE
    if ours and dep.canary_since is not None:
        # Only the current stage: with one share throughout, the hours weigh both sides
        # alike; pooled across stages, the later (larger) stages' days would count more
        # for the candidate than for the baseline.
        deploy = max(deploy, _hour(dep.canary_since) + CANARY_GRACE)
    mine = snapshot.buckets_of(dep.agent_id)
    end = _hour(dep.new_until) if dep.new_until else None
    if ours and dep.canary_until is not None:
        end = min(end, _hour(dep.canary_until)) if end else _hour(dep.canary_until)
    base = [b for b in mine if b.hour >= deploy and b.prompt_version == dep.base_version
            and (end is None or b.hour < end)]
    new = [b for b in mine if b.hour >= deploy and b.prompt_version == dep.new_version
           and (end is None or b.hour < end)]
    both = {b.hour for b in base} & {b.hour for b in new}
    base = [b for b in base if b.hour in both]
    new = [b for b in new if b.hour in both]
    counted_base, counted_new = arm_of(base), arm_of(new)
    n_base, n_new = counted_base.executions, counted_new.executions
    if len(both) < CANARY_HOURS or min(n_base, n_new) < policy.min_executions_per_arm:
        if not ours:
            return None
        # Our canary is never judged before/after: it waits for its own split.
        return Measured(_waiting(counted_base, counted_new, len(both), policy),
                        "concurrent: the canary's current stage, both versions over the same "
                        "hours", ())
    share = n_new / (n_base + n_new)
    caution = None
    expected = dep.canary_share if ours else policy.canary_share
    if expected and expected >= 1.0:
        # Everything to the candidate: any baseline execution is misrouted.
        caution = (f"the rollout file sends every request to the candidate, yet the baseline "
                   f"served {n_base} executions; check the runtime's routing") if n_base else None
    elif expected:
        p = _srm_p((n_new, n_base), expected)
        if p < 0.001:
            caution = (f"sample-ratio mismatch: the new version got {share:.1%} of the traffic, "
                       f"{'the rollout file' if ours else 'the policy'} expects "
                       f"{expected:.1%} (p = {p:.2g}); check the runtime's routing before "
                       "trusting this comparison")
    if ours and dep.canary_stages > 1:
        # Each stage is a fresh comparison: their error levels add up (Bonferroni).
        policy = policy.model_copy(update={"alpha": policy.alpha / dep.canary_stages})
    lo = _day(deploy)
    hi = max(b.hour for b in new) + timedelta(days=1)
    if ours:
        # A canary's stage: only whole days inside it, so neither side's cost mixes in an
        # earlier stage's hours (the split differs there).
        lo = lo if deploy == lo else lo + timedelta(days=1)
        hi = _day(max(b.hour for b in new) + timedelta(hours=1))
    # Cost histograms are daily: they cover the deploy day and whole days, an
    # approximation the hourly counts above do not need.
    base_arm = arm_of(base, _cost_bins(snapshot, dep.agent_id, dep.base_version, lo, hi))
    new_arm = arm_of(new, _cost_bins(snapshot, dep.agent_id, dep.new_version, lo, hi))
    comparison = compare(base_arm, new_arm, dep.expected_delta, policy, caution,
                         base_arm.rate, judged_by=dep.judged_by or legacy_rule(dep.proposal_type))
    if ours and caution is not None:
        # A split the rollout file does not explain (replicas on old files, a key that is
        # not per request): no decision on it, whatever it shows.
        comparison = replace(comparison, decision="keep_measuring", reason=caution,
                             more_executions_needed=max(comparison.more_executions_needed, 1))
    before, after = _daily(base), _daily(new)
    daily = tuple((d, before.get(d), after.get(d)) for d in sorted(set(before) | set(after)))
    what = (f"the canary's current stage ({share:.0%} new; its own error level "
            f"{policy.alpha:.3g})" if ours else f"canary split, {share:.0%} new")
    return Measured(comparison, f"concurrent: both versions served after the deploy ({what}), "
                    "compared over the same hours", daily)


def _waiting(base: Arm, new: Arm, hours: int, policy: MeasurePolicy,
             why: str | None = None) -> Comparison:
    need = max(policy.min_executions_per_arm - min(base.executions, new.executions), 1)
    delta = new.rate - base.rate if base.executions and new.executions else 0.0
    smaller = min(base.executions, new.executions)
    what = (f"{hours} of the {CANARY_HOURS} hours with both versions it needs"
            if hours < CANARY_HOURS else f"{hours} hours with both versions")
    return Comparison(base, new, delta, 0.0, 0.0, None, "insufficient_data", need,
                      why or f"the canary's current stage has {what}, and {smaller} "
                      f"executions on the smaller side (it needs "
                      f"{policy.min_executions_per_arm})")


def _cost_bins(snapshot: MetricsSnapshot, agent: str, version: str | None,
               lo: datetime, hi: datetime) -> dict[int, int]:
    bins: dict[int, int] = {}
    for h in snapshot.histograms_of(agent):
        if h.metric == "cost" and lo <= h.day < hi and h.prompt_version == version:
            bins[h.index] = bins.get(h.index, 0) + h.count
    return bins


def _day(t: datetime) -> datetime:
    return t.replace(hour=0, minute=0, second=0, microsecond=0)


def before_after(dep: Deployment, snapshot: MetricsSnapshot,
                 policy: MeasurePolicy) -> Measured:
    """The new version's complete days since the deploy day against the base version's
    history before it, day by day (bot/core/decision.py)."""
    # numpy (bot/core/daily.py) loads with the measurement, not with the label names that
    # every event handler imports from this module.
    from bot.core.decision import decide
    from bot.core.evidence import gather, stable_peers, window

    by_version = snapshot.has_version
    # With a version column the rows say which version served them; the commit times only
    # bound the sides when they must stand in for it.
    win = window(dep.merged_at, snapshot.newest, policy,
                 None if by_version else dep.base_since, None if by_version else dep.new_until,
                 snapshot.oldest)
    versions = (dep.base_version, dep.new_version) if by_version else (None, None)
    controls = stable_peers(snapshot, dep.agent_id, dep.controls, win)
    ev = gather(snapshot, dep.agent_id, versions, win, policy, controls)
    comparison = decide(ev, dep.expected_delta, policy,
                        judged_by=dep.judged_by or legacy_rule(dep.proposal_type))
    alone = next((v for v in comparison.views if v.name == "alone"), None)
    parts = [f"day by day: {ev.calendar_days} complete day(s) of the new version since the "
             f"deploy day against {alone.base_days if alone else len(ev.success.pre)} day(s) "
             "of the base version before it "
             + ("(by prompt_version)" if by_version else
                "(by deploy time: the export has no prompt_version)")]
    if alone is not None:
        sd = f"{alone.day_sd * 100:.1f} pts"
        parts.append(f"day-to-day sd of the success rate {sd} "
                     + ("(estimated from the base's history)" if alone.day_sd_estimated
                        else "(assumed: measure.day_sd; too few base days to estimate it)"))
        parts.append("weekday-adjusted")
        if alone.trend is not None:
            parts.append(f"the base's trend of {alone.trend * 100:+.2f} pts/day carried "
                         "forward (interrupted time series)")
    if ev.controls:
        parts.append(f"checked against {len(ev.controls)} unchanged agent(s): "
                     + ", ".join(ev.controls[:5]) + (" …" if len(ev.controls) > 5 else ""))
    if ev.segments:
        parts.append("re-weighted to the base's segment mix")
    daily = tuple(sorted(
        [(d.day.isoformat(), d.y, None) for d in ev.success.pre]
        + [(d.day.isoformat(), None, d.y) for d in ev.success.post]))
    return Measured(comparison, "; ".join(parts), daily)


def measure(dep: Deployment, snapshot: MetricsSnapshot, policy: MeasurePolicy) -> Result:
    from bot.core.decision import FINAL  # with numpy, as in before_after

    measured = concurrent(dep, snapshot, policy) or before_after(dep, snapshot, policy)
    comparison = measured.comparison
    new = comparison.new
    rolled_back = dep.current_version == dep.base_version and dep.reverted_at is not None
    decided = comparison.decision in FINAL
    state = ROLLED_BACK if rolled_back else COMPLETED if decided else MEASURING
    recommend = (
        not rolled_back
        and comparison.decision == "regression"
        and -comparison.delta > policy.rollback_threshold
    )
    days = comparison.more_days
    if days is None and comparison.more_executions_needed and not rolled_back:
        per_day = _per_day(measured.daily, new.executions)
        days = math.ceil(comparison.more_executions_needed / per_day) if per_day else None
    words = {
        "success": "success",
        "regression": "regression",
        "no_effect": "no measurable effect",
        "inconclusive": "inconclusive",
        "keep_measuring": "measuring",
        "insufficient_data": "measuring",
    }[comparison.decision]
    headline = f"{words}, {comparison.delta * 100:+.1f} pts" if new.executions else "measuring"
    if comparison.decision == "inconclusive":
        headline = comparison.reason.split(":")[0]
    if rolled_back:
        headline = f"rolled back ({headline})"
    elif comparison.decision in ("keep_measuring", "insufficient_data"):
        headline = (f"measuring — about {comparison.more_executions_needed} more executions "
                    "needed" if comparison.more_executions_needed > 0 else
                    "measuring — no decision yet")
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
        expected_uncalibrated=dep.expected_uncalibrated,
        recommend_rollback=recommend,
        attribution=measured.how,
        data_through=through,
        days_needed=None if rolled_back else days,
        merge_sha=dep.merge_sha,
        rolled_back_by=dep.revert_sha if rolled_back else None,
        daily=measured.daily,
        proposal_type=dep.proposal_type,
        expected_interval=dep.expected_interval,
        simulated=snapshot.simulated,
    )


def _per_day(daily: tuple[tuple[str, float | None, float | None], ...], executions: int
             ) -> float:
    days = sum(1 for _, _, new in daily if new is not None)
    return executions / days if days else 0.0
