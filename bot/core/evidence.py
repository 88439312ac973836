"""From a metrics snapshot to the day-level evidence about one deploy (bot/core/decision.py).

Days are UTC calendar days. The deploy day is left out on both sides: part of it ran the
base version, part the new one, and replicas pick up a merge over minutes to hours. The
newest day counts once it is complete (the export reaches its last hour). Incident days
(bot/core/incidents.py) are left out of every series, the agent's and its controls'.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from bot.core import incidents
from bot.core.daily import Day
from bot.core.decision import Evidence, Series
from bot.core.metrics import COST_UNIT, Bucket, MetricsSnapshot, bin_value
from bot.core.model import MeasurePolicy, is_safe_id
from bot.core.stats import Arm, SegmentMix

# Day-to-day standard deviations assumed while the base history is too short to estimate
# them: of mean log latency and log mean cost (5 %), and of log mean quality (2 %).
LATENCY_PRIOR_S2 = 0.05**2
COST_PRIOR_S2 = 0.05**2
QUALITY_PRIOR_S2 = 0.02**2
# Segments below this share of the base traffic are pooled into one.
MIN_SEGMENT_SHARE = 0.02
OTHER_SEGMENT = "(other)"
# A control must have traffic on this share of the days on each side.
CONTROL_COVERAGE = 0.9
# The new version counts as stopped after this many complete days without traffic.
STOPPED_DAYS = 7


def last_complete_day(newest: datetime | None) -> date | None:
    if newest is None:
        return None
    return newest.date() if newest.hour >= 23 else newest.date() - timedelta(days=1)


def first_complete_day(oldest: datetime | None) -> date | None:
    """The export's first whole day: one that starts after midnight holds only the evening
    and, weighted as a day, its few executions would inflate the day-to-day spread."""
    if oldest is None:
        return None
    return oldest.date() if oldest.hour == 0 else oldest.date() + timedelta(days=1)


@dataclass(frozen=True)
class Window:
    deploy_day: date
    pre_first: date
    post_last: date  # before post_first when no complete day has followed the deploy day
    last_complete: date  # the newest complete day of the export
    replaced: date | None = None  # the day the new version stopped (git, without versions)

    @property
    def pre_last(self) -> date:
        return self.deploy_day - timedelta(days=1)

    @property
    def post_first(self) -> date:
        return self.deploy_day + timedelta(days=1)

    def days(self) -> list[date]:
        span = (self.post_last - self.pre_first).days + 1
        return [self.pre_first + timedelta(days=k) for k in range(max(span, 0))
                if self.pre_first + timedelta(days=k) != self.deploy_day]


def window(merged_at: datetime, newest: datetime | None, policy: MeasurePolicy,
           base_since: datetime | None = None, new_until: datetime | None = None,
           oldest: datetime | None = None) -> Window:
    deploy_day = merged_at.date()
    first = deploy_day - timedelta(days=policy.base_days)
    whole = first_complete_day(oldest)
    if whole is not None:
        first = max(first, whole)
    if base_since is not None:
        first = max(first, base_since.date() + timedelta(days=1))
    complete = last_complete_day(newest) or deploy_day
    last = complete
    if new_until is not None:
        last = min(last, new_until.date() - timedelta(days=1))
    return Window(deploy_day, first, max(last, deploy_day), max(complete, deploy_day),
                  new_until.date() if new_until is not None else None)


@dataclass
class _Sums:
    n: int = 0
    ok: int = 0
    lat_n: int = 0
    lat: float = 0.0
    lat2: float = 0.0
    q_n: int = 0
    q: float = 0.0
    q2: float = 0.0
    cost_n: int = 0
    cost: float = 0.0
    cost2: float = 0.0

    def add(self, b: Bucket) -> None:
        self.n += b.executions
        self.ok += b.successes
        self.lat_n += b.latency_n
        self.lat += b.log_latency_sum
        self.lat2 += b.log_latency_sumsq
        self.cost_n += b.cost_n
        self.cost += b.cost_sum
        self.cost2 += b.cost_sumsq
        if b.quality_sq_n:
            self.q_n += b.quality_sq_n
            self.q += b.quality_sum
            self.q2 += b.quality_sumsq


def _per_day(buckets: Iterable[Bucket], version: str | None, days: set[date]
             ) -> dict[date, _Sums]:
    out: dict[date, _Sums] = defaultdict(_Sums)
    for b in buckets:
        day = b.hour.date()
        if day in days and (version is None or b.prompt_version == version):
            out[day].add(b)
    return {d: s for d, s in out.items() if s.n > 0}


def _pooled(days: Iterable[_Sums]) -> float:
    items = list(days)
    n = sum(s.n for s in items)
    ok = sum(s.ok for s in items)
    if not n:
        return 0.5
    return min(max(ok / n, 0.5 / n), 1 - 0.5 / n)


def _rate_days(per_day: dict[date, _Sums]) -> tuple[Day, ...]:
    p = _pooled(per_day.values())
    return tuple(Day(d, s.ok / s.n, p * (1 - p) / s.n, s.n) for d, s in sorted(per_day.items()))


def _mean_days(per_day: dict[date, _Sums], kind: str) -> tuple[Day, ...]:
    """Mean log latency, or the log of mean quality or mean cost, per day with its sampling
    variance (the delta method for the logs of means)."""
    out = []
    for d, s in sorted(per_day.items()):
        n, total, squares = {"latency": (s.lat_n, s.lat, s.lat2), "quality": (s.q_n, s.q, s.q2),
                             "cost": (s.cost_n, s.cost, s.cost2)}[kind]
        if n < 2:
            continue
        mean = total / n
        var = max(squares - n * mean * mean, 0.0) / (n - 1)
        if kind == "latency":
            out.append(Day(d, mean, var / n, n))
        elif mean > 0:
            out.append(Day(d, math.log(mean), var / (n * mean * mean), n))
    return tuple(out)


def _cost_days(snapshot: MetricsSnapshot, agent: str, versions: tuple[str | None, str | None],
               sides: tuple[set[date], set[date]]) -> tuple[tuple[Day, ...], tuple[Day, ...]]:
    """Log of the daily mean cost, each execution capped at the 99.9th percentile of both
    sides (one runaway call cannot decide)."""
    bins: list[dict[date, dict[int, int]]] = [defaultdict(dict), defaultdict(dict)]
    for h in snapshot.histograms_of(agent):
        if h.metric != "cost":
            continue
        day = h.day.date()
        for side in (0, 1):
            if day in sides[side] and (versions[side] is None
                                       or h.prompt_version == versions[side]):
                bins[side][day][h.index] = bins[side][day].get(h.index, 0) + h.count
    both: dict[int, int] = defaultdict(int)
    for side_bins in bins:
        for day_bins in side_bins.values():
            for b, c in day_bins.items():
                both[b] += c
    total = sum(both.values())
    if total < 4:
        return (), ()
    seen, cap = 0, max(both)
    for b in sorted(both):
        seen += both[b]
        if seen >= 0.999 * total:
            cap = b
            break
    out: list[tuple[Day, ...]] = []
    for side_bins in bins:
        days = []
        for d, day_bins in sorted(side_bins.items()):
            n = sum(day_bins.values())
            if n < 2:
                continue
            values = [(bin_value(min(b, cap), COST_UNIT), c) for b, c in day_bins.items()]
            mean = sum(v * c for v, c in values) / n
            var = sum(c * (v - mean) ** 2 for v, c in values) / (n - 1)
            if mean > 0:
                days.append(Day(d, math.log(mean), var / (n * mean * mean), n))
        out.append(tuple(days))
    return out[0], out[1]


def _segment_days(snapshot: MetricsSnapshot, agent: str,
                  versions: tuple[str | None, str | None],
                  sides: tuple[dict[date, _Sums], dict[date, _Sums]]
                  ) -> tuple[tuple[Day, ...], tuple[Day, ...], tuple[SegmentMix, ...],
                             list[str]] | None:
    """Success rates re-weighted to the base's segment mix (post-stratification), the mix on
    each side, and notes; None when the export has no segment column for this agent."""
    rows = snapshot.segments_of(agent)
    if not rows:
        return None
    counts: list[dict[date, dict[str, list[int]]]] = [defaultdict(dict), defaultdict(dict)]
    for r in rows:
        day = r.day.date()
        for side in (0, 1):
            if day in sides[side] and (versions[side] is None
                                       or r.prompt_version == versions[side]):
                cell = counts[side][day].setdefault(r.segment, [0, 0])
                cell[0] += r.executions
                cell[1] += r.successes
    # Every day must be covered: a column that starts halfway through the export (or a
    # file without it) would silently cut the history down to the days it covers.
    for side in (0, 1):
        for day, sums in sides[side].items():
            if sum(c[0] for c in counts[side].get(day, {}).values()) < sums.n:
                return (), (), (), ["the segment column does not cover every day of the "
                                    f"comparison (not {day.isoformat()}): not re-weighted"]
    base_total: dict[str, int] = defaultdict(int)
    for per_segment in counts[0].values():
        for seg, (n, _) in per_segment.items():
            base_total[seg] += n
    grand = sum(base_total.values())
    if not grand:
        return None
    small = {s for s, n in base_total.items() if n < MIN_SEGMENT_SHARE * grand}

    def name(seg: str) -> str:
        return OTHER_SEGMENT if seg in small else seg

    merged: list[dict[date, dict[str, list[int]]]] = []
    for side_counts in counts:
        out: dict[date, dict[str, list[int]]] = {}
        for day, per_segment in side_counts.items():
            cells: dict[str, list[int]] = {}
            for seg, (n, ok) in per_segment.items():
                cell = cells.setdefault(name(seg), [0, 0])
                cell[0] += n
                cell[1] += ok
            out[day] = cells
        merged.append(out)
    totals: list[dict[str, list[int]]] = []
    for side_cells in merged:
        t: dict[str, list[int]] = {}
        for cells in side_cells.values():
            for seg, (n, ok) in cells.items():
                cell = t.setdefault(seg, [0, 0])
                cell[0] += n
                cell[1] += ok
        totals.append(t)
    notes = []
    # A segment only one side has cannot be compared: the weights are shared out among the
    # others, and the result says so.
    one_sided = sorted(s for s in set(totals[0]) | set(totals[1])
                       if not (totals[0].get(s, [0])[0] and totals[1].get(s, [0])[0]))
    if one_sided:
        share = sum(totals[1].get(s, [0])[0] for s in one_sided) / max(
            sum(c[0] for c in totals[1].values()), 1)
        notes.append(f"segment(s) seen on one side of the deploy only ({len(one_sided)}, "
                     f"{share:.0%} of the new version's traffic) are left out of the "
                     "re-weighted comparison")
    kept = {s: n for s, n in totals[0].items() if s not in one_sided}
    kept_total = sum(c[0] for c in kept.values())
    if not kept_total:
        return (), (), (), [*notes, "no segment on both sides: not re-weighted"]
    weights = {s: c[0] / kept_total for s, c in kept.items()}
    series: list[tuple[Day, ...]] = []
    for side_cells, t in zip(merged, totals, strict=True):
        pooled = {s: min(max(c[1] / c[0], 0.5 / c[0]), 1 - 0.5 / c[0]) if c[0] else 0.5
                  for s, c in t.items()}
        days = []
        for day, cells in sorted(side_cells.items()):
            # A segment without traffic that day stands in with its rate over the side.
            y = sum(w * (cells[s][1] / cells[s][0] if cells.get(s, [0])[0] else pooled[s])
                    for s, w in weights.items())
            v = sum(w * w * pooled[s] * (1 - pooled[s])
                    / (cells[s][0] if cells.get(s, [0])[0] else 1)
                    for s, w in weights.items())
            days.append(Day(day, y, v, sum(c[0] for c in cells.values())))
        series.append(tuple(days))
    segments = sorted(set(totals[0]) | set(totals[1]), key=lambda s: (-weights.get(s, 0.0), s))
    n_base = sum(c[0] for c in totals[0].values()) or 1
    n_new = sum(c[0] for c in totals[1].values()) or 1

    def rate(t: dict[str, list[int]], seg: str) -> float | None:
        n, ok = t.get(seg, [0, 0])
        return ok / n if n else None

    table = tuple(SegmentMix(seg, totals[0].get(seg, [0])[0] / n_base,
                             totals[1].get(seg, [0])[0] / n_new, rate(totals[0], seg),
                             rate(totals[1], seg)) for seg in segments)
    return series[0], series[1], table, notes


def _peer_days(snapshot: MetricsSnapshot, controls: Sequence[str], pre: set[date],
               post: set[date]) -> dict[date, tuple[float, float]]:
    """The unchanged agents' success rate per day, each against its own base-period level on
    that weekday (so a peer missing a day cannot move the mean by its level), averaged over
    the peers present, with its sampling variance."""
    days = pre | post
    per_agent = [_per_day(snapshot.buckets_of(a), None, days) for a in controls]
    levels: list[dict[int, float]] = []
    for sums in per_agent:
        by_weekday: dict[int, list[float]] = defaultdict(list)
        for d, x in sums.items():
            if d in pre:
                by_weekday[d.weekday()].append(x.ok / x.n)
        overall = [r for rates in by_weekday.values() for r in rates]
        mean = sum(overall) / len(overall) if overall else 0.0
        levels.append({w: sum(by_weekday[w]) / len(by_weekday[w]) if by_weekday.get(w)
                       else mean for w in range(7)})
    pooled = [_pooled(p.values()) for p in per_agent]
    out: dict[date, tuple[float, float]] = {}
    for day in days:
        present = [(p[day], q, lv[day.weekday()])
                   for p, q, lv in zip(per_agent, pooled, levels, strict=True) if day in p]
        if not present:
            continue
        k = len(present)
        out[day] = (sum(x.ok / x.n - lv for x, _, lv in present) / k,
                    sum(q * (1 - q) / x.n for x, q, _ in present) / (k * k))
    return out


def stable_peers(snapshot: MetricsSnapshot, agent: str, candidates: Iterable[str] | None,
                 win: Window) -> tuple[str, ...]:
    """Other agents fit to be controls: no version change in the window (git vouches for
    `candidates`; with a version column the export must agree), traffic on nearly every
    day the agent has on each side."""
    names = set(candidates) if candidates is not None else (
        {b.agent_id for b in snapshot.buckets} if snapshot.has_version else set())
    # Agent ids from the export end up in the results: only well-formed ones qualify.
    names = {n for n in names if is_safe_id(n)}
    # Coverage is counted on the days the agent itself has traffic (an export may start
    # after the base window does).
    own = {b.hour.date() for b in snapshot.buckets_of(agent) if b.executions}
    pre = {d for d in win.days() if d < win.deploy_day} & own
    post = {d for d in win.days() if d > win.deploy_day} & own
    out = []
    for other in sorted(names - {agent}):
        versions: set[str | None] = set()
        seen: set[date] = set()
        for b in snapshot.buckets_of(other):
            day = b.hour.date()
            if win.pre_first <= day <= win.post_last and b.executions:
                versions.add(b.prompt_version)
                seen.add(day)
        if snapshot.has_version and len(versions) > 1:
            continue
        if pre and post and len(seen & pre) >= CONTROL_COVERAGE * len(pre) \
                and len(seen & post) >= CONTROL_COVERAGE * len(post):
            out.append(other)
    return tuple(out)


def _stopped(win: Window, post: dict[date, _Sums], by_version: bool) -> str | None:
    if win.replaced is not None and win.replaced <= win.last_complete:
        return f"the new version was replaced on {win.replaced.isoformat()}"
    if by_version and post:
        last = max(post)
        if (win.last_complete - last).days >= STOPPED_DAYS:
            return f"the new version has served no traffic since {last.isoformat()}"
    return None


def gather(snapshot: MetricsSnapshot, agent: str, versions: tuple[str | None, str | None],
           win: Window, policy: MeasurePolicy, controls: Sequence[str]) -> Evidence:
    """The evidence about one deploy. `versions`: (base, new) to select by prompt_version,
    or (None, None) to attribute by time. `controls`: unchanged agents (`stable_peers`)."""
    all_days = win.days()
    executions: dict[tuple[str, date], int] = defaultdict(int)
    wanted = set(all_days)
    for b in snapshot.buckets:
        day = b.hour.date()
        if day in wanted:
            executions[(b.agent_id, day)] += b.executions
    found = incidents.find(snapshot.error_days, executions, [agent, *controls],
                           [d for d in all_days if d < win.deploy_day],
                           [d for d in all_days if d > win.deploy_day], controls,
                           policy.incident_share)
    excluded = {i.day for i in found}
    pre_days = {d for d in all_days if d < win.deploy_day and d not in excluded}
    post_days = {d for d in all_days if d > win.deploy_day and d not in excluded}
    mine = snapshot.buckets_of(agent)
    pre, post = _per_day(mine, versions[0], pre_days), _per_day(mine, versions[1], post_days)
    notes: list[str] = []
    segmented = _segment_days(snapshot, agent, versions, (pre, post))
    pre_rates, post_rates = _rate_days(pre), _rate_days(post)
    mix: tuple[SegmentMix, ...] = ()
    if segmented is not None:
        notes += segmented[3]
        if segmented[0]:
            pre_rates, post_rates, mix = segmented[0], segmented[1], segmented[2]
    success = Series("success rate", pre_rates, post_rates, policy.day_sd**2)
    peers = None
    if controls:
        means = _peer_days(snapshot, controls, set(pre), set(post))
        peers = Series("success rate",
                       tuple(Day(d, *means[d], 0) for d in sorted(means) if d in pre),
                       tuple(Day(d, *means[d], 0) for d in sorted(means) if d in post),
                       policy.day_sd**2)
    cost = _cost_days(snapshot, agent, versions, (set(pre), set(post)))
    # Without cost histograms (a daily form without its histogram rows) the mean comes
    # uncapped from the sums.
    capped = bool(cost[0] and cost[1])
    rails = [
        Series("latency", _mean_days(pre, "latency"), _mean_days(post, "latency"),
               LATENCY_PRIOR_S2),
        Series("cost", *cost, COST_PRIOR_S2) if capped else
        Series("cost (uncapped)", _mean_days(pre, "cost"), _mean_days(post, "cost"),
               COST_PRIOR_S2),
        Series("quality", _mean_days(pre, "quality"), _mean_days(post, "quality"),
               QUALITY_PRIOR_S2),
    ]
    return Evidence(
        success=success,
        peers=peers,
        controls=tuple(controls),
        guardrails=tuple(s for s in rails if s.pre and s.post),
        base=Arm(sum(s.n for s in pre.values()), sum(s.ok for s in pre.values())),
        new=Arm(sum(s.n for s in post.values()), sum(s.ok for s in post.values())),
        first_post_day=win.post_first if win.last_complete >= win.post_first else None,
        calendar_days=max((win.last_complete - win.post_first).days + 1, 0),
        incidents=tuple(found),
        segments=mix,
        stopped=_stopped(win, post, versions[1] is not None),
        notes=tuple(notes),
    )
