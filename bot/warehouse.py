"""`promptbot sql`: the policy from the working tree, the options checked, the SQL built
by bot/core/warehouse.py (docs/WAREHOUSE.md)."""

from __future__ import annotations

from datetime import date
from pathlib import Path

from bot.core.warehouse import (
    DIALECTS,
    LOOKBACK_DAYS,
    Request,
    WarehouseError,
    build,
    resolve,
)
from bot.errors import InputError, UsageError
from bot.load.repo import WorkingTree, load_policy


def sql_text(root: Path, dialect: str, table: str = "executions", since: str | None = None,
             failures: bool = False, columns: str | None = None,
             until: str | None = None, lookback_days: int = LOOKBACK_DAYS,
             bad_rows: bool = False, hourly: bool = False,
             partition_column: str | None = None, histograms: bool = False) -> str:
    """The SQL of the daily form (or, with `failures`, of its failure rows; with
    `bad_rows`, of the rows left out; with `histograms`, of its histogram rows) for
    `dialect`."""
    if dialect not in DIALECTS:
        raise UsageError(f"unknown dialect {dialect!r}", fix=f"use one of {', '.join(DIALECTS)}")
    first, end = _day("--since", since), _day("--until", until)
    listed = None
    if columns is not None:
        listed = [c.strip() for c in columns.split(",") if c.strip()]
        if not listed:
            raise UsageError("--columns lists no column",
                             fix="list the table's columns, e.g. --columns ts,agent,outcome")
    policy = load_policy(WorkingTree(root)).metrics
    if policy.preset != "canonical":
        raise InputError(
            "promptbot sql reads tables of per-execution rows; metrics.preset "
            f"'{policy.preset}' (OpenTelemetry spans) is not supported yet",
            fix="create a view over the span table with the canonical columns "
            "(docs/METRICS.md, OpenTelemetry GenAI spans: which attribute is which) and run "
            "promptbot sql on it with a policy whose metrics.preset is canonical")
    try:
        found = resolve(dict(policy.columns), listed)
        return build(Request(dialect, table, found, dict(policy.status_values), first, end,
                             failures, lookback_days, bad_rows=bad_rows, hourly=hourly,
                             partition_column=partition_column, histograms=histograms))
    except WarehouseError as exc:
        if exc.option:
            raise UsageError(exc.message, fix=exc.fix) from None
        raise InputError(f"policies/promptbot.yaml: {exc.message}", fix=exc.fix) from None


def _day(option: str, value: str | None) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise UsageError(f"{option} {value!r} is not a date",
                         fix=f"write the day as YYYY-MM-DD, e.g. {option} 2026-01-31") from None
