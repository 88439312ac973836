"""The day-level base model (bot/core/daily.py): against statsmodels, and what it is for."""

from __future__ import annotations

import math
from datetime import date, timedelta

import numpy as np
import pytest
import statsmodels.api as sm
from scipy.stats import chi2

from bot.core.daily import (
    MIN_TREND_DAYS,
    S2_QUANTILE,
    Day,
    _design,
    _paule_mandel,
    estimate,
    fit,
    planned,
)

FRIDAY = date(2026, 3, 6)
PRIOR = 0.02**2


def _days(values: list[float], first: date, n: int = 2000) -> tuple[Day, ...]:
    return tuple(Day(first + timedelta(days=k), y, y * (1 - y) / n, n)
                 for k, y in enumerate(values))


def _noisy(rng: np.random.Generator, days: int, first: date, *, sd: float = 0.01,
           n: int = 2000, weekend: float = 0.0, drift: float = 0.0,
           offset: int = 0) -> tuple[Day, ...]:
    out = []
    for k in range(days):
        d = first + timedelta(days=k)
        p = 0.9 + rng.normal(0, sd) + (weekend if d.weekday() >= 5 else 0.0) \
            + drift * (k + offset)
        out.append(Day(d, rng.binomial(n, p) / n, 0.09 / n, n))
    return tuple(out)


def test_fit_is_weighted_least_squares_with_the_estimated_day_variance() -> None:
    rng = np.random.default_rng(3)
    pre = _noisy(rng, 56, FRIDAY - timedelta(days=56), drift=-0.002)
    model = fit(pre, PRIOR)
    assert model is not None and model.trend and model.s2_estimated
    ords = np.array([d.day.toordinal() for d in pre], dtype=float)
    x = _design(ords, model.weekdays, True, model.center)
    y = np.array([d.y for d in pre])
    w = 1 / (model.s2 + np.array([d.v for d in pre]))
    ref = sm.WLS(y, x, weights=w).fit()
    assert model.coef == pytest.approx(tuple(ref.params), rel=1e-8, abs=1e-12)
    # Known variances: the covariance is (X'WX)^-1, statsmodels' unscaled covariance.
    assert np.array(model.cov) == pytest.approx(ref.normalized_cov_params, rel=1e-6)
    # The Q-profile upper limit: the weighted residual sum of squares equals the chi-square
    # quantile (scipy's) of its degrees of freedom.
    assert float(np.sum(w * ref.resid**2)) == pytest.approx(
        chi2.ppf(S2_QUANTILE, model.df), rel=0.01)
    assert model.df == 56 - 8 and model.slope == pytest.approx(-0.002, abs=0.0006)


def test_the_day_variance_is_zero_when_days_vary_no_more_than_their_counts_say() -> None:
    x = np.ones((30, 1))
    v = np.full(30, 1e-4)
    flat = np.full(30, 0.9) + np.tile([1e-3, -1e-3], 15)  # far less than sd 1e-2
    assert _paule_mandel(x, flat, v, 29) == 0.0


def test_the_day_variance_recovers_the_true_one_and_is_used_from_above() -> None:
    rng = np.random.default_rng(11)
    point, used = [], []
    for _ in range(300):
        pre = _noisy(rng, 56, FRIDAY, sd=0.02, n=2000)
        model = fit(pre, PRIOR)
        assert model is not None
        ords = np.array([d.day.toordinal() for d in pre], dtype=float)
        x = _design(ords, model.weekdays, model.trend, model.center)
        point.append(_paule_mandel(x, np.array([d.y for d in pre]),
                                   np.array([d.v for d in pre]), model.df))
        used.append(model.s2)
    # Paule-Mandel is (nearly) unbiased for the between-day variance ...
    assert math.sqrt(float(np.mean(point))) == pytest.approx(0.02, rel=0.08)
    # ... and the decision uses its upper limit, above it in every sample.
    assert all(u >= p for u, p in zip(used, point, strict=True))
    assert float(np.mean(used)) > 1.1 * float(np.mean(point))


def test_weekends_are_compared_with_weekends() -> None:
    # Weekends 3 points lower; the new version's first days are a Saturday and a Sunday.
    rng = np.random.default_rng(5)
    pre = _noisy(rng, 56, FRIDAY - timedelta(days=56), sd=0.0, weekend=-0.03, n=20000)
    post = _noisy(rng, 2, FRIDAY + timedelta(days=1), sd=0.0, weekend=-0.03, n=20000)
    naive = np.mean([d.y for d in post]) - np.mean([d.y for d in pre])
    assert naive < -0.02  # a plain before/after mean calls the weekend a regression
    model = fit(pre, PRIOR)
    assert model is not None
    est = estimate(model, post)
    assert est is not None and abs(est.estimate) < 0.004


def test_a_trend_that_started_before_the_deploy_is_carried_forward() -> None:
    rng = np.random.default_rng(8)
    pre = _noisy(rng, 56, FRIDAY - timedelta(days=56), sd=0.002, drift=-0.001, n=20000)
    post = _noisy(rng, 21, FRIDAY + timedelta(days=1), sd=0.002, drift=-0.001, n=20000,
                  offset=57)
    model = fit(pre, PRIOR)
    assert model is not None and model.trend
    whole = estimate(model, post)
    assert whole is not None
    # The level 20 days on is 3 points below the base mean: no effect once the trend is in.
    assert abs(whole.estimate) < 0.003
    assert np.mean([d.y for d in post]) - np.mean([d.y for d in pre]) < -0.03
    # Carrying a trend further forward is less certain (the same weekdays, two weeks later).
    near, far = estimate(model, post[:7]), estimate(model, post[14:21])
    assert near is not None and far is not None and far.var_base > 1.5 * near.var_base
    flat = fit(pre[:MIN_TREND_DAYS - 1], PRIOR)
    assert flat is not None and not flat.trend


def test_a_short_history_compares_only_the_weekdays_it_has() -> None:
    # Tuesday, Wednesday, Thursday before a Friday deploy; eight days after it.
    pre = _days([0.9, 0.9, 0.9], FRIDAY - timedelta(days=3))
    post = _days([0.9] * 8, FRIDAY + timedelta(days=1))
    model = fit(pre, PRIOR)
    assert model is not None and model.weekdays == (1, 2, 3) and not model.s2_estimated
    assert model.s2 == pytest.approx(PRIOR)
    est = estimate(model, post)
    assert est is not None and (est.days, est.unmatched) == (3, 5)
    assert estimate(model, post[:3]) is None  # Saturday to Monday: nothing to compare yet


def test_planned_matches_what_an_estimate_reports() -> None:
    rng = np.random.default_rng(2)
    pre = _noisy(rng, 56, FRIDAY - timedelta(days=56))
    model = fit(pre, PRIOR)
    assert model is not None
    post = tuple(Day(FRIDAY + timedelta(days=k), 0.9, model.mean_v, 2000) for k in range(1, 11))
    est = estimate(model, post)
    plan = planned(model, FRIDAY + timedelta(days=1), 10)
    assert est is not None
    assert (plan.var_post, plan.var_base) == pytest.approx((est.var_post, est.var_base))
