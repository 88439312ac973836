"""The always-valid test: formulas against direct computation, and its guarantee by simulation."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import integrate
from scipy.stats import norm

from bot.core.sequential import (
    executions_for,
    half_width,
    log_lambda,
    mixing_variance,
    sequence,
)


def test_lambda_is_the_mixture_likelihood_ratio() -> None:
    # Lambda = integral of N(d; theta, V) N(theta; 0, tau2) dtheta / N(d; 0, V)
    d, v, tau2 = 0.013, 2.5e-5, 3e-4
    numerator, _ = integrate.quad(
        lambda t: norm.pdf(d, t, math.sqrt(v)) * norm.pdf(t, 0, math.sqrt(tau2)), -0.2, 0.2,
        points=[0.0, d], limit=200)
    expected = numerator / norm.pdf(d, 0, math.sqrt(v))
    assert math.exp(log_lambda(d, v, tau2)) == pytest.approx(expected, rel=1e-6)


def test_confidence_sequence_is_where_lambda_crosses_one_over_alpha() -> None:
    v, tau2, alpha = 4e-5, 5e-4, 0.05
    w = half_width(v, tau2, alpha)
    assert log_lambda(w, v, tau2) == pytest.approx(math.log(1 / alpha), rel=1e-9)
    s = sequence(0.01, v, tau2, alpha)
    assert (s.low, s.high) == pytest.approx((0.01 - w, 0.01 + w))
    assert s.excludes_zero == (abs(0.01) > w)


def test_tuned_mixing_is_tightest_at_the_horizon() -> None:
    alpha, vh = 0.05, 1e-5
    tau2 = mixing_variance(vh, alpha)
    best = half_width(vh, tau2, alpha)
    for factor in (0.25, 0.5, 2.0, 4.0):
        assert half_width(vh, tau2 * factor, alpha) > best
    # Wider than a fixed-horizon 95 % interval (the price of looking every day), ~3.04 SE.
    assert best / math.sqrt(vh) == pytest.approx(3.035, abs=0.01)


def test_executions_for_inverts_the_half_width() -> None:
    unit, alpha = 0.18, 0.05
    tau2 = mixing_variance(unit / 10_000, alpha)
    n = executions_for(0.01, unit, tau2, alpha)
    assert half_width(unit / n, tau2, alpha) <= 0.01 < half_width(unit / (n - 1), tau2, alpha)


def test_false_alarms_stay_below_alpha_under_daily_looks() -> None:
    """A/A: 30 daily looks at 500 executions/day per arm, 4,000 simulated experiments."""
    rng = np.random.default_rng(7)
    sims, days, per_day, p, alpha = 4000, 30, 500, 0.9, 0.05
    a = rng.binomial(per_day, p, size=(sims, days)).cumsum(axis=1)
    b = rng.binomial(per_day, p, size=(sims, days)).cumsum(axis=1)
    n = per_day * np.arange(1, days + 1)
    tau2 = mixing_variance(2 * p * (1 - p) / (per_day * 14), alpha)
    pa, pb = a / n, b / n
    v = (pa * (1 - pa) + pb * (1 - pb)) / n
    d = pb - pa
    w = np.sqrt(v * (v + tau2) / tau2 * (2 * math.log(1 / alpha) + np.log((v + tau2) / v)))
    ever = (np.abs(d) > w).any(axis=1).mean()
    assert ever <= alpha
    # The same data tested naively every day at 5 % alarms far more often.
    z = np.abs(d) / np.sqrt(v)
    assert (z > 1.96).any(axis=1).mean() > 0.15
