"""Before/after comparison of success rates (basic version).

A two-proportion z-test with a fixed maximum sample: the decision is only taken
once both arms reach the policy's minimum size, and "no effect" only once they
reach the maximum, which bounds how often a daily look can cry wolf.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from scipy.stats import norm

from bot.core.model import MeasurePolicy


@dataclass(frozen=True)
class Arm:
    executions: int
    successes: int

    @property
    def rate(self) -> float:
        return self.successes / self.executions if self.executions else 0.0

    @property
    def failures(self) -> int:
        return self.executions - self.successes


@dataclass(frozen=True)
class Comparison:
    base: Arm
    new: Arm
    delta: float  # new - base success rate
    ci_low: float
    ci_high: float
    p_value: float | None
    decision: str  # success | regression | no_effect | keep_measuring | insufficient_data
    more_executions_needed: int  # per arm, 0 when decided
    reason: str


def two_proportion(base: Arm, new: Arm, alpha: float) -> tuple[float, float, float, float]:
    """(delta, ci_low, ci_high, two-sided p) for new - base."""
    delta = new.rate - base.rate
    se = math.sqrt(
        base.rate * (1 - base.rate) / base.executions + new.rate * (1 - new.rate) / new.executions
    )
    z = float(norm.ppf(1 - alpha / 2))
    pooled = (base.successes + new.successes) / (base.executions + new.executions)
    se0 = math.sqrt(pooled * (1 - pooled) * (1 / base.executions + 1 / new.executions))
    p = 1.0 if se0 == 0 else float(2 * norm.sf(abs(delta) / se0))
    return delta, delta - z * se, delta + z * se, p


def sample_size(rate: float, delta: float, alpha: float, power: float = 0.8) -> int:
    """Executions per arm to detect `delta` from `rate` (normal approximation)."""
    delta = abs(delta) or 0.01
    other = min(max(rate + delta, 1e-6), 1 - 1e-6)
    za, zb = float(norm.ppf(1 - alpha / 2)), float(norm.ppf(power))
    var = rate * (1 - rate) + other * (1 - other)
    return math.ceil((za + zb) ** 2 * var / delta**2)


def compare(base: Arm, new: Arm, expected_delta: float, policy: MeasurePolicy) -> Comparison:
    target = sample_size(base.rate if base.executions else 0.9, expected_delta, policy.alpha)
    target = min(max(target, policy.min_executions_per_arm), policy.max_executions_per_arm)
    short = max(0, target - min(base.executions, new.executions))
    too_few = (
        min(base.executions, new.executions) < policy.min_executions_per_arm
        or (min(base.failures, new.failures) < policy.min_failures_per_arm
        and min(base.executions, new.executions) < target)
    )
    if base.executions == 0 or new.executions == 0 or too_few:
        need = max(short, policy.min_executions_per_arm - min(base.executions, new.executions))
        delta = new.rate - base.rate if base.executions and new.executions else 0.0
        return Comparison(base, new, delta, 0.0, 0.0, None, "insufficient_data", max(need, 1),
                          "too few executions in one arm to compare")
    delta, low, high, p = two_proportion(base, new, policy.alpha)
    if p < policy.alpha and delta > 0:
        return Comparison(base, new, delta, low, high, p, "success", 0,
                          "success rate improved significantly")
    if p < policy.alpha and delta < 0:
        return Comparison(base, new, delta, low, high, p, "regression", 0,
                          "success rate dropped significantly")
    if short == 0:
        return Comparison(base, new, delta, low, high, p, "no_effect", 0,
                          "enough executions and no significant change")
    return Comparison(base, new, delta, low, high, p, "keep_measuring", short,
                      "no significant change yet")
