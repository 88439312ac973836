"""Plain data coming out of metrics ingest (bot/load/metrics.py), and what is derived from it.

Ingest returns sufficient statistics only: hourly counts and sums per agent and
version, daily log-binned histograms of latency and cost, and daily counts per
failure template. Every number the bot reports or decides on is computed from
these, so a decision costs the same at 10 M rows as at 10 K.
"""

from __future__ import annotations

import hashlib
import math
import sys
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass, fields
from datetime import date, datetime, timedelta
from functools import cached_property
from typing import Any

from bot.errors import Finding

# Histogram bins are 1/20 of a natural-log unit wide (about 5 %), so a percentile
# read from them is within about 2.5 % of the exact one.
BINS_PER_LN = 20
COST_UNIT = 1e-6  # costs are binned in micro-dollars
# A larger cost is binned as this one: divided by the unit it would overflow a double
# (a finite cost of 1e303 is no bad row). The bin's value, read back, is capped at the
# largest double anyway.
MAX_BINNED_COST = 1e294
# The latency-on-tokens fit reads a latency bin at exp((bin + 0.5) / 20), at most exp(345)
# (~1e150 ms): its sums of squares and products then stay finite for any real volume.
MAX_EXP = 345


# Why ingest leaves a per-execution row out, in the order it checks (a row's reason is the
# first that holds); `promptbot sql --bad-rows` counts rows in a warehouse by the same words,
# and the daily form's reader takes no other.
BAD_TIMESTAMP = "unparseable timestamp"
BAD_YEARS = "timestamp outside the years 1 to 9999"
BAD_AGENT = "missing agent_id"
BAD_STATUS = "unknown status"
NUMBER_COLUMNS = ("latency_ms", "input_tokens", "output_tokens", "cost_usd", "quality_score",
                  "retries")
BAD_NEGATIVE = ((("latency_ms",), "negative latency_ms"),
                (("input_tokens", "output_tokens"), "negative token count"),
                (("cost_usd",), "negative cost_usd"), (("retries",), "negative retries"))
BAD_INFINITE = "a number is not finite (inf/nan)"
# In the bad-row counts of the daily form: the extra copies of re-sent executions.
DUPLICATE = "duplicate"


def not_a_number(column: str) -> str:
    return f"{column} is not a number"


BAD_REASONS = (BAD_TIMESTAMP, BAD_YEARS, BAD_AGENT, BAD_STATUS,
               *(not_a_number(c) for c in NUMBER_COLUMNS), *(r for _, r in BAD_NEGATIVE),
               BAD_INFINITE)


def bin_of(value: float, unit: float = 1.0) -> int:
    return math.floor(math.log(max(value / unit, 1e-3)) * BINS_PER_LN)


# ln of the largest finite double: a bin at the top of the range (a latency of 1e308 ms is
# finite, so not a bad row) reads as the largest double, not an OverflowError.
_LN_MAX = math.log(sys.float_info.max)


def _exp(x: float) -> float:
    return math.exp(min(x, _LN_MAX))


def bin_value(index: int, unit: float = 1.0) -> float:
    return min(_exp((index + 0.5) / BINS_PER_LN) * unit, sys.float_info.max)


@dataclass(frozen=True)
class Moments:
    """Sums over executions that have latency and both token counts: enough for a least-
    squares fit of latency on input and output tokens (`bot.core.impact.latency_fit`).
    Ingest builds them per day from its latency histograms: latency is read as its bin's
    value (within ~2.5 %), so the fit costs the ingest pass three sums, not ten."""

    n: int = 0
    x1: float = 0.0  # input tokens
    x2: float = 0.0  # output tokens
    y: float = 0.0  # latency, ms
    x1x1: float = 0.0
    x2x2: float = 0.0
    x1x2: float = 0.0
    x1y: float = 0.0
    x2y: float = 0.0
    yy: float = 0.0

    def __add__(self, other: Moments) -> Moments:
        # Field by field: dataclasses.astuple deep-copies, ten times slower over 1,200 days.
        return Moments(*(getattr(self, f) + getattr(other, f) for f in _MOMENT_FIELDS))


_MOMENT_FIELDS = tuple(f.name for f in fields(Moments))


@dataclass(frozen=True)
class Bucket:
    """Sufficient statistics of one agent and version in one hour."""

    agent_id: str
    prompt_version: str | None
    hour: datetime
    executions: int
    successes: int
    timeouts: int
    errors: int = 0
    latency_n: int = 0
    log_latency_sum: float = 0.0
    log_latency_sumsq: float = 0.0
    cost_n: int = 0
    cost_sum: float = 0.0
    input_tokens_sum: float = 0.0
    output_tokens_sum: float = 0.0
    tokens_n: int = 0
    quality_n: int = 0
    quality_sum: float = 0.0
    cost_sumsq: float = 0.0
    # Rows with an output-token count; None: the same rows as `tokens_n` (input tokens).
    output_tokens_n: int | None = None
    quality_sumsq: float = 0.0
    quality_sq_n: int = 0  # scores whose squares are in quality_sumsq (0: the daily form)
    retries_n: int = 0  # executions with a retries count
    retries_sum: float = 0.0  # attempts beyond the first
    retried: int = 0  # executions retried at least once


# Not frozen: a year of 200 agents' histograms is millions of bins, and a frozen dataclass
# is made four times slower (each field through object.__setattr__). Nothing assigns to a
# bin's fields; the hash is the fields' as a frozen one's would be.
@dataclass(slots=True, unsafe_hash=True)
class HistBin:
    agent_id: str
    prompt_version: str | None
    day: datetime
    metric: str  # "latency" (ms), "cost" (micro-USD), or "fit" (one per day: `moments`)
    index: int
    count: int
    moments: Moments | None = None  # "fit" only: the day's latency-on-tokens sums


@dataclass(frozen=True)
class ErrorDay:
    agent_id: str
    prompt_version: str | None
    day: datetime
    status: str
    error_type: str
    template: str
    count: int
    first_seen: datetime
    last_seen: datetime
    example: str  # one real message, untrusted: never used as an instruction


@dataclass(frozen=True)
class SegmentDay:
    """Counts of one segment (a task type, a customer tier: `metrics.columns` maps it) of one
    agent and version in one day: what re-weighting to a fixed traffic mix needs."""

    agent_id: str
    prompt_version: str | None
    day: datetime
    segment: str
    executions: int
    successes: int


@dataclass(frozen=True)
class ErrorGroup:
    """One failure mode: messages that differ only in ids, numbers, quoted values, paths."""

    error_type: str
    template: str
    count: int
    first_seen: datetime
    last_seen: datetime
    example: str
    failure_id: str = ""


def failure_id(agent_id: str, error_type: str, template: str) -> str:
    """Stable across runs and versions: the same failure mode keeps its id."""
    key = f"{agent_id}|{error_type}|{template}".encode()
    return "f-" + hashlib.sha256(key).hexdigest()[:10]


@dataclass(frozen=True)
class VersionStats:
    agent_id: str
    prompt_version: str | None
    executions: int
    successes: int
    timeouts: int
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    cost_per_execution: float | None
    cost_total: float | None
    input_tokens_mean: float | None
    output_tokens_mean: float | None
    first_seen: datetime
    last_seen: datetime
    quality_mean: float | None
    top_errors: tuple[ErrorGroup, ...]
    errors: int = 0
    latency_p99_ms: float | None = None
    moments: Moments | None = None  # latency and token sums for the latency estimate
    quality_n: int = 0  # executions with a quality score
    quality_sq_n: int = 0  # ... of them from per-execution rows (the guardrail can use)
    retries_n: int = 0  # executions with a retries count (0: the export has none)
    retries_sum: float = 0.0
    retried: int = 0  # executions retried at least once

    @property
    def failures(self) -> int:
        return self.executions - self.successes

    @property
    def success_rate(self) -> float:
        return self.successes / self.executions if self.executions else 0.0


@dataclass(frozen=True)
class MetricsSnapshot:
    sources: tuple[str, ...]
    rows_read: int
    rows_used: int
    duplicates: int
    bad_rows: int
    bad_by_reason: dict[str, int]
    bad_samples: tuple[dict[str, Any], ...]
    has_version: bool
    oldest: datetime | None
    newest: datetime | None
    window_days: int
    versions: tuple[VersionStats, ...]
    buckets: tuple[Bucket, ...]
    histograms: tuple[HistBin, ...] = ()
    error_days: tuple[ErrorDay, ...] = ()
    skipped_files: tuple[str, ...] = ()
    daily_rows: int = 0  # rows of the pre-aggregated daily form (their counts are in rows_used)
    segment_days: tuple[SegmentDay, ...] = ()  # only when the export has a segment column
    # What ingest read past without using: columns it does not know, status values it could
    # not map. Not errors (the rest of the export is fine), but silent they cost a team
    # the metric they thought they were sending.
    warnings: tuple[Finding, ...] = ()
    # Some file came from `promptbot simulate`: what is measured on it never calibrates.
    simulated: bool = False

    @cached_property
    def _index(self) -> dict[str, tuple[list[Bucket], list[HistBin], list[ErrorDay]]]:
        index: dict[str, tuple[list[Bucket], list[HistBin], list[ErrorDay]]] = defaultdict(
            lambda: ([], [], []))
        for b in self.buckets:
            index[b.agent_id][0].append(b)
        for h in self.histograms:
            index[h.agent_id][1].append(h)
        for e in self.error_days:
            index[e.agent_id][2].append(e)
        return dict(index)

    @cached_property
    def _segments(self) -> dict[str, list[SegmentDay]]:
        index: dict[str, list[SegmentDay]] = defaultdict(list)
        for s in self.segment_days:
            index[s.agent_id].append(s)
        return dict(index)

    def segments_of(self, agent_id: str) -> list[SegmentDay]:
        return self._segments.get(agent_id, [])

    def buckets_of(self, agent_id: str) -> list[Bucket]:
        return self._index.get(agent_id, ([], [], []))[0]

    def histograms_of(self, agent_id: str) -> list[HistBin]:
        return self._index.get(agent_id, ([], [], []))[1]

    def errors_of(self, agent_id: str) -> list[ErrorDay]:
        return self._index.get(agent_id, ([], [], []))[2]

    def for_agent(self, agent_id: str) -> list[VersionStats]:
        return [v for v in self.versions if v.agent_id == agent_id]

    def version(self, agent_id: str, version: str) -> VersionStats | None:
        for v in self.versions:
            if v.agent_id == agent_id and v.prompt_version == version:
                return v
        return None


TAIL_GAP = timedelta(days=7)
TAIL_SHARE = 0.001


def isolated_tail(buckets: Iterable[Bucket]) -> datetime | None:
    """The first hour of a far-future tail to ignore, if the export has one.

    One row stamped 9999-12-31 must not move the analysis window past all real
    traffic: hours separated from the rest by more than a week at the end of the
    export, holding at most 0.1 % of the rows, are set aside (and reported).
    """
    per_hour: dict[datetime, int] = defaultdict(int)
    for b in buckets:
        per_hour[b.hour] += b.executions
    hours = sorted(per_hour)
    total = sum(per_hour.values())
    tail = 0
    for index in range(len(hours) - 1, 0, -1):
        tail += per_hour[hours[index]]
        if tail > max(1, total * TAIL_SHARE):
            return None
        if hours[index] - hours[index - 1] > TAIL_GAP:
            return hours[index]
    return None


def quantile(bins: dict[int, int], q: float, unit: float = 1.0) -> float | None:
    total = sum(bins.values())
    if total == 0:
        return None
    target = q * total
    seen = 0
    for index in sorted(bins):
        count = bins[index]
        if seen + count >= target:
            # Interpolate inside the bin, on the log scale the bins are cut on.
            frac = (target - seen) / count if count else 0.5
            return min(_exp((index + frac) / BINS_PER_LN) * unit, sys.float_info.max)
        seen += count
    return bin_value(max(bins), unit)


def error_groups(days: Iterable[ErrorDay], limit: int = 5) -> list[ErrorGroup]:
    merged: dict[tuple[str, str], list[ErrorDay]] = defaultdict(list)
    for e in days:
        merged[(e.error_type, e.template)].append(e)
    groups = [
        ErrorGroup(
            error_type=etype,
            template=template,
            count=sum(e.count for e in items),
            first_seen=min(e.first_seen for e in items),
            last_seen=max(e.last_seen for e in items),
            example=min(items, key=lambda e: e.first_seen).example,
            failure_id=failure_id(items[0].agent_id, etype, template),
        )
        for (etype, template), items in merged.items()
    ]
    groups.sort(key=lambda g: (-g.count, g.error_type, g.template))
    return groups[:limit]


def _mean(total: float, n: int) -> float | None:
    return total / n if n else None


def version_stats(
    buckets: Iterable[Bucket],
    histograms: Iterable[HistBin],
    error_days: Iterable[ErrorDay],
    since: datetime,
) -> list[VersionStats]:
    """Per agent and version, from `since` on (the analysis window)."""
    by_key: dict[tuple[str, str | None], list[Bucket]] = defaultdict(list)
    for b in buckets:
        if b.hour >= since:
            by_key[(b.agent_id, b.prompt_version)].append(b)
    day_since = since.replace(hour=0, minute=0, second=0, microsecond=0)
    hists: dict[tuple[str, str | None, str], dict[int, int]] = defaultdict(dict)
    token_bins: dict[tuple[str, str | None], list[HistBin]] = defaultdict(list)
    for h in histograms:
        if h.day < day_since:
            continue
        if h.moments is not None:
            token_bins[(h.agent_id, h.prompt_version)].append(h)
        else:
            bins = hists[(h.agent_id, h.prompt_version, h.metric)]
            bins[h.index] = bins.get(h.index, 0) + h.count
    errs: dict[tuple[str, str | None], list[ErrorDay]] = defaultdict(list)
    for e in error_days:
        if e.day >= day_since:
            errs[(e.agent_id, e.prompt_version)].append(e)
    out = []
    for (agent, version), items in by_key.items():
        n = sum(b.executions for b in items)
        latency = hists.get((agent, version, "latency"), {})
        cost_n = sum(b.cost_n for b in items)
        cost_sum = sum(b.cost_sum for b in items)
        tokens_n = sum(b.tokens_n for b in items)
        quality_n = sum(b.quality_n for b in items)
        out.append(
            VersionStats(
                agent_id=agent,
                prompt_version=version,
                executions=n,
                successes=sum(b.successes for b in items),
                timeouts=sum(b.timeouts for b in items),
                errors=sum(b.errors for b in items),
                latency_p50_ms=quantile(latency, 0.5),
                latency_p95_ms=quantile(latency, 0.95),
                latency_p99_ms=quantile(latency, 0.99),
                cost_per_execution=_mean(cost_sum, cost_n),
                cost_total=cost_sum if cost_n else None,
                input_tokens_mean=_mean(sum(b.input_tokens_sum for b in items), tokens_n),
                output_tokens_mean=_mean(sum(b.output_tokens_sum for b in items), sum(
                    b.tokens_n if b.output_tokens_n is None else b.output_tokens_n
                    for b in items)),
                first_seen=min(b.hour for b in items),
                last_seen=max(b.hour for b in items) + timedelta(hours=1),
                quality_mean=_mean(sum(b.quality_sum for b in items), quality_n),
                top_errors=tuple(error_groups(errs.get((agent, version), []))),
                moments=moments_of(token_bins.get((agent, version), [])),
                quality_n=quality_n,
                quality_sq_n=sum(b.quality_sq_n for b in items),
                retries_n=sum(b.retries_n for b in items),
                retries_sum=sum(b.retries_sum for b in items),
                retried=sum(b.retried for b in items),
            )
        )
    out.sort(key=lambda v: (v.agent_id, v.first_seen, v.prompt_version or ""))
    return out


def moments_of(days: Iterable[HistBin]) -> Moments | None:
    total = Moments()
    for h in days:
        if h.moments is not None:
            total = total + h.moments
    return total if total.n else None


def jsonable(value: Any) -> Any:
    """Dataclasses, datetimes and tuples as JSON-ready data (datetimes in ISO 8601, UTC)."""
    if hasattr(value, "__dataclass_fields__"):
        return jsonable(asdict(value))
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%dT%H:%M:%SZ")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, float):
        return round(value, 6) if math.isfinite(value) else None
    return value
