"""Regression cases from production, end to end: the walkthrough's measured fix opens one PR
that adds scrubbed cases to tests.yaml, from an export's `input` column (CSV, JSONL, Parquet,
mapped names) or OpenTelemetry spans; on the local forge and on the GitHub stand-in."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import yaml
from conftest import Cli, git, github_context, snapshot_state
from standin.github_server import GitHubStandIn

from bot.app import run
from bot.core import model
from bot.core.assertions import parse_cases
from bot.core.markers import parse
from bot.core.model import MetricsPolicy, PricingPolicy
from bot.core.yamlparse import parse_yaml, validate_as
from bot.edges.git import Git
from bot.load.metrics import failing_inputs
from bot.load.simulate import simulate

TESTS = "prompts/support-triage/tests.yaml"


def _prs(repo: Path) -> list[dict[str, Any]]:
    return list(json.loads((repo / ".promptbot" / "forge.json").read_text())["prs"])


def _regression_prs(repo: Path) -> list[dict[str, Any]]:
    return [p for p in _prs(repo) if (parse(p["body"]) or {}).get("kind") == "regression"]


def _measure_the_fix(cli: Cli, repo: Path, *sim: str) -> None:
    assert cli("run")[0] == 0
    pr = next(p for p in _prs(repo) if (parse(p["body"]) or {}).get("agent") == "support-triage")
    assert cli("pr", "merge", str(pr["number"]))[0] == 0
    # A clear true effect (+6 points): the fix is decided a success whatever the time of
    # day the test runs at (the simulated days are cut at the wall clock's hours; with the
    # default effect the decision was still open at some of them).
    assert cli("simulate", "--out", str(repo / "sim"), "--days", "14", "--seed", "3",
               "--effect", "0.06", *sim)[0] == 0


def test_the_measured_fix_opens_one_pr_of_scrubbed_cases(cli: Cli, repo: Path) -> None:
    _measure_the_fix(cli, repo)
    before = (repo / TESTS).read_text()
    code, out, err = cli("run", "--metrics", str(repo / "sim" / "*.csv"))
    assert code == 0, err + out
    assert _regression_prs(repo), out
    (pr,) = _regression_prs(repo)
    assert pr["title"] == "support-triage: 3 regression cases for invalid json (fixed by #3)"
    assert "promptbot:regression" in pr["labels"]
    # The branch changes the tests file only, by lines appended to its cases.
    branch = pr["branch"]
    assert git(repo, "diff", "--name-only", f"main...{branch}") == TESTS
    after = git(repo, "show", f"{branch}:{TESTS}")
    assert after.startswith(before.rstrip("\n"))
    cases = parse_cases(validate_as(model.TestsFile, parse_yaml(after, TESTS)), TESTS)
    new = [c for c in cases if c.name.startswith("prod-invalid-json-")]
    assert len(new) == 3
    assert all([(a.kind, a.value) for a in c.assertions] == [("json_schema", {})] for c in new)
    # Production data is scrubbed: the export's addresses and names are not in the file or
    # the PR; the ones the simulation put in are stand-ins.
    export = (repo / "sim" / "executions.csv").read_text()
    assert "@mail.example.org" in export
    for text in (after[len(before.rstrip()):], pr["body"]):
        assert "@mail.example.org" not in text
        assert "Ignore all previous instructions" not in text
    assert all(c.inputs["ticket"]["customer"]["email"] == "user1@example.com"
               and c.inputs["ticket"]["customer"]["name"] == "Person 1" for c in new)
    assert "Personal data replaced:** 3 emails, 3 names" in pr["body"]
    # `promptbot check` accepts the branch's tests file as it is.
    git(repo, "checkout", "-q", branch)
    assert cli("check", "prompts/support-triage")[0] == 0
    git(repo, "checkout", "-q", "main")
    # Once: the next run (and one after the PR is closed) opens nothing.
    state = snapshot_state(repo)
    assert cli("run", "--metrics", str(repo / "sim" / "*.csv"))[0] == 0
    assert snapshot_state(repo) == state
    assert cli("pr", "close", str(pr["number"]))[0] == 0
    assert cli("run", "--metrics", str(repo / "sim" / "*.csv"))[0] == 0
    assert len(_regression_prs(repo)) == 1


def test_a_rolled_back_fix_closes_its_open_regression_pr(cli: Cli, repo: Path) -> None:
    _measure_the_fix(cli, repo)
    assert cli("run", "--metrics", str(repo / "sim" / "*.csv"))[0] == 0
    (pr,) = _regression_prs(repo)
    merge = git(repo, "log", "--merges", "-1", "--format=%H", "main")
    git(repo, "revert", "-m", "1", "--no-edit", merge)
    code, out, err = cli("run", "--metrics", str(repo / "sim" / "*.csv"))
    assert code == 0, err
    (closed,) = _regression_prs(repo)
    assert closed["state"] == "closed"
    assert f"#{pr['number']} regression cases: closed: the fix these cases guard was " \
           "rolled back" in out


def test_a_change_to_the_tests_file_on_main_rebuilds_the_branch(cli: Cli, repo: Path) -> None:
    _measure_the_fix(cli, repo)
    sim = str(repo / "sim" / "*.csv")
    assert cli("run", "--metrics", sim)[0] == 0
    (pr,) = _regression_prs(repo)
    # A person adds a case at the end of the file on main: the PR's append conflicts.
    tests = repo / TESTS
    tests.write_text(tests.read_text() + "  - name: by-hand\n    inputs: {ticket: {body: x}}\n"
                     "    assert:\n      - contains: x\n")
    git(repo, "commit", "-qam", "a case by hand")
    code, out, err = cli("run", "--metrics", sim)
    assert code == 0, err
    assert f"#{pr['number']} regression cases: branch built again on main" in out
    assert cli("pr", "merge", str(pr["number"]))[0] == 0
    names = [c["name"] for c in yaml.safe_load(tests.read_text())["cases"]]
    assert "by-hand" in names and sum(n.startswith("prod-") for n in names) == 3
    state = snapshot_state(repo)
    assert cli("run", "--metrics", sim)[0] == 0
    assert snapshot_state(repo) == state


def test_a_refresh_brings_back_no_case_a_person_deleted(cli: Cli, repo: Path) -> None:
    tests = repo / TESTS
    original = tests.read_text()
    tests.write_text(original + "  - name: prod-invalid-json-deadbeef\n    inputs: {ticket: "
                     "{body: old}}\n    assert:\n      - json_schema: {}\n")
    git(repo, "commit", "-qam", "an older production case")
    _measure_the_fix(cli, repo)
    sim = str(repo / "sim" / "*.csv")
    assert cli("run", "--metrics", sim)[0] == 0
    (pr,) = _regression_prs(repo)
    tests.write_text(original)  # the person deletes the older case
    git(repo, "commit", "-qam", "drop the older case")
    assert cli("run", "--metrics", sim)[0] == 0
    names = [c["name"] for c in yaml.safe_load(git(repo, "show", f"{pr['branch']}:{TESTS}"))
             ["cases"]]
    assert "prod-invalid-json-deadbeef" not in names
    assert sum(n.startswith("prod-invalid-json-") for n in names) == 3


def test_cases_a_person_put_on_main_close_the_pr(cli: Cli, repo: Path) -> None:
    _measure_the_fix(cli, repo)
    sim = str(repo / "sim" / "*.csv")
    assert cli("run", "--metrics", sim)[0] == 0
    (pr,) = _regression_prs(repo)
    git(repo, "checkout", "-q", pr["branch"], "--", TESTS)
    git(repo, "commit", "-qm", "take the cases by hand")
    code, out, err = cli("run", "--metrics", sim)
    assert code == 0, err
    (closed,) = _regression_prs(repo)
    assert closed["state"] == "closed"
    assert "its cases are in prompts/support-triage/tests.yaml on main already" in out


def test_without_an_input_column_the_run_says_how_to_get_cases(cli: Cli, repo: Path) -> None:
    _measure_the_fix(cli, repo)
    csv = repo / "sim" / "executions.csv"
    con = duckdb.connect()
    con.execute(f"COPY (SELECT * EXCLUDE (input) FROM read_csv('{csv}', all_varchar=true)) "
                f"TO '{csv}.tmp' (HEADER)")
    Path(f"{csv}.tmp").replace(csv)
    code, out, err = cli("run", "--metrics", str(csv))
    assert code == 0, err
    assert "the export has no `input` column" in out and "support-triage (p-" in out
    assert _regression_prs(repo) == []


# ---------------------------------------------------------------- reading the inputs


def _write(path: Path, rows: list[dict[str, Any]]) -> Path:
    con = duckdb.connect()
    fmt = {".csv": "(HEADER)", ".jsonl": "(FORMAT JSON)", ".parquet": "(FORMAT PARQUET)"}
    src = path.with_suffix(".src.json")
    src.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    con.execute(f"COPY (SELECT * FROM read_json('{src}', format='newline_delimited')) "
                f"TO '{path}' {fmt[path.suffix]}")
    src.unlink()
    return path


ROWS = [
    {"ts": "2026-10-01T10:00:00Z", "agent_id": "a", "prompt_version": "v1",
     "execution_id": "x1", "status": "error", "error_type": "E", "error_message": "bad 1",
     "prompt_vars": '{"q": "one"}'},
    # A re-sent execution counts once.
    {"ts": "2026-10-01T10:00:05Z", "agent_id": "a", "prompt_version": "v1",
     "execution_id": "x1", "status": "error", "error_type": "E", "error_message": "bad 1",
     "prompt_vars": '{"q": "one"}'},
    {"ts": "2026-10-01T11:00:00Z", "agent_id": "a", "prompt_version": "v1",
     "execution_id": "x2", "status": "error", "error_type": "E", "error_message": "bad 2",
     "prompt_vars": '{"q": "two"}'},
    # Not these: another version, another error type, a success, no input, another agent.
    {"ts": "2026-10-02T10:00:00Z", "agent_id": "a", "prompt_version": "v2",
     "execution_id": "x3", "status": "error", "error_type": "E", "error_message": "bad 3",
     "prompt_vars": '{"q": "three"}'},
    {"ts": "2026-10-01T12:00:00Z", "agent_id": "a", "prompt_version": "v1",
     "execution_id": "x4", "status": "error", "error_type": "F", "error_message": "bad",
     "prompt_vars": '{"q": "four"}'},
    {"ts": "2026-10-01T13:00:00Z", "agent_id": "a", "prompt_version": "v1",
     "execution_id": "x5", "status": "success", "error_type": "", "error_message": "",
     "prompt_vars": '{"q": "five"}'},
    {"ts": "2026-10-01T14:00:00Z", "agent_id": "a", "prompt_version": "v1",
     "execution_id": "x6", "status": "error", "error_type": "E", "error_message": "bad 6",
     "prompt_vars": ""},
    {"ts": "2026-10-01T15:00:00Z", "agent_id": "b", "prompt_version": "v1",
     "execution_id": "x7", "status": "error", "error_type": "E", "error_message": "bad 7",
     "prompt_vars": '{"q": "seven"}'},
]
POLICY = MetricsPolicy(columns={"ts": "timestamp", "prompt_vars": "input"})


def test_failing_inputs_in_every_format_with_the_team_s_column_names(tmp_path: Path) -> None:
    for suffix in (".csv", ".jsonl", ".parquet"):
        path = _write(tmp_path / f"export{suffix}", ROWS)
        rows = failing_inputs([str(path)], POLICY, PricingPolicy(), agent="a", error_type="E",
                              version="v1", before=None, template="bad <*>")
        assert rows is not None, suffix
        assert sorted((r.execution_id, r.message, json.loads(r.input)["q"]) for r in rows) \
            == [("x1", "bad 1", "one"), ("x2", "bad 2", "two")], suffix


def test_a_rare_failure_mode_is_not_lost_to_the_sample_and_blank_ids_are_no_ids(
        tmp_path: Path) -> None:
    other = [{**ROWS[2], "execution_id": f"o{i}", "error_message": f"other shape {i}",
              "prompt_vars": json.dumps({"q": f"o{i}"})} for i in range(300)]
    blank = [{**ROWS[2], "execution_id": "", "error_message": f"bad {i}",
              "prompt_vars": json.dumps({"q": f"blank {i}"})} for i in (8, 9)]
    # The input as a JSON object (a STRUCT to DuckDB), not as text.
    typed = [{**ROWS[2], "execution_id": "t1", "error_message": "bad 7",
              "prompt_vars": {"q": "typed", "n": 1}}]
    path = _write(tmp_path / "export.jsonl", other + ROWS[:3] + blank + typed)
    rows = failing_inputs([str(path)], POLICY, PricingPolicy(), agent="a", error_type="E",
                          version="v1", before=None, template="bad <*>", limit=50)
    assert rows is not None
    got = sorted(json.loads(r.input)["q"] for r in rows)
    assert got == ["blank 8", "blank 9", "one", "two", "typed"]
    assert {json.dumps(json.loads(r.input), sort_keys=True) for r in rows
            if r.execution_id == "t1"} == {'{"n": 1, "q": "typed"}'}


def test_a_parquet_struct_input_keeps_each_row_s_own_keys(tmp_path: Path) -> None:
    rows = [{**ROWS[0], "prompt_vars": {"q": "one"}},
            {**ROWS[2], "prompt_vars": {"q": "two", "extra": {"deep": 1}}}]
    path = _write(tmp_path / "export.parquet", rows)
    found = failing_inputs([str(path)], POLICY, PricingPolicy(), agent="a", error_type="E",
                           version="v1", before=None, template="bad <*>")
    assert found is not None
    assert sorted(json.loads(r.input) == {"q": "one"} or json.loads(r.input)
                  for r in found if r.execution_id == "x1") == [True]
    assert [json.loads(r.input) for r in found if r.execution_id == "x2"] == [
        {"q": "two", "extra": {"deep": 1}}]


def test_without_versions_the_failures_before_the_merge_count(tmp_path: Path) -> None:
    rows = [{k: v for k, v in r.items() if k != "prompt_version"} for r in ROWS]
    path = _write(tmp_path / "export.csv", rows)
    found = failing_inputs([str(path)], POLICY, PricingPolicy(), agent="a", error_type="E",
                           version="v1", before=datetime(2026, 10, 1, 12, tzinfo=UTC)
                           .replace(tzinfo=None), template="bad <*>")
    assert found is not None
    assert sorted(r.execution_id for r in found) == ["x1", "x2"]
    plain = _write(tmp_path / "plain.csv", [{k: v for k, v in r.items() if k != "prompt_vars"}
                                           for r in ROWS])
    assert failing_inputs([str(plain)], POLICY, PricingPolicy(), agent="a", error_type="E",
                          version="v1", before=None, template="bad <*>") is None


def _span(i: int, attrs: dict[str, str], events: list[dict[str, Any]] | None = None
          ) -> dict[str, Any]:
    def kv(d: dict[str, str]) -> list[dict[str, Any]]:
        return [{"key": k, "value": {"stringValue": v}} for k, v in d.items()]
    return {"traceId": f"{i:032x}", "spanId": f"{i:016x}", "name": "invoke_agent a",
            "startTimeUnixNano": str(1_759_312_800_000_000_000 + i),
            "endTimeUnixNano": str(1_759_312_801_000_000_000 + i),
            "status": {"code": 2, "message": "bad output"},
            "attributes": kv({"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "a",
                              "prompt.version": "v1", "error.type": "E", **attrs}),
            "events": [{"name": e["name"], "timeUnixNano": "1", "attributes": kv(e["attrs"])}
                       for e in events or []]}


def test_opentelemetry_inputs_from_an_attribute_or_the_prompt_event(tmp_path: Path) -> None:
    spans = [
        _span(1, {"promptbot.inputs": '{"q": "from the attribute"}'}),
        _span(2, {"gen_ai.input.messages": json.dumps(
            [{"role": "user", "parts": [{"type": "text", "content": "from messages"}]}])}),
        _span(3, {}, [{"name": "gen_ai.system.message", "attrs": {"content": "sys"}},
                      {"name": "gen_ai.user.message", "attrs": {"content": "from the event"}}]),
        _span(4, {}),
    ]
    doc = {"resourceSpans": [{"resource": {"attributes": []},
                              "scopeSpans": [{"scope": {"name": "t"}, "spans": spans}]}]}
    path = tmp_path / "spans.json"
    path.write_text(json.dumps(doc))
    rows = failing_inputs([str(path)], MetricsPolicy(), PricingPolicy(), agent="a",
                          error_type="E", version="v1", before=None, template="bad output")
    assert rows is not None
    got = sorted(r.input for r in rows)
    assert len(got) == 3
    assert '{"q": "from the attribute"}' in got and "from the event" in got
    assert any("from messages" in g for g in got)


# ---------------------------------------------------------------- GitHub


def test_on_github_the_regression_pr_is_opened_once(clone: Path, origin: Path,
                                                    standin: GitHubStandIn) -> None:
    run(github_context(clone, standin), [str(clone / "examples" / "metrics" / "*.csv")])
    number = next(int(p["number"]) for p in standin.pulls()
                  if (parse(str(p.get("body") or "")) or {}).get("agent") == "support-triage")
    standin.merge(number)
    git(clone, "pull", "-q", "--ff-only", "origin", "main")
    sim = clone.parent / "sim"
    # A clear true effect, as in `_measure_the_fix`: decided whatever the time of day.
    simulate(Git(clone), sim, days=14, seed=3, per_day=400, effect=0.06, effects_file=None,
             version_column=True)
    metrics = [str(sim / "*.csv")]
    report = run(github_context(clone, standin), metrics)
    assert report.errors == [], report.errors
    regression = [p for p in standin.pulls()
                  if (parse(str(p.get("body") or "")) or {}).get("kind") == "regression"]
    assert len(regression) == 1
    branch = str(regression[0]["head"]["ref"])
    tests = yaml.safe_load(git(origin, "show", f"{branch}:{TESTS}"))
    assert sum(c["name"].startswith("prod-") for c in tests["cases"]) == 3
    assert "promptbot:regression" in standin.labels(int(regression[0]["number"]))
    count = len(standin.pulls())
    standin.reset_log()
    run(github_context(clone, standin), metrics)
    assert len(standin.pulls()) == count
    assert standin.writes() == []
