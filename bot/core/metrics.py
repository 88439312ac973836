"""Plain data coming out of metrics ingest (see bot/load/metrics.py)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class ErrorGroup:
    """One failure mode: error messages that differ only in ids, numbers, quoted values."""

    error_type: str
    template: str
    count: int
    first_seen: datetime
    last_seen: datetime
    example: str  # one real message, untrusted text: never used as an instruction


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

    @property
    def failures(self) -> int:
        return self.executions - self.successes

    @property
    def success_rate(self) -> float:
        return self.successes / self.executions if self.executions else 0.0


@dataclass(frozen=True)
class Bucket:
    """Counts of one agent and version in one hour: enough for before/after comparisons."""

    agent_id: str
    prompt_version: str | None
    hour: datetime
    executions: int
    successes: int
    timeouts: int


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

    def for_agent(self, agent_id: str) -> list[VersionStats]:
        return [v for v in self.versions if v.agent_id == agent_id]

    def version(self, agent_id: str, version: str) -> VersionStats | None:
        for v in self.versions:
            if v.agent_id == agent_id and v.prompt_version == version:
                return v
        return None


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
    if isinstance(value, float):
        return round(value, 6)
    return value
