"""`promptbot sql`: the SQL that computes the pre-aggregated daily form inside a warehouse.

Ingest (bot/load/metrics.py) turns per-execution rows into sufficient statistics in DuckDB.
A team whose executions live in a warehouse runs this SQL there instead and hands the bot the
small result: the daily form of docs/METRICS.md §2 (per UTC day, agent, version and segment:
counts and sums), its failure rows (per day, agent, version, error type and message), the
rows left out (per day and ingest's reason, re-sent copies as `duplicate`: `_bad_text`) and
its histogram rows (per day, agent, version, metric and log bin: counts, and for latency
bins the token sums of the latency-on-tokens fit).

Written once, in DuckDB's dialect (`_daily_text`, `_failures_text`, `_histograms_text`),
parsed by sqlglot and generated for the target dialect. What sqlglot cannot translate
faithfully is a handful of primitives (`MACROS`): text to epoch seconds (each engine parses
timestamps its own way, and Postgres has no TRY_CAST), epoch seconds to a date, a regexp
replace of every match,
ClickHouse's UTF-8 string functions. Each is written per dialect in that dialect's SQL,
parsed with it and put into the tree in place of a `pb_*` call.

Each value is cast to text and checked before it is converted, so the same SQL works on
typed columns and on a landing table of strings, and a value that does not convert is a bad
row, never an error. DuckDB reads the text untrimmed with TRY_CAST, exactly as ingest does;
the other dialects check the trimmed text with a regexp (docs/WAREHOUSE.md, "Where a dialect
differs from ingest").

- bad rows, excluded like ingest: no parseable timestamp (or outside the years 1 to 9999),
  no agent, a status that is neither canonical nor mapped (`metrics.status_values`), a
  number column holding something else than a finite number, a negative latency, token
  count, cost or retry count;
- re-sent executions: among the good rows of one `execution_id` (trimmed; an empty id is no
  id) the earliest wins (times in whole microseconds), ties broken as ingest breaks them
  (status, the fuller row, then the values); a bad row never wins over a good one, so only
  good rows are ranked; with `--since`, rows of the LOOKBACK_DAYS before it settle re-sends
  across the boundary (a re-send later than that counts again);
- failure messages are grouped by ingest's premask (every run of letters and digits holding
  a digit becomes `1`, after the first `templates.LIMIT` characters): the key promptbot
  computes is the same for every message of one group, so one real message per group (the
  smallest) stands for it with the group's count.

User names (the table, the mapped columns) enter the tree only as quoted identifiers, never
as SQL text, and names that cannot be plain identifiers are refused (`table_parts`,
`resolve`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta

import sqlglot
from sqlglot import exp
from sqlglot.errors import ErrorLevel

from bot.core.metrics import (
    BAD_AGENT,
    BAD_INFINITE,
    BAD_NEGATIVE,
    BAD_STATUS,
    BAD_TIMESTAMP,
    BAD_YEARS,
    BINS_PER_LN,
    COST_UNIT,
    DUPLICATE,
    MAX_BINNED_COST,
    not_a_number,
)
from bot.core.model import METRIC_COLUMNS, STATUSES
from bot.core.templates import LIMIT

DIALECTS = ("bigquery", "snowflake", "clickhouse", "spark", "postgres", "duckdb")
REQUIRED = ("timestamp", "agent_id", "status")
# Columns assumed to exist under their canonical name when neither mapped nor listed
# (`--columns`): those of the shipped example export. The others (quality_score, retries,
# segment) only when mapped or listed: most tables do not have them.
ASSUMED = ("timestamp", "agent_id", "prompt_version", "execution_id", "status", "latency_ms",
           "input_tokens", "output_tokens", "cost_usd", "error_type", "error_message")
NONE_SEGMENT = "(none)"  # as ingest: an empty segment value
MESSAGE_LIMIT = 2_000  # characters of a message ingest keeps
# Internal names all start with pb_: ClickHouse resolves aliases anywhere in a query, so an
# alias equal to one of the team's column names would shadow it.
PREFIX = "pb_"

# Regular expressions without backslashes (string-literal escaping differs by dialect) and
# anchored at both ends (Snowflake's REGEXP_LIKE matches the whole string, the others search).
NUMBER_RE = "^[+-]?([0-9]+[.]?[0-9]*|[.][0-9]+)([eE][+-]?[0-9]+)?$"
EPOCH_RE = "^[0-9]{9,10}([.][0-9]+)?$"  # epoch seconds, as ingest reads them
DATE_RE = "^[0-9]{4}-[0-9]{1,2}-[0-9]{1,2}([T ].*)?$"  # worth trying as a timestamp
# A time followed by a zone (Z, UTC, a name, an offset): parsed as an instant; without one,
# the wall clock is UTC whatever the session's time zone.
ZONED_RE = ("^[0-9]{4}-.*[0-9]:[0-9]{2}([.][0-9]+)? ?"
            "([A-Za-z][A-Za-z_/+-]*|[+-][0-9]{2}(:?[0-9]{2})?)$")
# Postgres has no TRY_CAST: only text its timestamp input certainly takes is cast (a day
# past the month's end is checked separately).
PG_TIMESTAMP_RE = (
    "^(000[1-9]|00[1-9][0-9]|0[1-9][0-9]{2}|[1-9][0-9]{3})-(0[1-9]|1[0-2])"
    "-(0[1-9]|[12][0-9]|3[01])([T ]([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9]([.][0-9]+)?)?"
    "( ?([zZ]|UTC|[+-](0[0-9]|1[0-5])(:?[0-5][0-9])?))?)?$")
# Infinity and NaN as DuckDB's cast (so ingest) reads them, any case: the other dialects
# write them as `inf`, `-inf` and `nan`, which each of them takes.
NAN_RE = "^[+-]?[nN][aA][nN]$"
INF_RE = "^[+]?[iI][nN][fF]([iI][nN][iI][tT][yY])?$"
MINUS_INF_RE = "^-[iI][nN][fF]([iI][nN][iI][tT][yY])?$"
# A number whose digits are all zeros (whatever its exponent), and an exponent of 5 digits
# or more (beyond NUMERIC's range): Postgres's guards in pb_num.
ZERO_RE = "^[+-]?0*[.]?0*([eE][+-]?[0-9]+)?$"
HUGE_EXPONENT_RE = "[eE][+-]?0*[1-9][0-9]{4,}$"
# ingest's PREMASK (bot/load/metrics.py): the same runs, the same replacement.
PREMASK_RE = "[A-Za-z0-9]*[0-9][A-Za-z0-9]*"
# Years 1 to 9999 as epoch seconds (ingest: "timestamp outside the years 1 to 9999").
MIN_EPOCH = -62_135_596_800
MAX_EPOCH = 253_402_300_800
DAY = 86_400
# Rows this many days before --since are read too: an execution re-sent within them counts
# once, on its first day (ingest reads the whole export; a re-send later than this after the
# first copy counts again in the result).
LOOKBACK_DAYS = 7
MAX_LOOKBACK_DAYS = 366
# The largest finite double: a number column must lie strictly inside (ingest: "a number is
# not finite"); `1e400` converts to infinity where it converts at all.
MAX_DOUBLE = "1.7976931348623157e308"
# DuckDB: a time followed by a zone anywhere in the text (the DuckDB SQL reads the text as
# ingest does, untrimmed and in every format DuckDB's cast takes).
DUCKDB_ZONED_RE = ("[0-9]:[0-9]{2}([.][0-9]+)? ?([A-Za-z][A-Za-z_/+-]*|[+-][0-9]{2}(:?[0-9]{2})?)"
                   "[[:space:]]*$")


def _q(text: str) -> str:
    """A fixed regexp or word as a literal of the macro texts below (none holds a quote)."""
    assert "'" not in text and "\\" not in text
    return f"'{text}'"


# Per dialect, in that dialect's SQL: pb_x (and pb_y) stand for the arguments. `duckdb` is
# the default of every macro; a dialect not listed under a macro gets the DuckDB text
# transpiled by sqlglot.
MACROS: dict[str, dict[str, str]] = {
    # Text -> epoch seconds (DOUBLE), NULL when it is no timestamp.
    "pb_epoch": {
        # pb_x: the text as it is (ingest neither trims it nor requires ISO 8601: whatever
        # DuckDB's cast takes); epoch seconds through to_timestamp, as ingest (microseconds).
        "duckdb": f"""CASE WHEN regexp_matches(pb_x, {_q(EPOCH_RE)})
            THEN epoch_us(to_timestamp(CAST(pb_x AS DOUBLE))) / 1e6
            WHEN regexp_matches(pb_x, {_q(DUCKDB_ZONED_RE)})
            THEN epoch_us(TRY_CAST(pb_x AS TIMESTAMPTZ)) / 1e6
            ELSE epoch_us(TRY_CAST(pb_x AS TIMESTAMP)) / 1e6 END""",
        # The other dialects read pb_y, the trimmed text.
        "postgres": f"""CASE WHEN pb_y ~ {_q(EPOCH_RE)} THEN CAST(pb_y AS DOUBLE PRECISION)
            WHEN pb_y ~ {_q(PG_TIMESTAMP_RE)} THEN CASE
              WHEN CAST(SUBSTRING(pb_y FROM 9 FOR 2) AS INT) <= EXTRACT(DAY FROM MAKE_DATE(
                CAST(SUBSTRING(pb_y FROM 1 FOR 4) AS INT),
                CAST(SUBSTRING(pb_y FROM 6 FOR 2) AS INT), 1)
                + INTERVAL '1 MONTH' - INTERVAL '1 DAY')
              THEN CASE WHEN pb_y ~ {_q(ZONED_RE)}
                THEN CAST(EXTRACT(EPOCH FROM CAST(pb_y AS TIMESTAMPTZ)) AS DOUBLE PRECISION)
                ELSE CAST(EXTRACT(EPOCH FROM CAST(pb_y AS TIMESTAMP)) AS DOUBLE PRECISION) END
              END END""",
        # A string without a zone is UTC to BigQuery.
        "bigquery": f"""CASE WHEN REGEXP_CONTAINS(pb_y, {_q(EPOCH_RE)})
            THEN SAFE_CAST(pb_y AS FLOAT64)
            WHEN REGEXP_CONTAINS(pb_y, {_q(DATE_RE)})
            THEN UNIX_MICROS(SAFE_CAST(pb_y AS TIMESTAMP)) / 1e6 END""",
        "snowflake": f"""CASE WHEN REGEXP_LIKE(pb_y, {_q(EPOCH_RE)}) THEN TRY_CAST(pb_y AS DOUBLE)
            WHEN NOT REGEXP_LIKE(pb_y, {_q(DATE_RE)}) THEN NULL
            WHEN REGEXP_LIKE(pb_y, {_q(ZONED_RE)})
            THEN DATE_PART(EPOCH_MICROSECOND, TRY_TO_TIMESTAMP_TZ(pb_y)) / 1e6
            ELSE DATE_PART(EPOCH_MICROSECOND, TRY_TO_TIMESTAMP_NTZ(pb_y)) / 1e6 END""",
        # 'UTC': the zone of a string without one.
        "clickhouse": f"""CASE WHEN match(pb_y, {_q(EPOCH_RE)}) THEN toFloat64OrNull(pb_y)
            WHEN match(pb_y, {_q(DATE_RE)})
            THEN toUnixTimestamp64Micro(parseDateTime64BestEffortOrNull(pb_y, 6, 'UTC')) / 1e6
            END""",
        # A string without a zone is read in the session's zone (spark.sql.session.timeZone).
        "spark": f"""CASE WHEN pb_y RLIKE {_q(EPOCH_RE)} THEN TRY_CAST(pb_y AS DOUBLE)
            WHEN pb_y RLIKE {_q(DATE_RE)} THEN UNIX_MICROS(TRY_CAST(pb_y AS TIMESTAMP)) / 1e6
            END""",
    },
    # Epoch seconds -> the UTC date, whatever the session's time zone.
    "pb_day": {
        "duckdb": "CAST(CAST('1970-01-01' AS DATE) + CAST(FLOOR(pb_x / 86400) AS INT) AS DATE)",
        "postgres": "CAST(CAST('1970-01-01' AS DATE) + CAST(FLOOR(pb_x / 86400) AS INT) AS DATE)",
        "bigquery": "DATE_FROM_UNIX_DATE(CAST(FLOOR(pb_x / 86400) AS INT64))",
        "snowflake": "DATEADD(DAY, CAST(FLOOR(pb_x / 86400) AS INT), "
                     "CAST('1970-01-01' AS DATE))",
        "clickhouse": "addDays(toDate32('1970-01-01'), CAST(FLOOR(pb_x / 86400) AS Int32))",
        "spark": "DATE_FROM_UNIX_DATE(CAST(FLOOR(pb_x / 86400) AS INT))",
    },
    # Text -> a number (infinite when out of range, as ingest), NULL when it is none. pb_x
    # the text as it is, pb_y trimmed.
    "pb_num": {
        # ingest's own conversion, on the same text (`1_000` is 1000, `5\u00a0` none).
        "duckdb": "TRY_CAST(pb_x AS DOUBLE)",
        "other": f"""CASE WHEN regexp_matches(pb_y, {_q(NUMBER_RE)}) THEN TRY_CAST(pb_y AS DOUBLE)
            WHEN regexp_matches(pb_y, {_q(NAN_RE)}) THEN CAST('nan' AS DOUBLE)
            WHEN regexp_matches(pb_y, {_q(INF_RE)}) THEN CAST('inf' AS DOUBLE)
            WHEN regexp_matches(pb_y, {_q(MINUS_INF_RE)}) THEN CAST('-inf' AS DOUBLE) END""",
        # No TRY_CAST, and a double out of range (`1e400`, `1e-400`) stops the query: the
        # value is checked as NUMERIC first (an exponent of 5 digits or more is settled by
        # the regexps), beyond the double range it is infinite, a tiny one is 0.
        "postgres": f"""CASE WHEN pb_y ~ {_q(NAN_RE)} THEN CAST('nan' AS DOUBLE PRECISION)
            WHEN pb_y ~ {_q(INF_RE)} THEN CAST('inf' AS DOUBLE PRECISION)
            WHEN pb_y ~ {_q(MINUS_INF_RE)} THEN CAST('-inf' AS DOUBLE PRECISION)
            WHEN NOT pb_y ~ {_q(NUMBER_RE)} THEN NULL
            WHEN pb_y ~ {_q(ZERO_RE)} THEN CAST(0 AS DOUBLE PRECISION)
            WHEN pb_y ~ {_q(HUGE_EXPONENT_RE)}
            THEN CASE WHEN pb_y ~ '[eE]-' THEN CAST(0 AS DOUBLE PRECISION)
              ELSE CAST('Infinity' AS DOUBLE PRECISION) END
            WHEN ABS(CAST(pb_y AS DECIMAL)) >= {MAX_DOUBLE}
            THEN CAST('Infinity' AS DOUBLE PRECISION)
            WHEN ABS(CAST(pb_y AS DECIMAL)) < 1e-300 THEN CAST(0 AS DOUBLE PRECISION)
            ELSE CAST(pb_y AS DOUBLE PRECISION) END""",
        # Never a cast that throws on text the regexp lets through and the engine refuses
        # (sqlglot writes Snowflake's and ClickHouse's TRY_CAST as CAST).
        "snowflake": f"""CASE WHEN REGEXP_LIKE(pb_y, {_q(NUMBER_RE)}) THEN TRY_TO_DOUBLE(pb_y)
            WHEN REGEXP_LIKE(pb_y, {_q(NAN_RE)}) THEN TRY_TO_DOUBLE('nan')
            WHEN REGEXP_LIKE(pb_y, {_q(INF_RE)}) THEN TRY_TO_DOUBLE('inf')
            WHEN REGEXP_LIKE(pb_y, {_q(MINUS_INF_RE)}) THEN TRY_TO_DOUBLE('-inf') END""",
        "clickhouse": f"""CASE WHEN match(pb_y, {_q(NUMBER_RE)}) THEN toFloat64OrNull(pb_y)
            WHEN match(pb_y, {_q(NAN_RE)}) THEN toFloat64OrNull('nan')
            WHEN match(pb_y, {_q(INF_RE)}) THEN toFloat64OrNull('inf')
            WHEN match(pb_y, {_q(MINUS_INF_RE)}) THEN toFloat64OrNull('-inf') END""",
    },
    # ingest's premask of a failure message: every match replaced.
    "pb_premask": {
        "duckdb": f"regexp_replace(left(coalesce(pb_x, ''), {LIMIT}), {_q(PREMASK_RE)}, '1', 'g')",
        "postgres": f"REGEXP_REPLACE(LEFT(COALESCE(pb_x, ''), {LIMIT}), {_q(PREMASK_RE)}, '1', "
                    "'g')",
        # These replace every match without a flag (Snowflake's 4th argument is a position).
        "bigquery": f"REGEXP_REPLACE(LEFT(COALESCE(pb_x, ''), {LIMIT}), {_q(PREMASK_RE)}, '1')",
        "snowflake": f"REGEXP_REPLACE(LEFT(COALESCE(pb_x, ''), {LIMIT}), {_q(PREMASK_RE)}, '1')",
        "spark": f"REGEXP_REPLACE(LEFT(COALESCE(pb_x, ''), {LIMIT}), {_q(PREMASK_RE)}, '1')",
        "clickhouse": f"replaceRegexpAll(leftUTF8(coalesce(pb_x, ''), {LIMIT}), "
                      f"{_q(PREMASK_RE)}, '1')",
    },
    # Characters, not bytes (ClickHouse's left and lower work on bytes).
    "pb_left": {"duckdb": "LEFT(pb_x, pb_y)", "clickhouse": "leftUTF8(pb_x, pb_y)"},
    "pb_lower": {"duckdb": "LOWER(pb_x)", "clickhouse": "lowerUTF8(pb_x)"},
    # A column as text. Postgres: to_json gives a date or time in ISO 8601 whatever the
    # session's DateStyle (CAST(ts AS TEXT) under `SQL, DMY` is `01/01/2026 15:30:00 IST`).
    "pb_text": {"duckdb": "CAST(pb_x AS TEXT)", "postgres": "TO_JSON(pb_x) #>> '{}'"},
    # A date as the result's text: YYYY-MM-DD whatever the session's DateStyle (psql
    # prints a date under `SQL, DMY` as 05/10/2026, which reads as May or October).
    "pb_iso": {"duckdb": "pb_x", "postgres": "TO_CHAR(pb_x, 'YYYY-MM-DD')"},
    # A text sort key in byte order, as ingest sorts (a database's ICU collation would
    # break ties otherwise).
    "pb_c": {"duckdb": "pb_x", "postgres": 'pb_x COLLATE "C"'},
}


class WarehouseError(ValueError):
    """A name or setting the SQL cannot be built from; `fix` says what to do."""

    def __init__(self, message: str, fix: str, option: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.fix = fix
        self.option = option  # True: a command-line option is wrong (a usage error)


# ------------------------------------------------------------------ names


_CTES = ("src", "norm", "good", "ranked", "won", "flagged", "counted")
_TABLE_PART = re.compile(r"[^\W][\w$-]*")
_COLUMN = re.compile(r"[^\W][\w$ -]*")


def _name_ok(name: str, pattern: re.Pattern[str]) -> bool:
    return (0 < len(name) <= 128 and pattern.fullmatch(name) is not None
            and name == name.strip() and name.isprintable())


def _not_internal(name: str, where: str, option: bool) -> str:
    """A user name starting with pb_ (any case) would be shadowed by an internal alias
    (ClickHouse resolves aliases anywhere in a query)."""
    if name.lower().startswith(PREFIX):
        raise WarehouseError(
            f"{where} name {name!r} starts with {PREFIX!r}, the prefix of promptbot's internal "
            "names (ClickHouse would read the internal value instead of your column)",
            "create a view that renames it (e.g. without the prefix) and pass the view with "
            "--table, mapping the new name in metrics.columns", option=option)
    return name


def table_parts(table: str) -> list[str]:
    """`name`, `schema.name` or `project.dataset.name`, each part a plain identifier."""
    parts = table.split(".")
    if not 1 <= len(parts) <= 3 or not all(_name_ok(p, _TABLE_PART) for p in parts):
        raise WarehouseError(
            f"--table {table!r} is not a table name promptbot can quote safely",
            "pass NAME, SCHEMA.NAME or PROJECT.DATASET.NAME with letters, digits, _, - and $ "
            "only (no quotes, spaces or semicolons); for any other name create a view with a "
            "plain name over the table and pass that", option=True)
    if len(parts) == 1 and parts[0].lower() in _CTES:
        raise WarehouseError(
            f"--table {table!r} is the name of one of the SQL's own subqueries "
            f"({', '.join(_CTES)})", "pass it with its schema (SCHEMA.NAME)", option=True)
    return [_not_internal(p, "--table", True) for p in parts]


def _column_ok(name: str, where: str) -> str:
    if not _name_ok(name, _COLUMN):
        raise WarehouseError(
            f"column {name!r} ({where}) cannot be used as an SQL identifier",
            "give the column a plain name (letters, digits, _, -, $ and inner spaces): rename "
            "it, or create a view that renames it and pass the view with --table",
            option=where.startswith("--"))
    return _not_internal(name, f"column ({where})", where.startswith("--"))


def resolve(mapping: Mapping[str, str], listed: Sequence[str] | None = None) -> dict[str, str]:
    """canonical column -> the table's column, as ingest renames a file's columns.

    `listed`: the table's columns (`--columns`); each is read under `mapping.get(c, c)`,
    the first of two that map onto one canonical name wins (ingest keeps the first too).
    Without it, the mapping's names, and the canonical names of `ASSUMED` that no mapping
    replaces, are taken to exist.
    """
    found: dict[str, str] = {}
    if listed is not None:
        for name in listed:
            canonical = mapping.get(name, name)
            if canonical in METRIC_COLUMNS and canonical not in found:
                found[canonical] = _column_ok(name, "--columns")
        missing = [c for c in REQUIRED if c not in found]
        if missing:
            raise WarehouseError(
                f"--columns has no column for {', '.join(missing)}",
                "list the table's own names for them and map them in policies/promptbot.yaml "
                "(metrics: {columns: {ts: timestamp}}), or name them as the canonical columns",
                option=True)
        return found
    for theirs, canonical in mapping.items():
        if canonical not in METRIC_COLUMNS:
            continue  # a daily-form column: nothing a per-execution table has
        if canonical in found:
            raise WarehouseError(
                f"metrics.columns maps both {found[canonical]!r} and {theirs!r} onto "
                f"{canonical}", "pass --columns with the table's columns to say which exists")
        found[canonical] = _column_ok(theirs, "metrics.columns")
    for canonical in ASSUMED:
        found.setdefault(canonical, canonical)
    return found


# ------------------------------------------------------------------ the SQL, once


@dataclass(frozen=True)
class Request:
    dialect: str
    table: str = "executions"
    columns: Mapping[str, str] | None = None  # canonical -> theirs (`resolve`)
    statuses: Mapping[str, str] | None = None  # their status word -> canonical
    since: date | None = None  # the first day (UTC) in the result
    until: date | None = None  # the first day (UTC) not in it
    failures: bool = False  # the failure rows instead of the daily counts and sums
    lookback_days: int = LOOKBACK_DAYS  # with `since`: earlier days read to settle re-sends
    bad_rows: bool = False  # the rows left out, per day and reason
    hourly: bool = False  # the daily counts per UTC hour too (an `hour` column, 0 to 23)
    partition_column: str | None = None  # the table's own, compared as it is (`_pruned`)
    histograms: bool = False  # the histogram rows instead (not with another result)


_NUMBERS = {"latency_ms": "pb_lat", "input_tokens": "pb_tin", "output_tokens": "pb_tout",
            "cost_usd": "pb_cost", "quality_score": "pb_q", "retries": "pb_r"}
# Numbers that may not be negative (ingest: negative latency, token count, cost, retries).
_NON_NEGATIVE = ("latency_ms", "input_tokens", "output_tokens", "cost_usd", "retries")
_STATUS_LIST = ", ".join(f"'{s}'" for s in STATUSES)


def _norm_text(present: set[str]) -> str:
    """CTEs src -> norm: every row, its values as text, converted where they convert."""
    def text(canonical: str) -> str:
        return f"nullif(trim(CAST(pb_col_{canonical} AS VARCHAR)), '')"

    numbers = [(c, n) for c, n in _NUMBERS.items() if c in present]
    src = ["nullif(trim(pb_text(pb_col_timestamp)), '') AS pb_ts_text",
           "pb_text(pb_col_timestamp) AS pb_ts_raw",
           f"{text('agent_id')} AS pb_agent",
           f"{text('prompt_version')} AS pb_version",
           f"{text('execution_id')} AS pb_id",
           # pb_status stands for the mapping (a CASE built from the policy's words).
           "pb_status(pb_lower(trim(CAST(pb_col_status AS VARCHAR)))) AS pb_status",
           f"{text('error_type')} AS pb_error_type",
           f"pb_left(CAST(pb_col_error_message AS VARCHAR), {MESSAGE_LIMIT}) AS pb_error_message",
           f"coalesce({text('segment')}, '{NONE_SEGMENT}') AS pb_segment"]
    src += [f"{text(c)} AS {n}_text" for c, n in numbers]
    src += [f"CAST(pb_col_{c} AS VARCHAR) AS {n}_raw" for c, n in numbers]
    norm = ["pb_agent", "pb_version", "pb_id", "pb_status", "pb_error_type",
            "pb_error_message", "pb_segment",
            "pb_epoch(pb_ts_raw, pb_ts_text) AS pb_ep"]
    for _, n in numbers:
        norm += [f"{n}_text", f"pb_num({n}_raw, {n}_text) AS {n}"]
    return f"""
WITH src AS (
  SELECT {', '.join(src)} FROM pb_table
), norm AS (
  SELECT {', '.join(norm)} FROM src
)"""


def _order(present: set[str]) -> str:
    """ingest's order among the rows of one execution id: the earliest (times in whole
    microseconds), then the status, the fuller row, then the values. NULLS LAST spelled
    out: sqlglot drops the clause where it is the dialect's default (Postgres, Snowflake),
    and a session may change that default."""
    def last(key: str) -> str:
        return f"CASE WHEN {key} IS NULL THEN 1 ELSE 0 END, {key}"

    nulls = " + ".join(f"CASE WHEN {_NUMBERS[c]} IS NULL THEN 1 ELSE 0 END"
                       for c in _NUMBERS if c in present) or "0"
    return ", ".join([last("ROUND(pb_ep * 1000000)"), last("pb_c(pb_status)"), nulls,
                      last("pb_c(pb_agent)"), last("pb_c(pb_version)"),
                      *(last(v) for v in _values(present)), last("pb_c(pb_e)"),
                      last("pb_c(pb_m)"), "pb_c(pb_segment)"])


def _values(present: set[str]) -> list[str]:
    return [_NUMBERS[c] for c in ("latency_ms", "cost_usd", "input_tokens", "output_tokens",
                                  "quality_score", "retries") if c in present]


def _rows_text(present: set[str], since: date | None, until: date | None,
               lookback: int = LOOKBACK_DAYS) -> str:
    """CTEs src -> norm -> good -> ranked -> won: the winning good rows, one per execution."""
    numbers = [(c, n) for c, n in _NUMBERS.items() if c in present]
    checks = [f"pb_ep >= {MIN_EPOCH}", f"pb_ep < {MAX_EPOCH}", "pb_agent IS NOT NULL",
              f"pb_status IN ({_STATUS_LIST})"]
    if since is not None:
        # `lookback` days of earlier rows settle re-sent executions across the boundary.
        checks.append(f"pb_ep >= {_epoch(since) - lookback * DAY}")
    if until is not None:
        # A later row never wins over an earlier one: leaving it out changes nothing before.
        checks.append(f"pb_ep < {_epoch(until)}")
    for c, n in numbers:
        # Finite (NaN compares above every number), not negative where ingest says so.
        low = "0" if c in _NON_NEGATIVE else f"-{MAX_DOUBLE}"
        checks.append(f"({n}_text IS NULL OR ({n} {'>=' if c in _NON_NEGATIVE else '>'} "
                      f"{low} AND {n} < {MAX_DOUBLE}))")
    kept = ", ".join(["pb_ep", "pb_agent", "pb_version", "pb_segment", "pb_status", "pb_e",
                      "pb_m", *_values(present)])
    return _norm_text(present) + f""", good AS (
  SELECT *,
    CASE WHEN pb_status <> 'success' THEN coalesce(pb_error_type, pb_status) END AS pb_e,
    CASE WHEN pb_status <> 'success' THEN coalesce(pb_error_message, '') END AS pb_m
  FROM norm WHERE {' AND '.join(checks)}
), ranked AS (
  SELECT {kept}, row_number() OVER (PARTITION BY pb_id ORDER BY {_order(present)}) AS pb_rank
  FROM good WHERE pb_id IS NOT NULL
), won AS (
  SELECT {kept} FROM good WHERE pb_id IS NULL
  UNION ALL
  SELECT {kept} FROM ranked WHERE pb_rank = 1
)"""


def _grouping(present: set[str], segment: bool) -> tuple[list[str], list[str]]:
    """(GROUP BY keys, their output columns): day, agent, the version and (daily counts
    only; failure rows ignore it) the segment when the table has them."""
    keys = ["pb_date", "pb_agent"]
    out = ['pb_iso(pb_date) AS "date"', 'pb_agent AS "agent_id"']
    if "prompt_version" in present:
        keys.append("pb_version")
        out.append('pb_version AS "prompt_version"')
    if segment and "segment" in present:
        keys.append("pb_segment")
        out.append('pb_segment AS "segment"')
    return keys, out


# ln(latency), as ingest: a latency under 1 microsecond counts as 1 microsecond.
_LN_LATENCY = ("CASE WHEN pb_lat IS NULL THEN NULL WHEN pb_lat < 0.001 THEN LN(0.001) "
               "ELSE LN(pb_lat) END")


def _daily_text(present: set[str], since: date | None, until: date | None,
                lookback: int = LOOKBACK_DAYS, hourly: bool = False) -> str:
    keys, out = _grouping(present, segment=True)
    if hourly:
        # The UTC hour of the day, 0 to 23, beside the date: plain arithmetic on epoch
        # seconds, so no dialect's timestamp formatting or session time zone enters.
        keys.insert(1, "pb_hour")
        out.insert(1, 'pb_hour AS "hour"')
    out += ['count(*) AS "executions"',
            'sum(CASE WHEN pb_status = \'success\' THEN 1 ELSE 0 END) AS "successes"',
            'sum(CASE WHEN pb_status = \'timeout\' THEN 1 ELSE 0 END) AS "timeouts"',
            'sum(CASE WHEN pb_status IN (\'error\', \'failure\') THEN 1 ELSE 0 END) '
            'AS "errors"']
    if "latency_ms" in present:
        out += ['count(pb_lat) AS "latency_n"', 'sum(pb_ll) AS "latency_log_sum"',
                'sum(pb_ll * pb_ll) AS "latency_log_sumsq"']
    for canonical, name, column in (("cost_usd", "pb_cost", "cost_sum"),
                                    ("input_tokens", "pb_tin", "input_tokens_sum"),
                                    ("output_tokens", "pb_tout", "output_tokens_sum")):
        if canonical in present:
            out.append(f'sum({name}) AS "{column}"')
    if "quality_score" in present:
        out += ['count(pb_q) AS "quality_n"', 'sum(pb_q) AS "quality_sum"']
    ll = _LN_LATENCY if "latency_ms" in present else "NULL"
    where = f" WHERE pb_ep >= {_epoch(since)}" if since is not None else ""
    return (_rows_text(present, since, until, lookback) + f"""
SELECT {', '.join(out)}
FROM (SELECT *, pb_day(pb_ep) AS pb_date,{f" {HOUR} AS pb_hour," if hourly else ""} {ll} AS pb_ll
      FROM won{where}) AS pb_w
GROUP BY {', '.join(keys)}
ORDER BY {', '.join(keys)}""")


# The UTC hour of the day of epoch seconds (negative ones too: FLOOR, not MOD).
HOUR = f"CAST(FLOOR((pb_ep - FLOOR(pb_ep / {DAY}) * {DAY}) / 3600) AS INT)"


def _failures_text(present: set[str], since: date | None, until: date | None,
                   lookback: int = LOOKBACK_DAYS) -> str:
    keys, out = _grouping(present, segment=False)
    keys += ["pb_e", "pb_key"]
    out += ['pb_e AS "error_type"', 'min(pb_m) AS "error_message"', 'count(*) AS "count"']
    where = f" AND pb_ep >= {_epoch(since)}" if since is not None else ""
    return (_rows_text(present, since, until, lookback) + f"""
SELECT {', '.join(out)}
FROM (SELECT *, pb_day(pb_ep) AS pb_date, pb_premask(pb_m) AS pb_key FROM won
      WHERE pb_status <> 'success'{where}) AS pb_w
GROUP BY {', '.join(keys)}
ORDER BY {', '.join(keys)}""")


def _reason(present: set[str]) -> str:
    """ingest's reason a row is bad (`_bad_reason` in bot/load/metrics.py), NULL for a good
    row: the same checks in the same order, the first that holds."""
    numbers = [(c, n) for c, n in _NUMBERS.items() if c in present]
    checks = [("pb_ep IS NULL", BAD_TIMESTAMP),
              (f"pb_ep < {MIN_EPOCH} OR pb_ep >= {MAX_EPOCH}", BAD_YEARS),
              ("pb_agent IS NULL", BAD_AGENT),
              (f"pb_status IS NULL OR pb_status NOT IN ({_STATUS_LIST})", BAD_STATUS)]
    checks += [(f"{n}_text IS NOT NULL AND {n} IS NULL", not_a_number(c)) for c, n in numbers]
    for columns, reason in BAD_NEGATIVE:
        names = [n for c, n in numbers if c in columns]
        if names:
            checks.append((" OR ".join(f"{n} < 0" for n in names), reason))
    if numbers:
        # Written so that NaN is caught whether it compares above every number (DuckDB,
        # Postgres) or compares false (BigQuery).
        checks.append((" OR ".join(f"NOT ({n} > -{MAX_DOUBLE} AND {n} < {MAX_DOUBLE})"
                                   for _, n in numbers), BAD_INFINITE))
    return "CASE " + " ".join(f"WHEN {c} THEN '{r}'" for c, r in checks) + " END"


def _bad_text(present: set[str], since: date | None, until: date | None,
              lookback: int = LOOKBACK_DAYS) -> str:
    """Per UTC day and reason, the rows ingest leaves out: bad rows by ingest's reason, and
    the extra copies of re-sent executions as `duplicate`.

    Every row of one execution id is ranked as ingest ranks them (a good row first, the
    reason last); the first is the execution, every other copy a duplicate, good or bad. So
    a bad row counts under its reason only when no row of its id is good. A row's day is its
    own; a row without a usable timestamp has none (an empty date) and is counted whatever
    the window: it belongs to no day, and a window would hide it from every run."""
    undated = f"pb_ep IS NULL OR pb_ep < {MIN_EPOCH} OR pb_ep >= {MAX_EPOCH}"
    window = ""
    if since is not None:
        window = f" WHERE {undated} OR pb_ep >= {_epoch(since) - lookback * DAY}"
    # No --until bound on the rows read: a later good copy wins over an earlier bad one.
    shown = []
    if since is not None:
        shown.append(f"pb_ep >= {_epoch(since)}")
    if until is not None:
        shown.append(f"pb_ep < {_epoch(until)}")
    where = f"WHERE pb_date IS NULL OR ({' AND '.join(shown)})" if shown else ""
    day = f"CASE WHEN NOT ({undated}) THEN pb_day(pb_ep) END"
    return _norm_text(present) + f""", flagged AS (
  SELECT *, {_reason(present)} AS pb_bad,
    CASE WHEN pb_status <> 'success' THEN coalesce(pb_error_type, pb_status) END AS pb_e,
    CASE WHEN pb_status <> 'success' THEN coalesce(pb_error_message, '') END AS pb_m
  FROM norm{window}
), ranked AS (
  SELECT pb_ep, pb_bad, row_number() OVER (PARTITION BY pb_id ORDER BY
    CASE WHEN pb_bad IS NULL THEN 0 ELSE 1 END, {_order(present)}, pb_c(pb_bad)) AS pb_rank
  FROM flagged WHERE pb_id IS NOT NULL
), counted AS (
  SELECT pb_ep, pb_bad FROM flagged WHERE pb_id IS NULL AND pb_bad IS NOT NULL
  UNION ALL
  SELECT pb_ep, CASE WHEN pb_rank = 1 THEN pb_bad ELSE '{DUPLICATE}' END AS pb_bad
  FROM ranked WHERE pb_rank > 1 OR pb_bad IS NOT NULL
)
SELECT pb_iso(pb_date) AS "date", pb_bad AS "reason", count(*) AS "rows"
FROM (SELECT {day} AS pb_date, pb_bad, pb_ep FROM counted) AS pb_w
{where}
GROUP BY pb_date, pb_bad
ORDER BY CASE WHEN pb_date IS NULL THEN 0 ELSE 1 END, pb_date, pb_c(pb_bad)"""


# The partition column's placeholder (`pb_col_` + this): not a canonical column.
PARTITION = "_partition"
# Days of margin on each side of the days read: a partition day in a zone other than UTC,
# or an ingestion time a little after the event, is within a day of the row's own.
PARTITION_MARGIN_DAYS = 1


def _pruned(tree: exp.Expr, request: Request) -> exp.Expr:
    """The first subquery (`src`, the only one that reads the table) restricted to the days
    read, by comparing the partition column as it is with a date's text: each warehouse
    coerces the literal to the column's type (DATE or TIMESTAMP) and reads only those
    partitions, which the values' text (what the rest of the SQL reads) would hide from it.
    The bad-row counts have no upper bound: a later good copy makes an earlier bad one a
    duplicate. The column's value must be the row's day or time (a DATE, TIMESTAMP or
    DATETIME), not a coarser one: a month's partition would fall before the first day."""
    if request.since is None and request.until is None:
        raise WarehouseError("--partition-column without --since or --until reads every "
                             "partition anyway",
                             "pass --since (and --until) with it, or leave it out",
                             option=True)
    margin = timedelta(days=PARTITION_MARGIN_DAYS)
    bounds = []
    if request.since is not None:
        first = request.since - timedelta(days=request.lookback_days) - margin
        bounds.append(f"pb_col_{PARTITION} >= '{first.isoformat()}'")
    if request.until is not None and not request.bad_rows:
        bounds.append(f"pb_col_{PARTITION} < '{(request.until + margin).isoformat()}'")
    if not bounds:
        raise WarehouseError("--bad-rows reads every row after --since (a later good copy "
                             "makes an earlier bad one a duplicate): with --until alone, "
                             "--partition-column would prune nothing",
                             "pass --since too, or leave --partition-column out", option=True)
    src = next(c for c in tree.find_all(exp.CTE) if c.alias == "src")
    select = src.this
    assert isinstance(select, exp.Select)
    # A NULL partition is read too: a row without a usable time where the column derives
    # from it (counted by --bad-rows), or BigQuery's streaming buffer (_PARTITIONTIME).
    src.set("this", select.where(f"pb_col_{PARTITION} IS NULL OR ({' AND '.join(bounds)})",
                                 dialect="duckdb"))
    return tree


# Columns of the histogram rows a latency bin carries for the latency-on-tokens fit (cost
# bins leave them empty): executions with each token count, and the sums of the tokens, their
# squares and their product. Ingest keeps the same sums per bin (bot/load/metrics.py, `_sets`).
FIT_COLUMNS = ("input_tokens_n", "output_tokens_n", "input_tokens_sum", "output_tokens_sum",
               "input_tokens_sumsq", "output_tokens_sumsq", "input_output_tokens_sum")


def _histograms_text(present: set[str], since: date | None, until: date | None,
                     lookback: int = LOOKBACK_DAYS) -> str:
    """Per day, agent, version, metric and bin: the executions in the bin, as ingest bins
    them (`floor(ln(value) * BINS_PER_LN)`, a value under 1e-3 of its unit counting as
    1e-3; cost in micro-dollars), and per latency bin the fit's token sums.

    One pass over `won` crossed with the metrics: `won` referenced twice would settle the
    re-sent executions twice where a warehouse does not keep a CTE's result (BigQuery)."""
    keys, out = _grouping(present, segment=False)
    bins, names = [], []
    if "latency_ms" in present:
        bins.append(f"WHEN pb_metric = 'latency' AND pb_lat IS NOT NULL "
                    f"THEN FLOOR(({_LN_LATENCY}) * {BINS_PER_LN})")
        names.append("latency")
    if "cost_usd" in present:
        # The same arithmetic as ingest (divided by the unit, then clamped), so the same bin.
        micro = (f"(CASE WHEN pb_cost > {MAX_BINNED_COST} THEN {MAX_BINNED_COST} ELSE pb_cost "
                 f"END) / {COST_UNIT}")
        bins.append(f"WHEN pb_metric = 'cost' AND pb_cost IS NOT NULL THEN FLOOR(LN("
                    f"CASE WHEN {micro} < 0.001 THEN 0.001 ELSE {micro} END) * {BINS_PER_LN})")
        names.append("cost")
    metrics = " UNION ALL ".join(f"SELECT '{n}' AS pb_metric" for n in names)
    out += ['pb_metric AS "metric"', 'pb_bin AS "bin"', 'count(*) AS "bin_count"']
    tokens = ""
    if {"latency_ms", "input_tokens", "output_tokens"} <= present:
        # A bin enters the fit only when every execution in it has both token counts, as in
        # ingest: the counts say which.
        sums = ("count(pb_tin)", "count(pb_tout)", "sum(pb_tin)", "sum(pb_tout)",
                "sum(pb_tin * pb_tin)", "sum(pb_tout * pb_tout)", "sum(pb_tin * pb_tout)")
        out += [f"CASE WHEN pb_metric = 'latency' THEN {value} END AS \"{name}\""
                for value, name in zip(sums, FIT_COLUMNS, strict=True)]
        tokens = ", pb_tin, pb_tout"
    where = f" WHERE pb_ep >= {_epoch(since)}" if since is not None else ""
    return (_rows_text(present, since, until, lookback) + f"""
SELECT {', '.join(out)}
FROM (SELECT pb_day(pb_ep) AS pb_date, pb_agent, pb_version, pb_metric,
        CASE {' '.join(bins)} END AS pb_bin{tokens}
      FROM won CROSS JOIN ({metrics}) AS pb_metrics{where}) AS pb_w
WHERE pb_bin IS NOT NULL
GROUP BY {', '.join([*keys, 'pb_metric', 'pb_bin'])}
ORDER BY {', '.join([*keys, 'pb_metric', 'pb_bin'])}""")


def _epoch(day: date) -> int:
    return (day - date(1970, 1, 1)).days * DAY


# ------------------------------------------------------------------ into a dialect


def _macro(name: str, dialect: str, args: list[exp.Expression]) -> exp.Expression:
    texts = MACROS[name]
    text = texts.get(dialect) or texts.get("other") or texts["duckdb"]
    tree = sqlglot.parse_one(text, read=dialect if dialect in texts else "duckdb")
    slots = {"pb_x": args[0], "pb_y": args[1] if len(args) > 1 else None}

    def put(node: exp.Expression) -> exp.Expression:
        if isinstance(node, exp.Column) and not node.table and node.name in slots:
            arg = slots[node.name]
            assert arg is not None
            return arg.copy()
        return node

    return tree.transform(put)


def _status_case(value: exp.Expression, statuses: Mapping[str, str]) -> exp.Expression:
    """The export's own status words (compared lower-cased and trimmed) -> canonical."""
    if not statuses:
        return value
    case = exp.Case(this=value)
    for word, status in sorted(statuses.items()):
        case = case.when(exp.Literal.string(word), exp.Literal.string(status))
    return case.else_(value.copy())


def build(request: Request) -> str:
    """The SQL for `request`, pretty-printed in its dialect."""
    if request.dialect not in DIALECTS:
        raise WarehouseError(f"unknown dialect {request.dialect!r}",
                             f"use one of {', '.join(DIALECTS)}", option=True)
    parts = table_parts(request.table)
    columns = dict(request.columns) if request.columns is not None else resolve({})
    missing = [c for c in REQUIRED if c not in columns]
    if missing:
        raise WarehouseError(f"no column for {', '.join(missing)}",
                             "map the table's names under metrics.columns")
    statuses = {k.strip().lower(): v for k, v in (request.statuses or {}).items()}
    for word in statuses:
        # A literal holding ' or \ reads differently under Postgres's
        # standard_conforming_strings=off: such words are refused, not escaped.
        if "'" in word or "\\" in word:
            raise WarehouseError(
                f"metrics.status_values word {word!r} holds a quote (') or a backslash "
                "(\\), which promptbot does not write into SQL",
                "remove the character in a view over the table (e.g. "
                "REPLACE(status, CHR(39), '')) and map the word without it in "
                "metrics.status_values")
    unknown = sorted(set(statuses.values()) - set(STATUSES))
    if unknown:
        raise WarehouseError(f"metrics.status_values maps to unknown status(es): "
                             f"{', '.join(unknown)}",
                             f"map your status words onto {', '.join(STATUSES)}")
    present = set(columns)
    if request.since and request.until and request.until <= request.since:
        raise WarehouseError(f"--until {request.until} is not after --since {request.since}",
                             "--until is the first day left out: pass a later day",
                             option=True)
    if not 0 <= request.lookback_days <= MAX_LOOKBACK_DAYS:
        raise WarehouseError(f"--lookback-days {request.lookback_days} is out of range",
                             f"pass 0 to {MAX_LOOKBACK_DAYS} (days before --since read to "
                             "settle re-sent executions)", option=True)
    chosen = [name for name, on in (("--failures", request.failures),
                                    ("--bad-rows", request.bad_rows),
                                    ("--histograms", request.histograms)) if on]
    if len(chosen) > 1:
        raise WarehouseError(f"{' and '.join(chosen)} ask for different results",
                             "pass one of them per statement (and run promptbot sql once "
                             "for each)", option=True)
    if request.hourly and chosen:
        raise WarehouseError("--hourly applies to the daily counts only",
                             f"leave out --hourly for {chosen[0]} (it stays daily); run the "
                             "counts with --hourly on their own", option=True)
    if request.histograms and not {"latency_ms", "cost_usd"} & present:
        raise WarehouseError(
            "--histograms needs a latency_ms or cost_usd column, and the table has neither",
            "map the table's latency or cost column under metrics.columns (or list it in "
            "--columns); without either there is nothing to bin", option=True)
    if request.failures:
        text = _failures_text(present, request.since, request.until, request.lookback_days)
    elif request.bad_rows:
        text = _bad_text(present, request.since, request.until, request.lookback_days)
    elif request.histograms:
        text = _histograms_text(present, request.since, request.until, request.lookback_days)
    else:
        text = _daily_text(present, request.since, request.until, request.lookback_days,
                           request.hourly)
    tree = sqlglot.parse_one(text, read="duckdb")
    if request.partition_column is not None:
        columns = {**columns, PARTITION: _column_ok(request.partition_column,
                                                    "--partition-column")}
        tree = _pruned(tree, request)
    table = exp.Table(this=exp.to_identifier(parts[-1], quoted=True),
                      db=exp.to_identifier(parts[-2], quoted=True) if len(parts) > 1 else None,
                      catalog=exp.to_identifier(parts[0], quoted=True) if len(parts) > 2
                      else None)

    def fill(node: exp.Expression) -> exp.Expression:
        if isinstance(node, exp.Column) and node.name.startswith("pb_col_"):
            canonical = node.name[len("pb_col_"):]
            if canonical in columns:
                return exp.column(exp.to_identifier(columns[canonical], quoted=True))
            return exp.Null()
        if isinstance(node, exp.Table) and node.name == "pb_table":
            return table.copy()
        return node

    def expand(node: exp.Expression) -> exp.Expression:
        if not isinstance(node, exp.Anonymous):
            return node
        name = str(node.this).lower()
        # A replaced node is not visited again: its arguments are expanded first.
        args = [a.transform(expand) for a in node.expressions]
        if name == "pb_status":
            return _status_case(args[0], statuses)
        if name in MACROS:
            return _macro(name, request.dialect, args)
        return node

    tree = tree.transform(fill).transform(expand)
    return tree.sql(dialect=request.dialect, pretty=True, unsupported_level=ErrorLevel.RAISE)
