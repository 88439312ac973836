"""A team's own export through real DuckDB: unread columns warn, status words can be mapped."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest
from conftest import Cli, write_csv
from pydantic import ValidationError

from bot.core.model import MetricsPolicy, Policy, PricingPolicy
from bot.errors import MetricsError
from bot.load.metrics import CANONICAL, ingest, ingest_with

COLS = ["timestamp", "agent_id", "prompt_version", "execution_id", "status", "latency_ms"]


def _rows(statuses: list[str]) -> list[tuple[object, ...]]:
    return [(f"2026-11-01T10:{i:02d}:00Z", "a", "v1", f"e{i}", s, 100 + i)
            for i, s in enumerate(statuses)]


def _messages(snap: object) -> list[str]:
    return [w.message for w in snap.warnings]  # type: ignore[attr-defined]


# ---------------------------------------------------------------- columns nobody reads


def test_an_unread_column_is_a_warning_naming_file_column_and_fix(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "team.csv", [(*r, 1200) for r in _rows(["success"] * 3)],
                     [*COLS, "tokens"])
    snap = ingest([str(path)], window_days=3650)
    assert snap.rows_used == 3  # the rest of the export is read as before
    [warning] = snap.warnings
    assert (warning.path, warning.line) == (str(path), 1)  # a CSV's header row
    assert warning.message.startswith("column 'tokens' is not read: it is neither a canonical "
                                      "column nor mapped under metrics.columns")
    assert "(did you mean `input_tokens` or `output_tokens`?" in warning.message
    assert "input and output tokens as two columns" in warning.message
    assert "metrics: {columns: {tokens: input_tokens}}" in warning.fix
    assert "Canonical columns: " + ", ".join(CANONICAL) in warning.fix


def test_a_mapped_or_canonical_column_does_not_warn(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "team.csv", [(*r, 1200) for r in _rows(["success"] * 3)],
                     [*COLS, "input_tokens"])
    assert ingest([str(path)], window_days=3650).warnings == ()
    # Unmapped it warns, with the usual name for it.
    path = write_csv(tmp_path / "team.csv", [(*r, 1200) for r in _rows(["success"] * 3)],
                     [*COLS, "completion_tokens"])
    snap = ingest([str(path)], window_days=3650)
    assert _messages(snap)[0].endswith("(did you mean `output_tokens`?)")
    mapped = ingest([str(path)], {"completion_tokens": "output_tokens"}, window_days=3650)
    assert mapped.warnings == ()
    [version] = mapped.versions
    assert version.output_tokens_mean == pytest.approx(1200)


def test_a_case_difference_is_named_as_such(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "m.csv", [(*r, 0.01) for r in _rows(["success"])],
                     [*COLS, "Cost_USD"])
    [message] = _messages(ingest([str(path)], window_days=3650))
    assert message.endswith("(did you mean `cost_usd`?)")


def test_one_warning_per_column_across_files_and_jsonl_has_no_line(tmp_path: Path) -> None:
    files = []
    for n in range(3):
        path = tmp_path / f"m{n}.jsonl"
        path.write_text("".join(json.dumps({**dict(zip(COLS, r, strict=True)),
                                            "user_id": "u1"}) + "\n"
                                for r in _rows(["success", "error"])))
        files.append(str(path))
    snap = ingest(files, window_days=3650)
    [warning] = snap.warnings
    assert warning.path == files[0] and warning.line is None
    assert warning.message.endswith("(and in 2 other files)")
    assert "'user_id'" in warning.message and "did you mean" not in warning.message


def test_two_columns_onto_one_name_warn(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "m.csv", [(*r, r[0]) for r in _rows(["success"])],
                     [*COLS, "ts"])
    snap = ingest([str(path)], {"ts": "timestamp"}, window_days=3650)
    [message] = _messages(snap)
    assert message == "columns 'timestamp' and 'ts' all map onto 'timestamp': only one of " \
        "them is read"


def test_daily_form_columns_are_known_and_extra_ones_warn(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "daily.csv",
                     [("2026-11-01", "a", "v1", 100, 90, 5, "eu")],
                     ["date", "agent_id", "prompt_version", "executions", "successes",
                      "timeouts", "region"])
    snap = ingest([str(path)], window_days=3650)
    assert snap.rows_used == 100
    [warning] = snap.warnings
    assert warning.message.startswith("column 'region' is not read")
    assert "Canonical columns: date, executions, successes" in warning.fix


def test_otel_preset_reads_span_exports_without_column_warnings(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "spans.csv", [
        ("2026-11-01T10:00:00Z", "2026-11-01T10:00:01Z", "t1", "s1", "invoke_agent a",
         "a", "invoke_agent", "", "svc", "x")],
        ["start_time", "end_time", "trace_id", "span_id", "name", "gen_ai.agent.name",
         "gen_ai.operation.name", "error.type", "service.name", "http.route"])
    snap = ingest([str(path)], preset="otel", window_days=3650)
    assert snap.rows_used == 1 and snap.warnings == ()


# ---------------------------------------------------------------- status values


STATUS_WORDS = ["ok", "OK", " Ok ", "failed", "deadline_exceeded", "success", "weird"]


def _status_export(tmp_path: Path, fmt: str) -> str:
    rows = _rows(STATUS_WORDS)
    csv_path = write_csv(tmp_path / "m.csv", rows, COLS)
    if fmt == "csv":
        return str(csv_path)
    out = tmp_path / f"m.{fmt}"
    if fmt == "jsonl":
        out.write_text("".join(json.dumps(dict(zip(COLS, r, strict=True))) + "\n"
                               for r in rows))
    else:
        con = duckdb.connect()
        con.execute(f"COPY (SELECT * FROM read_csv('{csv_path}', all_varchar=true)) "
                    f"TO '{out}' (FORMAT parquet)")
    return str(out)


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_status_values_map_an_export_vocabulary(tmp_path: Path, fmt: str) -> None:
    path = _status_export(tmp_path, fmt)
    snap = ingest([path], window_days=3650,
                  status_values={"ok": "success", "failed": "error",
                                 "Deadline_Exceeded": "timeout"})
    [version] = snap.versions
    # ok, OK and " Ok " are one word; success stays success; weird stays a bad row.
    assert (version.executions, version.successes, version.timeouts) == (6, 4, 1)
    assert snap.bad_by_reason == {"unknown status": 1}
    [warning] = snap.warnings
    assert warning.message == ("1 row(s) have a status that is not one of success, failure, "
                               "error, timeout: 'weird' (1); they are left out as bad rows")
    assert "metrics: {status_values: {weird: <canonical status>}}" in warning.fix


def test_without_a_mapping_the_warning_proposes_one(tmp_path: Path) -> None:
    snap = ingest([_status_export(tmp_path, "csv")], window_days=3650)
    assert snap.bad_by_reason == {"unknown status": 6}  # as before: bad rows, counted
    [warning] = snap.warnings
    assert warning.path.endswith("m.csv") and warning.line is None
    assert "'ok' (3), 'deadline_exceeded' (1), 'failed' (1), 'weird' (1)" in warning.message
    assert ("status_values: {ok: success, deadline_exceeded: timeout, failed: failure, "
            "weird: <canonical status>}") in warning.fix


def test_a_canonical_word_can_be_remapped(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "m.csv", _rows(["timeout", "TIMEOUT", "success"]), COLS)
    plain = ingest([str(path)], window_days=3650)
    assert plain.versions[0].timeouts == 2
    snap = ingest([str(path)], window_days=3650, status_values={"timeout": "error"})
    [version] = snap.versions
    assert (version.executions, version.timeouts, version.successes) == (3, 0, 1)
    assert snap.warnings == ()


def test_the_policy_mapping_reaches_ingest(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "m.csv", _rows(["ok", "failed"]), COLS)
    policy = MetricsPolicy(status_values={" OK ": "success", "failed": "failure"},
                           window_days=3650)
    assert policy.status_values == {"ok": "success", "failed": "failure"}
    snap = ingest_with([str(path)], policy, PricingPolicy())
    assert (snap.versions[0].executions, snap.versions[0].successes) == (2, 1)
    assert snap.bad_rows == 0


@pytest.mark.parametrize(("values", "error"), [
    ({"ok": "passed"}, "Input should be 'success', 'failure', 'error' or 'timeout'"),
    ({"  ": "success"}, "an empty status value cannot be mapped"),
    ({"ok": "success", "OK": "error"}, "'OK' is mapped twice"),
])
def test_the_policy_refuses_a_bad_status_mapping(values: dict[str, str], error: str) -> None:
    with pytest.raises(ValidationError, match=error):
        Policy.model_validate({"metrics": {"status_values": values}})


def test_the_same_word_twice_with_one_target_is_fine() -> None:
    policy = MetricsPolicy(status_values={"ok": "success", "OK": "success"})
    assert policy.status_values == {"ok": "success"}


def test_ingest_refuses_a_non_canonical_target_from_a_direct_caller(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "m.csv", _rows(["ok"]), COLS)
    with pytest.raises(MetricsError, match="status_values maps to unknown status"):
        ingest([str(path)], status_values={"ok": "passed"})
    with pytest.raises(MetricsError, match=r"output_token \(did you mean output_tokens\?\)"):
        ingest([str(path)], {"x": "output_token"})


# ---------------------------------------------------------------- where warnings surface


def test_analyze_prints_warnings_and_json_carries_them(cli: Cli, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "team.csv",
                     [(*r, 7) for r in _rows(["success", "ok"])], [*COLS, "tokens"])
    code, out, _ = cli("analyze", "--metrics", str(path))
    assert code == 0
    assert f"  warning: {path}:1: column 'tokens' is not read" in out
    assert "    fix: map it in policies/promptbot.yaml" in out
    assert f"  warning: {path}: 1 row(s) have a status that is not one of" in out
    data = cli.json("analyze", "--metrics", str(path), "--json")
    assert isinstance(data, dict)
    warnings = data["input"]["warnings"]
    assert [(w["file"], w["line"]) for w in warnings] == [(str(path), 1), (str(path), None)]
    assert warnings[1]["fix"].startswith("map your status values in policies/promptbot.yaml")


def test_the_shipped_export_warns_only_about_its_deliberate_bad_status(cli: Cli) -> None:
    data = cli.json("analyze", "--json")
    assert isinstance(data, dict)
    [warning] = data["input"]["warnings"]
    assert "'succeeded' (7)" in warning["message"]
    assert "status_values: {succeeded: success}" in warning["fix"]


def test_a_missing_required_column_suggests_the_mapping_from_the_file(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "team.csv", [("2026-11-01T10:00:00Z", "a", "ok")],
                     ["Timestamp", "agent", "outcome"])
    with pytest.raises(MetricsError) as info:
        ingest([str(path)])
    text = info.value.render()
    assert "team.csv is missing required column(s): timestamp, agent_id, status" in text
    assert "`columns: {Timestamp: timestamp, agent: agent_id, outcome: status}`" in text


def test_numeric_status_codes_map_from_a_yaml_policy(tmp_path: Path) -> None:
    from bot.core.yamlparse import parse_yaml, validate_as

    # The CSV sniffer reads this status column as integers; YAML reads `200:` as one too.
    path = write_csv(tmp_path / "m.csv", _rows(["200", "200", "500", "504"]), COLS)
    policy = validate_as(Policy, parse_yaml(
        "metrics:\n  window_days: 3650\n  status_values: {200: success, 500: error, "
        "504: timeout}\n", "policies/promptbot.yaml"))
    snap = ingest_with([str(path)], policy.metrics, policy.pricing)
    [version] = snap.versions
    assert (version.executions, version.successes, version.timeouts) == (4, 2, 1)
    assert snap.bad_rows == 0 and snap.warnings == ()
