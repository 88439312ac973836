"""Load the prompts repository: agent files, tests files and the policy.

Files come from a `FileSource`: the working tree (for `check`) or a git commit
(for `run`, which works from the base branch whatever is checked out).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Protocol

from bot.core.agentfile import LoadedAgent, parse_agent
from bot.core.model import Policy, PromotedRules, TestsFile, is_safe_id
from bot.core.yamlparse import parse_yaml, validate_as
from bot.errors import InputError, UsageError

POLICY_FILE = "policies/promptbot.yaml"
PROMOTED_FILE = "policies/promoted_rules.yaml"


class FileSource(Protocol):
    def read(self, rel: str) -> str | None: ...

    def agent_files(self) -> list[str]: ...


class WorkingTree:
    def __init__(self, root: Path) -> None:
        self.root = root

    def read(self, rel: str) -> str | None:
        path = self.root / rel
        try:
            return path.read_text(encoding="utf-8")
        except (FileNotFoundError, IsADirectoryError):
            return None
        except UnicodeDecodeError:
            raise InputError(f"{rel} is not UTF-8 text", fix="save it as UTF-8") from None

    def agent_files(self) -> list[str]:
        prompts = self.root / "prompts"
        if not prompts.is_dir():
            return []
        return sorted(p.relative_to(self.root).as_posix() for p in prompts.glob("*/agent.yaml"))


@dataclass
class RepoState:
    policy: Policy
    promoted: PromotedRules = field(default_factory=PromotedRules)
    agents: dict[str, LoadedAgent] = field(default_factory=dict)
    broken: dict[str, InputError] = field(default_factory=dict)


def agent_path(agent_id: str) -> str:
    if not is_safe_id(agent_id):
        raise UsageError(
            f"'{agent_id}' is not a valid agent id",
            fix="agent ids use lowercase letters, digits and '-' only (e.g. support-triage)",
        )
    return f"prompts/{agent_id}/agent.yaml"


def tests_path(agent_id: str) -> str:
    return f"prompts/{agent_id}/tests.yaml"


def load_agent(source: FileSource, rel: str) -> LoadedAgent:
    text = source.read(rel)
    if text is None:
        raise InputError(f"{rel} does not exist", fix="check the agent id with `promptbot version`")
    return parse_agent(text, rel, folder_id=PurePosixPath(rel).parent.name)


def load_tests(source: FileSource, rel: str) -> TestsFile:
    text = source.read(rel)
    if text is None:
        raise InputError(f"{rel} does not exist", fix="check the path")
    return validate_as(TestsFile, parse_yaml(text, rel))


def load_policy(source: FileSource) -> Policy:
    text = source.read(POLICY_FILE)
    if text is None:
        return Policy()
    return validate_as(Policy, parse_yaml(text, POLICY_FILE))


def load_promoted(source: FileSource) -> PromotedRules:
    text = source.read(PROMOTED_FILE)
    if text is None:
        return PromotedRules()
    return validate_as(PromotedRules, parse_yaml(text, PROMOTED_FILE))


def load_repo(source: FileSource, policy: Policy | None = None) -> RepoState:
    """Every agent that loads; the broken ones are kept with their error, not raised."""
    state = RepoState(policy if policy is not None else load_policy(source),
                      load_promoted(source))
    for rel in source.agent_files():
        try:
            loaded = load_agent(source, rel)
        except InputError as exc:
            state.broken[rel] = exc
            continue
        state.agents[loaded.agent.id] = loaded
    return state
