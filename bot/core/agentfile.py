"""An agent file parsed from text: the model, its version and where each key was written."""

from __future__ import annotations

from dataclasses import dataclass

from bot.core.checks import check_agent
from bot.core.model import AgentFile
from bot.core.version import prompt_version
from bot.core.yamlparse import Located, parse_yaml, validate_as
from bot.errors import Finding, InputError


@dataclass(frozen=True)
class LoadedAgent:
    agent: AgentFile
    path: str  # relative to the repository root, with forward slashes
    text: str
    version: str
    located: Located


def parse_agent(text: str, display: str, folder_id: str | None = None) -> LoadedAgent:
    located = parse_yaml(text, display)
    agent = validate_as(AgentFile, located)
    findings = check_agent(agent, display, located.line_of)
    if folder_id is not None and agent.id != folder_id:
        findings.append(
            Finding(display, located.line_of(("id",)),
                    f"id '{agent.id}' does not match its folder '{folder_id}'",
                    f"set id: {folder_id} or rename the folder")
        )
    if findings:
        raise InputError(f"{display} has problems", findings=tuple(findings))
    return LoadedAgent(agent, display, text, prompt_version(agent), located)


