"""An agent file parsed from text: the model, its version and where each key was written."""

from __future__ import annotations

import json
from dataclasses import dataclass

import yaml

from bot.core.checks import check_agent
from bot.core.model import AgentFile
from bot.core.portable import ambiguous_scalars
from bot.core.protected import is_marker
from bot.core.version import prompt_version
from bot.core.yamlparse import Located, parse_yaml, validate_as
from bot.errors import Finding, InputError

_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the C one when libyaml is there


@dataclass(frozen=True)
class LoadedAgent:
    agent: AgentFile
    path: str  # relative to the repository root, with forward slashes
    text: str
    version: str
    located: Located


def parse_agent(text: str, display: str, folder_id: str | None = None) -> LoadedAgent:
    located = parse_yaml(text, display)
    portability = portability_findings(text, display)
    try:
        agent = validate_as(AgentFile, located)
    except InputError as exc:
        # `temperature: 1e-3` is text to PyYAML: the type error alone would puzzle.
        if not portability:
            raise
        raise InputError(exc.message, fix=exc.fix,
                         findings=exc.findings + tuple(portability)) from None
    findings = check_agent(agent, display, located.line_of)
    if folder_id is not None and agent.id != folder_id:
        findings.append(
            Finding(display, located.line_of(("id",)),
                    f"id '{agent.id}' does not match its folder '{folder_id}'",
                    f"set id: {folder_id} or rename the folder")
        )
    findings += [
        Finding(display, line, "this protected-section marker is a YAML comment, outside any "
                "prompt text: it protects nothing",
                "indent it into the prompt's block (e.g. under `system: |`) so it is part "
                "of the text; markers must enclose the protected lines inside the prompt")
        for line in _comment_markers(text, located.data)]
    findings += portability
    if findings:
        raise InputError(f"{display} has problems", findings=tuple(findings))
    return LoadedAgent(agent, display, text, prompt_version(agent), located)


def portability_findings(text: str, display: str,
                         under: tuple[str, ...] | None = None) -> list[Finding]:
    """The hashed fields' plain scalars that a YAML 1.2 reader would read otherwise."""
    return [
        Finding(display, found.line,
                f"`{found.value}` at {found.path} reads as {found.yaml11} in YAML 1.1 (PyYAML) "
                f"but as {found.yaml12} in YAML 1.2: runtimes in other languages would hash a "
                "different prompt version",
                f"quote it ({json.dumps(found.value, ensure_ascii=False)}) or write it "
                "unambiguously")
        for found in (ambiguous_scalars(text) if under is None
                      else ambiguous_scalars(text, under))]


def _comment_markers(text: str, data: object) -> list[int]:
    """1-based lines of marker lines that YAML reads as comments: taking such a line out
    leaves the parsed file unchanged, while a marker inside a prompt's text changes it."""
    lines = text.splitlines(keepends=True)
    found = []
    for index, line in enumerate(lines):
        if not is_marker(line):
            continue
        try:
            same = yaml.load("".join(lines[:index] + lines[index + 1:]), Loader=_LOADER) == data
        except yaml.YAMLError:
            continue
        if same:
            found.append(index + 1)
    return found
