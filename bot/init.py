"""`promptbot init`: start a prompts repository in any git repository.

Writes only the files that are missing (never overwrites, never commits), each one whole or
not at all, and checks what it wrote with the same validation `promptbot check` uses. Run
twice, the second run writes nothing.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path, PurePosixPath

from bot.core import scaffold
from bot.core.agentfile import parse_agent
from bot.core.assertions import parse_cases
from bot.core.model import Policy, TestsFile
from bot.core.templating import variables
from bot.core.yamlparse import parse_yaml, validate_as
from bot.edges.git import Git
from bot.errors import InputError, UsageError

DEFAULT_AGENT = "example-agent"
DEFAULT_MODEL = "claude-sonnet-4-5"


@dataclass
class Plan:
    """Files to write (repository-relative path -> text) and files left alone."""

    write: dict[str, str] = field(default_factory=dict)
    kept: list[str] = field(default_factory=list)
    agent: str = ""  # the agent written, if any
    base: str = "main"


def plan(root: Path, *, prompt_file: Path | None, agent: str | None, owner: str,
         source: str | None, uses: str) -> Plan:
    git = Git(root)  # refuses outside a git repository, with the fix
    result = Plan()
    # A feature branch is where init runs, not where the team deploys from.
    base = git.base_branch_guess()
    result.base = base
    files = {
        scaffold.POLICY: scaffold.policy_yaml(
            _template("promptbot.yaml"), "schemas/policy.schema.json",
            source=source or scaffold.DEFAULT_SOURCE, base_branch=base),
        scaffold.WORKFLOW: _caller(uses, base),
    }
    has_agents = any((root / "prompts").glob("*/agent.yaml"))
    if prompt_file is not None or agent is not None or not has_agents:
        # An example only for a repository without agents: init run again, or run in a
        # prompts repository for the caller and schemas, adds no agent nobody asked for.
        files.update(_agent_files(prompt_file, agent, owner, result))
    from bot.load.schemas import schema_text

    for kind in ("agent", "tests", "policy"):
        files[f"{scaffold.SCHEMA_DIR}/{kind}.schema.json"] = schema_text(kind)
    _validate(files)
    for rel, text in files.items():
        if (root / rel).exists():
            result.kept.append(rel)
        else:
            result.write[rel] = text
    ignore = root / scaffold.GITIGNORE
    current = None
    if ignore.exists():
        with ignore.open(encoding="utf-8", newline="") as handle:  # keep its line ends
            current = handle.read()
    # A folder the team already commits (its own reports/) is not hidden from it.
    tracked = [p.strip("/") for p in scaffold.IGNORED if git.ls("HEAD", p.strip("/"))]
    updated = scaffold.gitignore(current, skip=tracked)
    if updated is not None:
        result.write[scaffold.GITIGNORE] = updated
    return result


def _agent_files(prompt_file: Path | None, agent: str | None, owner: str,
                 result: Plan) -> dict[str, str]:
    prompt, origin = _prompt(prompt_file)
    agent_id = agent or (scaffold.agent_id_from(prompt_file.stem) if prompt_file
                         else DEFAULT_AGENT)
    if not scaffold.valid_agent_id(agent_id):
        raise UsageError(f"'{agent_id}' is not a valid agent id",
                         fix="pass --agent with lowercase letters, digits and '-' only "
                         "(e.g. --agent support-bot)")
    result.agent = agent_id
    folder = f"prompts/{agent_id}"
    text = scaffold.agent_yaml(
        agent_id, prompt, owner=owner, model=DEFAULT_MODEL,
        schema_rel=f"../../{scaffold.SCHEMA_DIR}/agent.schema.json", source=origin)
    try:
        loaded = parse_agent(text, f"{folder}/agent.yaml", folder_id=agent_id)
    except InputError as exc:
        # Named after the file the person gave: prompts/<id>/agent.yaml does not exist.
        problems = "; ".join(f.message for f in exc.findings) or exc.message
        raise InputError(f"{prompt_file or 'the example'} cannot become an agent: {problems}",
                         fix="fix the prompt file (e.g. a template that does not parse) and "
                         "run init again") from None
    prompts = loaded.agent.prompts
    if (prompts.system, prompts.user_template) != (prompt.system, prompt.user_template):
        raise InputError(f"{prompt_file}: its text does not survive as YAML unchanged",
                         fix="remove control characters from the prompt file, or write "
                         "agent.yaml by hand (docs/REFERENCE.md)")
    return {
        f"{folder}/agent.yaml": text,
        f"{folder}/tests.yaml": scaffold.tests_yaml(
            f"../../{scaffold.SCHEMA_DIR}/tests.schema.json",
            sorted(variables(prompt.user_template))),
    }


def _validate(files: dict[str, str]) -> None:
    """Everything init writes passes `promptbot check`, or nothing is written."""
    policy = files[scaffold.POLICY]
    validate_as(Policy, parse_yaml(policy, scaffold.POLICY))
    for rel, text in files.items():
        if rel.endswith("/tests.yaml"):
            located = parse_yaml(text, rel)
            parse_cases(validate_as(TestsFile, located), rel, located.line_of)


def apply(root: Path, p: Plan, said: Callable[[str], None] = lambda _rel: None) -> None:
    """Each file appears whole (temp file, then rename) or not at all, and is reported as
    it appears: a failure half-way says exactly what is already there."""
    for rel, text in p.write.items():
        path = root / PurePosixPath(rel)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.promptbot-tmp")
        try:
            tmp.write_text(text, encoding="utf-8")
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        said(rel)


def _prompt(prompt_file: Path | None) -> tuple[scaffold.Prompt, str | None]:
    if prompt_file is None:
        return scaffold.Prompt(scaffold.EXAMPLE_SYSTEM, scaffold.EXAMPLE_TEMPLATE), None
    fix = "pass the path of a prompt file (.txt, .md, .json, .yaml)"
    try:
        text = prompt_file.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise UsageError(f"{prompt_file}: no such file", fix=fix) from None
    except IsADirectoryError:
        raise UsageError(f"{prompt_file} is a folder, not a prompt file", fix=fix) from None
    except UnicodeDecodeError:
        raise InputError(f"{prompt_file} is not UTF-8 text", fix="save it as UTF-8") from None
    try:
        return scaffold.convert_prompt(text, prompt_file.suffix), prompt_file.name
    except ValueError as exc:
        raise InputError(f"{prompt_file}: cannot use it as a prompt: {exc}",
                         fix="pass a text or Markdown file (the system prompt), or JSON/YAML "
                         "with a `system` key or an OpenAI-style `messages` list") from None


def _caller(uses: str, base: str) -> str:
    try:
        return scaffold.caller(_template("caller.yml"), uses, base)
    except ValueError as exc:
        raise UsageError(str(exc), fix="pass --uses OWNER/REPO@TAG: promptbot's repository or "
                         "your fork, at a tag you trust") from None


def _template(name: str) -> str:
    return resources.files("bot").joinpath(f"templates/init/{name}").read_text(
        encoding="utf-8")
