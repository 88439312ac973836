"""Metrics exports (CSV, JSONL, Parquet) read by DuckDB straight from files.

Rows never pass through Python one by one: DuckDB normalizes, checks,
deduplicates and aggregates, and only small aggregates come back as plain data.
"""

from __future__ import annotations

import glob as globlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb

from bot.core.metrics import Bucket, ErrorGroup, MetricsSnapshot, VersionStats
from bot.errors import MetricsError

CANONICAL = (
    "timestamp", "agent_id", "prompt_version", "execution_id", "status", "latency_ms",
    "input_tokens", "output_tokens", "cost_usd", "error_type", "error_message",
    "quality_score", "model",
)
REQUIRED = ("timestamp", "agent_id", "status")
STATUSES = ("success", "failure", "error", "timeout")
NUMERIC = ("latency_ms", "input_tokens", "output_tokens", "cost_usd", "quality_score")
_READERS = {
    ".csv": "read_csv({files}, union_by_name=true, all_varchar=true, header=true)",
    ".csv.gz": "read_csv({files}, union_by_name=true, all_varchar=true, header=true)",
    ".jsonl": "read_json({files}, format='newline_delimited', union_by_name=true)",
    ".jsonl.gz": "read_json({files}, format='newline_delimited', union_by_name=true)",
    ".json": "read_json({files}, format='newline_delimited', union_by_name=true)",
    ".parquet": "read_parquet({files}, union_by_name=true)",
}
# Variable parts of error messages, masked so that one failure mode is one group.
_MASKS = (
    (r"https?://[^\s'\"]+", "<url>"),
    (r"'[^']*'", "'<str>'"),
    (r'"[^"]*"', '"<str>"'),
    (r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}", "<uuid>"),
    (r"\b0x[0-9a-fA-F]+\b", "<hex>"),
    (r"\b[0-9a-fA-F]{12,}\b", "<hex>"),
    (r"(/[A-Za-z0-9_.-]+){2,}", "<path>"),
    (r"\b[A-Za-z]+[-_][0-9][A-Za-z0-9_-]*\b", "<id>"),
    (r"[0-9]+(\.[0-9]+)?", "<n>"),
)


def _suffix(path: str) -> str:
    lower = path.lower()
    for ext in sorted(_READERS, key=len, reverse=True):
        if lower.endswith(ext):
            return ext
    return Path(lower).suffix


def resolve_sources(patterns: Sequence[str], root: Path) -> list[str]:
    files: list[str] = []
    for pattern in patterns:
        full = pattern if Path(pattern).is_absolute() else str(root / pattern)
        matched = sorted(p for p in globlib.glob(full, recursive=True) if Path(p).is_file())
        if not matched:
            raise MetricsError(
                f"no metrics files match '{pattern}'",
                fix="pass --metrics with a glob that matches CSV, JSONL or Parquet files, "
                "or set metrics.source in policies/promptbot.yaml",
            )
        files += matched
    unknown = [f for f in files if _suffix(f) not in _READERS]
    if unknown:
        raise MetricsError(
            f"{unknown[0]} is not a supported metrics format",
            fix="use .csv, .jsonl (optionally .gz) or .parquet files",
        )
    return files


def _quote_list(files: Sequence[str]) -> str:
    return "[" + ", ".join("'" + f.replace("'", "''") + "'" for f in files) + "]"


def _quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


@dataclass
class _Source:
    relation: str
    columns: dict[str, str] = field(default_factory=dict)  # canonical -> column in the file


def _describe(con: duckdb.DuckDBPyConnection, reader: str, display: str) -> list[str]:
    try:
        rows = con.execute(f"DESCRIBE SELECT * FROM {reader}").fetchall()
    except duckdb.Error as exc:
        first = str(exc).splitlines()[0][:300]
        raise MetricsError(
            f"{display} cannot be read: {first}",
            fix="check that the file is a complete CSV (with a header row), JSONL or Parquet file",
        ) from None
    return [str(r[0]) for r in rows]


def _source_for(
    con: duckdb.DuckDBPyConnection, files: list[str], ext: str, mapping: dict[str, str]
) -> _Source:
    reader = _READERS[ext].format(files=_quote_list(files))
    # Each file is checked on its own so the error names the file that is wrong.
    for f in files:
        cols = set(_describe(con, _READERS[ext].format(files=_quote_list([f])), f))
        renamed = {mapping.get(c, c) for c in cols}
        missing = [c for c in REQUIRED if c not in renamed]
        if missing:
            raise MetricsError(
                f"{f} is missing required column(s): {', '.join(missing)}",
                fix=(
                    "rename the columns in the export, or map them in policies/promptbot.yaml "
                    "under metrics.columns (e.g. `columns: {ts: timestamp}`); "
                    f"the file has: {', '.join(sorted(cols))}"
                ),
            )
    available = _describe(con, reader, ", ".join(files))
    by_canonical: dict[str, str] = {}
    for col in available:
        canonical = mapping.get(col, col)
        if canonical in CANONICAL:
            by_canonical.setdefault(canonical, col)
    return _Source(reader, by_canonical)


def _normalized_select(src: _Source) -> str:
    def col(name: str) -> str:
        return (
            f"CAST({_quote_ident(src.columns[name])} AS VARCHAR)"
            if name in src.columns
            else "CAST(NULL AS VARCHAR)"
        )

    parts = [
        f"{col('timestamp')} AS raw_timestamp",
        f"try_cast({col('timestamp')} AS TIMESTAMPTZ)::TIMESTAMP AS ts",
        f"nullif(trim({col('agent_id')}), '') AS agent_id",
        f"nullif(trim({col('prompt_version')}), '') AS prompt_version",
        f"nullif(trim({col('execution_id')}), '') AS execution_id",
        f"lower(trim({col('status')})) AS status",
        f"{col('error_type')} AS error_type",
        f"{col('error_message')} AS error_message",
        f"{col('model')} AS model",
    ]
    parts += [f"try_cast({col(n)} AS DOUBLE) AS {n}" for n in NUMERIC]
    parts += [f"{col(n)} AS raw_{n}" for n in NUMERIC]
    return f"SELECT {', '.join(parts)} FROM {src.relation}"


def _bad_reason_sql() -> str:
    statuses = ", ".join(f"'{s}'" for s in STATUSES)
    checks = [
        ("ts IS NULL", "unparseable timestamp"),
        ("agent_id IS NULL", "missing agent_id"),
        (f"status IS NULL OR status NOT IN ({statuses})", "unknown status"),
    ]
    for n in NUMERIC:
        checks.append((f"raw_{n} IS NOT NULL AND trim(raw_{n}) <> '' AND {n} IS NULL",
                       f"{n} is not a number"))
    checks += [
        ("latency_ms < 0", "negative latency_ms"),
        ("input_tokens < 0 OR output_tokens < 0", "negative token count"),
        ("cost_usd < 0", "negative cost_usd"),
    ]
    cases = " ".join(f"WHEN {cond} THEN '{reason}'" for cond, reason in checks)
    return f"CASE {cases} ELSE NULL END"


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _template_sql(expr: str) -> str:
    out = f"coalesce({expr}, '')"
    for pattern, repl in _MASKS:
        out = f"regexp_replace({out}, {_literal(pattern)}, {_literal(repl)}, 'g')"
    return f"trim(regexp_replace({out}, '\\s+', ' ', 'g'))"


def connect(temp_dir: Path | None = None) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(":memory:")
    con.execute("SET TimeZone='UTC'")
    con.execute("SET memory_limit='1GB'")
    if temp_dir is not None:
        con.execute(f"SET temp_directory='{str(temp_dir).replace(chr(39), chr(39) * 2)}'")
    return con


def ingest(
    files: Sequence[str],
    mapping: dict[str, str] | None = None,
    window_days: int = 28,
    con: duckdb.DuckDBPyConnection | None = None,
) -> MetricsSnapshot:
    mapping = dict(mapping or {})
    bad_targets = sorted(set(mapping.values()) - set(CANONICAL))
    if bad_targets:
        raise MetricsError(
            f"metrics.columns maps to unknown column(s): {', '.join(bad_targets)}",
            fix=f"map your columns onto the canonical ones: {', '.join(CANONICAL)}",
        )
    con = con or connect()
    groups: dict[str, list[str]] = {}
    for f in files:
        groups.setdefault(_suffix(f), []).append(f)
    sources = [_source_for(con, fs, ext, mapping) for ext, fs in sorted(groups.items())]
    has_version = all("prompt_version" in s.columns for s in sources)
    union = " UNION ALL BY NAME ".join(f"({_normalized_select(s)})" for s in sources)
    try:
        con.execute(f"CREATE OR REPLACE TEMP TABLE raw AS SELECT *, {_bad_reason_sql()} AS bad "
                    f"FROM ({union})")
    except duckdb.Error as exc:
        raise MetricsError(
            f"metrics cannot be read: {str(exc).splitlines()[0][:300]}",
            fix="check the files for truncated lines or mixed types in one column",
        ) from None
    rows_read = _scalar(con, "SELECT count(*) FROM raw")
    bad_rows = _scalar(con, "SELECT count(*) FROM raw WHERE bad IS NOT NULL")
    bad_by_reason = {
        str(r): int(n)
        for r, n in con.execute(
            "SELECT bad, count(*) FROM raw WHERE bad IS NOT NULL GROUP BY 1 ORDER BY 2 DESC, 1"
        ).fetchall()
    }
    bad_samples = [
        {"reason": str(r[0]), "timestamp": r[1], "agent_id": r[2], "status": r[3]}
        for r in con.execute(
            "SELECT bad, raw_timestamp, agent_id, status FROM raw WHERE bad IS NOT NULL "
            "ORDER BY bad, raw_timestamp LIMIT 5"
        ).fetchall()
    ]
    # A re-sent execution (same id) counts once: the earliest row wins.
    con.execute(
        "CREATE OR REPLACE TEMP TABLE good AS SELECT * FROM raw WHERE bad IS NULL "
        "QUALIFY execution_id IS NULL OR "
        "row_number() OVER (PARTITION BY execution_id ORDER BY ts, status) = 1"
    )
    rows_used = _scalar(con, "SELECT count(*) FROM good")
    duplicates = rows_read - bad_rows - rows_used
    newest_row = con.execute("SELECT max(ts), min(ts) FROM good").fetchone()
    newest: datetime | None = newest_row[0] if newest_row else None
    oldest: datetime | None = newest_row[1] if newest_row else None
    buckets = [
        Bucket(str(r[0]), r[1], r[2], int(r[3]), int(r[4]), int(r[5]))
        for r in con.execute(
            "SELECT agent_id, prompt_version, date_trunc('hour', ts) AS hour, count(*), "
            "count(*) FILTER (status = 'success'), count(*) FILTER (status = 'timeout') "
            "FROM good GROUP BY ALL ORDER BY 1, 3, 2"
        ).fetchall()
    ]
    versions = _version_stats(con, window_days) if newest is not None else []
    return MetricsSnapshot(
        sources=tuple(files),
        rows_read=rows_read,
        rows_used=rows_used,
        duplicates=duplicates,
        bad_rows=bad_rows,
        bad_by_reason=bad_by_reason,
        bad_samples=tuple(bad_samples),
        has_version=has_version,
        oldest=oldest,
        newest=newest,
        window_days=window_days,
        versions=tuple(versions),
        buckets=tuple(buckets),
    )


def _scalar(con: duckdb.DuckDBPyConnection, sql: str) -> int:
    row = con.execute(sql).fetchone()
    return int(row[0]) if row and row[0] is not None else 0


def _version_stats(con: duckdb.DuckDBPyConnection, window_days: int) -> list[VersionStats]:
    con.execute(
        "CREATE OR REPLACE TEMP TABLE win AS SELECT * FROM good "
        f"WHERE ts > (SELECT max(ts) FROM good) - INTERVAL {int(window_days)} DAY"
    )
    rows = con.execute(
        """
        SELECT agent_id, coalesce(prompt_version, '') AS v, count(*) AS n,
               count(*) FILTER (status = 'success'),
               count(*) FILTER (status = 'timeout'),
               quantile_cont(latency_ms, 0.5), quantile_cont(latency_ms, 0.95),
               avg(cost_usd), sum(cost_usd), avg(input_tokens), avg(output_tokens),
               min(ts), max(ts), avg(quality_score)
        FROM win GROUP BY 1, 2 ORDER BY 1, min(ts), 2
        """
    ).fetchall()
    errors = _error_groups(con)
    out: list[VersionStats] = []
    for r in rows:
        key = (str(r[0]), str(r[1]))
        out.append(
            VersionStats(
                agent_id=key[0],
                prompt_version=key[1] or None,
                executions=int(r[2]),
                successes=int(r[3]),
                timeouts=int(r[4]),
                latency_p50_ms=_f(r[5]),
                latency_p95_ms=_f(r[6]),
                cost_per_execution=_f(r[7]),
                cost_total=_f(r[8]),
                input_tokens_mean=_f(r[9]),
                output_tokens_mean=_f(r[10]),
                first_seen=r[11],
                last_seen=r[12],
                quality_mean=_f(r[13]),
                top_errors=tuple(errors.get(key, [])),
            )
        )
    return out


def _error_groups(con: duckdb.DuckDBPyConnection) -> dict[tuple[str, str], list[ErrorGroup]]:
    sql = f"""
        WITH f AS (
            SELECT agent_id, coalesce(prompt_version, '') AS v, status,
                   coalesce(nullif(trim(error_type), ''), status) AS etype,
                   {_template_sql('error_message')} AS template, error_message, ts
            FROM win WHERE status <> 'success'
        ), g AS (
            SELECT agent_id, v, etype, template, count(*) AS n, min(ts) AS first, max(ts) AS last,
                   min(error_message) AS example,
                   row_number() OVER (PARTITION BY agent_id, v ORDER BY count(*) DESC,
                                      etype, template) AS rank
            FROM f GROUP BY agent_id, v, etype, template
        )
        SELECT agent_id, v, etype, template, n, first, last, example FROM g
        WHERE rank <= 5 ORDER BY agent_id, v, rank
    """
    out: dict[tuple[str, str], list[ErrorGroup]] = {}
    for r in con.execute(sql).fetchall():
        out.setdefault((str(r[0]), str(r[1])), []).append(
            ErrorGroup(
                error_type=str(r[2]),
                template=str(r[3]),
                count=int(r[4]),
                first_seen=r[5],
                last_seen=r[6],
                example=str(r[7] or "")[:500],
            )
        )
    return out


def _f(value: Any) -> float | None:
    return None if value is None else float(value)
