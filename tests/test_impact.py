"""Impact estimates: the latency fit against statsmodels' OLS, the sums behind it from a real
DuckDB ingest, the cost arithmetic, the paired quality interval, and where they show."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
import statsmodels.api as sm
import yaml
from conftest import Cli, git, write_csv

from bot.core.impact import (
    Estimate,
    TokenChange,
    cost_estimate,
    latency_estimate,
    latency_fit,
    paired_quality,
    unknown,
)
from bot.core.metrics import Moments, VersionStats
from bot.core.render import estimate_line
from bot.load.metrics import ingest

COLS = ["timestamp", "agent_id", "prompt_version", "execution_id", "status", "latency_ms",
        "input_tokens", "output_tokens"]


def _moments(x1: np.ndarray, x2: np.ndarray, y: np.ndarray) -> Moments:
    return Moments(len(y), float(x1.sum()), float(x2.sum()), float(y.sum()),
                   float((x1 * x1).sum()), float((x2 * x2).sum()), float((x1 * x2).sum()),
                   float((x1 * y).sum()), float((x2 * y).sum()), float((y * y).sum()))


def _data(n: int = 4000, seed: int = 7) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x1 = rng.normal(1500, 300, n).round()
    x2 = (rng.lognormal(5.8, 0.5, n) + 0.05 * x1).round()  # correlated, as in production
    y = 400 + 0.08 * x1 + 22 * x2 + rng.normal(0, 300, n)
    return x1, x2, y


def _stats(moments: Moments | None, cost: float | None = 0.01,
           out: float | None = 350.0) -> VersionStats:
    t = datetime(2026, 11, 1)
    return VersionStats("a", "v1", 4000, 3800, 0, 1900.0, 4000.0, cost, None, 1500.0, out,
                        t, t + timedelta(days=7), None, (), moments=moments)


def test_latency_fit_matches_statsmodels_ols() -> None:
    x1, x2, y = _data()
    fit = latency_fit(_moments(x1, x2, y))
    ols = sm.OLS(y, sm.add_constant(np.column_stack([x1, x2]))).fit()
    assert fit is not None
    assert fit.b_in == pytest.approx(ols.params[1], rel=1e-6)
    assert fit.b_out == pytest.approx(ols.params[2], rel=1e-6)
    assert fit.se_in == pytest.approx(ols.bse[1], rel=1e-6)
    assert fit.se_out == pytest.approx(ols.bse[2], rel=1e-6)
    assert fit.mean_ms == pytest.approx(y.mean())


def test_latency_fit_refuses_collinear_or_flat_tokens() -> None:
    x1, x2, y = _data(200)
    assert latency_fit(_moments(x1, 2 * x1 + 3, y)) is None  # output a function of input
    assert latency_fit(_moments(np.full(200, 900.0), x2, y)) is None  # one prompt length
    assert latency_fit(_moments(x1[:10], x2[:10], y[:10])) is None  # too few rows
    assert latency_fit(None) is None


def test_ingest_fit_matches_ols_on_the_complete_rows(tmp_path: Path) -> None:
    x1, x2, y = _data(2000, seed=3)
    start = datetime(2026, 11, 1)
    rows: list[list[object]] = [
        [(start + timedelta(minutes=3 * i)).strftime("%Y-%m-%dT%H:%M:%SZ"), "a", "v1",
         f"e{i}", "success", round(float(y[i]), 1), int(x1[i]), int(x2[i])]
        for i in range(2000)]
    # Rows the fit must not see: a missing latency, a missing output count (its whole
    # daily latency bin drops out of the fit), a re-sent duplicate with absurd values.
    rows.append(["2026-11-02T10:00:00Z", "a", "v1", "gap1", "success", "", 1000, 200])
    rows.append(["2026-11-02T10:01:00Z", "a", "v1", "gap2", "success", 5000, 1000, ""])
    rows.append(["2026-11-01T00:01:00Z", "a", "v1", "e0", "success", 99999, 1, 1])  # re-sent
    snap = ingest([str(write_csv(tmp_path / "m.csv", rows, COLS))], window_days=30)
    stats = snap.version("a", "v1")
    assert stats is not None and stats.moments is not None
    assert stats.executions == 2002  # the duplicate counted once, the gaps counted as runs
    assert 1980 <= stats.moments.n <= 2000
    fit = latency_fit(stats.moments)
    ols = sm.OLS(y, sm.add_constant(np.column_stack([x1, x2]))).fit()
    assert fit is not None
    # Latency is read from ~5 %-wide bins, which adds noise of ~1.4 % of each latency (here
    # as much as a third of the residual noise, in production far less): the slopes stay
    # within one standard error of the exact fit, the standard errors within a quarter.
    assert abs(fit.b_out - ols.params[2]) < ols.bse[2]
    assert abs(fit.b_in - ols.params[1]) < ols.bse[1]
    assert fit.se_out == pytest.approx(ols.bse[2], rel=0.25)
    assert fit.mean_ms == pytest.approx(y.mean(), rel=0.01)


def test_latency_estimate_of_added_prompt_tokens() -> None:
    x1, x2, y = _data()
    stats = _stats(_moments(x1, x2, y))
    fit = latency_fit(stats.moments)
    assert fit is not None
    est = latency_estimate(TokenChange(100, "edit"), stats)
    assert est.value == pytest.approx(100 * fit.b_in / fit.mean_ms)
    assert est.low is not None and est.high is not None
    # The answer-length prior (±5 %) dominates: a prompt edit may move latency either way.
    assert est.low < 0 < est.value < est.high
    brevity = latency_estimate(TokenChange(30, "brevity"), stats)
    assert brevity.value is not None and brevity.high is not None and brevity.low is not None
    assert brevity.value < -0.05  # 15 % shorter answers at ~22 ms per token
    assert brevity.low < brevity.value < brevity.high


def test_negative_slopes_are_floored_at_zero() -> None:
    rng = np.random.default_rng(1)
    x1 = rng.normal(1500, 300, 3000).round()
    x2 = rng.normal(300, 80, 3000).round()
    y = 6000 - 2.0 * x1 + rng.normal(0, 50, 3000)  # longer prompts answered faster: noise
    est = latency_estimate(TokenChange(200, "edit"), _stats(_moments(x1, x2, y)))
    assert est.value is not None and est.value >= 0 and est.low is not None
    assert est.low >= -0.01  # only the answer-length prior can lower it, barely


def test_latency_not_estimated_without_sums() -> None:
    est = latency_estimate(TokenChange(40, "edit"), _stats(None))
    assert not est.known and "per-execution latency" in est.method


def test_cost_estimate_is_exact_on_the_input_side() -> None:
    stats = _stats(None, cost=0.01, out=400.0)
    est = cost_estimate(TokenChange(200, "edit"), stats, 3.0, 15.0)
    per_out = 400 * 15 / 1e6
    assert est.value == pytest.approx(200 * 3 / 1e6 / 0.01)  # +6 %
    assert est.low == pytest.approx((200 * 3 / 1e6 - 0.05 * per_out) / 0.01)
    assert est.high == pytest.approx((200 * 3 / 1e6 + 0.05 * per_out) / 0.01)
    cap = cost_estimate(TokenChange(0, "cap"), stats, 3.0, 15.0)
    assert cap.value == pytest.approx(-0.02 * per_out / 0.01) and cap.high == 0
    assert not cost_estimate(TokenChange(10, "edit"), _stats(None, cost=None), 3, 15).known


def test_paired_quality_counts_only_discordant_cases() -> None:
    pairs = [(True, True)] * 30 + [(False, True)] * 6 + [(True, False)] * 2 + [(False, False)] * 2
    est = paired_quality(pairs, "recorded")
    n, gained, lost = 40, 6, 2
    diff = (gained - lost) / n
    half = 1.959964 * ((gained + lost) - (gained - lost) ** 2 / n) ** 0.5 / n
    assert est.value == pytest.approx(diff)
    assert (est.low, est.high) == (pytest.approx(diff - half), pytest.approx(diff + half))
    assert est.confidence == "medium" and "6 newly passing, 2 newly failing" in est.method
    same = paired_quality([(True, True)] * 5, "recorded")
    assert same.value == 0 and same.high == pytest.approx(3 / 5) and same.confidence == "low"
    assert not paired_quality([], "recorded").known


def test_estimate_line_says_why_when_not_estimated() -> None:
    line = estimate_line("mean latency", Estimate(0.0123, -0.004, 0.03, "low", "fit"), "%")
    assert line == ("mean latency: **+1.2 %**, interval -0.4 … +3.0 %, confidence: low — fit")
    assert estimate_line("quality", unknown("no tests"), "pts") == \
        "quality: not estimated — no tests"


def test_proposals_carry_estimates_into_the_pr_and_their_record(cli: Cli, repo: Path) -> None:
    plan = cli.json("propose", "--dry-run", "--json")
    assert isinstance(plan, list) and plan
    for item in plan:
        cost, latency = item["impact"]["cost_pct"], item["impact"]["latency_pct"]
        assert cost["interval"][0] <= cost["change"] <= cost["interval"][1]
        assert latency["interval"][0] <= latency["change"] <= latency["interval"][1]
        assert "least-squares fit over" in latency["method"]
        assert item["impact"]["quality_pts"]["estimated"] is False  # no eval in a dry run
    assert cli("run")[0] == 0
    prs = {p["agent"]: p for p in cli.json("pr", "list", "--json")}  # type: ignore[union-attr]
    # sql-writer has tests.yaml, but recorded replies only for the base version: without a
    # key nothing can answer for the variant, so quality says why it is not estimated.
    pr = prs["sql-writer"]
    record = yaml.safe_load(git(repo, "show", f"{pr['branch']}:prompts/sql-writer/"
                                              f"proposals/{pr['proposal_id']}.yaml"))
    effect = record["expected_effect"]
    planned = next(i for i in plan if i["agent"] == "sql-writer")["impact"]
    assert effect["cost_per_execution"]["change"] * 100 == pytest.approx(
        planned["cost_pct"]["change"], abs=0.01)
    assert effect["quality"] == {"estimated": False,
                                 "why": "no offline-eval case both versions could run"}
    code, shown, _ = cli("pr", "show", str(pr["number"]))
    assert code == 0
    assert "Quality estimate (pass rate): not estimated — no offline-eval case" in shown
    assert "- mean latency: **" in shown and "- cost per execution: **" in shown


def test_ingest_sums_quality_squares_for_the_quality_guardrail(tmp_path: Path) -> None:
    from bot.core.stats import arm_of

    cols = ["timestamp", "agent_id", "prompt_version", "execution_id", "status",
            "latency_ms", "quality_score"]
    scores = [0.5, 0.75, 1.0, "", 0.25]
    rows: list[list[object]] = [[f"2026-11-01T0{i}:00:00Z", "a", "v1", f"e{i}", "success",
                                 100, q] for i, q in enumerate(scores)]
    rows.append(["2026-11-01T09:00:00Z", "a", "v1", "e0", "success", 100, 0.9])  # re-sent
    snap = ingest([str(write_csv(tmp_path / "q.csv", rows, cols))], window_days=30)
    arm = arm_of(b for b in snap.buckets if b.agent_id == "a")
    assert (arm.q_n, arm.q_sum) == (4, pytest.approx(2.5))
    assert arm.q_sumsq == pytest.approx(0.25 + 0.5625 + 1.0 + 0.0625)


def test_cost_without_output_tokens_estimates_the_prompt_side_only() -> None:
    est = cost_estimate(TokenChange(100, "brevity"), _stats(None, cost=0.01, out=None), 3, 15)
    assert est.value == pytest.approx(100 * 3 / 1e6 / 0.01) == est.low == est.high
    assert est.confidence == "low" and "answer length not estimated" in est.method


def test_cost_confidence_drops_when_prices_do_not_match_the_export() -> None:
    # 1,500 input + 350 output tokens at $3/$15 per Mtok cost ~$0.0097, not $0.000001.
    est = cost_estimate(TokenChange(50, "edit"), _stats(None, cost=1e-6), 3.0, 15.0)
    assert est.confidence == "low" and "check `pricing` in the policy" in est.method
    near = cost_estimate(TokenChange(50, "edit"), _stats(None, cost=0.0097), 3.0, 15.0)
    assert near.confidence == "medium" and "pricing" not in near.method


def test_one_sided_discordance_keeps_a_wide_interval() -> None:
    est = paired_quality([(False, True)] * 3, "recorded")
    assert est.value == 1.0 and est.low == pytest.approx(0.0) and est.high == 1.0


def test_latency_not_estimated_says_why_for_collinear_tokens() -> None:
    x1, _, y = _data(500)
    est = latency_estimate(TokenChange(10, "edit"), _stats(_moments(x1, 2 * x1, y)))
    assert not est.known and "cannot be told apart" in est.method


def test_roi_without_cost_in_the_export_still_charges_added_tokens() -> None:
    from bot.core.analysis import Problem
    from bot.core.model import Policy
    from bot.core.proposals import Expectation, economics

    stats = _stats(None, cost=None)
    problem = Problem("failure_mode", "a", "v1", "sig", None, stats)
    e = economics(problem, Expectation(0.0, 0.0, 0.0, "low", ""), unknown("no cost"), 200,
                  Policy())
    per_month = 4000 / 7 * 30
    assert e.cost_usd_per_month == pytest.approx(200 * 3 / 1e6 * per_month)
    assert e.roi_usd_per_month < 0


def test_accuracy_needs_enough_scores_with_squares_and_positive_means() -> None:
    from bot.core.analysis import accuracy_problem
    from bot.core.model import ProposePolicy

    on = ProposePolicy(min_quality=0.8)
    base = replace(_stats(None), quality_mean=0.6, quality_n=4000, quality_sq_n=4000)
    assert accuracy_problem(base, "a", "v1", on) is not None
    assert accuracy_problem(base, "a", "v1", ProposePolicy()) is None  # goal off
    assert accuracy_problem(replace(base, quality_mean=0.9), "a", "v1", on) is None
    sparse = replace(base, quality_n=4000, quality_sq_n=5)  # daily form, or few scores
    assert accuracy_problem(sparse, "a", "v1", on) is None
    assert accuracy_problem(replace(base, quality_mean=-0.2), "a", "v1", on) is None
