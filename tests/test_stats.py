"""Statistics against statsmodels / scipy references, and the decisions they lead to."""

from __future__ import annotations

import math
from datetime import datetime

import numpy as np
import pytest
from scipy import stats as sps
from statsmodels.stats.proportion import confint_proportions_2indep, proportions_ztest

from bot.core.metrics import COST_UNIT, Bucket, bin_of
from bot.core.model import MeasurePolicy
from bot.core.stats import Arm, arm_of, compare, guardrails, sample_size, two_proportion, welch

POLICY = MeasurePolicy()


def test_two_proportion_matches_statsmodels() -> None:
    base, new = Arm(4000, 3580), Arm(4200, 3860)
    delta, low, high, p = two_proportion(base, new, 0.05)
    _, p_ref = proportions_ztest([3860, 3580], [4200, 4000])
    low_ref, high_ref = confint_proportions_2indep(3860, 4200, 3580, 4000, method="wald")
    assert p == pytest.approx(p_ref, rel=1e-9)
    assert (low, high) == pytest.approx((low_ref, high_ref), rel=1e-9)
    assert delta == pytest.approx(3860 / 4200 - 3580 / 4000)


def test_sample_size_matches_statsmodels_power() -> None:
    from statsmodels.stats.power import NormalIndPower
    from statsmodels.stats.proportion import proportion_effectsize

    n = sample_size(0.90, 0.03, 0.05, power=0.8)
    h = proportion_effectsize(0.93, 0.90)
    n_ref = NormalIndPower().solve_power(effect_size=h, alpha=0.05, power=0.8)
    assert n == pytest.approx(n_ref, rel=0.05)


def _latency_arm(values: np.ndarray) -> Arm:
    logs = np.log(values)
    return Arm(len(values), len(values), len(values), float(logs.sum()),
               float((logs**2).sum()))


def test_welch_from_sufficient_statistics_matches_scipy() -> None:
    rng = np.random.default_rng(3)
    a = rng.lognormal(7.5, 0.4, 3000)
    b = rng.lognormal(7.55, 0.6, 2500)
    diff, var = welch(_latency_arm(a), _latency_arm(b))
    ref = sps.ttest_ind(np.log(b), np.log(a), equal_var=False)
    assert diff / math.sqrt(var) == pytest.approx(ref.statistic, rel=1e-6)


def test_latency_guardrail_blocks_a_win_that_is_much_slower() -> None:
    rng = np.random.default_rng(4)
    base = _latency_arm(rng.lognormal(7.5, 0.4, 8000))
    slow = _latency_arm(rng.lognormal(7.5 + math.log(1.3), 0.4, 8000))
    base = Arm(8000, 7200, base.lat_n, base.lat_log_sum, base.lat_log_sumsq)
    slow = Arm(8000, 7600, slow.lat_n, slow.lat_log_sum, slow.lat_log_sumsq)
    result = compare(base, slow, 0.03, POLICY)
    assert result.decision == "regression"
    assert "latency" in result.reason
    rail = next(g for g in result.guardrails if g.metric == "latency")
    assert rail.verdict == "worse" and rail.low > 1.1


def _cost_bins(values: np.ndarray) -> dict[int, int]:
    bins: dict[int, int] = {}
    for v in values:
        b = bin_of(float(v), COST_UNIT)
        bins[b] = bins.get(b, 0) + 1
    return bins


def test_one_runaway_execution_does_not_decide_cost() -> None:
    rng = np.random.default_rng(5)
    base_costs = rng.lognormal(math.log(0.009), 0.3, 6000)
    new_costs = rng.lognormal(math.log(0.009), 0.3, 6000)
    new_costs[0] = 500.0  # one call that looped for an hour
    base = Arm(6000, 5400, cost_bins=_cost_bins(base_costs))
    new = Arm(6000, 5400, cost_bins=_cost_bins(new_costs))
    rail = next(g for g in guardrails(base, new, POLICY) if g.metric == "cost")
    assert rail.verdict != "worse"
    assert 0.95 < rail.ratio < 1.05
    # Uncapped, that one call would have moved the mean cost by over 90 %.
    assert new_costs.mean() / base_costs.mean() > 1.9


def test_arm_of_sums_buckets() -> None:
    hour = datetime(2026, 11, 1)
    buckets = [Bucket("a", "v", hour, 10, 9, 1, 0, 10, 70.0, 500.0),
               Bucket("a", "v", hour, 5, 5, 0, 0, 5, 35.0, 250.0)]
    arm = arm_of(buckets)
    assert (arm.executions, arm.successes, arm.lat_n) == (15, 14, 15)
    assert arm.log_latency[0] == pytest.approx(105.0 / 15)


def test_insufficient_data_says_how_much_more() -> None:
    result = compare(Arm(300, 270), Arm(280, 260), 0.03, POLICY)
    assert result.decision == "insufficient_data"
    assert result.more_executions_needed >= POLICY.min_executions_per_arm - 280


def _buckets(version: str, start: datetime, hours: int, per_hour: int, rate: float,
             agent: str = "a") -> list[Bucket]:
    from datetime import timedelta

    return [Bucket(agent, version, start + timedelta(hours=h), per_hour,
                   round(per_hour * rate), 0) for h in range(hours)]


def _snapshot(buckets: list[Bucket]) -> object:
    from bot.core.metrics import MetricsSnapshot

    return MetricsSnapshot(sources=(), rows_read=0, rows_used=0, duplicates=0, bad_rows=0,
                           bad_by_reason={}, bad_samples=(), has_version=True, oldest=None,
                           newest=max(b.hour for b in buckets), window_days=28, versions=(),
                           buckets=tuple(buckets))


def _deployment(merged: datetime) -> object:
    from bot.core.results import Deployment

    return Deployment("p-1", "a", "v1", "v2", merged, "sha", "v2", None, None, 0.03)


def test_canary_split_is_compared_concurrently_and_its_ratio_checked() -> None:
    from datetime import timedelta

    from bot.core.results import measure

    deploy = datetime(2026, 11, 1)
    before = _buckets("v1", deploy - timedelta(days=7), 24 * 7, 100, 0.80)  # a worse past
    after_base = _buckets("v1", deploy, 24 * 7, 70, 0.90)
    after_new = _buckets("v2", deploy, 24 * 7, 30, 0.93)
    snap = _snapshot(before + after_base + after_new)
    policy = MeasurePolicy(canary_share=0.1)
    result = measure(_deployment(deploy), snap, policy)  # type: ignore[arg-type]
    assert "concurrent" in result.attribution and "30% new" in result.attribution
    # Compared with the concurrent 90 %, not with the 80 % before the deploy.
    assert result.comparison.base.rate == pytest.approx(0.90, abs=0.005)
    assert result.comparison.drift is not None and "sample-ratio mismatch" in \
        result.comparison.drift
    assert measure(_deployment(deploy), snap,  # type: ignore[arg-type]
                   MeasurePolicy(canary_share=0.3)).comparison.drift is None


def test_a_cheaper_change_succeeds_by_non_inferiority() -> None:
    rng = np.random.default_rng(9)
    base_cost = rng.lognormal(math.log(0.010), 0.2, 9000)
    new_cost = rng.lognormal(math.log(0.009), 0.2, 9000)  # 10 % cheaper
    base = Arm(9000, 8100, cost_bins=_cost_bins(base_cost))
    new = Arm(9000, 8090, cost_bins=_cost_bins(new_cost))  # success rate about the same
    saving = compare(base, new, 0.0, POLICY, judged_by="cheaper")
    assert saving.decision == "success" and "non-inferiority" in saving.reason
    # Judged as an error-handling change it is no win at all.
    assert compare(base, new, 0.0, POLICY).decision != "success"
    # Cheaper but clearly worse is still a regression.
    worse = Arm(9000, 7700, cost_bins=_cost_bins(new_cost))
    assert compare(base, worse, 0.0, POLICY, judged_by="cheaper").decision == "regression"


def test_a_faster_change_succeeds_by_non_inferiority() -> None:
    rng = np.random.default_rng(11)

    def arm(successes: int, median_ms: float) -> Arm:
        logs = np.log(rng.lognormal(math.log(median_ms), 0.4, 9000))
        return Arm(9000, successes, lat_n=9000, lat_log_sum=float(logs.sum()),
                   lat_log_sumsq=float((logs ** 2).sum()))

    base, faster = arm(8100, 2000.0), arm(8090, 1700.0)  # 15 % faster, same success rate
    won = compare(base, faster, 0.0, POLICY, judged_by="faster")
    assert won.decision == "success" and won.reason.startswith("faster (latency ×0.8")
    assert compare(base, faster, 0.0, POLICY).decision != "success"
    assert compare(base, arm(8100, 2000.0), 0.0, POLICY,
                   judged_by="faster").decision != "success"  # not faster: no win
    worse = arm(7700, 1700.0)
    assert compare(base, worse, 0.0, POLICY, judged_by="faster").decision == "regression"


def _quality_arm(successes: int, scores: np.ndarray) -> Arm:
    return Arm(len(scores), successes, q_n=len(scores), q_sum=float(scores.sum()),
               q_sumsq=float((scores ** 2).sum()))


def test_quality_guardrail_matches_the_delta_method_on_the_log_ratio() -> None:
    rng = np.random.default_rng(21)
    a, b = rng.beta(8, 2, 6000), rng.beta(7, 3, 6000)  # mean 0.80 -> 0.70
    rail = next(g for g in guardrails(_quality_arm(5400, a), _quality_arm(5400, b), POLICY)
                if g.metric == "quality")
    # Reference: log(mean b / mean a) and its delta-method variance, with numpy.
    ref = math.log(b.mean() / a.mean())
    var = a.var(ddof=1) / (len(a) * a.mean() ** 2) + b.var(ddof=1) / (len(b) * b.mean() ** 2)
    assert math.log(rail.ratio) == pytest.approx(ref, rel=1e-9)
    # The always-valid interval is wider than the fixed-sample one, and contains it.
    fixed = (ref - 1.96 * math.sqrt(var), ref + 1.96 * math.sqrt(var))
    assert math.log(rail.low) < fixed[0] and math.log(rail.high) > fixed[1]
    assert rail.verdict == "worse" and rail.higher_is_better  # 12 % lower, margin 5 %
    result = compare(_quality_arm(5400, a), _quality_arm(5400, b), 0.0, POLICY)
    assert result.decision == "regression" and "quality" in result.reason


def test_an_accuracy_change_succeeds_when_quality_is_shown_higher() -> None:
    rng = np.random.default_rng(22)
    base = _quality_arm(8100, rng.beta(7, 3, 9000))
    better = _quality_arm(8095, rng.beta(7.8, 2.6, 9000))  # 0.70 -> 0.75, same success rate
    won = compare(base, better, 0.0, POLICY, judged_by="better_quality")
    assert won.decision == "success" and won.reason.startswith("better (quality ×1.0")
    assert compare(base, better, 0.0, POLICY).decision != "success"  # not as error handling
    same = _quality_arm(8100, rng.beta(7, 3, 9000))
    assert compare(base, same, 0.0, POLICY, judged_by="better_quality").decision != "success"
    # Higher quality bought with a success-rate drop is still a regression.
    dropped = _quality_arm(7700, rng.beta(7.8, 2.6, 9000))
    assert compare(base, dropped, 0.0, POLICY, judged_by="better_quality").decision == "regression"


def test_no_quality_guardrail_without_scores_or_their_squares() -> None:
    assert not [g for g in guardrails(Arm(5000, 4500), Arm(5000, 4500), POLICY)
                if g.metric == "quality"]
    hour = datetime(2026, 11, 1)
    # The daily form gives quality sums but no squares: those hours are left out.
    daily = Bucket("a", "v", hour, 100, 90, 0, 10, quality_n=100, quality_sum=80.0)
    rows = Bucket("a", "v", hour, 50, 45, 0, 5, quality_n=50, quality_sum=40.0,
                  quality_sumsq=33.0, quality_sq_n=50)
    # An hour of per-execution rows whose scores were all 0 (thumbs down) still counts.
    zeros = Bucket("a", "v", hour, 4, 4, 0, 0, quality_n=4, quality_sum=0.0,
                   quality_sumsq=0.0, quality_sq_n=4)
    arm = arm_of([daily, rows, zeros])
    assert (arm.q_n, arm.q_sum, arm.q_sumsq) == (54, 40.0, 33.0)


def test_a_wording_change_succeeds_when_shown_not_worse() -> None:
    base, same = Arm(20000, 18000), Arm(20000, 18010)
    ok = compare(base, same, 0.0, POLICY, judged_by="not_worse")
    assert ok.decision == "success" and "non-inferiority" in ok.reason
    assert compare(base, same, 0.0, POLICY).decision != "success"  # no improvement shown
    assert compare(base, Arm(20000, 17200), 0.0, POLICY,
                   judged_by="not_worse").decision == "regression"
    # Too little data to show it: keep measuring, never a premature success.
    assert compare(Arm(600, 540), Arm(600, 541), 0.0, POLICY,
                   judged_by="not_worse").decision != "success"
    with pytest.raises(ValueError):
        compare(base, same, 0.0, POLICY, judged_by="vibes")


def test_proposal_files_without_a_rule_keep_the_rule_of_their_type() -> None:
    from bot.core.stats import legacy_rule

    assert [legacy_rule(t) for t in ("prompt_optimization", "latency", "model_config",
                                     "accuracy", "error_handling", "safety")] == [
        "cheaper", "faster", "faster", "better_quality", "improvement", "improvement"]
