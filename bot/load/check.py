"""`promptbot check`: validate agent files, tests files and policies; collect every finding."""

from __future__ import annotations

from pathlib import Path

from bot.core.agentfile import LoadedAgent, parse_agent, portability_findings
from bot.core.assertions import parse_cases
from bot.core.model import Policy, PromotedRules, TestsFile
from bot.core.rollout import parse_rollout
from bot.core.templating import RenderError, render
from bot.core.version import FieldError
from bot.core.yamlparse import Located, parse_yaml, validate_as
from bot.errors import Finding, InputError


def _display(root: Path, path: Path) -> str:
    try:
        return path.resolve().relative_to(root).as_posix()
    except ValueError:
        return str(path)


def _targets(root: Path, paths: list[Path]) -> list[Path]:
    if not paths:
        paths = [root / "prompts", root / "policies"]
    out: list[Path] = []
    for given in paths:
        path = given if given.is_absolute() else root / given
        if path.is_dir():
            out += sorted(path.rglob("agent.yaml")) + sorted(path.rglob("tests.yaml"))
            # A canary's file sits beside an agent; another tool's rollout.yaml is not ours.
            out += sorted(p for p in path.rglob("rollout.yaml")
                          if (p.parent / "agent.yaml").exists())
            out += sorted(p for p in path.rglob("*.yaml") if p.parent.name == "policies")
        else:
            out.append(path)
    return list(dict.fromkeys(out))


def check_file(root: Path, path: Path) -> list[Finding]:
    display = _display(root, path)
    if not path.exists():
        return [Finding(display, None, "does not exist", "check the path")]
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        return [Finding(display, None, "is not UTF-8 text", "save it as UTF-8")]
    try:
        if path.name == "agent.yaml":
            loaded = parse_agent(text, display, folder_id=path.parent.name)
            found = _render_examples(loaded)
            found += _render_with_tests(root, path, loaded.agent.prompts.user_template,
                                        display,
                                        loaded.located.line_of(("prompts", "user_template")))
            rollout = path.parent / "rollout.yaml"
            if rollout.exists():
                # A canary runs: an agent.yaml that is no longer its candidate would stop
                # every runtime from loading the agent.
                found += check_file(root, rollout)
            return found
        elif path.name == "rollout.yaml":
            # The baseline is hashed by every runtime, in any language, like agent.yaml.
            return (portability_findings(text, display, ("rollout", "candidate", "baseline"))
                    or _check_rollout(root, path, parse_yaml(text, display)))
        elif path.name == "tests.yaml":
            located = parse_yaml(text, display)
            parse_cases(validate_as(TestsFile, located), display, located.line_of)
        elif path.name == "promptbot.yaml" and path.parent.name == "policies":
            validate_as(Policy, parse_yaml(text, display))
        elif path.name == "promoted_rules.yaml" and path.parent.name == "policies":
            validate_as(PromotedRules, parse_yaml(text, display))
        else:
            parse_yaml(text, display)
    except InputError as exc:
        return list(exc.findings) or [Finding(display, None, exc.message, exc.fix)]
    return []


def _check_rollout(root: Path, path: Path, located: Located) -> list[Finding]:
    """A canary's rollout file: valid, and naming the version agent.yaml has now."""
    display = located.path
    agent = path.parent / "agent.yaml"
    try:
        candidate = parse_agent(agent.read_text(encoding="utf-8"), _display(root, agent),
                                folder_id=path.parent.name).version
    except (OSError, UnicodeDecodeError):
        return [Finding(display, None, "a rollout file without a readable agent.yaml beside it",
                        "delete the rollout file, or restore agent.yaml (the candidate)")]
    except InputError:
        return [Finding(display, None, "its agent.yaml is not valid, so the canary cannot be "
                        "checked", f"fix {_display(root, agent)} first")]
    try:
        parse_rollout(located.data, candidate)
    except FieldError as exc:
        top = exc.path.split(".")[0].split("[")[0]
        return [Finding(display, located.line_of((top,)), f"{exc.path}: {exc.message}",
                        "restore it from the commit that started the canary, or end the "
                        "canary (agent.yaml back to the baseline, this file deleted)")]
    return []


def _render_examples(loaded: LoadedAgent) -> list[Finding]:
    """Structured few-shot inputs are rendered with the user template on every request:
    one that fails would fail them all."""
    template = loaded.agent.prompts.user_template
    findings = []
    for i, example in enumerate(loaded.agent.examples):
        if isinstance(example.input, str):
            continue
        try:
            if not render(template, example.input, strict=False).strip():
                raise RenderError("it renders empty")
        except RenderError as exc:
            findings.append(Finding(
                loaded.path, loaded.located.line_of(("examples", i, "input")),
                f"examples[{i}].input does not render with user_template: {exc}",
                "give the example the variables the template reads (or write its input "
                "as text)"))
    return findings


def _render_with_tests(
    root: Path, agent: Path, template: str, display: str, line: int | None
) -> list[Finding]:
    """Render the user template in the sandbox with the inputs of every tests.yaml case."""
    tests = agent.parent / "tests.yaml"
    if not tests.exists():
        return []
    try:
        cases = validate_as(TestsFile, parse_yaml(tests.read_text(encoding="utf-8"),
                                                  _display(root, tests))).cases
    except (InputError, UnicodeDecodeError):
        return []  # tests.yaml gets its own findings when it is checked
    findings = []
    for case in cases:
        try:
            render(template, case.inputs, strict=False)
        except RenderError as exc:
            findings.append(Finding(
                display, line, f"prompts.user_template fails on tests case '{case.name}': {exc}",
                "give the case every variable the template uses, or fix the template"))
    return findings


def check_paths(root: Path, paths: list[Path]) -> list[Finding]:
    findings: list[Finding] = []
    for path in _targets(root, paths):
        findings += check_file(root, path)
    # An agent's check includes its canary's file, which may be named on its own too.
    return list(dict.fromkeys(findings))
