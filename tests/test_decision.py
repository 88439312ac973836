"""Day-level decisions after a deploy (bot/core/decision.py, evidence.py, incidents.py).

Snapshots here are what ingest would return for daily traffic: one bucket per agent,
version and day, failure counts per template and day, segment counts.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime, timedelta

import numpy as np
import pytest

from bot.core.daily import Day
from bot.core.decision import Evidence, Series, decide
from bot.core.incidents import find
from bot.core.metrics import Bucket, ErrorDay, MetricsSnapshot, SegmentDay
from bot.core.model import MeasurePolicy
from bot.core.results import Deployment, measure
from bot.core.stats import Arm, compare

POLICY = MeasurePolicy()
DEPLOY = datetime(2026, 3, 6, 12)  # a Friday
DAY0 = DEPLOY.replace(hour=0)
OUTAGE = ("APIStatusError", "Error code: <*> - overloaded_error: Overloaded")


def _day(k: int) -> datetime:
    return DAY0 + timedelta(days=k)


def _buckets(agent: str, version: str, days: Iterable[int], rate: object, n: int,
             rng: np.random.Generator | None = None) -> list[Bucket]:
    """One bucket a day; `rate` is a number or a function of the day offset."""
    out = []
    for k in days:
        p = rate(k) if callable(rate) else float(rate)  # type: ignore[arg-type]
        ok = int(rng.binomial(n, p)) if rng is not None else round(n * p)
        hour = _day(k) + timedelta(hours=13 if k == 0 else 0)
        out.append(Bucket(agent, version, hour, n, ok, 0, n - ok))
    return out


def _snapshot(buckets: list[Bucket], errors: Iterable[ErrorDay] = (),
              segments: Iterable[SegmentDay] = (), has_version: bool = True
              ) -> MetricsSnapshot:
    newest = max(b.hour for b in buckets).replace(hour=23, minute=59)
    return MetricsSnapshot(sources=(), rows_read=0, rows_used=0, duplicates=0, bad_rows=0,
                           bad_by_reason={}, bad_samples=(), has_version=has_version,
                           oldest=None, newest=newest, window_days=28, versions=(),
                           buckets=tuple(buckets), error_days=tuple(errors),
                           segment_days=tuple(segments))


def _deployment(expected: float = 0.03, controls: tuple[str, ...] | None = ()) -> Deployment:
    return Deployment("p-1", "a", "v1", "v2", DEPLOY, "sha", "v2", None, None, expected,
                      controls=controls)


def test_day_level_noise_is_not_a_regression() -> None:
    # The success rate moves by ~2 points from day to day. A week after the deploy the new
    # version sits 1.5 points under the base mean: well within the days' own movement,
    # but 20,000 executions a day make a per-execution test sure it is a drop.
    rng = np.random.default_rng(4)
    day_rate = {k: 0.9 + rng.normal(0, 0.02) for k in range(-56, 0)}
    base = _buckets("a", "v1", range(-56, 0), lambda k: day_rate[k], 20000, rng)
    new = _buckets("a", "v2", range(1, 8), 0.9 - 0.015 + 0.0, 20000, rng)
    pooled_base = Arm(sum(b.executions for b in base[-7:]), sum(b.successes for b in base[-7:]))
    pooled_new = Arm(sum(b.executions for b in new), sum(b.successes for b in new))
    assert compare(pooled_base, pooled_new, 0.03, POLICY).decision == "regression"
    result = measure(_deployment(), _snapshot(base + new), POLICY)
    c = result.comparison
    assert c.decision == "keep_measuring" and not result.recommend_rollback
    alone = c.views[0]
    assert alone.day_sd_estimated and alone.day_sd == pytest.approx(0.02, rel=0.25)
    assert "day-to-day sd of the success rate" in result.attribution


def test_an_export_that_starts_late_in_the_day_does_not_count_that_evening() -> None:
    # A 14-day export taken at 23:00 starts with one hour of the first day: 40 executions at
    # 60 % weighed as a whole day made the day-to-day sd 4.8 pts and kept a +4 pt fix measuring.
    rng = np.random.default_rng(7)
    base = _buckets("a", "v1", range(-13, 0), 0.9, 400, rng)
    evening = Bucket("a", "v1", _day(-14) + timedelta(hours=23), 40, 24, 0, 16)
    new = _buckets("a", "v2", range(1, 15), 0.94, 400, rng)
    snap = _snapshot([evening, *base, *new])
    late = MetricsSnapshot(**{**snap.__dict__, "oldest": evening.hour + timedelta(minutes=2)})
    result = measure(_deployment(expected=0.02), late, POLICY)
    assert "against 13 day(s) of the base version" in result.attribution
    assert result.comparison.decision == "success"
    # The same hour is a day's first when the export starts at midnight: it counts.
    whole = MetricsSnapshot(**{**snap.__dict__, "oldest": evening.hour.replace(hour=0)})
    assert "against 14 day(s)" in measure(_deployment(expected=0.02), whole, POLICY).attribution


def test_the_placebo_check_gates_the_decision() -> None:
    # The base's last five days dropped 3 points for a reason nobody knows; the new version
    # runs 3 points above the base's usual level. Against the base model it looks like a
    # +4 point win, but the same comparison inside the base's own history "finds" -3
    # points: the base moves by itself as much as a change would.
    n, d0 = 20000, date(2026, 3, 6)

    def day(k: int, p: float) -> Day:
        return Day(d0 + timedelta(days=k), p + (0.003 if (k * 7919) % 3 == 0 else -0.0015),
                   p * (1 - p) / n, n)

    pre = tuple(day(k, 0.87 if k >= -5 else 0.90) for k in range(-56, 0))
    post = tuple(day(k, 0.93) for k in range(1, 4))
    ev = Evidence(Series("success rate", pre, post, 0.02**2), None, (), (),
                  Arm(56 * n, int(56 * n * 0.9)), Arm(3 * n, int(3 * n * 0.93)), post[0].day, 3)
    c = decide(ev, 0.03, POLICY)
    assert c.views[0].low > 0  # the interval alone would call it a success
    assert c.decision == "inconclusive"
    assert c.reason.startswith("inconclusive — base unstable")
    assert "last 3 day(s) before the deploy" in c.reason and "success" in c.reason


def test_a_shock_every_agent_shares_is_not_the_prompt() -> None:
    # The unchanged agents are a negative control: what moved them is not the prompt.
    # Two days after the deploy every agent drops 3 points (an upstream model update).
    rng = np.random.default_rng(9)

    def rate(k: int) -> float:
        return 0.9 - (0.03 if k >= 2 else 0.0)

    base = _buckets("a", "v1", range(-56, 0), rate, 5000, rng)
    new = _buckets("a", "v2", range(1, 15), rate, 5000, rng)
    peers = [b for name in ("b", "c") for b in _buckets(name, "p1", range(-56, 15), rate,
                                                         5000, rng)]
    alone = measure(_deployment(controls=()), _snapshot(base + new + peers), POLICY)
    assert alone.comparison.decision == "regression"  # without controls: a false rollback
    assert alone.recommend_rollback
    result = measure(_deployment(controls=("b", "c")), _snapshot(base + new + peers), POLICY)
    c = result.comparison
    assert c.decision not in ("regression", "success") and not result.recommend_rollback
    assert [v.name for v in c.views] == ["alone", "against the unchanged agents",
                                         "the unchanged agents themselves"]
    assert c.views[0].high < 0 and c.views[2].high < 0  # both dropped ~3 points
    assert c.views[2].estimate == pytest.approx(c.views[0].estimate, abs=0.01)
    assert c.views[1].low < 0 < c.views[1].high  # against them: nothing
    assert c.drift is not None and "unchanged agents (b, c) moved" in c.drift
    assert "checked against 2 unchanged agent(s): b, c" in result.attribution
    # With a version column, agents whose version changed in the window are no controls.
    moved = _buckets("b", "p2", range(5, 15), rate, 5000, rng)
    again = measure(_deployment(controls=None), _snapshot(base + new + peers + moved), POLICY)
    assert "unchanged agent(s): c" in again.attribution


def test_no_measurable_effect_only_when_the_interval_excludes_effects_worth_having() -> None:
    rng = np.random.default_rng(21)
    base = _buckets("a", "v1", range(-56, 0), 0.9, 60, rng)
    new = _buckets("a", "v2", range(1, 31), 0.9, 60, rng)
    result = measure(_deployment(), _snapshot(base + new[:9]), POLICY)
    c = result.comparison
    assert c.decision == "keep_measuring"  # ±3-4 points still possible at 60 a day
    assert c.ci_high - c.ci_low > 2 * POLICY.min_detectable_effect
    assert result.state == "measuring"
    # A month on, the base's own counts bound the interval beyond ±2 points for good.
    ended = measure(_deployment(), _snapshot(base + new), POLICY)
    assert ended.state == "completed" and ended.comparison.decision == "inconclusive"
    assert ended.comparison.reason.startswith("inconclusive — not enough base traffic: the "
                                              "base version's 3360 executions")
    many = _buckets("a", "v1", range(-56, 0), 0.9, 20000, rng) + \
        _buckets("a", "v2", range(1, 4), 0.9, 20000, rng)
    done = measure(_deployment(), _snapshot(many), POLICY).comparison
    assert done.decision == "no_effect"
    assert -POLICY.min_detectable_effect < done.ci_low < done.ci_high \
        < POLICY.min_detectable_effect


def test_a_short_base_history_ends_inconclusive_and_frees_the_agent() -> None:
    # Three days of the base version (Tuesday to Thursday), then the deploy.
    rng = np.random.default_rng(2)
    base = _buckets("a", "v1", range(-3, 0), 0.9, 400, rng)
    early = measure(_deployment(), _snapshot(base + _buckets("a", "v2", range(1, 4), 0.9,
                                                                400, rng)), POLICY)
    assert early.comparison.decision == "insufficient_data" and early.state == "measuring"
    assert "weekdays" in early.comparison.reason
    later = _buckets("a", "v2", range(1, 15), 0.9, 400, rng)
    result = measure(_deployment(), _snapshot(base + later), POLICY)
    assert result.state == "completed" and result.comparison.decision == "inconclusive"
    assert "not enough base traffic" in result.comparison.reason
    assert "3 day(s)" in result.comparison.reason
    assert result.headline.startswith("inconclusive — not enough base traffic")


def test_no_decision_after_max_days_is_inconclusive() -> None:
    rng = np.random.default_rng(6)
    data = _buckets("a", "v1", range(-56, 0), 0.9, 60, rng) + \
        _buckets("a", "v2", range(1, 13), 0.9, 60, rng)
    result = measure(_deployment(), _snapshot(data), MeasurePolicy(max_days=10))
    assert result.state == "completed" and result.comparison.decision == "inconclusive"
    assert "no decision after 12 days" in result.comparison.reason


def _outage(agent: str, version: str, k: int, count: int) -> ErrorDay:
    return ErrorDay(agent, version, _day(k), "error", *OUTAGE, count, _day(k), _day(k),
                    "Error code: 529 - overloaded_error: Overloaded")


def test_outage_days_are_left_out_and_named() -> None:
    rng = np.random.default_rng(12)
    usual = []
    base = _buckets("a", "v1", range(-56, 0), 0.9, 2000, rng)
    new = _buckets("a", "v2", range(1, 8), 0.9, 2000, rng)
    for b in base + new:
        usual.append(ErrorDay("a", b.prompt_version, b.hour.replace(hour=0), "error",
                              "ToolCallError", "lookup failed", b.executions - b.successes,
                              b.hour, b.hour, "lookup failed"))
    # Days 2 and 3 after the deploy: an outage fails 20 % more of the executions.
    hit = []
    for b in new:
        k = (b.hour - DAY0).days
        if k in (2, 3):
            hit.append(Bucket("a", "v2", b.hour, b.executions, b.successes - 400, 0,
                              b.errors + 400))
            usual.append(_outage("a", "v2", k, 400))
        else:
            hit.append(b)
    plain = measure(_deployment(), _snapshot(base + hit, usual[:len(base) + len(new)]),
                    POLICY)
    assert plain.comparison.decision == "regression"  # counted as the prompt's doing
    result = measure(_deployment(), _snapshot(base + hit, usual), POLICY)
    c = result.comparison
    assert c.decision != "regression" and not result.recommend_rollback
    assert [(i.day, i.error_type) for i in c.incidents] == [
        (date(2026, 3, 8), "APIStatusError"), (date(2026, 3, 9), "APIStatusError")]
    assert "infrastructure" in c.incidents[0].why
    assert "incident day(s) 03-08, 03-09 left out" in c.reason
    assert c.new.executions == 5 * 2000


def test_a_spike_of_a_prompt_error_is_no_incident_unless_other_agents_share_it() -> None:
    days = [date(2026, 3, k) for k in range(1, 15)]
    before, after = days[:10], days[10:]
    executions = {(a, d): 1000 for a in ("a", "b") for d in days}

    def errors(agent: str, spike: bool) -> list[ErrorDay]:
        return [ErrorDay(agent, "v", datetime(d.year, d.month, d.day), "error",
                         "OutputParserException", "Could not parse LLM output (char <*>)",
                         300 if spike and d.day == 12 else 20, datetime(2026, 3, 1),
                         datetime(2026, 3, 1), "Could not parse LLM output (char 502)")
                for d in days]

    # A message with a number that reads like an HTTP status is still a parsing error.
    assert find(errors("a", True), executions, ["a"], before, after, [], 0.02) == []
    shared = find(errors("a", True) + errors("b", True), executions, ["a"], before, after,
                  ["b"], 0.02)
    assert [(i.day, i.agent_id, i.count) for i in shared] == [(date(2026, 3, 12), "a", 300)]
    assert "the same failure jumped that day in b" in shared[0].why
    # An agent that is not a witness (it changed too) is no evidence.
    assert find(errors("a", True) + errors("b", True), executions, ["a"], before, after, [],
                0.02) == []


def test_rate_limits_the_new_version_causes_every_day_are_a_regression() -> None:
    # The new prompt makes the agent call a tool in a loop: 429s on every day after the
    # deploy. Reads like infrastructure, lasts like a regression: never left out.
    rng = np.random.default_rng(14)
    base = _buckets("a", "v1", range(-56, 0), 0.9, 2000, rng)
    new = _buckets("a", "v2", range(1, 9), 0.84, 2000, rng)
    errors = [ErrorDay("a", "v2", _day(k), "error", "RateLimitError",
                       "Error code: <*> - rate_limit_error", 120, _day(k), _day(k),
                       "Error code: 429 - rate_limit_error") for k in range(1, 9)]
    early = measure(_deployment(), _snapshot(base + new[:2], errors[:2]), POLICY)
    assert [i.day for i in early.comparison.incidents] == [date(2026, 3, 7), date(2026, 3, 8)]
    result = measure(_deployment(), _snapshot(base + new, errors), POLICY)
    assert result.comparison.incidents == ()
    assert result.comparison.decision == "regression" and result.recommend_rollback


def test_a_mix_shift_is_re_weighted_to_the_base_mix() -> None:
    # Easy requests succeed 95 %, hard ones 80 %; after the deploy 60 % are hard, not 50 %.
    rng = np.random.default_rng(31)
    buckets, segments = [], []
    for k in [*range(-56, 0), *range(1, 8)]:
        version, hard_share = ("v1", 0.5) if k < 0 else ("v2", 0.6)
        n_hard = int(rng.binomial(4000, hard_share))
        ok_hard = int(rng.binomial(n_hard, 0.80))
        ok_easy = int(rng.binomial(4000 - n_hard, 0.95))
        buckets.append(Bucket("a", version, _day(k), 4000, ok_hard + ok_easy, 0,
                              4000 - ok_hard - ok_easy))
        segments += [SegmentDay("a", version, _day(k), "hard", n_hard, ok_hard),
                     SegmentDay("a", version, _day(k), "easy", 4000 - n_hard, ok_easy)]
    raw = measure(_deployment(), _snapshot(buckets), POLICY)
    assert raw.comparison.decision == "regression"  # the mix moved, not the prompt
    result = measure(_deployment(), _snapshot(buckets, segments=segments), POLICY)
    c = result.comparison
    assert c.decision in ("keep_measuring", "no_effect") and abs(c.delta) < 0.01
    mix = {m.segment: m for m in c.segments}
    assert mix["hard"].base_share == pytest.approx(0.5, abs=0.01)
    assert mix["hard"].new_share == pytest.approx(0.6, abs=0.01)
    assert mix["easy"].new_rate == pytest.approx(0.95, abs=0.01)
    assert "re-weighted to the base's segment mix" in result.attribution


def test_a_cheaper_change_succeeds_by_non_inferiority_day_by_day() -> None:
    n, d0 = 5000, date(2026, 3, 6)
    rng = np.random.default_rng(1)

    def series(metric: str, level: float, after: float, sd: float) -> Series:
        pre = tuple(Day(d0 + timedelta(days=k), level + rng.normal(0, sd), sd * sd / 4, n)
                    for k in range(-56, 0))
        post = tuple(Day(d0 + timedelta(days=k), after + rng.normal(0, sd), sd * sd / 4, n)
                     for k in range(1, 8))
        return Series(metric, pre, post, 0.05**2)

    success = series("success rate", 0.9, 0.9, 0.003)
    cost = series("cost", -4.6, -4.6 + np.log(0.85), 0.01)  # 15 % cheaper
    ev = Evidence(success, None, (), (cost,), Arm(56 * n, int(56 * n * 0.9)),
                  Arm(7 * n, int(7 * n * 0.9)), d0 + timedelta(days=1), 7)
    won = decide(ev, 0.0, POLICY, judged_by="cheaper")
    assert won.decision == "success" and won.reason.startswith("cheaper (cost ×0.8")
    assert decide(ev, 0.0, POLICY).decision != "success"  # no win as an error-handling fix


def test_the_merge_hour_and_a_slow_rollout_are_no_canary() -> None:
    # 1,000 executions an hour, better in office hours than at night; merged at 12:40 and
    # the replicas pick the new version up by 14:00. No true effect.
    rng = np.random.default_rng(3)
    merged = datetime(2026, 3, 6, 12, 40)
    buckets = []
    for h in range(-24 * 28, 24 * 10):
        hour = merged.replace(minute=0) + timedelta(hours=h)
        p = 0.95 if 8 <= hour.hour < 18 else 0.85
        versions = ["v1"] if h < 0 else ["v1", "v2"] if h < 2 else ["v2"]
        for v in versions:
            n = 1000 // len(versions)
            ok = int(rng.binomial(n, p))
            buckets.append(Bucket("a", v, hour, n, ok, 0, n - ok))
    dep = Deployment("p-1", "a", "v1", "v2", merged, "sha", "v2", None, None, 0.03,
                     controls=())
    result = measure(dep, _snapshot(buckets), POLICY)
    assert result.attribution.startswith("day by day")
    assert result.comparison.decision not in ("regression", "success")
    assert not result.recommend_rollback


def test_a_version_that_stops_serving_ends_inconclusive() -> None:
    rng = np.random.default_rng(8)
    base = _buckets("a", "v1", range(-56, 0), 0.9, 150, rng)
    brief = _buckets("a", "v2", range(1, 3), 0.9, 150, rng)  # then a person's change
    later = _buckets("a", "v3", range(3, 12), 0.9, 150, rng)
    waiting = measure(_deployment(), _snapshot(base + brief + later[:4]), POLICY)
    assert waiting.state == "measuring" and "300 executions" in waiting.comparison.reason
    result = measure(_deployment(), _snapshot(base + brief + later), POLICY)
    assert result.state == "completed" and result.comparison.decision == "inconclusive"
    assert "served no traffic since 2026-03-08" in result.comparison.reason
    # Without a version column, git says when it was replaced.
    plain = [Bucket(b.agent_id, None, b.hour, b.executions, b.successes, 0, b.errors)
             for b in base + brief + later]
    dep = Deployment("p-1", "a", "v1", "v2", DEPLOY, "sha", "v3", None, None, 0.03,
                     new_until=datetime(2026, 3, 9, 10), controls=())
    replaced = measure(dep, _snapshot(plain, has_version=False), POLICY)
    assert replaced.comparison.decision == "inconclusive"
    assert "replaced on 2026-03-09" in replaced.comparison.reason


def test_a_fix_that_leaves_no_failures_is_decided() -> None:
    rng = np.random.default_rng(5)
    base = _buckets("a", "v1", range(-56, 0), 0.9, 300, rng)
    new = _buckets("a", "v2", range(1, 8), 1.0, 300)
    result = measure(_deployment(), _snapshot(base + new), POLICY)
    assert result.comparison.new.failures == 0
    assert result.comparison.decision == "success"


def test_a_segment_without_traffic_some_days_or_after_the_deploy_costs_no_days() -> None:
    rng = np.random.default_rng(17)
    buckets, segments = [], []
    for k in [*range(-56, 0), *range(1, 11)]:
        version = "v1" if k < 0 else "v2"
        cells = {"main": (2000, 0.9)}
        if k < 0:
            cells["legacy"] = (60, 0.7)  # retired with the deploy
        if _day(k).weekday() < 5:
            cells["batch"] = (300, 0.8)  # weekdays only
        total = ok_total = 0
        for seg, (n, p) in cells.items():
            ok = int(rng.binomial(n, p))
            segments.append(SegmentDay("a", version, _day(k), seg, n, ok))
            total, ok_total = total + n, ok_total + ok
        buckets.append(Bucket("a", version, _day(k), total, ok_total, 0, total - ok_total))
    result = measure(_deployment(), _snapshot(buckets, segments=segments), POLICY)
    c = result.comparison
    alone = c.views[0]
    assert (alone.base_days, alone.days) == (56, 10)  # no day dropped
    assert c.drift is not None and "one side of the deploy only" in c.drift
    assert c.decision not in ("regression", "success")
    # A segment column that starts halfway through: not re-weighted, and said so.
    late = [s for s in segments if s.day >= _day(-20)]
    partial = measure(_deployment(), _snapshot(buckets, segments=late), POLICY)
    assert partial.comparison.segments == ()
    assert partial.comparison.views[0].base_days == 56
    assert "does not cover every day" in (partial.comparison.drift or "")


def test_a_control_missing_some_days_does_not_move_the_controls_mean() -> None:
    # Controls at 95 % and 60 %; the 60 % one serves no traffic on weekends after the
    # deploy. No true effect anywhere.
    rng = np.random.default_rng(23)
    base = _buckets("a", "v1", range(-56, 0), 0.9, 3000, rng)
    new = _buckets("a", "v2", range(1, 15), 0.9, 3000, rng)
    high = _buckets("hi", "p", range(-56, 15), 0.95, 3000, rng)
    low = [b for b in _buckets("lo", "p", range(-56, 15), 0.60, 3000, rng)
           if b.hour < DAY0 or b.hour.weekday() < 5]
    result = measure(_deployment(controls=("hi", "lo")), _snapshot(base + new + high + low),
                     POLICY)
    views = {v.name: v for v in result.comparison.views}
    assert abs(views["the unchanged agents themselves"].estimate) < 0.01
    assert result.comparison.decision not in ("regression", "success")


def test_a_short_horizon_and_weekday_only_traffic_do_not_crash() -> None:
    rng = np.random.default_rng(2)
    base = [b for b in _buckets("a", "v1", range(-56, 0), 0.9, 2000, rng)
            if b.hour.weekday() < 5]
    new = _buckets("a", "v2", range(1, 10), 0.9, 2000, rng)
    result = measure(_deployment(), _snapshot(base + new), MeasurePolicy(horizon_days=1))
    assert result.comparison.views and result.comparison.views[0].days < 9


def test_unchanged_agents_that_did_not_move_cost_little_power() -> None:
    # A real +4 points at 400 a day; two unchanged agents with their own noise and no shared
    # movement. Requiring agreement with a difference-in-differences always would add their
    # noise to every decision; it is asked only when they moved the claim's way (about one
    # look in six by chance), so few successes are lost.
    wins = {True: 0, False: 0}
    for seed in range(40):
        rng = np.random.default_rng(1000 + seed)
        base = _buckets("a", "v1", range(-14, 0), 0.9, 400, rng)
        new = _buckets("a", "v2", range(1, 14), 0.94, 400, rng)
        peers = [b for name in ("b", "c")
                 for b in _buckets(name, "p", range(-14, 14), 0.9, 400, rng)]
        snapshot = _snapshot(base + new + peers)
        for with_controls in (True, False):
            result = measure(_deployment(controls=("b", "c") if with_controls else ()),
                             snapshot, POLICY)
            wins[with_controls] += result.comparison.decision == "success"
            if with_controls and seed == 0:
                assert "checked against 2 unchanged agent(s)" in result.attribution
    assert wins[False] >= 37
    assert wins[True] >= wins[False] - 3, wins


def _steady(rate: float, days: range, wobble: float = 0.003) -> tuple[Day, ...]:
    # 20,000 a day: sampling noise is small; the deterministic wobble gives the days spread.
    n = 20000
    return tuple(Day(DAY0.date() + timedelta(days=k),
                     rate + (wobble if (k * 7919) % 3 == 0 else -wobble / 2),
                     rate * (1 - rate) / n, n) for k in days)


def _with_peers(own_post: float, peers_post: float) -> Evidence:
    pre, post = range(-56, 0), range(1, 15)
    n = 20000
    return Evidence(
        Series("success rate", _steady(0.90, pre), _steady(own_post, post), 0.02**2),
        Series("success rate", _steady(0.0, pre), _steady(peers_post, post), 0.02**2),
        ("b", "c"), (), Arm(56 * n, int(56 * n * 0.9)),
        Arm(14 * n, int(14 * n * own_post)), DAY0.date() + timedelta(days=1), 14)


def test_a_drop_shared_with_the_unchanged_agents_is_judged_net_of_it() -> None:
    # The agent fell 3 points, every unchanged agent 2: against them it fell 1 point. The
    # regression stands, but its size (and so the rollback call) is the net one.
    c = decide(_with_peers(0.87, -0.02), 0.03, POLICY)
    assert c.decision == "regression"
    assert c.views[0].name == "against the unchanged agents"
    assert c.delta == pytest.approx(-0.01, abs=0.002)
    assert "measured against the unchanged agents (b, c), which moved -2.0 pts" in c.reason
    assert [v.name for v in c.views][1:] == ["alone", "the unchanged agents themselves"]


def test_a_non_inferiority_success_is_checked_when_the_others_rose() -> None:
    # "not worse": the agent slipped half a point, while every unchanged agent rose 2.5:
    # against them it fell 3 points. Not a success (the check looks at which way the
    # others moved, not at the sign of the agent's own estimate).
    alone = decide(_with_peers(0.895, 0.0), 0.0, POLICY, judged_by="not_worse")
    assert alone.decision == "success"  # quiet controls: a non-inferiority success
    c = decide(_with_peers(0.895, 0.025), 0.0, POLICY, judged_by="not_worse")
    assert c.decision not in ("success", "regression")
    assert c.drift is not None and "does not hold against them" in c.drift
