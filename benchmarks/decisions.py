"""Decision quality on realistic traffic: the bot's measuring rule beside the seeds' naive one.

Each simulated experiment is one deploy (a Friday at noon) of an agent with 56 days of
base-version history, looked at once a day for 30 days, as daily `promptbot run`s would.
Every look builds the metrics snapshot a run would have (daily buckets per agent and
version, failure counts per template and day, segment counts, latency sums) and calls
`bot.core.results.measure` — the function a run calls — on it. What the traffic does
(`Traffic`, the same departures `promptbot simulate` offers):

    iid                 binomial noise only
    day sd 1 / 2        the day's success rate moves by N(0, 1 or 2 pts) (and latency by 3 %)
    weekends -3         Saturdays and Sundays 3 pts lower (and 40 % less traffic)
    drift -0.1/day      the rate slides 0.1 pt a day, before and after the deploy
    2 incident days     two days within +-15 of the deploy where 20 % of executions fail
                        with one upstream error (an overloaded API)
    shared shocks       two more agents that do not change; all three share day-level
                        noise (1 pt) and a -2 pt step on a day within +-15 of the deploy
    mix shift           two segments (95 % and 80 % success), the hard one's share rises
                        from 50 to 60 % after the deploy; with the segment column (target)
                        and without it (no target: nothing can tell a mix shift from an
                        effect without it)
    all at once         day sd 1, weekends, drift, incidents and shared shocks together
    3-day base          only 3 days of base history (day sd 1)

Two designs (`--design`, default both):

before-after  one version before the deploy, the other after it (the deploy day split at
              noon); daily buckets. measure() takes its day-by-day before/after path.
canary        promptbot's canary: from the deploy both versions serve every hour. The
              day's executions (the same Poisson count and departures as above) spread
              over its 24 hours (a diurnal profile, weight 0.6 + 0.4 cos(2π(h - 14)/24)),
              each hour's split binomially by the stage's candidate share (request keys
              are random, so the mix shift, the day's noise, weekends, drift, incidents and
              shared shocks hit both versions alike), the candidate's success probability
              that hour's plus the effect; one Bucket per hour and version (failure counts
              and segments stay daily, per version). Every run's Deployment carries the
              stage the rollout file says at the time (canary_share, canary_since,
              canary_stages), so measure() takes `concurrent`: the current stage only,
              hours from 6 h after its start in which both versions served, at least 24 of
              them, alpha divided by the number of stages, the split checked for a sample-
              ratio mismatch. Plans (`--plan`):
                  50 % from the deploy            one stage
                  5 → 25 → 50 %, 24 h stages      25 % from deploy + 1 day, 50 % from + 2
                                                  days (alpha / 3); only the 50 % stage
                                                  is ever judged: an earlier stage has 18 h
                                                  past its grace, fewer than 24
                  5 → 25 → 50 %, at the runs' pace  (only with --plan) each advance merged
                                                  at 10:00 after the run that saw 24 h:
                                                  25 % from + 46 h, 50 % from + 94 h
              Cells run at 2,000/day unless --levels says otherwise (24× the buckets).

    python benchmarks/decisions.py [--design before-after|canary|both] [--sims 1000]
        [--seed 1] [--jobs 2] [--only NAME] [--levels N ...] [--plan NAME]

A/A: no true effect -> the share of experiments whose recorded result (the first final
one; the bot freezes it) is a success or a regression, and the share where any of the 30
looks said success or regression (ignoring the freeze), with 95 % Wilson intervals.
Power: a true +3 pts -> recorded success within 14 days; a true -5 pts -> recorded
regression within 30 days, with the median day. "seeds" is the rule of the source
documents on the same data: the new version's days so far against as many days before
the deploy, decided once the two hold 200 executions and differ by more than 2 points.
Canary cells add a true +2 pts -> recorded success within 14 days, and the share of A/A
experiments where some look reported a sample-ratio mismatch. The proposal's expected
delta (it sizes the "no effect" stop) is 0.03 before/after; in canary cells 0.02 for A/A
and +2 (min_detectable_effect), 0.03 for +3 and -5.

Prints figures; asserts nothing. Targets (issue 12, SPEC §15): A/A <= 5 % at any look
under every departure at every traffic level; power >= 80 % for +3 pts at 2,000/day with
1 pt day sd within 14 days; a -5 pt regression caught in a median <= 3 days at 2,000/day.
Canary targets: A/A false alarms <= 5 % under every departure, the mix shift included;
power >= 80 % for +2 pts at 2,000/day with the 50 % split within 14 days.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import NamedTuple

import numpy as np

from bot.core.metrics import Bucket, ErrorDay, MetricsSnapshot, SegmentDay
from bot.core.model import MeasurePolicy
from bot.core.results import Deployment, measure

BASE_RATE = 0.90
BASE_DAYS = 56
LOOKS = 30
DEPLOY = datetime(2026, 3, 6, 12)  # a Friday
DAY0 = DEPLOY.replace(hour=0)
LEVELS = (50, 500, 2000, 20000)
INCIDENT = ("APIStatusError", "Error code: <n> - overloaded_error: Overloaded")
USUAL = (("OutputParserException", "Could not parse LLM output: line <n> column <n>", 0.7),
         ("ToolCallError", "lookup_order failed: order '<str>' not found", 0.3))


@dataclass(frozen=True)
class Traffic:
    day_sd: float = 0.0
    weekend: float = 0.0  # success-rate offset on Saturdays and Sundays
    drift: float = 0.0  # per day
    incidents: int = 0
    peers: int = 0
    shared_sd: float = 0.0
    shared_step: float = 0.0
    mix_shift: float = 0.0
    segment_column: bool = False
    base_days: int = BASE_DAYS
    latency_sd: float = 0.0  # day-level sd of mean log latency


DEPARTURES: dict[str, Traffic] = {
    "iid": Traffic(),
    "day sd 1 pt": Traffic(day_sd=0.01, latency_sd=0.03),
    "day sd 2 pts": Traffic(day_sd=0.02, latency_sd=0.03),
    "weekends -3 pts": Traffic(weekend=-0.03),
    "drift -0.1 pt/day": Traffic(drift=-0.001),
    "2 incident days": Traffic(incidents=2),
    "shared shocks": Traffic(peers=2, shared_sd=0.01, shared_step=-0.02),
    "mix shift (segments)": Traffic(mix_shift=0.10, segment_column=True),
    "mix shift (no column)": Traffic(mix_shift=0.10),
    "all at once": Traffic(day_sd=0.01, latency_sd=0.03, weekend=-0.03, drift=-0.001,
                           incidents=2, peers=2, shared_sd=0.01, shared_step=-0.02),
    "3-day base": Traffic(day_sd=0.01, base_days=3),
}
NO_TARGET = {"mix shift (no column)"}


@dataclass(frozen=True)
class World:
    """One simulated experiment: the snapshot's parts by day, ready to cut at each look."""

    buckets: tuple[tuple[Bucket, ...], ...]  # per day index
    errors: tuple[tuple[ErrorDay, ...], ...]
    segments: tuple[tuple[SegmentDay, ...], ...]
    first_day: datetime


def _calendar(rng: np.random.Generator, t: Traffic) -> tuple[
        list[datetime], np.ndarray, np.ndarray, np.ndarray, set[int], np.ndarray]:
    """The days, and what every agent and version on them share: weekends, shared shocks,
    incident days, volume."""
    days = [DAY0 + timedelta(days=k) for k in range(-t.base_days, LOOKS + 1)]
    offsets = np.array([(d - DAY0).days for d in days])
    weekend = np.array([d.weekday() >= 5 for d in days])
    shared = rng.normal(0, t.shared_sd, len(days)) if t.shared_sd else np.zeros(len(days))
    if t.shared_step:
        step_at = rng.integers(-15, 16)
        shared = shared + t.shared_step * (offsets >= step_at)
    incident_days = set(rng.choice(np.arange(-15, 16), size=t.incidents, replace=False)) \
        if t.incidents else set()
    volume = np.where(weekend, 0.6, 1.0) if t.weekend else np.ones(len(days))
    return days, offsets, weekend, shared, incident_days, volume


def _agent_noise(rng: np.random.Generator, t: Traffic, n: int) -> tuple[np.ndarray, np.ndarray]:
    """One agent's day-level noise of the success rate and of log latency (drawn in this
    order in both designs, so the before/after draws stay what they always were)."""
    day_noise = rng.normal(0, t.day_sd, n) if t.day_sd else np.zeros(n)
    lat_noise = rng.normal(0, t.latency_sd, n) if t.latency_sd else np.zeros(n)
    return day_noise, lat_noise


class _AgentDay(NamedTuple):
    agent: str
    treated: bool
    i: int  # the day's index
    day: datetime
    off: int  # days from the deploy day
    p: float  # the day's success rate before any effect and segment
    n_day: int  # the day's executions
    lat: float  # the day's mean log latency


def _agent_days(rng: np.random.Generator, t: Traffic, per_day: int, days: list[datetime],
                offsets: np.ndarray, weekend: np.ndarray, shared: np.ndarray,
                volume: np.ndarray) -> Iterator[_AgentDay]:
    """Every agent's days, with what both designs draw for them in the same order: the
    agent's noise, then per day its volume (the caller's draws for a day come in between,
    as they always did: a generator keeps that order)."""
    for agent in ["agent", *(f"peer-{k}" for k in range(t.peers))]:
        treated = agent == "agent"
        base = BASE_RATE - (0.05 if not treated else 0.0)
        day_noise, lat_noise = _agent_noise(rng, t, len(days))
        for i, day in enumerate(days):
            off = int(offsets[i])
            p = base + day_noise[i] + shared[i] + t.drift * off + (t.weekend if weekend[i]
                                                                 else 0.0)
            n_day = max(int(rng.poisson(per_day * volume[i])), 1)
            yield _AgentDay(agent, treated, i, day, off, p, n_day,
                            math.log(800) + lat_noise[i])


def simulate(rng: np.random.Generator, t: Traffic, per_day: int, effect: float) -> World:
    days, offsets, weekend, shared, incident_days, volume = _calendar(rng, t)
    buckets: list[list[Bucket]] = [[] for _ in days]
    errors: list[list[ErrorDay]] = [[] for _ in days]
    segments: list[list[SegmentDay]] = [[] for _ in days]
    for agent, treated, i, day, off, p, n_day, lat in _agent_days(
            rng, t, per_day, days, offsets, weekend, shared, volume):
        # Two segments: easy (+5 pts) and hard (-10 pts), half each; more hard after.
        hard_share = 0.5 + (t.mix_shift if off > 0 else 0.0)
        # The deploy day: the morning runs the base, the afternoon the new version.
        parts = [("v1", 0.0, n_day)] if off < 0 or not treated else (
            [("v2", effect, n_day)] if off > 0 else
            [("v1", 0.0, n_day // 2), ("v2", effect, n_day - n_day // 2)])
        if not treated:
            parts = [("p1", 0.0, n_day)]
        for version, eff, n in parts:
            if n <= 0:
                continue
            n_hard = int(rng.binomial(n, hard_share))
            p_easy = min(max(p + eff + (0.05 if t.mix_shift else 0.0), 0.0), 1.0)
            p_hard = min(max(p + eff - (0.10 if t.mix_shift else 0.0), 0.0), 1.0)
            ok_hard = int(rng.binomial(n_hard, p_hard))
            ok_easy = int(rng.binomial(n - n_hard, p_easy))
            ok = ok_hard + ok_easy
            failures = n - ok
            if off in incident_days:
                hit = int(rng.binomial(ok, 0.2))  # the outage fails a fifth of the rest
                ok -= hit
                errors[i].append(ErrorDay(agent, version, day, "error", *INCIDENT, hit,
                                          day, day, "Error code: 529 - overloaded_error: "
                                          "Overloaded"))
            split = rng.multinomial(failures, [u[2] for u in USUAL])
            for (etype, template, _), c in zip(USUAL, split, strict=True):
                if c:
                    errors[i].append(ErrorDay(agent, version, day, "error", etype,
                                              template, int(c), day, day, template))
            mean = lat
            # n log-latency draws: their sum and sum of squares (sd 0.4 within a day).
            s = mean * n + rng.normal(0, 0.4 * math.sqrt(n))
            ss = 0.16 * rng.chisquare(max(n - 1, 1)) + s * s / n
            buckets[i].append(Bucket(agent, version, day + timedelta(hours=12 if
                                                                     version == "v2"
                                                                     and off == 0
                                                                     else 0),
                                     n, ok, 0, n - ok, latency_n=n, log_latency_sum=s,
                                     log_latency_sumsq=ss))
            if t.segment_column:
                segments[i] += [
                    SegmentDay(agent, version, day, "hard", n_hard, ok_hard),
                    SegmentDay(agent, version, day, "easy", n - n_hard,
                               ok - ok_hard),
                ]
    return World(tuple(tuple(b) for b in buckets), tuple(tuple(e) for e in errors),
                 tuple(tuple(s) for s in segments), days[0])


def snapshot_at(world: World, look: int) -> MetricsSnapshot:
    """What a run at the end of day `look` after the deploy day would ingest."""
    upto = (DAY0 - world.first_day).days + look + 1
    buckets = tuple(b for day in world.buckets[:upto] for b in day)
    return MetricsSnapshot(
        sources=(), rows_read=0, rows_used=0, duplicates=0, bad_rows=0, bad_by_reason={},
        bad_samples=(), has_version=True, oldest=world.first_day,
        newest=DAY0 + timedelta(days=look, hours=23, minutes=59), window_days=28, versions=(),
        buckets=buckets, error_days=tuple(e for day in world.errors[:upto] for e in day),
        segment_days=tuple(s for day in world.segments[:upto] for s in day))


def seeds_rule(world: World, look: int) -> str | None:
    """The source documents' rule: the new version's days against as many before."""
    start = (DAY0 - world.first_day).days
    new = [b for day in world.buckets[start + 1:start + look + 1] for b in day
           if b.agent_id == "agent"]
    old = [b for day in world.buckets[max(start - look, 0):start] for b in day
           if b.agent_id == "agent"]
    n_new, n_old = sum(b.executions for b in new), sum(b.executions for b in old)
    if n_new + n_old < 200 or not n_new or not n_old:
        return None
    delta = sum(b.successes for b in new) / n_new - sum(b.successes for b in old) / n_old
    if abs(delta) > 0.02:
        return "success" if delta > 0 else "regression"
    return None


@dataclass(frozen=True)
class Outcome:
    recorded: str | None  # the first final decision
    recorded_day: int | None
    alarmed: bool  # some look said success or regression
    seeds: str | None
    seeds_day: int | None
    rollback: bool  # the recorded result recommended a rollback
    srm: bool = False  # canaries: some look reported a sample-ratio mismatch
    recorded_share: float | None = None  # canaries: the stage's share at the recorded result


def experiment(seed: int, t: Traffic, per_day: int, effect: float, looks: int,
               expected: float) -> Outcome:
    rng = np.random.default_rng(seed)
    world = simulate(rng, t, per_day, effect)
    policy = MeasurePolicy()
    dep = Deployment("p-1", "agent", "v1", "v2", DEPLOY, "sha", "v2", None, None, expected,
                     controls=tuple(f"peer-{i}" for i in range(t.peers)))
    recorded = recorded_day = seeds = seeds_day = None
    alarmed = rollback = False
    for look in range(1, looks + 1):
        if seeds is None:
            seeds = seeds_rule(world, look)
            seeds_day = look if seeds else None
        result = measure(dep, snapshot_at(world, look), policy)
        decision = result.comparison.decision
        if recorded is None and result.state == "completed":
            recorded, recorded_day = decision, look
            rollback = result.recommend_rollback
        alarmed = alarmed or decision in ("success", "regression")
        if alarmed and recorded is not None and seeds is not None:
            break
        if effect and recorded is not None and seeds is not None:
            break
    return Outcome(recorded, recorded_day, alarmed, seeds, seeds_day, rollback)


# --- Canaries: both versions serve at once after the deploy, request keys split by share ---

# Executions by hour of day (UTC): a peak at 14:00, a trough (a fifth of it) at 02:00.
DIURNAL = 0.6 + 0.4 * np.cos(2 * np.pi * (np.arange(24) - 14) / 24)
DIURNAL = DIURNAL / DIURNAL.sum()


@dataclass(frozen=True)
class Plan:
    """A canary's stages: (the candidate's share of request keys, hours after the deploy the
    stage starts), in order. The first stage starts at the deploy (the merge)."""

    stages: tuple[tuple[float, int], ...]

    def stage_at(self, when: datetime) -> tuple[float, datetime]:
        """(share, since) of the stage a run at `when` reads from the rollout file."""
        share, since = self.stages[0][0], DEPLOY
        for s, hours in self.stages:
            if DEPLOY + timedelta(hours=hours) <= when:
                share, since = s, DEPLOY + timedelta(hours=hours)
        return share, since

    def share_at(self, when: datetime) -> float:
        return 0.0 if when < DEPLOY else self.stage_at(when)[0]


CANARY_PLANS: dict[str, Plan] = {
    "50 % from the deploy": Plan(((0.5, 0),)),
    "5 → 25 → 50 %, 24 h stages": Plan(((0.05, 0), (0.25, 24), (0.5, 48))),
    # Not run unless --plan names it: stages as daily runs move them, each advance PR (a
    # stage has run canary_stage_hours = 24 h by a run at the end of a day) merged at 10:00
    # the next morning. Its 5 % and 25 % stages get judged (24 h past their grace by a run).
    "5 → 25 → 50 %, at the runs' pace": Plan(((0.05, 0), (0.25, 46), (0.5, 94))),
}
DEFAULT_PLANS = ("50 % from the deploy", "5 → 25 → 50 %, 24 h stages")
CANARY_LEVELS = (2000,)
# The proposal's expected delta in the canary cells: min_detectable_effect for A/A and +2
# (the latest "no effect" stop), the true effect for +3, 0.03 for -5 (a proposal that
# promised +3 and broke something).
CANARY_EXPECTED = {0.0: 0.02, 0.02: 0.02, 0.03: 0.03, -0.05: 0.03}


def _serve(rng: np.random.Generator, t: Traffic, agent: str, version: str, day: datetime,
           hours: list[datetime], n: np.ndarray, p: float, hard_share: np.ndarray,
           incident: bool, lat_mean: float, out: tuple[list[Bucket], list[ErrorDay],
                                                      list[SegmentDay]]) -> None:
    """One version of one agent on one day, `n[k]` executions in hour `hours[k]` (one
    element: a daily bucket at midnight): hourly buckets, daily failure counts and
    segments."""
    buckets, errors, segments = out
    n_hard = rng.binomial(n, hard_share)
    p_easy = min(max(p + (0.05 if t.mix_shift else 0.0), 0.0), 1.0)
    p_hard = min(max(p - (0.10 if t.mix_shift else 0.0), 0.0), 1.0)
    ok_hard = rng.binomial(n_hard, p_hard)
    ok_easy = rng.binomial(n - n_hard, p_easy)
    failures = int((n - ok_hard - ok_easy).sum())
    if incident:  # the outage fails a fifth of the rest, in both segments
        hit_hard, hit_easy = rng.binomial(ok_hard, 0.2), rng.binomial(ok_easy, 0.2)
        ok_hard, ok_easy = ok_hard - hit_hard, ok_easy - hit_easy
        errors.append(ErrorDay(agent, version, day, "error", *INCIDENT,
                               int(hit_hard.sum() + hit_easy.sum()), day, day,
                               "Error code: 529 - overloaded_error: Overloaded"))
    split = rng.multinomial(failures, [u[2] for u in USUAL])
    for (etype, template, _), c in zip(USUAL, split, strict=True):
        if c:
            errors.append(ErrorDay(agent, version, day, "error", etype, template, int(c), day,
                                   day, template))
    ok = ok_hard + ok_easy
    # n log-latency draws per hour: their sum and sum of squares (sd 0.4 within a day).
    s = lat_mean * n + rng.normal(0, 1, len(n)) * 0.4 * np.sqrt(n)
    ss = 0.16 * rng.chisquare(np.maximum(n - 1, 1)) * (n > 1) + s * s / np.maximum(n, 1)
    for hour, c, good, total, squares in zip(hours, n.tolist(), ok.tolist(), s.tolist(),
                                             ss.tolist(), strict=True):
        if c:
            buckets.append(Bucket(agent, version, hour, c, good, 0, c - good, latency_n=c,
                                  log_latency_sum=total, log_latency_sumsq=squares))
    if t.segment_column and n.sum():
        segments += [
            SegmentDay(agent, version, day, "hard", int(n_hard.sum()), int(ok_hard.sum())),
            SegmentDay(agent, version, day, "easy", int((n - n_hard).sum()),
                       int(ok_easy.sum())),
        ]


def simulate_canary(rng: np.random.Generator, t: Traffic, per_day: int, effect: float,
                    plan: Plan) -> World:
    """The departures of `simulate`, but from the deploy on both versions serve every hour:
    the day's executions spread over its hours (DIURNAL), each hour's split binomially by
    the stage's share (random request keys: the segment mix, the day's noise, weekends,
    drift, incidents and shared shocks hit both sides alike), v2 with `effect` added. Base
    days (and the peers) stay daily buckets: the comparison never reads them."""
    days, offsets, weekend, shared, incident_days, volume = _calendar(rng, t)
    parts: list[tuple[list[Bucket], list[ErrorDay], list[SegmentDay]]] = [
        ([], [], []) for _ in days]
    for agent, treated, i, day, off, p, n_day, lat in _agent_days(
            rng, t, per_day, days, offsets, weekend, shared, volume):
        incident = off in incident_days
        if not treated or off < 0:
            _serve(rng, t, agent, "v1" if treated else "p1", day, [day], np.array([n_day]),
                   p, np.array([0.5]), incident, lat, parts[i])
            continue
        hours = [day + timedelta(hours=h) for h in range(24)]
        counts = rng.multinomial(n_day, DIURNAL)
        n_new = rng.binomial(counts, [plan.share_at(h) for h in hours])
        hard = np.array([0.5 + (t.mix_shift if h >= DEPLOY else 0.0) for h in hours])
        for version, eff, n in (("v1", 0.0, counts - n_new), ("v2", effect, n_new)):
            _serve(rng, t, agent, version, day, hours, n, p + eff, hard, incident, lat,
                   parts[i])
    return World(tuple(tuple(b) for b, _, _ in parts), tuple(tuple(e) for _, e, _ in parts),
                 tuple(tuple(s) for _, _, s in parts), days[0])


def canary_experiment(seed: int, t: Traffic, per_day: int, effect: float, looks: int,
                      expected: float, plan: Plan) -> Outcome:
    """Daily looks at a canary: each run's Deployment carries the stage the rollout file
    says at that time (share, since, the plan's number of stages)."""
    rng = np.random.default_rng(seed)
    world = simulate_canary(rng, t, per_day, effect, plan)
    policy = MeasurePolicy()
    merged = Deployment("p-1", "agent", "v1", "v2", DEPLOY, "sha", "v2", None, None, expected,
                        controls=tuple(f"peer-{i}" for i in range(t.peers)),
                        canary_stages=len(plan.stages))
    recorded = recorded_day = recorded_share = None
    alarmed = rollback = srm = False
    for look in range(1, looks + 1):
        snapshot = snapshot_at(world, look)
        assert snapshot.newest is not None
        share, since = plan.stage_at(snapshot.newest)
        result = measure(replace(merged, canary_share=share, canary_since=since), snapshot,
                         policy)
        decision = result.comparison.decision
        srm = srm or "sample-ratio" in (result.comparison.drift or "")
        if recorded is None and result.state == "completed":
            recorded, recorded_day, recorded_share = decision, look, share
            rollback = result.recommend_rollback
        alarmed = alarmed or decision in ("success", "regression")
        if recorded is not None and (alarmed or effect):
            break
    return Outcome(recorded, recorded_day, alarmed, None, None, rollback, srm, recorded_share)



def _batch(args: tuple[int, Traffic, int, float, int, float, int, Plan | None]
           ) -> list[Outcome]:
    start, t, per_day, effect, looks, expected, count, plan = args
    if plan is not None:
        return [canary_experiment(start + i, t, per_day, effect, looks, expected, plan)
                for i in range(count)]
    return [experiment(start + i, t, per_day, effect, looks, expected) for i in range(count)]


def submit_cell(pool: ProcessPoolExecutor, seed: int, t: Traffic, per_day: int,
                effect: float, looks: int, sims: int, jobs: int, expected: float = 0.03,
                plan: Plan | None = None) -> list[Future[list[Outcome]]]:
    chunk = math.ceil(sims / (jobs * 4))
    return [pool.submit(_batch, (seed + s, t, per_day, effect, looks, expected,
                                 min(chunk, sims - s), plan))
            for s in range(0, sims, chunk)]


def run_cell(pool: ProcessPoolExecutor, seed: int, t: Traffic, per_day: int, effect: float,
             looks: int, sims: int, jobs: int) -> list[Outcome]:
    return [o for f in submit_cell(pool, seed, t, per_day, effect, looks, sims, jobs)
            for o in f.result()]


def wilson(k: int, n: int) -> tuple[float, float]:
    if n == 0:
        return 0.0, 1.0
    z = 1.959964
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(centre - half, 0.0), min(centre + half, 1.0)


def pct(k: int, n: int) -> str:
    lo, hi = wilson(k, n)
    return f"{k / n:5.1%} ({lo:.1%}–{hi:.1%})"


def median_day(days: list[int]) -> str:
    return f"{statistics.median(days):g}" if days else "—"


def before_after_table(pool: ProcessPoolExecutor, args: argparse.Namespace,
                       chosen: dict[str, Traffic], levels: list[int]) -> None:
    print(f"base success rate {BASE_RATE:.0%}, {BASE_DAYS} days of base history, a Friday-noon "
          f"deploy, 30 daily looks; {args.sims} experiments per cell; 95 % Wilson intervals\n")
    print("| departure | executions/day | A/A recorded | A/A any look | seeds A/A | "
          "+3 pts: success ≤ 14 d (median day) | seeds +3 | -5 pts: caught (median day) | "
          "seeds -5 |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, traffic in chosen.items():
        # Seeds follow the departure's place in DEPARTURES: --only reproduces its rows.
        index = list(DEPARTURES).index(name)
        for level in levels:
            seed = args.seed * 1_000_003 + index * 100_019 + level
            aa = run_cell(pool, seed, traffic, level, 0.0, LOOKS, args.sims, args.jobs)
            up = run_cell(pool, seed + 7, traffic, level, 0.03, 14, args.sims, args.jobs)
            down = run_cell(pool, seed + 13, replace(traffic), level, -0.05, LOOKS,
                            args.sims, args.jobs)
            n = len(aa)
            rec = sum(o.recorded in ("success", "regression") for o in aa)
            anyl = sum(o.alarmed for o in aa)
            seeds = sum(o.seeds is not None for o in aa)
            wins = [o.recorded_day for o in up if o.recorded == "success"
                    and o.recorded_day is not None]
            s_wins = [o.seeds_day for o in up if o.seeds == "success"
                      and o.seeds_day is not None]
            caught = [o.recorded_day for o in down if o.recorded == "regression"
                      and o.recorded_day is not None]
            s_caught = [o.seeds_day for o in down if o.seeds == "regression"
                        and o.seeds_day is not None]
            mark = " (no target)" if name in NO_TARGET else ""
            print(f"| {name}{mark} | {level:,} | {pct(rec, n)} | {pct(anyl, n)} | "
                  f"{pct(seeds, n)} | {len(wins) / len(up):.1%} ({median_day(wins)}) | "
                  f"{len(s_wins) / len(up):.1%} ({median_day(s_wins)}) | "
                  f"{len(caught) / len(down):.1%} ({median_day(caught)}) | "
                  f"{len(s_caught) / len(down):.1%} ({median_day(s_caught)}) |", flush=True)


def won(outcomes: list[Outcome], want: str) -> list[int]:
    """The recorded days of the outcomes whose recorded result is `want`."""
    return [o.recorded_day for o in outcomes if o.recorded == want
            and o.recorded_day is not None]


def canary_table(pool: ProcessPoolExecutor, args: argparse.Namespace,
                 chosen: dict[str, Traffic], levels: list[int], plans: dict[str, Plan]
                 ) -> None:
    print(f"\nCanary: both versions serve from the deploy (Friday noon), hourly buckets, "
          f"measure() at 30 daily looks; {args.sims} experiments per cell; 95 % Wilson "
          "intervals. Proposal's expected delta: 0.02 (A/A, +2), 0.03 (+3, -5).\n")
    print("| plan | departure | executions/day | A/A recorded | A/A any look | "
          "+2 pts: success ≤ 14 d (median day) | +3 pts: success ≤ 14 d (median day) | "
          "-5 pts: caught (median day) | A/A SRM flagged |")
    print("|---|---|---|---|---|---|---|---|---|")
    # Every cell's tasks are queued before the first row is read: the workers never wait
    # on the printing (the rows come out in order all the same).
    rows = []
    for plan_name, plan in plans.items():
        for name, traffic in chosen.items():
            index = list(DEPARTURES).index(name)
            for level in levels:
                seed = (args.seed * 1_000_003 + index * 100_019 + level
                        + (list(CANARY_PLANS).index(plan_name) + 1) * 10_000_019)
                rows.append((plan_name, name, level, {
                    effect: submit_cell(pool, seed + k, traffic, level, effect, looks,
                                        args.sims, args.jobs, CANARY_EXPECTED[effect], plan)
                    for k, effect, looks in ((0, 0.0, LOOKS), (5, 0.02, 14), (7, 0.03, 14),
                                             (13, -0.05, LOOKS))}))
    for plan_name, name, level, futures in rows:
        cells = {effect: [o for f in fs for o in f.result()]
                 for effect, fs in futures.items()}
        aa = cells[0.0]
        n = len(aa)
        rec = sum(o.recorded in ("success", "regression") for o in aa)
        anyl = sum(o.alarmed for o in aa)
        srm = sum(o.srm for o in aa)

        up2, up3 = won(cells[0.02], "success"), won(cells[0.03], "success")
        caught = won(cells[-0.05], "regression")
        mark = " (no column: a canary does not need it)" if name in NO_TARGET else ""
        print(f"| {plan_name} | {name}{mark} | {level:,} | "
              f"{pct(rec, n)} | {pct(anyl, n)} | "
              f"{pct(len(up2), len(cells[0.02]))} ({median_day(up2)}) | "
              f"{len(up3) / len(cells[0.03]):.1%} ({median_day(up3)}) | "
              f"{len(caught) / len(cells[-0.05]):.1%} ({median_day(caught)}) | "
              f"{srm / n:.1%} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sims", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--only", action="append", help="departure name(s) to run")
    parser.add_argument("--levels", type=int, nargs="*",
                        help=f"executions/day (default: {', '.join(map(str, LEVELS))} "
                        f"before/after, {', '.join(map(str, CANARY_LEVELS))} canary)")
    parser.add_argument("--design", choices=("before-after", "canary", "both"),
                        default="both")
    parser.add_argument("--plan", action="append", choices=list(CANARY_PLANS),
                        help="canary plan(s) to run (default: the first two)")
    args = parser.parse_args()
    start = time.perf_counter()
    chosen = {k: v for k, v in DEPARTURES.items() if not args.only or k in args.only}
    plans = {k: v for k, v in CANARY_PLANS.items() if k in (args.plan or DEFAULT_PLANS)}
    with ProcessPoolExecutor(args.jobs) as pool:
        if args.design in ("before-after", "both"):
            before_after_table(pool, args, chosen, args.levels or list(LEVELS))
        if args.design in ("canary", "both"):
            canary_table(pool, args, chosen, args.levels or list(CANARY_LEVELS), plans)
    print(f"\n({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
