"""Metrics ingest through DuckDB over real CSV, JSONL and Parquet files."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import duckdb
import pytest
from conftest import COLS, PROJECT, Cli, snapshot_state, write_csv

from bot.errors import MetricsError
from bot.load.metrics import ingest, resolve_sources

ROWS = [
    # timestamp, agent, version, id, status, latency, error_type, message
    ("2026-11-01T10:00:00Z", "a", "v1", "e1", "success", 100, "", ""),
    ("2026-11-01T10:05:00Z", "a", "v1", "e2", "error", 300, "ToolCallError",
     "lookup_order failed: order 'ORD-12345' not found"),
    ("2026-11-01T10:06:00Z", "a", "v1", "e3", "error", 350, "ToolCallError",
     "lookup_order failed: order 'ORD-99' not found"),
    ("2026-11-01T10:06:00Z", "a", "v1", "e3", "error", 350, "ToolCallError",
     "lookup_order failed: order 'ORD-99' not found"),  # re-sent: counts once
    ("2026-11-01T11:00:00Z", "a", "v2", "e4", "success", 200, "", ""),
    ("2026-11-01T11:30:00Z", "a", "v2", "e5", "timeout", 30000, "Timeout",
     "Request timed out after 30s"),
    ("not a time", "a", "v2", "e6", "success", 100, "", ""),  # bad timestamp
    ("2026-11-01T12:00:00Z", "a", "v2", "e7", "succeeded", 100, "", ""),  # bad status
    ("2026-11-01T12:30:00Z", "a", "v2", "e8", "success", -5, "", ""),  # negative latency
]


def _check_snapshot(files: list[str]) -> None:
    snap = ingest(files, window_days=3650)
    assert snap.rows_read == 9
    assert snap.bad_rows == 3
    assert snap.bad_by_reason == {"unparseable timestamp": 1, "unknown status": 1,
                                  "negative latency_ms": 1}
    assert snap.duplicates == 1
    assert snap.rows_used == 5
    v1 = snap.version("a", "v1")
    v2 = snap.version("a", "v2")
    assert v1 is not None and v2 is not None
    assert (v1.executions, v1.successes) == (3, 1)
    assert (v2.executions, v2.successes, v2.timeouts) == (2, 1, 1)
    # Percentiles come from log-binned histograms: within 2.5 % of the exact value.
    assert v1.latency_p50_ms == pytest.approx(300.0, rel=0.025)
    top = v1.top_errors[0]
    assert top.count == 2 and top.error_type == "ToolCallError"
    assert top.template == "lookup_order failed: order '<*>' not found"


def test_csv(tmp_path: Path) -> None:
    _check_snapshot([str(write_csv(tmp_path / "m.csv", ROWS))])


def test_large_inputs_find_duplicates_with_the_spilling_aggregate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Above the bound the hashes are not sorted in memory; the result must not change.
    import bot.load.metrics as metrics

    monkeypatch.setattr(metrics, "SORT_IN_MEMORY_ROWS", 0)
    _check_snapshot([str(write_csv(tmp_path / "m.csv", ROWS))])


def test_jsonl_and_parquet_give_the_same_numbers(tmp_path: Path) -> None:
    src = write_csv(tmp_path / "m.csv", ROWS)
    con = duckdb.connect()
    rel = f"read_csv('{src}', all_varchar=true)"
    jsonl, parquet = tmp_path / "m.jsonl", tmp_path / "m.parquet"
    with jsonl.open("w") as handle:
        for row in ROWS:
            handle.write(json.dumps(dict(zip(COLS, row, strict=True))) + "\n")
    con.execute(f"COPY (SELECT * FROM {rel}) TO '{parquet}' (FORMAT parquet)")
    _check_snapshot([str(jsonl)])
    _check_snapshot([str(parquet)])


def test_missing_columns_name_the_file_and_the_fix(tmp_path: Path) -> None:
    bad = write_csv(tmp_path / "bad.csv", [("2026-11-01", "x")], ["ts", "agent_id"])
    with pytest.raises(MetricsError) as info:
        ingest([str(bad)])
    text = info.value.render()
    assert "bad.csv is missing required column(s): timestamp, status" in text
    assert "metrics.columns" in text and "the file has: agent_id, ts" in text


def test_column_mapping_renames(tmp_path: Path) -> None:
    cols = ["ts", "agent", "prompt_version", "execution_id", "outcome", "latency_ms",
            "error_type", "error_message"]
    path = write_csv(tmp_path / "team.csv", ROWS, cols)
    snap = ingest([str(path)], {"ts": "timestamp", "agent": "agent_id", "outcome": "status"},
                  window_days=3650)
    assert snap.rows_used == 5


def test_no_files_match(tmp_path: Path) -> None:
    with pytest.raises(MetricsError) as info:
        resolve_sources(["nothing/*.csv"], tmp_path)
    assert "no metrics files match 'nothing/*.csv'" in info.value.render()


def test_shipped_export_carries_the_current_versions(cli: Cli) -> None:
    data = cli.json("analyze", "--json")
    assert isinstance(data, dict)
    for agent in ("support-triage", "sql-writer", "meeting-summarizer"):
        info = data["agents"][agent]
        current = [v for v in info["versions"] if v["prompt_version"] == info["current_version"]]
        assert current and current[0]["executions"] > 1000, (
            f"{agent}: examples/metrics has no rows for the version in prompts/; "
            "run scripts/make_example_metrics.py"
        )
    assert data["agents"]["legacy-router"]["in_repository"] is False
    # Count what DuckDB should find, independently, with the csv module.
    with (PROJECT / "examples/metrics/executions.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    bad = [r for r in rows if r["timestamp"] == "not-a-time" or r["status"] not in
           ("success", "failure", "error", "timeout") or float(r["latency_ms"]) < 0]
    good_ids = [r["execution_id"] for r in rows if r not in bad]
    assert bad and len(good_ids) > len(set(good_ids))
    assert data["input"]["rows_read"] == len(rows)
    assert data["input"]["bad_rows"] == len(bad)
    assert data["input"]["duplicates_dropped"] == len(good_ids) - len(set(good_ids))


def test_run_with_wrong_columns_changes_nothing(cli: Cli, repo: Path, tmp_path: Path) -> None:
    bad = write_csv(tmp_path / "bad.csv", [("2026-11-01", "x")], ["ts", "agent_id"])
    before = snapshot_state(repo)
    code, _, err = cli("run", "--metrics", str(bad))
    assert code == 3
    assert "missing required column(s)" in err and "Traceback" not in err
    assert snapshot_state(repo) == before


def test_example_export_exists() -> None:
    assert (PROJECT / "examples" / "metrics" / "executions.csv").stat().st_size > 100_000


def test_a_far_future_row_does_not_move_the_window(tmp_path: Path) -> None:
    rows = [(f"2026-11-{d:02d}T10:00:00Z", "a", "v1", f"e{d}-{i}", "success", 100, "", "")
            for d in range(1, 29) for i in range(50)]
    rows.append(("9999-12-31T23:59:59Z", "a", "v1", "far", "success", 100, "", ""))
    snap = ingest([str(write_csv(tmp_path / "m.csv", rows))], window_days=7)
    assert snap.newest is not None and snap.newest.year == 2026
    assert snap.bad_by_reason == {"timestamp far after the rest of the export": 1}
    v1 = snap.version("a", "v1")
    assert v1 is not None and v1.executions == 7 * 50


def test_infinite_and_nan_numbers_are_bad_rows(tmp_path: Path) -> None:
    rows = [("2026-11-01T10:00:00Z", "a", "v1", "e1", "success", "inf", "", ""),
            ("2026-11-01T10:00:00Z", "a", "v1", "e2", "success", "nan", "", ""),
            ("2026-11-01T10:00:00Z", "a", "v1", "e3", "success", "120", "", "")]
    snap = ingest([str(write_csv(tmp_path / "m.csv", rows))], window_days=30)
    assert snap.bad_by_reason == {"a number is not finite (inf/nan)": 2}
    assert snap.rows_used == 1


def test_malformed_csv_rows_are_counted_once_with_their_line(tmp_path: Path) -> None:
    path = tmp_path / "m.csv"
    good = [f"2026-11-01T10:00:{i:02d}Z,a,v1,e{i},success,100,," for i in range(40)]
    path.write_text(",".join(COLS) + "\n" + "\n".join(good[:20]) + "\n"
                    + "2026-11-01T10:01:00Z,a,v1\n"  # too few fields
                    + "\n".join(good[20:]) + "\n")
    snap = ingest([str(path)], window_days=30)
    assert snap.rows_used == 40
    assert snap.bad_rows == 1 and snap.rows_read == 41
    assert [s.get("line") for s in snap.bad_samples] == [22]


def test_empty_files_are_skipped_and_reported(tmp_path: Path) -> None:
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    full = write_csv(tmp_path / "m.csv", ROWS)
    snap = ingest([str(empty), str(full)], window_days=3650)
    assert snap.skipped_files == (str(empty),) and snap.rows_read == 9
    with pytest.raises(MetricsError, match="every metrics file is empty"):
        ingest([str(empty)])


def test_pre_aggregated_daily_form(tmp_path: Path) -> None:
    daily = tmp_path / "daily.csv"
    rows = [("date", "agent_id", "prompt_version", "executions", "successes", "timeouts",
             "latency_log_sum", "latency_n", "cost_sum")]
    for day in range(1, 11):
        rows.append((f"2026-11-{day:02d}", "a", "v1", 1000, 900, 20, 7.5 * 1000, 1000, 9.0))
    rows.append(("2026-11-11", "a", "v1", 10, 20, 0, 0, 0, 0))  # more successes than runs
    rows.append(("someday", "a", "v1", 10, 5, 0, 0, 0, 0))
    with daily.open("w", newline="") as handle:
        csv.writer(handle).writerows(rows)
    failures = tmp_path / "failures.csv"
    with failures.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(("date", "agent_id", "prompt_version", "error_type", "error_message",
                         "count"))
        for day in range(1, 11):
            writer.writerow((f"2026-11-{day:02d}", "a", "v1", "ToolCallError",
                             f"order 'ORD-{day}' not found", 60))
    snap = ingest([str(daily), str(failures)], window_days=30)
    v1 = snap.version("a", "v1")
    assert v1 is not None
    assert (v1.executions, v1.successes, v1.timeouts) == (10_000, 9_000, 200)
    assert v1.cost_per_execution == pytest.approx(0.009)
    assert v1.top_errors[0].count == 600
    assert v1.top_errors[0].template == "order '<*>' not found"
    assert snap.bad_by_reason == {"daily form: successes outside 0..executions": 1,
                                  "daily form: unparseable date": 1}
    assert snap.has_version


def test_daily_form_missing_columns(tmp_path: Path) -> None:
    daily = tmp_path / "daily.csv"
    daily.write_text("date,agent_id,executions\n2026-11-01,a,10\n")
    with pytest.raises(MetricsError, match=r"daily form\) is missing column\(s\): successes"):
        ingest([str(daily)])


def test_daily_form_histogram_rows(tmp_path: Path) -> None:
    """The histogram file (`promptbot sql --histograms`) beside the daily counts: latency and
    cost bins per version and day, the fit from latency bins whose every execution has both
    token counts, bad rows counted by reason (and left out) without a warning about its
    columns."""
    daily = tmp_path / "daily.csv"
    daily.write_text("date,agent_id,prompt_version,executions,successes\n"
                     "2026-11-01,a,v1,20,18\n2026-11-02,a,v1,10,10\n")
    hist = tmp_path / "histograms.csv"
    header = ("date,agent_id,prompt_version,metric,bin,bin_count,input_tokens_n,"
              "output_tokens_n,input_tokens_sum,output_tokens_sum,input_tokens_sumsq,"
              "output_tokens_sumsq,input_output_tokens_sum")
    hist.write_text("\n".join([
        header,
        "2026-11-01,a,v1,latency,100.0,15,15,15,150,75,1500,375,750",
        "2026-11-01,a,v1,latency,140,5,5,4,50,20,500,100,200",  # a row without output tokens
        "2026-11-01,a,v1,cost,150,20,,,,,,,",
        "2026-11-02,a,v1,Latency,101,10,10,10,100,50,1000,250,500",  # the metric's case
        "someday,a,v1,latency,100,1,1,1,1,1,1,1,1",
        "2026-11-02,a,v1,p95,100,1,,,,,,,",
        "2026-11-02,a,v1,latency,100.5,1,,,,,,,",
        "2026-11-02,a,v1,cost,1,-3,,,,,,,",
        "2026-11-02,a,v1,latency,102,3,4,3,1,1,1,1,1",  # more token counts than executions
    ]) + "\n")
    snap = ingest([str(daily), str(hist)], window_days=30)
    assert snap.bad_by_reason == {
        "daily form histograms: unparseable date": 1,
        "daily form histograms: metric is neither latency nor cost": 1,
        "daily form histograms: bin is not an integer": 1,
        "daily form histograms: count is not a non-negative number": 1,
        "daily form histograms: token counts outside 0..bin_count": 1}
    assert snap.daily_rows == 2 + 9 and not snap.warnings
    bins = {(h.day.day, h.metric, h.index): h.count for h in snap.histograms
            if h.metric != "fit"}
    assert bins == {(1, "latency", 100): 15, (1, "latency", 140): 5, (1, "cost", 150): 20,
                    (2, "latency", 101): 10}
    fits = {h.day.day: h.moments for h in snap.histograms if h.metric == "fit"}
    assert set(fits) == {1, 2}  # day 1 without the 140 bin
    assert fits[1] is not None and fits[1].n == 15 and fits[1].x1 == 150
    y = math.exp(100.5 / 20)
    assert fits[1].y == pytest.approx(15 * y) and fits[1].x1y == pytest.approx(150 * y)
    v1 = snap.version("a", "v1")
    assert v1 is not None and v1.latency_p50_ms is not None and v1.moments is not None
    assert v1.moments.n == 25 and math.exp(100 / 20) < v1.latency_p50_ms < math.exp(102 / 20)


def test_daily_form_histogram_rows_missing_columns(tmp_path: Path) -> None:
    hist = tmp_path / "histograms.csv"
    hist.write_text("date,agent_id,metric,bin\n2026-11-01,a,latency,100\n")
    with pytest.raises(MetricsError, match=r"histograms.csv \(daily form, histogram rows\) is "
                       r"missing column\(s\): bin_count") as caught:
        ingest([str(hist)])
    assert "promptbot sql --histograms" in caught.value.render()


def test_bom_semicolons_mixed_zones_and_huge_messages(tmp_path: Path) -> None:
    path = tmp_path / "m.csv"
    huge = "x" * 50_000
    lines = [";".join(COLS),
             "2026-11-01T10:00:00Z;a;v1;e1;success;100;;",
             "2026-11-01 12:00:00+02:00;a;v1;e2;error;100;Boom;" + huge,  # 10:00 UTC
             "1761991200;a;v1;e3;success;100;;"]  # epoch seconds: 2025-11-01T10:00:00Z
    path.write_bytes(b"\xef\xbb\xbf" + "\n".join(lines).encode() + b"\n")
    snap = ingest([str(path)], window_days=3650)
    assert snap.rows_used == 3 and snap.bad_rows == 0
    hours = sorted({b.hour for b in snap.buckets})
    assert [h.isoformat() for h in hours] == ["2025-11-01T10:00:00", "2026-11-01T10:00:00"]
    error = snap.error_days[0]
    assert len(error.example) <= 500 and error.template.startswith("x")


def test_non_utf8_bytes_are_a_clear_error_or_a_counted_row(tmp_path: Path) -> None:
    path = tmp_path / "m.csv"
    path.write_bytes(",".join(COLS).encode() + b"\n"
                     + b"2026-11-01T10:00:00Z,a,v1,e1,success,100,,\n"
                     + b"2026-11-01T10:01:00Z,a,v1,e2,error,100,Boom,caf\xe9 \xff\n")
    try:
        snap = ingest([str(path)], window_days=3650)
    except MetricsError as exc:
        assert "m.csv" in exc.render() and "fix:" in exc.render()
    else:
        assert snap.rows_read == 2 and snap.rows_used + snap.bad_rows == 2


def test_parquet_with_wrong_types(tmp_path: Path) -> None:
    parquet = tmp_path / "m.parquet"
    con = duckdb.connect()
    con.execute(f"""COPY (SELECT '2026-11-01T10:00:00Z' AS timestamp, 'a' AS agent_id,
                    'v1' AS prompt_version, 'e' || range AS execution_id, 'success' AS status,
                    CASE WHEN range = 3 THEN 'slow' ELSE CAST(range * 10 AS VARCHAR) END
                        AS latency_ms
                    FROM range(5)) TO '{parquet}' (FORMAT parquet)""")
    snap = ingest([str(parquet)], window_days=3650)
    assert snap.rows_used == 4
    assert snap.bad_by_reason == {"latency_ms is not a number": 1}


def test_a_row_without_latency_adds_nothing_to_the_log_latency_sums(tmp_path: Path) -> None:
    rows = [("2026-11-01T10:00:00Z", "a", "v1", "e1", "success", 100, "", ""),
            ("2026-11-01T10:10:00Z", "a", "v1", "e2", "success", "", "", "")]
    snap = ingest([str(write_csv(tmp_path / "m.csv", rows))], window_days=30)
    (bucket,) = snap.buckets
    assert (bucket.executions, bucket.latency_n) == (2, 1)
    assert bucket.log_latency_sum == pytest.approx(math.log(100))
    assert bucket.log_latency_sumsq == pytest.approx(math.log(100) ** 2)


def test_token_means_count_only_rows_that_report_them(tmp_path: Path) -> None:
    """An export row without output_tokens must not pull the output mean down (the
    max_tokens cap of the speed goal is built on it)."""
    cols = [*COLS, "input_tokens", "output_tokens"]
    rows = [("2026-11-01T10:00:00Z", "a", "v1", f"e{i}", "success", 100, "", "", 1000,
             300 if i < 2 else "") for i in range(4)]
    snap = ingest([str(write_csv(tmp_path / "m.csv", rows, cols))], window_days=3650)
    v1 = snap.version("a", "v1")
    assert v1 is not None
    assert v1.input_tokens_mean == pytest.approx(1000.0)
    assert v1.output_tokens_mean == pytest.approx(300.0)  # not 150: two rows have none


def test_retries_column_counts_retried_executions_and_flags_a_pattern(
    tmp_path: Path, cli: Cli
) -> None:
    cols = ["timestamp", "agent_id", "prompt_version", "execution_id", "status", "retries"]
    rows: list[list[object]] = [
        [f"2026-11-0{1 + i // 100}T{i % 24:02d}:00:00Z", "a", "v1", f"e{i}", "success",
         (2 if i % 10 == 0 else 0)] for i in range(300)]
    rows.append(["2026-11-03T01:00:00Z", "a", "v1", "bad1", "success", "twice"])
    rows.append(["2026-11-03T02:00:00Z", "a", "v1", "bad2", "success", -1])
    rows.append(["2026-11-03T03:00:00Z", "a", "v1", "e0", "success", 5])  # re-sent
    path = write_csv(tmp_path / "r.csv", rows, cols)
    snap = ingest([str(path)], window_days=30)
    v1 = snap.version("a", "v1")
    assert v1 is not None
    assert (v1.retries_n, v1.retried, v1.retries_sum) == (300, 30, 60.0)
    assert snap.bad_by_reason == {"retries is not a number": 1, "negative retries": 1}
    data = cli.json("analyze", "--metrics", str(path), "--json")
    assert isinstance(data, dict)
    version = data["agents"]["a"]["versions"][0]
    assert version["retries"] == {"executions_with_count": 300, "retried": 30,
                                  "retried_share": 0.1, "retries_total": 60,
                                  "retries_per_retried": 2.0}
    # Without the column there is no retries block (and no extra work in the ingest pass).
    plain = ingest([str(write_csv(tmp_path / "p.csv", [r[:5] for r in rows[:10]],
                                  cols[:5]))], window_days=30)
    assert all(v.retries_n == 0 for v in plain.versions)
    from bot.core.report import _findings

    [finding] = [f for f in _findings(snap, "a", v1) if f.startswith("retry pattern")]
    assert finding == ("retry pattern: 10% of executions retried (30 of 300, 2.0 retries "
                       "each, 60 extra calls in the window)")


def test_cost_sinks_by_total_and_per_execution(tmp_path: Path) -> None:
    from bot.core.report import _findings

    cols = ["timestamp", "agent_id", "prompt_version", "execution_id", "status", "cost_usd"]
    rows: list[list[object]] = []
    # Four agents; "big" runs 30x the traffic at the usual price (a sink by total), "dear"
    # runs little traffic at 5x the price (a sink per execution).
    for agent, n, cost in (("a", 100, 0.01), ("b", 100, 0.01), ("big", 3000, 0.01),
                           ("dear", 100, 0.05)):
        rows += [[f"2026-11-01T{i % 24:02d}:{i % 60:02d}:00Z", agent, "v1", f"{agent}{i}",
                  "success", cost] for i in range(n)]
    snap = ingest([str(write_csv(tmp_path / "c.csv", rows, cols))], window_days=30)

    def found(agent: str) -> list[str]:
        return [f for f in _findings(snap, agent, snap.version(agent, "v1"))
                if f.startswith("cost sink")]

    assert found("big") == ["cost sink: 81% of all spend in the window ($30.00 of $37.00)"]
    assert found("dear") == ["cost sink: $0.0500 per execution, 5.0× the median agent's "
                             "($0.0100)"]
    assert found("a") == [] and found("b") == []


@pytest.mark.parametrize(
    "kind", ["TIMESTAMPTZ", "TIMESTAMPTZ_NS", "TIMESTAMP", "TIMESTAMP_NS", "TIMESTAMP_MS",
             "VARCHAR"])
def test_typed_timestamps_land_in_the_same_utc_hours(tmp_path: Path, kind: str) -> None:
    # A zoned Parquet column goes to UTC by its epoch (not through a calendar cast); a
    # naive one is UTC as written; an infinite time has no hour and is a bad row.
    stamps = ["2026-11-01 12:30:00+02", "2026-11-01 10:59:59+00", "2026-11-01 06:15:00-05",
              "infinity"]
    if not kind.startswith("TIMESTAMPTZ"):  # naive columns hold the UTC wall time
        stamps = ["2026-11-01 10:30:00", "2026-11-01 10:59:59", "2026-11-01 11:15:00",
                  "infinity"]
    values = ", ".join(f"('{s}', {i})" for i, s in enumerate(stamps))
    parquet = tmp_path / "m.parquet"
    con = duckdb.connect()
    con.execute("SET TimeZone='America/New_York'")  # the writer's zone must not matter
    con.execute(f"""COPY (SELECT CAST(t AS {kind}) AS timestamp, 'a' AS agent_id,
                    'v1' AS prompt_version, 'e' || i AS execution_id, 'success' AS status,
                    100.0 AS latency_ms FROM (VALUES {values}) x(t, i))
                    TO '{parquet}' (FORMAT parquet)""")
    snap = ingest([str(parquet)], window_days=3650)
    assert snap.bad_by_reason == {"unparseable timestamp": 1}
    assert sorted((b.hour.isoformat(), b.executions) for b in snap.buckets) == [
        ("2026-11-01T10:00:00", 2), ("2026-11-01T11:00:00", 1)]


def test_ids_that_differ_only_by_spaces_are_one_execution_and_blank_ids_none(
    tmp_path: Path,
) -> None:
    rows = [("2026-11-01T10:00:00Z", "a", "v1", "ws-1", "success", 100, "", ""),
            ("2026-11-01T10:01:00Z", "a", "v1", " ws-1 ", "success", 100, "", ""),
            ("2026-11-01T10:02:00Z", "a", "v1", "ws-1  ", "error", 100, "E", "boom"),
            # Blank ids are no ids: three executions, none a duplicate of another.
            ("2026-11-01T10:03:00Z", "a", "v1", "   ", "success", 100, "", ""),
            ("2026-11-01T10:04:00Z", "a", "v1", " ", "success", 100, "", ""),
            ("2026-11-01T10:05:00Z", "a", "v1", "", "success", 100, "", "")]
    csv_path = write_csv(tmp_path / "m.csv", rows)
    parquet = tmp_path / "m.parquet"
    duckdb.connect().execute(
        f"COPY (SELECT * FROM read_csv('{csv_path}', all_varchar=true)) TO '{parquet}'")
    for path in (csv_path, parquet):
        snap = ingest([str(path)], window_days=3650)
        assert (snap.rows_used, snap.duplicates) == (4, 2), path.suffix
        version = snap.version("a", "v1")
        assert version is not None and version.successes == 4  # the earliest copy won


def test_a_timestamp_past_year_9999_is_a_bad_row_not_a_crash(tmp_path: Path) -> None:
    rows = [("2026-11-01T10:00:00Z", "a", "v1", "e1", "success", 100, "", ""),
            ("294246-01-01T00:00:00Z", "a", "v1", "e2", "success", 100, "", ""),
            ("-0044-03-15T12:00:00Z", "a", "v1", "e3", "success", 100, "", "")]
    snap = ingest([str(write_csv(tmp_path / "m.csv", rows))], window_days=30)
    assert snap.rows_used == 1
    assert snap.bad_by_reason == {"timestamp outside the years 1 to 9999": 2}


def test_the_sql_premask_never_changes_a_messages_failure_key() -> None:
    # Ingest turns every run of letters and digits holding a digit into "1" in SQL before
    # the distinct messages reach templates.mask (far fewer strings); the key must not
    # change. Hand-picked corners plus random strings over the characters mask looks at.
    import random

    from bot.core.templates import mask
    from bot.load.metrics import PREMASK

    tricky = ["size 1x2f", "0x1f at 0x00ff", "id 123e4567-e89b-12d3-a456-426614174000",
              "hash deadbeef12345678", "abc123456789def", "ORD-12345 missing", "pi 3.14",
              "see http://x.io/a/9b?q=7", "/var/log/app-2/x9.log", "'q 99' and \"dq 7\"",
              "v2_9 user_42", "x0x9", "10x5", "0x", "9" * 40, "a\t 9  b", "x-1 y+2 -3",
              "Fri Jun 17 20:55:07 2005", "17th Jun", "a1@b.com wrote", "1.5 s and 10 ms",
              "org a3f9c2b1", "blk_-123 blk_456", "10.0.0.1:5432"]
    rng = random.Random(7)
    alphabet = "0123456789abcdefxX-_./: '\"ORD@"
    randoms = ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 40)))
               for _ in range(3000)]
    con = duckdb.connect()
    con.execute("CREATE TABLE d (m VARCHAR)")
    con.executemany("INSERT INTO d VALUES (?)", [[m] for m in tricky + randoms])
    rows = con.execute(f"SELECT m, {PREMASK.format('m')} FROM d").fetchall()
    assert len(rows) == len(tricky) + len(randoms)
    assert [(m, p) for m, p in rows if mask(m) != mask(p)] == []
    # The check has teeth: most strings change under the premask, and mask fires on them.
    assert sum(m != p for m, p in rows) >= 2000
    assert sum("<*>" in mask(m) for m, _ in rows) > 2000


def test_a_tie_between_copies_goes_to_the_fuller_row_every_time(tmp_path: Path) -> None:
    # The same executions (id, time, status) in a CSV without quality scores and in a
    # Parquet file with them: the copies with a score win, on every run.
    rows = [(f"2026-11-01T10:{i % 60:02d}:00Z", "a", "v1", f"e{i}", "success", 100, "", "")
            for i in range(300)]
    csv_path = write_csv(tmp_path / "m.csv", rows)
    parquet = tmp_path / "m.parquet"
    duckdb.connect().execute(
        f"COPY (SELECT *, 0.75 AS quality_score FROM read_csv('{csv_path}')) TO '{parquet}'")
    for _ in range(3):
        snap = ingest([str(csv_path), str(parquet)], window_days=3650)
        assert (snap.rows_used, snap.duplicates) == (300, 300)
        version = snap.version("a", "v1")
        assert version is not None and version.quality_n == 300


def test_text_fields_are_trimmed_of_ascii_and_unicode_spaces(tmp_path: Path) -> None:
    nbsp, ideographic = "\u00a0", "\u3000"
    rows = [("2026-11-01T10:00:00Z", "a", "v1", "e1", "success", 100, "", ""),
            ("2026-11-01T10:01:00Z", " a ", f"{nbsp}v1", f"{ideographic}e2", " Success ",
             100, "", ""),
            ("2026-11-01T10:02:00Z", f"a{ideographic}", "v1 ", f"e2{nbsp}", "ERROR", 100,
             f" Boom{nbsp}", "x"),
            ("2026-11-01T10:03:00Z", f" {nbsp}", "v1", "e3", "success", 100, "", "")]
    snap = ingest([str(write_csv(tmp_path / "m.csv", rows))], window_days=3650)
    assert snap.bad_by_reason == {"missing agent_id": 1}
    assert (snap.rows_used, snap.duplicates) == (2, 1)  # e2 twice, the earlier one wins
    (version,) = snap.versions
    assert (version.agent_id, version.prompt_version) == ("a", "v1")
    assert (version.executions, version.successes) == (2, 2)
    ids = ingest([str(write_csv(tmp_path / "n.csv", rows[2:3]))], window_days=3650)
    assert ids.versions[0].top_errors[0].error_type == "Boom"


def test_an_export_read_three_times_counts_each_execution_once(tmp_path: Path) -> None:
    # Overlapping exports: every row a candidate, identical copies in two formats.
    once = write_csv(tmp_path / "once.csv", ROWS)
    expected = ingest([str(once)], window_days=3650)
    twice = tmp_path / "twice.csv"
    twice.write_text(once.read_text() + once.read_text().split("\n", 1)[1])
    parquet = tmp_path / "once.parquet"
    duckdb.connect().execute(f"COPY (SELECT * FROM read_csv('{once}', all_varchar=true)) "
                             f"TO '{parquet}'")
    snap = ingest([str(twice), str(parquet)], window_days=3650)
    assert snap.rows_read == 3 * expected.rows_read
    assert (snap.rows_used, snap.bad_rows) == (expected.rows_used, expected.bad_rows)
    assert snap.duplicates == 3 * expected.rows_read - expected.rows_used - expected.bad_rows
    assert snap.bad_by_reason == expected.bad_by_reason
    assert snap.versions == expected.versions


def test_the_largest_finite_numbers_are_read_not_a_crash(tmp_path: Path) -> None:
    # 1.7976931348623157e308 is finite, so not a bad row; its histogram bin lies past what
    # exp() returns, and a percentile there reads as the largest double.
    big = "1.7976931348623157e308"
    rows = [("2026-11-01T10:00:00Z", "a", "v1", "e1", "success", big, "", ""),
            ("2026-11-01T10:00:00Z", "a", "v1", "e2", "success", 100, "", "")]
    snap = ingest([str(write_csv(tmp_path / "m.csv", rows))], window_days=30)
    version = snap.version("a", "v1")
    assert snap.rows_used == 2 and version is not None
    assert version.latency_p95_ms is not None and math.isfinite(version.latency_p95_ms)
    assert version.latency_p95_ms > 1e307


def test_copies_bad_for_different_reasons_count_under_the_same_one_every_time(
        tmp_path: Path) -> None:
    # Alike in every value they have, bad for different reasons (one copy's latency is no
    # number, the other's cost): the reason breaks the tie, whatever order the file holds.
    for flip in (0, 1):
        path = tmp_path / f"m{flip}.csv"
        with path.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow([*COLS, "cost_usd"])
            for i in range(200):
                latency = ["2026-11-01T10:00:00Z", "a", "v1", f"x{i}", "success", "abc", "", "",
                           ""]
                cost = [*latency[:5], "", "", "", "xyz"]
                writer.writerows([latency, cost] if (i + flip) % 2 else [cost, latency])
        snap = ingest([str(path)], window_days=30)
        assert snap.bad_by_reason == {"cost_usd is not a number": 200}, flip
        assert snap.duplicates == 200


def test_a_cost_beyond_the_bins_range_is_binned_not_a_crash(tmp_path: Path) -> None:
    # 1e303 dollars divided by the micro-dollar unit overflows a double: binned at the cap.
    path = tmp_path / "m.csv"
    path.write_text("timestamp,agent_id,prompt_version,execution_id,status,latency_ms,"
                    "input_tokens,output_tokens,cost_usd\n"
                    "2026-11-01T10:00:00Z,a,v1,e1,success,1.7976931348623157e308,5,5,1e303\n"
                    "2026-11-01T10:00:00Z,a,v1,e2,success,100,5,5,0.01\n", encoding="utf-8")
    snap = ingest([str(path)], window_days=30)
    version = snap.version("a", "v1")
    assert snap.rows_used == 2 and version is not None
    assert {h.metric for h in snap.histograms} == {"latency", "cost", "fit"}
    fit = version.moments
    assert fit is not None and all(math.isfinite(getattr(fit, f)) for f in ("y", "x1y", "yy"))
