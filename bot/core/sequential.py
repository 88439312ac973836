"""Always-valid inference for a difference of two means: mSPRT and its confidence sequence.

The bot looks at every deployed change on every scheduled run; a fixed-horizon test
checked daily raises false alarms far above its nominal level. The mixture
sequential probability ratio test (Robbins 1970; Johari, Pekelis & Walsh,
"Always valid inference", 2017) keeps P(ever reject | H0) <= alpha however often
one looks. With an estimate d ~ N(delta, V) and a N(0, tau2) mixing distribution:

    Lambda = sqrt(V / (V + tau2)) * exp(tau2 * d^2 / (2 V (V + tau2)))
    reject H0: delta = 0  when  Lambda >= 1 / alpha
    confidence sequence: d +- sqrt(V (V + tau2) / tau2 * (2 log(1/alpha) + log((V + tau2) / V)))

tau2 is tuned so the sequence is tightest at the planned horizon (variance V_h):
tau2 = r(alpha) * V_h, r minimizing the half-width there (r ~ 8.2 for alpha = 0.05).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache


@dataclass(frozen=True)
class Sequence:
    estimate: float
    low: float
    high: float
    p_value: float  # always-valid p-value (1 / Lambda, capped at 1)

    @property
    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0


@lru_cache(maxsize=16)
def _ratio(alpha: float) -> float:
    def width(log_r: float) -> float:
        r = math.exp(log_r)
        return (1 + r) / r * (2 * math.log(1 / alpha) + math.log1p(r))

    # Golden-section search: width() is unimodal in log r.
    lo, hi = -10.0, 10.0
    g = (math.sqrt(5) - 1) / 2
    a, b = hi - g * (hi - lo), lo + g * (hi - lo)
    while hi - lo > 1e-9:
        if width(a) < width(b):
            hi, b = b, a
            a = hi - g * (hi - lo)
        else:
            lo, a = a, b
            b = lo + g * (hi - lo)
    return math.exp((lo + hi) / 2)


def mixing_variance(horizon_variance: float, alpha: float) -> float:
    """tau2 that makes the confidence sequence tightest when the variance reaches V_h."""
    return _ratio(alpha) * horizon_variance


def half_width(variance: float, tau2: float, alpha: float) -> float:
    if variance <= 0:
        return 0.0
    return math.sqrt(
        variance * (variance + tau2) / tau2
        * (2 * math.log(1 / alpha) + math.log((variance + tau2) / variance))
    )


def log_lambda(estimate: float, variance: float, tau2: float) -> float:
    if variance <= 0:
        return 0.0 if estimate == 0 else math.inf
    return 0.5 * math.log(variance / (variance + tau2)) + (
        tau2 * estimate**2 / (2 * variance * (variance + tau2))
    )


def sequence(estimate: float, variance: float, tau2: float, alpha: float) -> Sequence:
    w = half_width(variance, tau2, alpha)
    p = min(1.0, math.exp(-log_lambda(estimate, variance, tau2)))
    return Sequence(estimate, estimate - w, estimate + w, p)


def executions_for(width: float, unit_variance: float, tau2: float, alpha: float) -> int:
    """Executions per arm until the half-width falls to `width`.

    `unit_variance` is the variance of the difference with one execution per arm
    (e.g. p1(1-p1) + p2(1-p2)); the variance with n per arm is unit_variance / n.
    """
    if width <= 0 or unit_variance <= 0:
        return 0
    low, high = 1, 1
    while half_width(unit_variance / high, tau2, alpha) > width:
        high *= 2
        if high > 10**12:
            return high
    while low < high:
        mid = (low + high) // 2
        if half_width(unit_variance / mid, tau2, alpha) > width:
            low = mid + 1
        else:
            high = mid
    return low
