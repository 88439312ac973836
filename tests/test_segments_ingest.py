"""The optional `segment` column through ingest: real DuckDB over real CSV, JSONL, Parquet."""

from __future__ import annotations

import csv
import json
from datetime import datetime
from pathlib import Path

import duckdb
from conftest import write_csv

from bot.core.metrics import MetricsSnapshot, SegmentDay
from bot.load.metrics import ingest

SEG_COLS = ["timestamp", "agent_id", "prompt_version", "execution_id", "status", "latency_ms",
            "task_type"]
D1, D2 = datetime(2026, 11, 1), datetime(2026, 11, 2)


def _days(snap: MetricsSnapshot) -> list[tuple[object, ...]]:
    return [(s.agent_id, s.day, s.prompt_version, s.segment, s.executions, s.successes)
            for s in snap.segment_days]


def _mixed_glob(tmp_path: Path) -> list[str]:
    """A CSV and a Parquet file whose `task_type` is mapped onto `segment`, and a CSV
    without the column, in one glob."""
    team = write_csv(tmp_path / "team.csv", [
        ("2026-11-01T10:00:00Z", "a", "v1", "e1", "success", 100, "refund"),
        ("2026-11-01T10:05:00Z", "a", "v1", "e2", "error", 100, "refund"),
        ("2026-11-01T11:00:00Z", "a", "v1", "e3", "success", 100, "billing"),
        ("2026-11-01T11:30:00Z", "a", "v1", "e4", "success", 100, ""),  # empty: (none)
        ("2026-11-01T12:00:00Z", "a", "v1", "e5", "success", 100, "   "),  # blank: (none)
        ("2026-11-01T12:30:00Z", "a", "v1", "e6", "success", -5, "refund"),  # bad row
        ("2026-11-01T13:00:00Z", "a", "v1", "e7", "success", 100, " billing "),  # trimmed
        # Re-sent (a third copy in the Parquet file): the earliest, an error in billing, wins.
        ("2026-11-01T14:00:00Z", "a", "v1", "e8", "success", 100, "refund"),
        ("2026-11-01T13:50:00Z", "a", "v1", "e8", "error", 100, "billing"),
        ("2026-11-02T09:00:00Z", "a", "v1", "e9", "timeout", 100, "refund"),
        ("2026-11-02T09:00:00Z", "a", "v2", "e10", "success", 100, "refund"),
        ("2026-11-02T09:30:00Z", "a", "v2", "e11", "succeeded", 100, "billing"),  # bad row
        # The earlier copy is bad: the good one (refund) wins; the bad one is a duplicate.
        ("2026-11-02T10:00:00Z", "a", "v2", "e12", "???", 100, "billing"),
        ("2026-11-02T10:05:00Z", "a", "v2", "e12", "success", 100, "refund"),
        # Also in the file without the column, earlier there: that copy wins, no segment.
        ("2026-11-02T08:30:00Z", "a", "v2", "x1", "success", 100, "billing"),
    ], SEG_COLS)
    staged = write_csv(tmp_path / "staged.csv", [
        ("2026-11-02T12:00:00Z", "a", "v2", "p1", "success", 100, "billing"),
        ("2026-11-02T12:30:00Z", "a", "v2", "p2", "failure", 100, "billing"),
        ("2026-11-01T14:10:00Z", "a", "v1", "e8", "success", 100, "refund"),
    ], SEG_COLS)
    parquet = tmp_path / "team.parquet"
    duckdb.connect().execute(f"COPY (SELECT * FROM read_csv('{staged}', all_varchar=true)) "
                             f"TO '{parquet}' (FORMAT parquet)")
    staged.unlink()
    plain = write_csv(tmp_path / "plain.csv", [
        ("2026-11-01T10:00:00Z", "a", "v1", "n1", "success", 100, "", ""),
        ("2026-11-01T10:10:00Z", "b", "v1", "n2", "success", 100, "", ""),
        ("2026-11-02T08:00:00Z", "a", "v2", "x1", "success", 100, "", ""),
    ])
    return [str(team), str(parquet), str(plain)]


def test_segment_days_equal_a_hand_count(tmp_path: Path) -> None:
    snap = ingest(_mixed_glob(tmp_path), {"task_type": "segment"}, window_days=3650)
    assert _days(snap) == [
        ("a", D1, "v1", "(none)", 2, 2),  # e4, e5 (n1 has no segment column)
        ("a", D1, "v1", "billing", 3, 2),  # e3, e7, e8 (its winner, an error)
        ("a", D1, "v1", "refund", 2, 1),  # e1, e2 (e6 is bad, e8's copies lost)
        ("a", D2, "v1", "refund", 1, 0),  # e9
        ("a", D2, "v2", "billing", 2, 1),  # p1, p2 (e11 is bad; x1's winner has none)
        ("a", D2, "v2", "refund", 2, 2),  # e10, e12
    ]
    assert snap.segments_of("b") == []
    # The rest of ingest is unchanged by the segments: 21 rows, e8 twice and e12 and x1
    # once re-sent, e6 and e11 bad.
    assert (snap.rows_read, snap.duplicates, snap.bad_rows, snap.rows_used) == (21, 4, 2, 15)
    assert snap.bad_by_reason == {"negative latency_ms": 1, "unknown status": 1}
    v1, v2 = snap.version("a", "v1"), snap.version("a", "v2")
    assert v1 is not None and v2 is not None
    assert (v1.executions, v1.successes) == (8 + 1, 5 + 1)  # + n1
    assert (v2.executions, v2.successes) == (4 + 1, 3 + 1)  # + x1


def test_segments_under_the_canonical_name_and_in_any_file_order(tmp_path: Path) -> None:
    files = _mixed_glob(tmp_path)
    expected = ingest(files, {"task_type": "segment"}, window_days=3650)
    renamed = tmp_path / "canonical.csv"
    renamed.write_text((tmp_path / "team.csv").read_text().replace("task_type", "segment", 1))
    snap = ingest([files[2], files[1], str(renamed)], {"task_type": "segment"},
                  window_days=3650)
    assert snap.segment_days == expected.segment_days
    assert snap.versions == expected.versions


def test_jsonl_segments_of_mixed_types_are_their_text(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    segments: list[object] = [1, "gold", None, " gold ", 2, ""]
    with path.open("w") as handle:
        for i, seg in enumerate(segments):
            handle.write(json.dumps({"timestamp": f"2026-11-01T10:0{i}:00Z", "agent_id": "a",
                                     "status": "success", "segment": seg}) + "\n")
    snap = ingest([str(path)], window_days=3650)
    assert [(s.prompt_version, s.segment, s.executions) for s in snap.segment_days] == [
        (None, "(none)", 2), (None, "1", 1), (None, "2", 1), (None, "gold", 2)]


def test_a_text_segment_after_many_numeric_ones_is_no_bad_row(tmp_path: Path) -> None:
    # The CSV sniffer samples the first rows: a tier written 0, 1, 2 there would type the
    # column as a number and reject the row with `gold`. Segments are read as text.
    rows: list[tuple[object, ...]] = [
        ("2026-11-01T10:00:00Z", "a", "success", i % 3) for i in range(25_000)]
    rows.append(("2026-11-01T10:00:00Z", "a", "success", "gold"))
    path = write_csv(tmp_path / "m.csv", rows, ["timestamp", "agent_id", "status", "tier"])
    snap = ingest([str(path)], {"tier": "segment"}, window_days=3650)
    assert snap.bad_rows == 0
    assert [(s.segment, s.executions) for s in snap.segment_days] == [
        ("0", 8334), ("1", 8333), ("2", 8333), ("gold", 1)]


def test_without_a_segment_column_there_are_no_segment_days(tmp_path: Path) -> None:
    rows = [("2026-11-01T10:00:00Z", "a", "v1", "e1", "success", 100, "", ""),
            ("2026-11-01T10:00:00Z", "a", "v1", "e1", "success", 100, "", "")]
    snap = ingest([str(write_csv(tmp_path / "m.csv", rows))], window_days=3650)
    assert snap.segment_days == () and snap.rows_used == 1
    daily = write_csv(tmp_path / "daily.csv", [("2026-11-01", "a", "v1", 10, 9)],
                      ["date", "agent_id", "prompt_version", "executions", "successes"])
    assert ingest([str(daily)], window_days=3650).segment_days == ()


def test_flat_spans_with_a_segment_column_have_no_segments(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "spans.csv", [
        ("t1", "s1", "2026-11-01T10:00:00Z", 800, "OK", "chat", "sql-writer", "v7", "gold"),
        ("t2", "s2", "2026-11-01T10:01:00Z", 900, "ERROR", "chat", "sql-writer", "v7", "free"),
    ], ["trace_id", "span_id", "start_time", "duration_ms", "status_code",
        "gen_ai.operation.name", "gen_ai.agent.name", "prompt.version", "segment"])
    snap = ingest([str(path)], window_days=30, preset="otel")
    stats = snap.version("sql-writer", "v7")
    assert stats is not None and (stats.executions, stats.successes) == (2, 1)
    assert snap.segment_days == ()


def test_the_far_future_tail_takes_its_segment_days_along(tmp_path: Path) -> None:
    rows = [(f"2026-11-{d:02d}T10:00:00Z", "a", "v1", f"e{d}-{i}", "success", 100, "t")
            for d in range(1, 29) for i in range(50)]
    rows.append(("9999-12-31T10:00:00Z", "a", "v1", "far", "success", 100, "t"))
    snap = ingest([str(write_csv(tmp_path / "m.csv", rows, SEG_COLS))],
                  {"task_type": "segment"}, window_days=7)
    assert snap.bad_by_reason == {"timestamp far after the rest of the export": 1}
    assert len(snap.segment_days) == 28
    assert max(s.day for s in snap.segment_days) == datetime(2026, 11, 28)
    assert sum(s.executions for s in snap.segment_days) == 28 * 50


def test_daily_form_rows_per_segment(tmp_path: Path) -> None:
    daily = write_csv(tmp_path / "daily.csv", [
        ("2026-11-01", "a", "v1", 600, 540, "gold"),
        ("2026-11-01", "a", "v1", 400, 300, "free"),
        ("2026-11-02", "a", "v1", 500, 450, " gold"),
        ("2026-11-02", "a", "v1", 100, 90, ""),  # (none)
        ("2026-11-03", "a", "v1", 10, 20, "gold"),  # more successes than runs: bad
    ], ["date", "agent_id", "prompt_version", "executions", "successes", "tier"])
    other = write_csv(tmp_path / "other.csv", [("2026-11-01", "b", "v1", 50, 45)],
                      ["date", "agent_id", "prompt_version", "executions", "successes"])
    failures = tmp_path / "failures.csv"
    with failures.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(("date", "agent_id", "prompt_version", "error_type", "error_message",
                         "count", "tier"))
        writer.writerow(("2026-11-01", "a", "v1", "ToolCallError", "boom", 60, "gold"))
    snap = ingest([str(daily), str(other), str(failures)], {"tier": "segment"},
                  window_days=30)
    assert snap.segment_days == (
        SegmentDay("a", "v1", D1, "free", 400, 300),
        SegmentDay("a", "v1", D1, "gold", 600, 540),
        SegmentDay("a", "v1", D2, "(none)", 100, 90),
        SegmentDay("a", "v1", D2, "gold", 500, 450),
    )
    # The buckets still add the segments up; failure counts ignore them.
    assert [(b.hour, b.executions, b.successes) for b in snap.buckets_of("a")] == [
        (D1, 1000, 840), (D2, 600, 540)]
    v1 = snap.version("a", "v1")
    assert v1 is not None and v1.top_errors[0].count == 60
    assert snap.bad_by_reason == {"daily form: successes outside 0..executions": 1}
    assert snap.segments_of("b") == []


def test_segments_from_rows_and_the_daily_form_together(tmp_path: Path) -> None:
    rows = write_csv(tmp_path / "rows.csv", [
        ("2026-11-02T10:00:00Z", "a", "v1", "e1", "success", 100, "gold"),
        ("2026-11-02T11:00:00Z", "a", "v1", "e2", "error", 100, "gold"),
    ], SEG_COLS)
    daily = write_csv(tmp_path / "daily.csv", [("2026-11-01", "a", "v1", 10, 9, "gold")],
                      ["date", "agent_id", "prompt_version", "executions", "successes",
                       "task_type"])
    snap = ingest([str(rows), str(daily)], {"task_type": "segment"}, window_days=30)
    assert _days(snap) == [("a", D1, "v1", "gold", 10, 9), ("a", D2, "v1", "gold", 2, 1)]


def test_a_text_segment_in_the_daily_form_is_not_dropped(tmp_path: Path) -> None:
    rows: list[tuple[object, ...]] = [("2026-11-01", "a", 2, 1, i % 3) for i in range(25_000)]
    rows.append(("2026-11-01", "a", 2, 1, "gold"))
    path = write_csv(tmp_path / "daily.csv", rows,
                     ["date", "agent_id", "executions", "successes", "tier"])
    snap = ingest([str(path)], {"tier": "segment"}, window_days=30)
    assert snap.rows_used == 50_002 and snap.bad_rows == 0
    assert [(s.segment, s.executions, s.successes) for s in snap.segment_days] == [
        ("0", 16_668, 8_334), ("1", 16_666, 8_333), ("2", 16_666, 8_333), ("gold", 2, 1)]


def test_tied_copies_settle_on_the_same_segment_every_time(tmp_path: Path) -> None:
    # Same id, time and status: a copy with a segment is the fuller row and beats one from
    # a file without the column (whatever its values); between two segments the first by
    # value wins; in any file order.
    seg = write_csv(tmp_path / "seg.csv", [
        ("2026-11-01T10:00:00Z", "a", "v1", "t1", "success", 100, "y"),
        ("2026-11-01T10:00:00Z", "a", "v1", "t2", "success", 100, "y"),
    ], SEG_COLS)
    other = write_csv(tmp_path / "other.csv", [
        ("2026-11-01T10:00:00Z", "a", "v1", "t1", "success", 100, "x"),
    ], SEG_COLS)
    plain = write_csv(tmp_path / "plain.csv", [
        ("2026-11-01T10:00:00Z", "a", "v1", "t2", "success", 50, "", ""),
    ])
    for files in ([seg, other, plain], [plain, other, seg], [other, plain, seg]):
        snap = ingest([str(f) for f in files], {"task_type": "segment"}, window_days=3650)
        assert (snap.rows_used, snap.duplicates) == (2, 2)
        assert _days(snap) == [("a", D1, "v1", "x", 1, 1), ("a", D1, "v1", "y", 1, 1)]
