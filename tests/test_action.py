"""The composite action (action.yml) that installs promptbot from its own checkout on GitHub.

What GitHub would do is done here for real, offline: the action's `run:` scripts run verbatim
with the environment the runner gives them (GITHUB_ACTION_PATH, RUNNER_TEMP, GITHUB_OUTPUT,
GITHUB_PATH), against a copy of this checkout as the action's download, and the promptbot they
install must answer `promptbot --version`. pip may not reach any index (PIP_NO_INDEX, and a proxy
that refuses), so the packages requirements.lock pins come from the environment running the
tests (on the PYTHONPATH of the scripts): the install step still resolves every requirement
against the lock, builds promptbot from the copy with the pinned setuptools and installs it into
a fresh virtual environment. When that environment does not hold the lock's versions, the
install test is skipped with the difference as the reason, rather than run with other pins than
the ones GitHub would use; `pip install -c requirements.lock setuptools -e '.[dev]'` provides
them. (Offline, nothing else can build promptbot: setuptools before 70.1 needs the `wheel`
package to build a wheel, and a fresh Python 3.11 venv has setuptools 65.5 and no `wheel`.)

Not covered here: actions/setup-python and actions/cache themselves (GitHub's), and downloading
from PyPI. actionlint does not lint action metadata, so the action's steps are linted wrapped in
a generated workflow, and every `run:` script is parsed by bash.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tomllib
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
import yaml
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
ACTION = ROOT / "action.yml"
LOCK = ROOT / "requirements.lock"
WORKFLOWS = ROOT / ".github" / "workflows"
LINT = ROOT / "tools" / "actionlint" / "lint.mjs"
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)$")

needs_actionlint = pytest.mark.skipif(
    not (shutil.which("node") and (ROOT / "tools/actionlint/node_modules").is_dir()),
    reason="the offline actionlint is not installed (./scripts/test installs it)")


def _action() -> dict[str, Any]:
    data = yaml.safe_load(ACTION.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def _steps() -> dict[str, dict[str, Any]]:
    steps = _action()["runs"]["steps"]
    return {s["id"]: s for s in steps if "id" in s}


def _lock() -> dict[str, Version]:
    pins: dict[str, Version] = {}
    for n, line in enumerate(LOCK.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        match = PIN.match(line)
        assert match, f"requirements.lock:{n}: not NAME==VERSION: {line!r}"
        name = canonicalize_name(match.group(1))
        assert name not in pins, f"requirements.lock:{n}: {name} pinned twice"
        pins[name] = Version(match.group(2))
    return pins


def _pyproject() -> dict[str, Any]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def _clean_env(**extra: str) -> dict[str, str]:
    """The process environment without pip's or GitHub's own settings, plus `extra`."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PIP_", "GITHUB_", "RUNNER_", "PYTHON"))}
    env.update(extra)
    return env


def _outputs(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if line)


def _run_script(script: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    # What the runner does with `shell: bash`: bash --noprofile --norc -eo pipefail {0}.
    file = cwd / "step.sh"
    file.write_text(script, encoding="utf-8")
    return subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", str(file)],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=600,
                          check=False)


# ------------------------------------------------------------------ the action's shape


def test_action_is_composite_and_keeps_event_data_out_of_its_scripts() -> None:
    action = _action()
    assert action["runs"]["using"] == "composite"
    scripts = [s for s in action["runs"]["steps"] if "run" in s]
    assert scripts
    for step in scripts:
        assert step["shell"] == "bash", step.get("name")
        # Values reach scripts through env: only, so no input can become shell code.
        assert "${{" not in step["run"], step.get("name")
    # Each output names a step that exists.
    ids = set(_steps())
    for name, output in action["outputs"].items():
        match = re.fullmatch(r"\$\{\{ steps\.([\w-]+)\.outputs\.[\w-]+ \}\}", output["value"])
        assert match and match.group(1) in ids, name


def test_pip_cache_is_keyed_in_a_step_not_by_hashfiles() -> None:
    # hashFiles() and setup-python's cache-dependency-path see only GITHUB_WORKSPACE, where a
    # remote action's files are not: either would key the cache on nothing.
    assert "hashFiles" not in json.dumps(_action())  # comments may name it; values may not
    python = _steps()["python"]
    assert python["uses"].startswith("actions/setup-python@")
    assert "cache" not in python.get("with", {})
    cache = next(s for s in _action()["runs"]["steps"]
                 if s.get("uses", "").startswith("actions/cache@"))
    assert cache["with"]["key"] == "${{ steps.cache-key.outputs.key }}"


def test_defaults_agree_with_the_reusable_workflow() -> None:
    reusable = yaml.safe_load((WORKFLOWS / "promptbot.yml").read_text(encoding="utf-8"))
    call = reusable[True]["workflow_call"]  # PyYAML reads the key `on` as True
    assert _action()["inputs"]["python-version"]["default"] == \
        call["inputs"]["python-version"]["default"]


# ------------------------------------------------------------------ the lock


def test_lock_pins_every_runtime_dependency_within_its_range() -> None:
    pins = _lock()
    env = default_environment()
    deps = [Requirement(r) for r in _pyproject()["project"]["dependencies"]]
    assert deps
    for req in deps:
        if req.marker is not None and not req.marker.evaluate({**env, "extra": ""}):
            continue
        name = canonicalize_name(req.name)
        assert name in pins, f"{req.name} is not in requirements.lock: run scripts/lock"
        assert req.specifier.contains(pins[name], prereleases=True), \
            f"requirements.lock pins {name}=={pins[name]}, outside {req}: run scripts/lock"
    # promptbot always comes from the checkout; pip is the venv's own.
    assert "promptbot" not in pins and "pip" not in pins


def test_lock_pins_the_build_backend_the_install_step_installs() -> None:
    build = _pyproject()["build-system"]
    # The install step installs `setuptools` by name and builds without isolation: another
    # backend needs action.yml changed along with pyproject.toml.
    assert build["build-backend"] == "setuptools.build_meta"
    (req,) = [Requirement(r) for r in build["requires"]]
    assert canonicalize_name(req.name) == "setuptools"
    assert re.search(r'"\$\{pip\[@\]\}" setuptools\n', _steps()["install"]["run"])
    assert req.specifier.contains(_lock()["setuptools"])
    # setuptools builds wheels itself only from 70.1 on (older ones need the `wheel` package,
    # which nothing installs).
    assert _lock()["setuptools"] >= Version("70.1")


def test_lock_is_closed_over_the_dependencies_of_what_it_pins() -> None:
    # A package the lock misses would be installed at whatever version the index has. The
    # requirements of a pinned package are known here when this environment holds exactly that
    # version; each of them must be pinned too.
    pins = _lock()
    env = default_environment()
    checked = 0
    for name, version in pins.items():
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        if Version(dist.version) != version:
            continue
        checked += 1
        for text in dist.requires or []:
            req = Requirement(text)
            if req.marker is not None and not req.marker.evaluate({**env, "extra": ""}):
                continue
            assert canonicalize_name(req.name) in pins, \
                f"{name}=={version} needs {req}, which requirements.lock does not pin"
    if checked < len(pins) // 2:
        pytest.skip(f"only {checked} of {len(pins)} pinned versions are installed here")


# ------------------------------------------------------------------ the scripts, for real


def test_cache_key_script_keys_on_the_lock_content(tmp_path: Path) -> None:
    script = _steps()["cache-key"]["run"]
    action_path = tmp_path / "action"
    action_path.mkdir()
    shutil.copy(LOCK, action_path / "requirements.lock")

    def key() -> dict[str, str]:
        out = tmp_path / "output"
        out.write_text("")
        done = _run_script(script, _clean_env(
            PYTHON=sys.executable, PYTHON_VERSION="3.11.7", GITHUB_ACTION_PATH=str(action_path),
            GITHUB_OUTPUT=str(out), RUNNER_OS="Linux", RUNNER_ARCH="X64"), tmp_path)
        assert done.returncode == 0, done.stdout + done.stderr
        return _outputs(out)

    first = key()
    digest = hashlib.sha256(LOCK.read_bytes()).hexdigest()
    assert first["prefix"] == "promptbot-pip-Linux-X64-py3.11.7-"
    assert first["key"] == first["prefix"] + digest
    pip_dir = subprocess.run([sys.executable, "-m", "pip", "cache", "dir"],
                             capture_output=True, text=True, env=_clean_env(), check=True)
    assert first["dir"] == pip_dir.stdout.strip() != ""
    # One changed pin, another key (while the prefix still restores the older cache).
    lock = action_path / "requirements.lock"
    lock.write_text(lock.read_text().replace("==", "===", 1))
    second = key()
    assert second["key"] != first["key"] and second["prefix"] == first["prefix"]


def test_reusable_workflow_guard_script_for_promptbots_source(tmp_path: Path) -> None:
    # The step before each job's checkout of promptbot, run for real in a fake prompts checkout.
    reusable = yaml.safe_load((WORKFLOWS / "promptbot.yml").read_text(encoding="utf-8"))
    guards = {step["run"] for job in reusable["jobs"].values() for step in job["steps"]
              if step.get("name") == "Make room for promptbot's own source"}
    assert len(guards) == 1, "the jobs' guard scripts differ"
    (script,) = guards
    work = tmp_path / "work"
    (work / ".git" / "info").mkdir(parents=True)
    exclude = work / ".git" / "info" / "exclude"

    def run(repository: str, sha: str) -> subprocess.CompletedProcess[str]:
        exclude.write_text("# git's own\n")
        return _run_script(script, _clean_env(WORKFLOW_REPOSITORY=repository,
                                              WORKFLOW_SHA=sha), work)

    done = run("acme/promptbot", "a" * 40)
    assert done.returncode == 0, done.stdout + done.stderr
    assert exclude.read_text() == "# git's own\n/.promptbot-action/\n"
    # A GitHub without the job.workflow_* properties: stop, and say why.
    done = run("", "")
    assert done.returncode == 1 and "job.workflow_repository" in done.stdout
    # The path is taken, by a directory or by a symlink (even a dangling one).
    taken = work / ".promptbot-action"
    taken.mkdir()
    done = run("acme/promptbot", "a" * 40)
    assert done.returncode == 1 and "reserved" in done.stdout, done.stdout
    taken.rmdir()
    taken.symlink_to(tmp_path / "nowhere")
    done = run("acme/promptbot", "a" * 40)
    assert done.returncode == 1 and "reserved" in done.stdout, done.stdout


def _checkout_copy(dest: Path) -> Path:
    """The checkout's files as GitHub downloads an action at a ref: tracked and new files, none
    of the ignored ones (.venv, node_modules, caches)."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            cwd=ROOT, capture_output=True, check=True).stdout.decode()
    for rel in filter(None, listed.split("\0")):
        src = ROOT / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    return dest


def _lock_not_provided_here() -> list[str]:
    """The lock's pins this environment does not hold at the locked version."""
    missing = []
    for name, version in _lock().items():
        try:
            have = Version(metadata.version(name))
        except metadata.PackageNotFoundError:
            # A pin of a package this Python or platform does not need is not needed here
            # either; one it needs makes pip fail below, which the test reports.
            if name == "setuptools":
                missing.append(f"{name} (lock {version}): not installed")
            continue
        if have != version:
            missing.append(f"{name} {have} (lock {version})")
    return missing


def test_install_script_installs_promptbot_from_the_action_checkout(tmp_path: Path) -> None:
    missing = _lock_not_provided_here()
    if missing:
        pytest.skip("this environment lacks the lock's versions, so the offline install cannot "
                    "use them (`pip install -c requirements.lock setuptools -e '.[dev]'` "
                    "provides them): " + "; ".join(missing))
    action_path = _checkout_copy(tmp_path / "action")
    # A version only this copy has: what answers below was built from the copy, not found
    # installed elsewhere.
    init = action_path / "bot" / "__init__.py"
    text, n = re.subn(r'__version__ = "([^"]+)"', r'__version__ = "\1+actiontest"',
                      init.read_text(encoding="utf-8"))
    assert n == 1
    init.write_text(text, encoding="utf-8")
    version = re.search(r'__version__ = "([^"]+)"', text).group(1)  # type: ignore[union-attr]

    runner_temp = tmp_path / "runner-temp"
    runner_temp.mkdir()
    github_path, github_output = tmp_path / "path", tmp_path / "output"
    github_path.write_text("")
    github_output.write_text("")
    site_paths = os.pathsep.join(dict.fromkeys(
        [sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]]))
    env = _clean_env(
        PYTHON=sys.executable,  # what setup-python's python-path output would be
        GITHUB_ACTION_PATH=str(action_path), RUNNER_TEMP=str(runner_temp),
        GITHUB_PATH=str(github_path), GITHUB_OUTPUT=str(github_output),
        # Offline: no index, no machine pip configuration, and any HTTP attempt refused.
        PIP_NO_INDEX="1", PIP_CONFIG_FILE=os.devnull, PIP_NO_CACHE_DIR="1",
        HTTP_PROXY="http://127.0.0.1:9", HTTPS_PROXY="http://127.0.0.1:9",
        http_proxy="http://127.0.0.1:9", https_proxy="http://127.0.0.1:9",
        # The packages the lock pins, as installed in this environment.
        PYTHONPATH=site_paths,
    )
    done = _run_script(_steps()["install"]["run"], env, tmp_path)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]

    venv = runner_temp / "promptbot-venv"
    assert github_path.read_text().splitlines() == [str(venv / "bin")]
    assert _outputs(github_output) == {"venv": str(venv), "version": f"promptbot {version}"}

    # A later step: found through GITHUB_PATH alone, it answers with the copy's version.
    # (From the temporary directory: `python -c` would import a bot/ in the working directory.)
    later = {**env, "PATH": f"{venv / 'bin'}{os.pathsep}/usr/bin:/bin"}
    answer = subprocess.run(["promptbot", "--version"], env=later, cwd=tmp_path,
                            capture_output=True, text=True, check=False)
    assert answer.returncode == 0, answer.stderr
    assert answer.stdout.strip() == f"promptbot {version}"
    # Installed into the venv (not an editable link into the copy or this checkout), from the
    # action's path.
    probe = subprocess.run(
        ["python", "-c", "import bot, json, importlib.metadata as m; "
         "d = [x for x in m.distributions() if x.metadata['Name'] == 'promptbot' "
         "and x.version.endswith('+actiontest')][0]; "
         "print(json.dumps([bot.__file__, d.read_text('direct_url.json')]))"],
        env=later, cwd=tmp_path, capture_output=True, text=True, check=False)
    assert probe.returncode == 0, probe.stderr
    module_file, direct_url = json.loads(probe.stdout)
    assert Path(module_file).is_relative_to(venv), module_file
    assert json.loads(direct_url)["url"] == action_path.as_uri()


# ------------------------------------------------------------------ lint


def _lint(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["node", str(LINT), str(path)], capture_output=True, text=True,
                          check=False, timeout=120)


def _action_as_workflow() -> dict[str, Any]:
    """The action's steps as the one job of a workflow, which actionlint does lint: the same
    expressions, `inputs` declared as the action declares them, outputs as job outputs."""
    action = _action()
    return {
        "on": {"workflow_call": {"inputs": {
            name: {"type": "string", "required": False, "default": spec.get("default", "")}
            for name, spec in action["inputs"].items()}}},
        "permissions": {},
        "jobs": {"action": {
            "runs-on": "ubuntu-latest",
            "outputs": {name: out["value"] for name, out in action["outputs"].items()},
            "steps": action["runs"]["steps"],
        }},
    }


@needs_actionlint
def test_action_steps_pass_actionlint(tmp_path: Path) -> None:
    wrapped = tmp_path / "action-as-workflow.yml"
    workflow = _action_as_workflow()
    wrapped.write_text(yaml.safe_dump(workflow, sort_keys=False), encoding="utf-8")
    done = _lint(wrapped)
    assert done.returncode == 0, done.stdout + done.stderr
    # The wrapping keeps actionlint's eyes open: a reference to a step that does not exist
    # is reported.
    workflow["jobs"]["action"]["outputs"]["version"] = "${{ steps.instal.outputs.version }}"
    wrapped.write_text(yaml.safe_dump(workflow, sort_keys=False), encoding="utf-8")
    broken = _lint(wrapped)
    assert broken.returncode == 1 and "instal" in broken.stdout, broken.stdout


@needs_actionlint
def test_lint_drops_only_the_newer_job_properties(tmp_path: Path) -> None:
    # lint.mjs forgives actionlint 1.6.22 the job.workflow_* properties (GitHub, 2026), and
    # nothing else of the job context.
    def lint_with(*props: str) -> subprocess.CompletedProcess[str]:
        wf = tmp_path / f"{props[0]}.yml"
        wf.write_text(yaml.safe_dump({
            "on": "push", "permissions": {},
            "jobs": {"j": {"runs-on": "ubuntu-latest", "steps": [
                {"run": "env", "env": {f"V{i}": "${{ job." + prop + " }}"
                                       for i, prop in enumerate(props)}}]}},
        }), encoding="utf-8")
        return _lint(wf)

    newer = lint_with("workflow_repository", "workflow_sha", "workflow_ref", "workflow_file_path")
    assert newer.returncode == 0, newer.stdout
    typo = lint_with("workflow_shaa")
    assert typo.returncode == 1 and '"workflow_shaa"' in typo.stdout, typo.stdout


def _all_run_scripts() -> list[tuple[str, str]]:
    scripts = [(f"action.yml: {s.get('name')}", s["run"])
               for s in _action()["runs"]["steps"] if "run" in s]
    for path in sorted(WORKFLOWS.glob("*.yml")):
        wf = yaml.safe_load(path.read_text(encoding="utf-8"))
        for job_name, job in wf["jobs"].items():
            scripts += [(f"{path.name}: {job_name}: {s.get('name')}", s["run"])
                        for s in job.get("steps", []) if "run" in s]
    return scripts


def test_every_run_script_parses_with_bash(tmp_path: Path) -> None:
    # The bundled actionlint cannot run shellcheck (a WASM build); bash -n at least catches
    # what would fail before the first command.
    scripts = _all_run_scripts()
    assert len(scripts) > 10
    for where, script in scripts:
        file = tmp_path / "script.sh"
        file.write_text(script, encoding="utf-8")
        done = subprocess.run(["bash", "-n", str(file)], capture_output=True, text=True,
                              check=False)
        assert done.returncode == 0, f"{where}: {done.stderr}"


def _docs_workflows() -> list[str]:
    """The complete workflows (with an `on:`) among docs/GITHUB.md's yaml blocks."""
    text = (ROOT / "docs" / "GITHUB.md").read_text(encoding="utf-8")
    blocks = []
    for match in re.finditer(r"^( *)```yaml\n(.*?)^\1```", text, re.S | re.M):
        indent = len(match.group(1))
        block = "".join(line[indent:] + "\n" for line in match.group(2).splitlines())
        if re.search(r"^on:", block, re.M):
            blocks.append(block)
    return blocks


def _readme_caller() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = re.search(r"^## Install on GitHub\n(.*?)(?=^## )", text, re.S | re.M)
    assert section
    block = re.search(r"^```ya?ml\n(.*?)^```", section.group(1), re.S | re.M)
    assert block
    return block.group(1)


def test_docs_checklist_caller_is_the_readme_caller() -> None:
    blocks = _docs_workflows()
    callers = [b for b in blocks if "/.github/workflows/promptbot.yml@" in b]
    assert callers, "docs/GITHUB.md has no caller snippet"
    assert callers[0] == _readme_caller()
    # 11 lines: the caller's `on:` includes `issues: edited` for the dashboard's boxes.
    assert len([line for line in callers[0].splitlines() if line.strip()]) <= 11


@needs_actionlint
@pytest.mark.parametrize("index", range(len(_docs_workflows())))
def test_docs_workflows_pass_actionlint(tmp_path: Path, index: int) -> None:
    wf = tmp_path / f"docs-{index}.yml"
    wf.write_text(_docs_workflows()[index], encoding="utf-8")
    done = _lint(wf)
    assert done.returncode == 0, done.stdout + done.stderr


# ------------------------------------------------------------------ pinned actions


USES = re.compile(r"^\s*(?:-\s+)?uses:\s*(\S+)(?:\s+#\s*(\S+))?\s*$")


def _uses_lines() -> list[tuple[str, str, str | None]]:
    found = []
    for path in [ACTION, *sorted(WORKFLOWS.glob("*.yml"))]:
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if re.match(r"^\s*(?:-\s+)?uses:", line):
                match = USES.match(line)
                assert match, f"{path.name}:{n}: unreadable uses: {line!r}"
                found.append((f"{path.name}:{n}", match.group(1), match.group(2)))
    return found


def _uses_parsed() -> int:
    count = len([s for s in _action()["runs"]["steps"] if "uses" in s])
    for path in WORKFLOWS.glob("*.yml"):
        for job in yaml.safe_load(path.read_text(encoding="utf-8"))["jobs"].values():
            count += "uses" in job
            count += len([s for s in job.get("steps", []) if "uses" in s])
    return count


def test_every_third_party_action_is_pinned_by_commit_with_its_tag() -> None:
    lines = _uses_lines()
    # Every `uses:` the YAML holds was seen as a line here (none hides in flow style).
    assert len(lines) == _uses_parsed()
    pins: dict[str, set[tuple[str, str | None]]] = {}
    for where, ref, comment in lines:
        if ref.startswith("./"):
            continue  # this repository (or promptbot's own checkout), at the same commit
        match = re.fullmatch(r"([\w.-]+/[\w.-]+)(/[\w./-]+)?@([0-9a-f]{40})", ref)
        assert match, f"{where}: {ref} is not pinned to a full commit SHA"
        assert comment and re.fullmatch(r"v\d+(\.\d+){0,2}", comment), \
            f"{where}: {ref} needs its release tag in a comment (# vX.Y.Z)"
        pins.setdefault(match.group(1), set()).add((match.group(3), comment))
    assert {"actions/checkout", "actions/setup-python", "actions/cache"} <= set(pins)
    # One pin per action across the files: no job runs an older checkout than another.
    for action, versions in pins.items():
        assert len(versions) == 1, f"{action} pinned differently: {sorted(versions)}"
