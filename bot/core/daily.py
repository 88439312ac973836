"""The day as the unit: a deployed version measured against its base version's own history.

Executions of one day share that day's conditions (traffic mix, upstream models, load,
incidents), so real success rates move from day to day by more than binomial noise: with
2,000 executions a day the binomial standard deviation of a day's rate is 0.7 points, a
real agent's rate moves by 1-2. An interval that treats executions as independent is then
far too narrow and a before/after comparison cries wolf. Here each day is one observation
with two variance parts: its own sampling variance `v_d` (known from its counts) and a
between-day variance `s2` estimated from the base version's history.

The base model, fitted on the last complete days before the deploy day:

    y_d = a[weekday(d)] + b * t_d + e_d,        e_d ~ N(0, s2 + v_d)

- a level per weekday, so a week's pattern is compared like with like whatever the
  weekday of the deploy (a post day whose weekday the base never saw is not used);
- a linear trend `b` when the base (three weeks of days or more) shows a slope beyond its
  standard error (an interrupted time series: the new version is compared with the
  base's trend carried forward, and the uncertainty of carrying it forward is part of
  the interval);
- `s2` by the Paule-Mandel method of moments (Paule & Mandel 1982; DerSimonian & Kacker
  2007): the value at which the weighted residual sum of squares equals its degrees of
  freedom. With too few days for that, a prior (`measure.day_sd`) is the floor.

The effect is the weighted mean of the new version's residuals from the base model:

    delta = sum(w_k r_k) / sum(w_k),  w_k = 1 / (s2 + v_k)
    Var   = 1 / sum(w_k)  +  xbar' Cov(theta) xbar

the first part shrinks as days arrive, the second (the base model's own uncertainty at
the post days' mean design row) does not: a short base history caps what can ever be
shown. `bot.core.sequential` turns (delta, Var) into an always-valid interval.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from statistics import NormalDist

import numpy as np

# With at least this many base days the model has a trend whenever the base's slope is
# larger than its standard error (TREND_Z). Liberal on purpose: keeping it only when
# significant (|t| > 1.645) left one slow drift in ten undetected at 50 executions a day,
# and a drift left out biases every later look (7.5 % false alarms in
# benchmarks/decisions.py); always keeping it widened the interval so much that a -5 pt
# regression at 50 a day was caught in 32 % of deploys instead of 90 %.
MIN_TREND_DAYS = 21
TREND_Z = 1.0
# Below this many residual degrees of freedom the between-day variance is not trusted
# alone: the prior is its floor.
MIN_DF = 7
# The between-day variance used is the upper limit of its one-sided (1 - S2_QUANTILE)
# Q-profile interval: roughly x1.6 the estimate at 7 degrees of freedom, x1.2 at 48.
S2_QUANTILE = 0.25


@dataclass(frozen=True)
class Day:
    """One day of one series: its value, the value's sampling variance, executions."""

    day: date
    y: float
    v: float
    n: int


@dataclass(frozen=True)
class Model:
    """The base version's history, fitted."""

    days: int  # base days used
    weekdays: tuple[int, ...]  # weekdays with a level (0 = Monday)
    trend: bool
    center: float  # the ordinal the trend is centred on
    coef: tuple[float, ...]
    cov: tuple[tuple[float, ...], ...]  # covariance of coef
    s2: float  # between-day variance
    s2_estimated: bool  # False: the prior (too few days to estimate it)
    df: int
    slope: float | None  # trend per day (None: no trend in the model)
    slope_se: float | None
    mean_v: float  # mean sampling variance of a base day (plans the horizon)

    @property
    def day_sd(self) -> float:
        return math.sqrt(self.s2)


@dataclass(frozen=True)
class Estimate:
    """The new version's departure from the base model over its days so far."""

    estimate: float
    var_post: float  # shrinks with post days
    var_base: float  # the base model's own uncertainty there; does not
    days: int  # post days used
    unmatched: int  # post days left out: a weekday the base never saw

    @property
    def variance(self) -> float:
        return self.var_post + self.var_base


_ONE_HOT = np.eye(7)


def _weekday(ordinals: np.ndarray) -> np.ndarray:
    # date.toordinal() of a Monday is 1 mod 7.
    return np.asarray((ordinals.astype(np.int64) + 6) % 7)


def _design(ordinals: np.ndarray, weekdays: tuple[int, ...], trend: bool,
            center: float) -> np.ndarray:
    x: np.ndarray = _ONE_HOT[_weekday(ordinals)][:, list(weekdays)]
    if trend:
        x = np.column_stack([x, ordinals - center])
    return x


def _matches(ordinals: np.ndarray, weekdays: tuple[int, ...]) -> np.ndarray:
    known = np.zeros(7, dtype=bool)
    known[list(weekdays)] = True
    out: np.ndarray = known[_weekday(ordinals)]
    return out


def _wls(x: np.ndarray, y: np.ndarray, w: np.ndarray
         ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(coefficients, their covariance (X'WX)^-1, residuals) of weighted least squares."""
    xtw = x.T * w
    try:
        inv = np.linalg.inv(xtw @ x)
    except np.linalg.LinAlgError:
        inv = np.linalg.pinv(xtw @ x)
    coef = inv @ (xtw @ y)
    return coef, inv, y - x @ coef


def chi2_quantile(df: int, q: float) -> float:
    """Wilson-Hilferty: the q-quantile of chi-square with `df` degrees of freedom (within
    ~1 % from 3 degrees of freedom up; no scipy)."""
    z = NormalDist().inv_cdf(q)
    c = 2.0 / (9.0 * df)
    return float(df * max(1 - c + z * math.sqrt(c), 0.0) ** 3)


def _paule_mandel(x: np.ndarray, y: np.ndarray, v: np.ndarray, df: int,
                  target: float | None = None) -> float:
    """Between-day variance s2 with Q(s2) = sum w r^2 = target (default df: Paule-Mandel;
    a chi-square quantile below df: the Q-profile upper limit), w = 1 / (s2 + v).

    Newton's method: at the weighted fit, dQ/ds2 = -sum w^2 r^2 (the residuals' own change
    does not count, by the fit's first-order condition), and Q is convex and decreasing,
    so the steps from s2 = 0 climb to the root without passing it."""
    goal = float(df) if target is None else target
    s2 = 0.0
    for _ in range(60):
        w = 1.0 / (s2 + v)
        _, _, r = _wls(x, y, w)
        q = float(np.sum(w * r * r))
        if df <= 0 or goal <= 0 or q <= goal * (1 + 1e-6):
            return s2
        slope = float(np.sum(w * w * r * r))
        if slope <= 0:
            return s2
        step = (q - goal) / slope
        s2 += step
        if step <= 1e-6 * s2:
            return s2
    return s2


def fit(pre: Sequence[Day], prior_s2: float, trend: bool | None = None) -> Model | None:
    """The base model from its days (None without any). `trend`: None decides from the
    data; True/False force it (the placebo check follows the main model's choice)."""
    days = tuple(pre)
    if not days:
        return None
    return _fit(days, prior_s2, trend)


@lru_cache(maxsize=256)
def _fit(days: tuple[Day, ...], prior_s2: float, trend: bool | None) -> Model:
    # Cached: a run (and the decision benchmark) asks for the same base model at every look.
    ords = np.array([d.day.toordinal() for d in days], dtype=float)
    y = np.array([d.y for d in days])
    v = np.array([max(d.v, 1e-12) for d in days])
    weekdays = tuple(sorted({int(w) for w in _weekday(ords)}))
    center = float(ords.mean())
    m = len(days)

    def solve(with_trend: bool) -> tuple[np.ndarray, np.ndarray, float, bool, int]:
        x = _design(ords, weekdays, with_trend, center)
        df = m - x.shape[1]
        # The Q-profile upper limit (Viechtbauer 2007), not the point estimate: with a few
        # weeks of days the estimate is low often enough to push the always-valid error
        # rate past alpha (9 % at 14 base days with a day-level sd of 2 points).
        s2 = _paule_mandel(x, y, v, df, chi2_quantile(df, S2_QUANTILE) if df > 0 else None)
        estimated = df >= MIN_DF
        if not estimated:
            s2 = max(s2, prior_s2)
        coef, cov, _ = _wls(x, y, 1.0 / (s2 + v))
        return coef, cov, s2, estimated, df

    use_trend = bool(trend) and len(set(ords)) > len(weekdays) + 1
    if trend is None and m >= MIN_TREND_DAYS:
        coef_t, cov_t, *_ = solve(True)
        se = math.sqrt(max(float(cov_t[-1, -1]), 0.0))
        use_trend = se > 0 and abs(float(coef_t[-1])) > TREND_Z * se
    coef, cov, s2, estimated, df = solve(use_trend)
    slope = float(coef[-1]) if use_trend else None
    slope_se = math.sqrt(max(float(cov[-1, -1]), 0.0)) if use_trend else None
    return Model(
        days=m, weekdays=weekdays, trend=use_trend, center=center,
        coef=tuple(float(c) for c in coef),
        cov=tuple(tuple(float(c) for c in row) for row in cov),
        s2=s2, s2_estimated=estimated, df=df, slope=slope, slope_se=slope_se,
        mean_v=float(np.mean(v)),
    )


def estimate(model: Model, post: Sequence[Day]) -> Estimate | None:
    """The new version's mean departure from the base model (None: no usable post day)."""
    ords = np.array([d.day.toordinal() for d in post], dtype=float)
    if not len(ords):
        return None
    keep = _matches(ords, model.weekdays)
    unmatched = int((~keep).sum())
    if not keep.any():
        return None
    ords = ords[keep]
    y = np.array([d.y for d in post])[keep]
    v = np.array([max(d.v, 1e-12) for d in post])[keep]
    x = _design(ords, model.weekdays, model.trend, model.center)
    coef, cov = np.array(model.coef), np.array(model.cov)
    w = 1.0 / (model.s2 + v)
    r = y - x @ coef
    total = float(w.sum())
    xbar = (x.T @ w) / total
    return Estimate(
        estimate=float(w @ r) / total,
        var_post=1.0 / total,
        var_base=max(float(xbar @ cov @ xbar), 0.0),
        days=len(ords),
        unmatched=unmatched,
    )


@lru_cache(maxsize=4096)
def planned(model: Model, first: date, days: int, v: float | None = None) -> Estimate:
    """What `estimate` would report after `days` post days from `first` with no effect:
    the variance a decision can expect then (tunes the test, says how long to wait). Only
    days on the base's weekdays count, so `days` of them may span more calendar days."""
    span = max(days, 1) * 7 + 7
    every = np.array([first.toordinal() + k for k in range(span)], dtype=float)
    ords = every[_matches(every, model.weekdays)][:max(days, 1)]
    x = _design(ords, model.weekdays, model.trend, model.center)
    per_day = model.s2 + (model.mean_v if v is None else v)
    xbar = x.mean(axis=0)
    cov = np.array(model.cov)
    return Estimate(0.0, per_day / len(ords), max(float(xbar @ cov @ xbar), 0.0),
                    len(ords), 0)
