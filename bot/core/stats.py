"""The decision after a deploy, from sufficient statistics of two arms.

The bot looks at every deployed change on every run, so every interval here is an
always-valid confidence sequence (core/sequential.py): the chance that it ever
excludes the truth stays below alpha however many days one looks.

- success rate: difference of two proportions (unpooled variance);
- latency: difference of mean log latency (Welch variance), reported as a ratio;
  heavy right tails barely move a log mean;
- cost: difference of mean cost per execution, each execution capped at the 99.9th
  percentile of both arms (read from the per-version cost histograms), so one runaway
  call cannot decide; reported as a ratio of means. Without a version column the daily
  histograms would mix both sides, so the mean comes uncapped from the hourly sums.
- fewer than `min_failures_per_arm` failures on either side: insufficient data, never a
  decision; variances use Agresti-Caffo (one success and one failure added) so a rate of
  exactly 0 or 1 cannot give a zero-width interval.
Latency and cost are guardrails: a success-rate win whose latency or cost is
clearly worse than the policy's margin is not called a success.

Decisions: success | regression | no_effect | keep_measuring | insufficient_data.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date
from statistics import NormalDist

from bot.core.metrics import COST_UNIT, Bucket, bin_value
from bot.core.model import MeasurePolicy
from bot.core.sequential import (
    Sequence,
    executions_for,
    mixing_variance,
    sequence,
)

_NORMAL = NormalDist()

# How a deployed proposal is judged (pre-registered in its proposal file as `judged_by`).
JUDGED_BY: dict[str, str] = {
    "improvement": "success rate higher (always-valid interval above 0)",
    "cheaper": "cost per execution lower, success rate not worse (non-inferiority)",
    "faster": "latency lower, success rate not worse (non-inferiority)",
    "better_quality": "mean quality score higher, success rate not worse (non-inferiority)",
    "not_worse": "success rate not worse (non-inferiority)",
}


def legacy_rule(proposal_type: str) -> str:
    """The rule of a proposal file written before `judged_by` was recorded."""
    return {"prompt_optimization": "cheaper", "latency": "faster", "model_config": "faster",
            "accuracy": "better_quality"}.get(proposal_type, "improvement")


@dataclass(frozen=True)
class Arm:
    executions: int
    successes: int
    lat_n: int = 0
    lat_log_sum: float = 0.0
    lat_log_sumsq: float = 0.0
    cost_bins: dict[int, int] = field(default_factory=dict, compare=False)
    cost_n: int = 0
    cost_sum: float = 0.0
    cost_sumsq: float = 0.0
    q_n: int = 0
    q_sum: float = 0.0
    q_sumsq: float = 0.0

    @property
    def rate(self) -> float:
        return self.successes / self.executions if self.executions else 0.0

    @property
    def failures(self) -> int:
        return self.executions - self.successes

    @property
    def log_latency(self) -> tuple[float, float]:
        """(mean, variance) of log latency."""
        if self.lat_n < 2:
            return 0.0, 0.0
        mean = self.lat_log_sum / self.lat_n
        var = max(self.lat_log_sumsq - self.lat_n * mean * mean, 0.0) / (self.lat_n - 1)
        return mean, var


def arm_of(buckets: Iterable[Bucket], cost_bins: dict[int, int] | None = None) -> Arm:
    items = list(buckets)
    return Arm(
        executions=sum(b.executions for b in items),
        successes=sum(b.successes for b in items),
        lat_n=sum(b.latency_n for b in items),
        lat_log_sum=sum(b.log_latency_sum for b in items),
        lat_log_sumsq=sum(b.log_latency_sumsq for b in items),
        cost_bins=dict(cost_bins or {}),
        cost_n=sum(b.cost_n for b in items),
        cost_sum=sum(b.cost_sum for b in items),
        cost_sumsq=sum(b.cost_sumsq for b in items),
        # Only scores that come with their squares (per-execution rows, not the daily form):
        # a mean over other rows would not match the variance.
        q_n=sum(b.quality_sq_n for b in items),
        q_sum=sum(b.quality_sum for b in items if b.quality_sq_n),
        q_sumsq=sum(b.quality_sumsq for b in items if b.quality_sq_n),
    )


@dataclass(frozen=True)
class Guardrail:
    metric: str  # "latency" | "cost"
    ratio: float  # new / base (geometric mean for latency, capped mean for cost)
    low: float
    high: float
    margin: float  # allowed relative increase (for quality: decrease)
    verdict: str  # "ok" (shown within margin) | "worse" (shown beyond margin) | "unclear"
    higher_is_better: bool = False  # quality: a ratio below 1 is the bad direction


@dataclass(frozen=True)
class Incident:
    """A day when failures jumped for a reason outside the prompt; left out of every series."""

    day: date
    agent_id: str
    error_type: str
    template: str
    count: int
    share: float  # of that agent's executions that day
    why: str


@dataclass(frozen=True)
class SegmentMix:
    segment: str
    base_share: float
    new_share: float
    base_rate: float | None
    new_rate: float | None


@dataclass(frozen=True)
class View:
    """One estimate of the success-rate change and how it was made."""

    name: str  # "alone" | "against unchanged agents"
    estimate: float
    low: float
    high: float
    p_value: float
    days: int  # post days used
    base_days: int
    day_sd: float  # between-day standard deviation of the series
    day_sd_estimated: bool
    noise_sd: float  # sampling standard deviation of an average base day (its counts)
    trend: float | None  # slope per day carried forward (interrupted time series)
    var_post: float  # the estimate's variance from the new version's days
    var_base: float  # ... and from the base model's own uncertainty (does not shrink)
    base_half_width: float  # the interval's half-width if the base were the only doubt

    @property
    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0


@dataclass(frozen=True)
class Comparison:
    base: Arm
    new: Arm
    delta: float  # new - base success rate
    ci_low: float  # always-valid confidence sequence
    ci_high: float
    p_value: float | None  # always-valid p-value
    decision: str  # success | regression | no_effect | keep_measuring | insufficient_data
    more_executions_needed: int  # per arm, 0 when decided
    reason: str
    guardrails: tuple[Guardrail, ...] = ()
    drift: str | None = None  # a reason to distrust the comparison: drift, or a skewed split
    # Day-level before/after comparisons (bot/core/decision.py) also say how they were made.
    views: tuple[View, ...] = ()  # the first one is the estimate above
    incidents: tuple[Incident, ...] = ()  # days left out
    segments: tuple[SegmentMix, ...] = ()  # the traffic mix before and after
    more_days: int | None = None  # days until a decision is likely, when measuring on


def two_proportion(base: Arm, new: Arm, alpha: float) -> tuple[float, float, float, float]:
    """Fixed-horizon (delta, low, high, two-sided p): for the drift check, which looks once."""
    delta = new.rate - base.rate
    se = math.sqrt(
        base.rate * (1 - base.rate) / base.executions + new.rate * (1 - new.rate) / new.executions
    )
    z = _NORMAL.inv_cdf(1 - alpha / 2)
    pooled = (base.successes + new.successes) / (base.executions + new.executions)
    se0 = math.sqrt(pooled * (1 - pooled) * (1 / base.executions + 1 / new.executions))
    p = 1.0 if se0 == 0 else 2 * (1 - _NORMAL.cdf(abs(delta) / se0))
    return delta, delta - z * se, delta + z * se, p


def sample_size(rate: float, delta: float, alpha: float, power: float = 0.8) -> int:
    """Fixed-horizon executions per arm to detect `delta` from `rate` (normal approximation)."""
    delta = abs(delta) or 0.01
    other = min(max(rate + delta, 1e-6), 1 - 1e-6)
    za, zb = _NORMAL.inv_cdf(1 - alpha / 2), _NORMAL.inv_cdf(power)
    var = rate * (1 - rate) + other * (1 - other)
    return math.ceil((za + zb) ** 2 * var / delta**2)


def _unit_variance(rate: float) -> float:
    rate = min(max(rate, 0.01), 0.99)
    return 2 * rate * (1 - rate)


def planning_tau2(rate: float, policy: MeasurePolicy) -> float:
    """Mixing variance tuned to the planned horizon. `rate` should not move with the data
    being tested (the pre-deploy base rate), or the always-valid guarantee bends."""
    return mixing_variance(_unit_variance(rate) / policy.max_executions_per_arm, policy.alpha)


def success_sequence(base: Arm, new: Arm, policy: MeasurePolicy, tau2: float) -> Sequence:
    # Agresti-Caffo: one success and one failure added to each arm for the variance only,
    # so a rate of exactly 0 or 1 does not give a zero-width interval.
    var = sum(p * (1 - p) / (arm.executions + 2)
              for arm in (base, new)
              for p in [(arm.successes + 1) / (arm.executions + 2)])
    return sequence(new.rate - base.rate, var, tau2, policy.alpha)


def _capped_cost(arm: Arm, cap_bin: int) -> tuple[float, float, int]:
    """(mean, variance, n) of cost per execution, each execution capped at `cap_bin`."""
    n = sum(arm.cost_bins.values())
    if n < 2:
        return 0.0, 0.0, n
    values = [(bin_value(min(b, cap_bin), COST_UNIT), c) for b, c in arm.cost_bins.items()]
    mean = sum(v * c for v, c in values) / n
    var = sum(c * (v - mean) ** 2 for v, c in values) / (n - 1)
    return mean, var, n


def verdict(low: float, high: float, margin: float) -> str:
    """A guardrail's verdict from its interval on the log scale and its allowed rise."""
    limit = math.log1p(margin)
    if high <= limit:
        return "ok"
    if low > limit:
        return "worse"
    return "unclear"


def welch(base: Arm, new: Arm) -> tuple[float, float]:
    """(difference of mean log latency, its Welch variance), from sums and sums of squares."""
    (mb, vb), (mn, vn) = base.log_latency, new.log_latency
    return mn - mb, vb / base.lat_n + vn / new.lat_n


def guardrails(base: Arm, new: Arm, policy: MeasurePolicy) -> tuple[Guardrail, ...]:
    out: list[Guardrail] = []
    (_, vb), (_, vn) = base.log_latency, new.log_latency
    if base.lat_n >= 2 and new.lat_n >= 2 and (vb > 0 or vn > 0):
        diff, var = welch(base, new)
        horizon = (vb + vn) / policy.max_executions_per_arm
        s = sequence(diff, var, mixing_variance(max(horizon, 1e-12), policy.alpha),
                     policy.alpha)
        out.append(Guardrail("latency", math.exp(s.estimate), math.exp(s.low),
                             math.exp(s.high), policy.latency_margin,
                             verdict(s.low, s.high, policy.latency_margin)))
    quality = _quality(base, new, policy)
    if quality is not None:
        out.append(quality)
    if not (base.cost_bins and new.cost_bins):
        # No per-version histograms (attribution by deploy time): an uncapped mean from
        # the hourly sums, so the arms are exactly the hours each side covers.
        rail = _uncapped_cost(base, new, policy)
        return (*out, rail) if rail else tuple(out)
    both: dict[int, int] = {}
    for bins in (base.cost_bins, new.cost_bins):
        for b, c in bins.items():
            both[b] = both.get(b, 0) + c
    if sum(both.values()) >= 4:
        total, seen, cap_bin = sum(both.values()), 0, max(both)
        for b in sorted(both):
            seen += both[b]
            if seen >= 0.999 * total:
                cap_bin = b
                break
        (cb, vcb, nb), (cn, vcn, nn) = _capped_cost(base, cap_bin), _capped_cost(new, cap_bin)
        if nb >= 2 and nn >= 2 and cb > 0:
            # Delta method on the log of the ratio of means.
            var = vcb / (nb * cb * cb) + vcn / (nn * max(cn, 1e-12) ** 2)
            horizon = (vcb / cb**2 + vcn / max(cn, 1e-12) ** 2) / policy.max_executions_per_arm
            s = sequence(math.log(max(cn, 1e-12) / cb), max(var, 1e-18),
                         mixing_variance(max(horizon, 1e-12), policy.alpha), policy.alpha)
            out.append(Guardrail("cost", math.exp(s.estimate), math.exp(s.low),
                                 math.exp(s.high), policy.cost_margin,
                                 verdict(s.low, s.high, policy.cost_margin)))
    return tuple(out)


def _ratio_of_means(base: tuple[int, float, float], new: tuple[int, float, float],
                    policy: MeasurePolicy, need_spread: bool = False) -> Sequence | None:
    """Always-valid sequence for log(mean new / mean base) from (n, sum, sum of squares) of
    each arm, by the delta method; None with fewer than 2 values or a mean at or below 0
    (and, with `need_spread`, when neither arm varies)."""
    stats = []
    for n, total, squares in (base, new):
        if n < 2 or total <= 0:
            return None
        mean = total / n
        stats.append((mean, max(squares - n * mean * mean, 0.0) / (n - 1), n))
    (mb, vb, nb), (mn, vn, nn) = stats
    if need_spread and vb <= 0 and vn <= 0:
        return None
    var = vb / (nb * mb * mb) + vn / (nn * mn * mn)
    horizon = (vb / mb**2 + vn / mn**2) / policy.max_executions_per_arm
    return sequence(math.log(mn / mb), max(var, 1e-18),
                    mixing_variance(max(horizon, 1e-12), policy.alpha), policy.alpha)


def _quality(base: Arm, new: Arm, policy: MeasurePolicy) -> Guardrail | None:
    """Ratio of mean quality scores new/base, where the export has them: 'worse' when shown
    below ×(1 - quality_margin), 'ok' when shown above it."""
    s = _ratio_of_means((base.q_n, base.q_sum, base.q_sumsq),
                        (new.q_n, new.q_sum, new.q_sumsq), policy, need_spread=True)
    if s is None:
        return None
    floor = math.log1p(-min(policy.quality_margin, 0.999))
    shortfall = "ok" if s.low >= floor else "worse" if s.high < floor else "unclear"
    return Guardrail("quality", math.exp(s.estimate), math.exp(s.low), math.exp(s.high),
                     policy.quality_margin, shortfall, higher_is_better=True)


def _uncapped_cost(base: Arm, new: Arm, policy: MeasurePolicy) -> Guardrail | None:
    s = _ratio_of_means((base.cost_n, base.cost_sum, base.cost_sumsq),
                        (new.cost_n, new.cost_sum, new.cost_sumsq), policy)
    if s is None:
        return None
    return Guardrail("cost (uncapped)", math.exp(s.estimate), math.exp(s.low), math.exp(s.high),
                     policy.cost_margin, verdict(s.low, s.high, policy.cost_margin))


def compare(
    base: Arm,
    new: Arm,
    expected_delta: float,
    policy: MeasurePolicy,
    drift: str | None = None,
    planning_rate: float | None = None,
    judged_by: str = "improvement",
) -> Comparison:
    """The decision, by the rule the proposal pre-registered (`JUDGED_BY`).

    "improvement": the success rate is shown higher. "cheaper" (changes meant to save:
    wording, tokens): the cost per execution is shown lower and the success rate shown not
    worse than `rollback_threshold` — non-inferiority, not superiority. "faster": the same
    for latency (brevity rules, a lower max_tokens). "better_quality": the quality score is
    shown higher and the success rate not worse. "not_worse" (clarity, safety rules, whose
    value shows elsewhere): the success rate is shown not worse. Under every rule a guardrail
    shown beyond its margin is a regression, and so is a success rate shown lower — except
    that a non-inferiority rule whose gain is shown accepts a drop shown smaller than
    `rollback_threshold` (that is what non-inferiority means)."""
    if judged_by not in JUDGED_BY:
        raise ValueError(f"unknown rule {judged_by!r}")
    rate0 = planning_rate if planning_rate is not None else (
        base.rate if base.executions else 0.9)
    tau2 = planning_tau2(rate0, policy)
    target = abs(expected_delta) or policy.min_detectable_effect
    need_total = executions_for(target, _unit_variance(rate0), tau2, policy.alpha)
    need_total = min(max(need_total, policy.min_executions_per_arm),
                     policy.max_executions_per_arm)
    smaller = min(base.executions, new.executions)
    # Too few executions, or too few failures to say anything about a failure rate.
    too_few = (smaller < policy.min_executions_per_arm
               or min(base.failures, new.failures) < policy.min_failures_per_arm)
    if base.executions == 0 or new.executions == 0 or too_few:
        need = max(need_total - smaller, policy.min_executions_per_arm - smaller, 1)
        delta = new.rate - base.rate if base.executions and new.executions else 0.0
        return Comparison(base, new, delta, 0.0, 0.0, None, "insufficient_data", need,
                          "too few executions (or failures) in one arm to compare", (), drift)
    s = success_sequence(base, new, policy, tau2)
    rails = guardrails(base, new, policy)
    worse = [g for g in rails if g.verdict == "worse"]
    # Non-inferiority rules: a win when the rule's own gain is shown (a guardrail's interval
    # on the right side of ×1, or nothing more for not_worse) and the success rate is shown
    # not worse than rollback_threshold.
    non_inferior = f"the success rate not worse than {policy.rollback_threshold * 100:.0f} " \
        "points (non-inferiority)"
    gains = {  # rule: (guardrail metric, word, where its interval must lie)
        "cheaper": ("cost", "cheaper", "below"),
        "faster": ("latency", "faster", "below"),
        "better_quality": ("quality", "better", "above"),
    }
    if not worse and s.low > -policy.rollback_threshold:
        if judged_by in gains:
            metric, word, side = gains[judged_by]
            shown = [g for g in rails if g.metric.startswith(metric)
                     and (g.high < 1.0 if side == "below" else g.low > 1.0)]
            if shown:
                return Comparison(base, new, s.estimate, s.low, s.high, s.p_value, "success",
                                  0, f"{word} ({metric} ×{shown[0].ratio:.3f}, interval "
                                  f"{side} 1) and {non_inferior}", rails, drift)
        elif judged_by == "not_worse":
            return Comparison(base, new, s.estimate, s.low, s.high, s.p_value, "success", 0,
                              f"success rate shown not worse than "
                              f"{policy.rollback_threshold * 100:.0f} points (non-inferiority)",
                              rails, drift)
    if s.low > 0 and not worse:
        return Comparison(base, new, s.estimate, s.low, s.high, s.p_value, "success", 0,
                          "success rate improved (the always-valid interval excludes 0)",
                          rails, drift)
    if s.high < 0:
        return Comparison(base, new, s.estimate, s.low, s.high, s.p_value, "regression", 0,
                          "success rate dropped (the always-valid interval excludes 0)",
                          rails, drift)
    if worse:
        names = " and ".join(f"{g.metric} ×{g.ratio:.2f}" for g in worse)
        return Comparison(base, new, s.estimate, s.low, s.high, s.p_value, "regression", 0,
                          f"guardrail breached: {names} beyond the allowed margin", rails, drift)
    # "No effect" only once the interval rules out any change worth having (as the
    # before/after rule does, bot/core/decision.py): a narrow interval that still holds
    # the expected gain is not "no effect" (it cost canaries of real +2 pt changes).
    mde = policy.min_detectable_effect
    within = s.low > -mde and s.high < mde
    if within and judged_by in gains:
        rail = next((g for g in rails if g.metric.startswith(gains[judged_by][0])), None)
        within = rail is not None and 1 / (1 + rail.margin) < rail.low <= rail.high \
            < 1 + rail.margin
    if smaller >= policy.max_executions_per_arm or (smaller >= need_total and within):
        why = (f"the interval lies within ±{mde * 100:.0f} points "
               "(measure.min_detectable_effect): no effect worth having" if within else
               f"{policy.max_executions_per_arm} executions per side (the planned horizon, "
               "measure.max_executions_per_arm) and no change the interval can tell from 0")
        return Comparison(base, new, s.estimate, s.low, s.high, s.p_value, "no_effect", 0,
                          why, rails, drift)
    more = executions_for(target, _unit_variance(rate0), tau2, policy.alpha) - smaller
    more = max(1, min(more, policy.max_executions_per_arm - smaller))
    return Comparison(base, new, s.estimate, s.low, s.high, s.p_value, "keep_measuring", more,
                      "no significant change yet", rails, drift)
