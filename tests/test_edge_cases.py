"""Edge cases of ingest, OpenTelemetry input and decisions found in review."""

from __future__ import annotations

import json
import math
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from conftest import COLS, write_csv

from bot.core.metrics import BINS_PER_LN, Bucket, MetricsSnapshot
from bot.core.model import MeasurePolicy, Policy
from bot.core.report import analysis
from bot.core.results import Deployment, measure
from bot.core.stats import Arm, compare
from bot.load.metrics import ingest


def test_a_late_bad_value_in_jsonl_is_a_bad_row(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    with path.open("w") as handle:
        for i in range(30_000):
            handle.write(json.dumps({"timestamp": "2026-11-01T10:00:00Z", "agent_id": "a",
                                     "execution_id": f"e{i}", "status": "success",
                                     "latency_ms": 100}) + "\n")
        handle.write(json.dumps({"timestamp": "not a time", "agent_id": "a",
                                 "execution_id": "late", "status": "success",
                                 "latency_ms": "abc"}) + "\n")
    snap = ingest([str(path)], window_days=3650)
    assert (snap.rows_used, snap.bad_rows) == (30_000, 1)


def test_file_names_with_glob_characters(tmp_path: Path) -> None:
    row = ("2026-11-01T10:00:00Z", "a", "v1", "e1", "success", 100, "", "")
    target = write_csv(tmp_path / "data[1].csv", [row])
    write_csv(tmp_path / "data1.csv", [row, (*row[:3], "e2", *row[4:])])
    snap = ingest([str(target)], window_days=3650)
    assert snap.rows_read == 1


def test_empty_ids_are_no_ids_and_spaces_around_an_id_do_not_matter(tmp_path: Path) -> None:
    base = ("2026-11-01T10:00:00Z", "a", "v1")
    rows = [(*base, "", "success", 100, "", "")] * 3 + [
        (*base, " ", "success", 100, "", ""),
        (*base, "x1", "success", 100, "", ""),
        (*base, "x1", "success", 100, "", ""),
        (*base, " x1", "success", 100, "", ""),
    ]
    snap = ingest([str(write_csv(tmp_path / "m.csv", rows))], window_days=3650)
    # Four rows without an id are four executions; "x1", "x1" and " x1" are one.
    assert (snap.rows_used, snap.duplicates) == (5, 2)


def test_a_resent_bad_row_counts_once_as_bad(tmp_path: Path) -> None:
    bad = ("2026-11-01T10:00:00Z", "a", "v1", "e9", "succeeded", 100, "", "")
    good = ("2026-11-01T10:00:00Z", "a", "v1", "e1", "success", 100, "", "")
    snap = ingest([str(write_csv(tmp_path / "m.csv", [bad, bad, good]))], window_days=3650)
    assert (snap.rows_used, snap.bad_rows, snap.duplicates) == (1, 1, 1)


def test_mapped_timestamp_column_rejected_by_the_csv_reader(tmp_path: Path) -> None:
    rows = [(f"2026-11-01T10:00:{i:02d}Z", "a", "v1", f"e{i}", "success", 100, "", "")
            for i in range(50)]
    rows.append(("2026-13-45T99:00:00Z", "a", "v1", "bad", "success", 100, "", ""))
    path = write_csv(tmp_path / "m.csv", rows, ["ts", *COLS[1:]])
    snap = ingest([str(path)], {"ts": "timestamp"}, window_days=3650)
    assert snap.bad_by_reason == {"unparseable timestamp": 1}


def test_otel_spans_are_picked_per_trace(tmp_path: Path) -> None:
    path = tmp_path / "spans.csv"
    header = ["trace_id", "span_id", "start_time", "duration_ms", "status_code",
              "gen_ai.operation.name", "gen_ai.agent.name", "service.name"]
    rows = []
    for i in range(10):
        rows.append([f"ta{i}", "s1", "2026-11-01T10:00:00Z", 900, "OK", "invoke_agent",
                     "agent-a", "svc-a"])
        rows.append([f"ta{i}", "s2", "2026-11-01T10:00:00Z", 500, "OK", "chat", "agent-a",
                     "svc-a"])
        rows.append([f"tb{i}", "s1", "2026-11-01T10:00:00Z", 700, "OK", "chat", "", "svc-b"])
    write_csv(path, rows, header)
    snap = ingest([str(path)], window_days=3650, preset="otel")
    counts = {v.agent_id: v.executions for v in snap.versions}
    assert counts == {"agent-a": 10, "svc-b": 10}


def test_daily_form_window_and_triggers(tmp_path: Path) -> None:
    path = tmp_path / "daily.csv"
    rows: list[tuple[object, ...]] = []
    for day in range(30):
        date = (datetime(2026, 10, 1) + timedelta(days=day)).strftime("%Y-%m-%d")
        ok = 500 if day == 29 else 990
        rows.append((date, "a", "v1", 1000, ok))
    write_csv(path, rows, ["date", "agent_id", "prompt_version", "executions", "successes"])
    snap = ingest([str(path)], window_days=28)
    v1 = snap.version("a", "v1")
    assert v1 is not None and v1.executions == 28_000
    data = analysis(snap, {"a": "v1"}, Policy())
    assert [t["kind"] for t in data["triggers"]] == ["degradation"]


def test_far_future_failure_is_not_a_failure_mode(tmp_path: Path) -> None:
    rows: list[tuple[object, ...]] = [
        (f"2026-11-{d:02d}T10:00:00Z", "a", "v1", f"e{d}-{i}", "success", 100, "", "")
        for d in range(1, 29) for i in range(40)]
    rows.append(("9999-12-31T12:00:00Z", "a", "v1", "far", "error", 100, "Boom",
                 "boom from the future"))
    snap = ingest([str(write_csv(tmp_path / "m.csv", rows))], window_days=7)
    v1 = snap.version("a", "v1")
    assert v1 is not None and v1.top_errors == ()
    assert all(h.day.year == 2026 for h in snap.histograms)


def test_no_decision_without_failures() -> None:
    policy = MeasurePolicy()
    assert compare(Arm(2000, 2000), Arm(2000, 2000), 0.03, policy).decision == \
        "insufficient_data"
    assert compare(Arm(2000, 2000), Arm(2000, 1995), 0.03, policy).decision == \
        "insufficient_data"


def test_cost_guardrail_by_deploy_time_sees_a_doubled_cost() -> None:
    deploy = datetime(2026, 11, 1, 12)
    buckets = []
    for h in range(-24 * 8, 24 * 8):
        hour = deploy + timedelta(hours=h)
        cost = 0.01 if h < 0 else 0.02
        buckets.append(Bucket("a", None, hour, 100, 90, 0, 10, 100, 700.0, 4900.0 + 1.0,
                              100, 100 * cost, 0, 0, 0, 0, 0.0, 100 * cost * cost * 1.01))
    snap = MetricsSnapshot((), 0, 0, 0, 0, {}, (), False, None, buckets[-1].hour, 28, (),
                           tuple(buckets))
    dep = Deployment("p-1", "a", "v1", "v2", deploy, "sha", "v2", None, None, 0.03)
    result = measure(dep, snap, MeasurePolicy())
    rail = next(g for g in result.comparison.guardrails if g.metric.startswith("cost"))
    assert rail.ratio == pytest.approx(2.0, rel=0.01) and rail.verdict == "worse"
    # Whole days: the deploy day is left out on both sides, and so is the newest day, which
    # the export does not cover to its last hour (10-24 from noon … 10-31 | 11-02 … 11-08).
    days = [d for d, _, _ in result.daily]
    assert days[0] == "2026-10-24" and days[-1] == "2026-11-08" and "2026-11-01" not in days
    assert (result.comparison.base.executions, result.comparison.new.executions) == \
        (100 * (12 + 24 * 7), 100 * 24 * 7)


def test_the_earliest_good_row_of_a_resent_id_wins_with_its_own_values(tmp_path: Path) -> None:
    rows = [
        ("2026-11-01T09:00:00Z", "a", "v1", "k", "succeeded", 900, "", ""),  # bad
        ("2026-11-01T10:30:00Z", "a", "v1", "k", "error", 500, "ToolCallError", "boom 1"),
        ("2026-11-01T10:10:00Z", "a", "v1", "k", "success", 100, "", ""),  # earliest good
        ("2026-11-01T11:00:00Z", "a", "v1", "odd\x02|id\x01", "error", 300, "E", "x 2"),
        ("2026-11-01T11:00:00Z", "a", "v1", "odd\x02|id\x01", "error", 300, "E", "x 2"),
    ]
    snap = ingest([str(write_csv(tmp_path / "m.csv", rows))], window_days=3650)
    assert (snap.rows_used, snap.bad_rows, snap.duplicates) == (2, 0, 3)
    assert [(b.hour.hour, b.executions, b.successes, b.latency_n) for b in snap.buckets] == [
        (10, 1, 1, 1), (11, 1, 0, 1)]
    latency = sorted(h.index for h in snap.histograms if h.metric == "latency")
    assert [h.count for h in snap.histograms if h.metric == "latency"] == [1, 1]
    assert latency == sorted(math.floor(math.log(x) * BINS_PER_LN) for x in (100, 300))
    assert [(e.error_type, e.count) for e in snap.error_days] == [("E", 1)]
