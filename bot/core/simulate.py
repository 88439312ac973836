"""Synthetic executions with known true effects, following an agent's version timeline."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np

# Realistic failures per agent kind: (error_type, message with {n}/{id} placeholders, weight).
ERRORS: dict[str, tuple[tuple[str, str, float], ...]] = {
    "support": (
        ("OutputParserException",
         "Could not parse LLM output: Expecting ',' delimiter: line {n} column {n} (char {n})", 5),
        ("ToolCallError", "lookup_order failed: order 'ORD-{id}' not found", 2),
        ("RateLimitError", "Error code: 429 - rate_limit_error: Number of request tokens has "
         "exceeded your per-minute rate limit (request id req_{id})", 1),
        ("Timeout", "Request timed out after {n}s", 1),
    ),
    "sql": (
        ("BinderException",
         "Binder Error: Referenced column \"{word}\" not found in FROM clause! Candidate "
         "bindings: \"orders.order_date\"", 5),
        ("ParserException", "Parser Error: syntax error at or near \"GROUP\" (line {n})", 2),
        ("Timeout", "Query exceeded statement timeout of {n}000 ms", 1),
    ),
    "summary": (
        ("MaxTokensExceeded",
         "Response truncated: stop_reason=max_tokens after {n} output tokens", 4),
        ("ValidationError",
         "1 validation error for MeetingSummary: action_items.{n}.owner Field required", 2),
        ("Timeout", "Request timed out after {n}s", 1),
    ),
}
WORDS = ("customer_name", "signup_dt", "Revenue", "region_code", "orderDate", "total_amt")


def kind_of(agent_id: str) -> str:
    if "sql" in agent_id:
        return "sql"
    if "summar" in agent_id:
        return "summary"
    return "support"


@dataclass(frozen=True)
class Timeline:
    agent_id: str
    changes: tuple[tuple[datetime, str], ...]  # (deploy time, version), oldest first
    base_success_rate: float = 0.9
    effect: float = 0.0  # true success-rate change of the newest version
    per_day: int = 400
    rates: dict[str, float] = field(default_factory=dict)

    def version_at(self, t: datetime) -> str:
        current = self.changes[0][1]
        for when, version in self.changes:
            if when <= t:
                current = version
        return current

    def rate_of(self) -> dict[str, float]:
        """True success rate per version: the newest version introduced gets the effect.

        A revert returns to an older version and so to its rate.
        """
        if self.rates:
            return dict(self.rates)
        order = list(dict.fromkeys(v for _, v in self.changes))
        rates = {v: self.base_success_rate for v in order}
        if len(order) > 1:
            rates[order[-1]] = min(max(self.base_success_rate + self.effect, 0.0), 1.0)
        return rates


def generate(
    timelines: list[Timeline],
    start: datetime,
    end: datetime,
    seed: int,
    version_column: bool = True,
) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    rows: list[dict[str, Any]] = []
    days = max(1, math.ceil((end - start) / timedelta(days=1)))
    for tl in timelines:
        rates = tl.rate_of()
        errors = ERRORS[kind_of(tl.agent_id)]
        weights = np.array([w for _, _, w in errors], dtype=float)
        weights /= weights.sum()
        for day in range(days):
            day_start = start + timedelta(days=day)
            count = int(rng.poisson(tl.per_day))
            seconds = np.sort(rng.uniform(0, 86_400, size=count))
            for i, sec in enumerate(seconds):
                ts = day_start + timedelta(seconds=float(sec))
                if ts >= end:
                    break
                version = tl.version_at(ts)
                ok = bool(rng.random() < rates[version])
                latency = float(rng.lognormal(math.log(1800), 0.45))
                tin = int(rng.normal(1400, 250))
                tout = int(rng.lognormal(math.log(320), 0.35))
                row: dict[str, Any] = {
                    "timestamp": ts.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
                    "agent_id": tl.agent_id,
                    "execution_id": f"{tl.agent_id}-{seed}-{day:03d}-{i:05d}",
                    "status": "success",
                    "latency_ms": round(latency),
                    "input_tokens": max(tin, 50),
                    "output_tokens": max(tout, 5),
                    "cost_usd": round((max(tin, 50) * 3 + max(tout, 5) * 15) / 1e6, 6),
                    "error_type": "",
                    "error_message": "",
                    "model": "claude-sonnet-4-5",
                }
                if version_column:
                    row["prompt_version"] = version
                if not ok:
                    etype, template, _ = errors[int(rng.choice(len(errors), p=weights))]
                    row["status"] = "timeout" if etype == "Timeout" else "error"
                    row["error_type"] = etype
                    row["error_message"] = template.format(
                        n=int(rng.integers(2, 900)),
                        id=f"{int(rng.integers(10_000, 99_999))}",
                        word=WORDS[int(rng.integers(0, len(WORDS)))],
                    )
                rows.append(row)
    rows.sort(key=lambda r: (r["timestamp"], r["agent_id"]))
    return rows


COLUMNS = (
    "timestamp", "agent_id", "prompt_version", "execution_id", "status", "latency_ms",
    "input_tokens", "output_tokens", "cost_usd", "error_type", "error_message", "model",
)
