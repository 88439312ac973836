"""`promptbot init`: start a prompts repository in any git repository.

Writes only the files that are missing (never overwrites, never commits), each one whole or
not at all, and checks what it wrote with the same validation `promptbot check` uses. Run
twice, the second run writes nothing.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path, PurePosixPath

from bot.core import scaffold
from bot.core.agentfile import parse_agent
from bot.core.templating import variables
from bot.edges.git import Git
from bot.errors import InputError, UsageError

DEFAULT_AGENT = "example-agent"
DEFAULT_MODEL = "claude-sonnet-4-5"
DEFAULT_USES = "promptbot/promptbot@v0.1.0"  # OWNER/REPO@REF of the release to run


@dataclass
class Plan:
    """Files to write (repository-relative path -> text) and files left alone."""

    write: dict[str, str] = field(default_factory=dict)
    kept: list[str] = field(default_factory=list)
    agent: str = ""


def plan(root: Path, *, prompt_file: Path | None, agent: str | None, owner: str,
         source: str | None, uses: str) -> Plan:
    git = Git(root)  # refuses outside a git repository, with the fix
    result = Plan()
    prompt, origin = _prompt(prompt_file)
    agent_id = agent or (scaffold.agent_id_from(prompt_file.stem) if prompt_file
                         else DEFAULT_AGENT)
    if not scaffold.valid_agent_id(agent_id):
        raise UsageError(f"'{agent_id}' is not a valid agent id",
                         fix="pass --agent with lowercase letters, digits and '-' only "
                         "(e.g. --agent support-bot)")
    result.agent = agent_id
    base = git.head_branch() or "main"
    folder = f"prompts/{agent_id}"
    agent_text = scaffold.agent_yaml(
        agent_id, prompt, owner=owner, model=DEFAULT_MODEL,
        schema_rel=f"../../{scaffold.SCHEMA_DIR}/agent.schema.json", source=origin)
    # What is written must pass `promptbot check`: a converted prompt whose template does not
    # parse is refused here, with the line, before any file exists.
    parse_agent(agent_text, f"{folder}/agent.yaml", folder_id=agent_id)
    files = {
        scaffold.POLICY: scaffold.policy_yaml(
            _template("promptbot.yaml"), "schemas/policy.schema.json",
            source=source or scaffold.DEFAULT_SOURCE,
            base_branch=base),
        f"{folder}/agent.yaml": agent_text,
        f"{folder}/tests.yaml": scaffold.tests_yaml(
            f"../../{scaffold.SCHEMA_DIR}/tests.schema.json",
            sorted(variables(prompt.user_template))),
        scaffold.WORKFLOW: _caller(uses, base),
    }
    from bot.load.schemas import schema_text

    for kind in ("agent", "tests", "policy"):
        files[f"{scaffold.SCHEMA_DIR}/{kind}.schema.json"] = schema_text(kind)
    for rel, text in files.items():
        if (root / rel).exists():
            result.kept.append(rel)
        else:
            result.write[rel] = text
    ignore = root / scaffold.GITIGNORE
    current = ignore.read_text(encoding="utf-8") if ignore.exists() else None
    updated = scaffold.gitignore(current)
    if updated is not None:
        result.write[scaffold.GITIGNORE] = updated
    return result


def apply(root: Path, p: Plan) -> None:
    """Each file appears whole (temp file, then rename) or not at all."""
    for rel, text in p.write.items():
        path = root / PurePosixPath(rel)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.promptbot-tmp")
        try:
            tmp.write_text(text, encoding="utf-8")
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)


def _prompt(prompt_file: Path | None) -> tuple[scaffold.Prompt, str | None]:
    if prompt_file is None:
        return scaffold.Prompt(scaffold.EXAMPLE_SYSTEM, scaffold.EXAMPLE_TEMPLATE), None
    try:
        text = prompt_file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"{prompt_file}: no such file",
                         fix="pass the path of an existing prompt file (.txt, .md, .json, "
                         ".yaml)") from None
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
