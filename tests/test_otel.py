"""OpenTelemetry input: the OTLP/JSON reference example, GenAI spans in OTLP/JSON, flat exports."""

from __future__ import annotations

import copy
import csv
import json
from pathlib import Path
from typing import Any

import duckdb
import pytest
from conftest import PROJECT

from bot.errors import MetricsError
from bot.load.metrics import ingest

EXAMPLE = PROJECT / "tests" / "reference" / "telemetry" / "otlp-proto.examples.trace.json"
T0 = 1_767_225_600_000_000_000  # 2026-01-01T00:00:00Z in nanoseconds


def _attr(key: str, value: object) -> dict[str, Any]:
    typed = {"intValue": str(value)} if isinstance(value, int) else {"stringValue": str(value)}
    return {"key": key, "value": typed}


def _genai_trace(path: Path) -> Path:
    """The reference example with its span replaced by GenAI spans: one agent run each,
    with an inference child span that must not count as a second execution."""
    doc = json.loads(EXAMPLE.read_text())
    template = doc["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
    spans = []
    for i in range(9):
        start = T0 + i * 60_000_000_000
        run = copy.deepcopy(template)
        run.update(spanId=f"{i:016X}", name="invoke_agent support-triage",
                   startTimeUnixNano=str(start), endTimeUnixNano=str(start + 1_500_000_000))
        run["attributes"] = [
            _attr("gen_ai.operation.name", "invoke_agent"),
            _attr("gen_ai.agent.name", "support-triage"),
            _attr("prompt.version", "v1"),
            _attr("gen_ai.request.model", "claude-sonnet-4-5"),
            _attr("gen_ai.usage.input_tokens", 1000),
            _attr("gen_ai.usage.output_tokens", 200),
        ]
        if i % 3 == 0:
            run["attributes"].append(_attr("error.type", "OutputParserException"))
            run["status"] = {"code": 2, "message": f"Could not parse LLM output at char {i * 7}"}
        if i == 4:
            run["attributes"].append(_attr("error.type", "timeout"))
        child = copy.deepcopy(run)
        child.update(spanId=f"{i + 100:016X}", parentSpanId=run["spanId"], name="chat")
        child["attributes"] = [_attr("gen_ai.operation.name", "chat"),
                               _attr("gen_ai.agent.name", "support-triage")]
        spans += [run, child]
    doc["resourceSpans"][0]["scopeSpans"][0]["spans"] = spans
    path.write_text(json.dumps(doc))
    return path


def test_reads_the_reference_otlp_example() -> None:
    snap = ingest([str(EXAMPLE)], window_days=36500)
    # A generic span (no GenAI attributes): one execution of the service, 1 s long.
    assert snap.rows_used == 1 and snap.bad_rows == 0
    (stats,) = snap.versions
    assert stats.agent_id == "my.service" and stats.successes == 1
    assert stats.latency_p50_ms == pytest.approx(1000, rel=0.03)
    assert snap.has_version is False


def test_genai_spans_in_otlp_json(tmp_path: Path) -> None:
    snap = ingest([str(_genai_trace(tmp_path / "trace.json"))], window_days=30,
                  prices=(3.0, 15.0))
    assert snap.rows_used == 9  # invoke_agent spans only; chat children are not executions
    stats = snap.version("support-triage", "v1")
    assert stats is not None
    assert (stats.executions, stats.successes, stats.timeouts) == (9, 5, 1)
    assert stats.cost_per_execution == pytest.approx((1000 * 3 + 200 * 15) / 1e6)
    assert stats.latency_p50_ms == pytest.approx(1500, rel=0.03)
    top = stats.top_errors[0]
    assert (top.error_type, top.count) == ("OutputParserException", 3)
    assert top.template == "Could not parse LLM output at char <*>"


def test_flat_span_export_with_the_otel_preset(tmp_path: Path) -> None:
    path = tmp_path / "spans.csv"
    header = ["trace_id", "span_id", "name", "start_time", "duration_ms", "status_code",
              "status_message", "gen_ai.operation.name", "gen_ai.agent.name",
              "prompt.version", "gen_ai.usage.input_tokens", "gen_ai.usage.output_tokens",
              "error.type", "gen_ai.request.model"]
    rows = []
    for i in range(12):
        failed = i % 4 == 0
        rows.append([f"t{i}", f"s{i}", "chat", f"2026-11-01T10:{i:02d}:00Z", 800 + i,
                     "ERROR" if failed else "OK", "tool schema mismatch" if failed else "",
                     "chat", "sql-writer", "v7", 900, 100,
                     "ToolCallError" if failed else "", "claude-sonnet-4-5"])
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    snap = ingest([str(path)], window_days=30, preset="otel")
    stats = snap.version("sql-writer", "v7")
    assert stats is not None
    assert (stats.executions, stats.successes) == (12, 9)
    assert stats.top_errors[0].error_type == "ToolCallError"
    assert stats.latency_p50_ms == pytest.approx(806, rel=0.03)


def test_flat_export_without_a_start_time(tmp_path: Path) -> None:
    path = tmp_path / "spans.csv"
    path.write_text("span_id,gen_ai.agent.name\ns1,a\n")
    with pytest.raises(MetricsError, match="no span start time column"):
        ingest([str(path)], preset="otel")


@pytest.mark.parametrize("kind", ["TIMESTAMPTZ", "TIMESTAMPTZ_NS", "TIMESTAMP", "TIMESTAMP_NS"])
def test_flat_parquet_spans_with_typed_times(tmp_path: Path, kind: str) -> None:
    # Typed start/end times (zoned, or naive = UTC) give the hour and the duration.
    start, end = (("2026-11-01 12:30:00+02", "2026-11-01 12:30:01.5+02")
                  if kind.startswith("TIMESTAMPTZ")
                  else ("2026-11-01 10:30:00", "2026-11-01 10:30:01.5"))
    path = tmp_path / "spans.parquet"
    con = duckdb.connect()
    con.execute("SET TimeZone='Asia/Tokyo'")  # the writer's zone must not matter
    con.execute(f"""COPY (SELECT 't' || i AS trace_id, 's' || i AS span_id,
                           CAST('{start}' AS {kind}) AS start_time,
                           CAST('{end}' AS {kind}) AS end_time, 'OK' AS status_code,
                           'a' AS "gen_ai.agent.name", 'v1' AS "prompt.version"
                    FROM range(3) r(i)) TO '{path}' (FORMAT parquet)""")
    snap = ingest([str(path)], window_days=30, preset="otel")
    assert [(b.hour.isoformat(), b.executions) for b in snap.buckets] == [
        ("2026-11-01T10:00:00", 3)]
    stats = snap.version("a", "v1")
    assert stats is not None and stats.latency_p50_ms == pytest.approx(1500, rel=0.03)
