"""Semantic checks of an agent file beyond its schema: templates and protected markers."""

from __future__ import annotations

from collections.abc import Callable

from bot.core import protected, templating
from bot.core.model import AgentFile
from bot.errors import Finding

# Maps a key path (e.g. ("prompts", "system")) to the line its value starts on.
LineOf = Callable[[tuple[str | int, ...]], int | None]


def _text_line(line_of: LineOf, loc: tuple[str | int, ...], offset: int) -> int | None:
    key_line = line_of(loc)
    # Block scalars (`key: |`) start on the line after the key.
    return key_line + 1 + offset if key_line is not None else None


def check_agent(agent: AgentFile, path: str, line_of: LineOf) -> list[Finding]:
    findings: list[Finding] = []
    texts = {"system": agent.prompts.system, "user_template": agent.prompts.user_template}
    for field, text in texts.items():
        loc: tuple[str | int, ...] = ("prompts", field)
        for problem in protected.scan(text)[1]:
            findings.append(
                Finding(
                    path,
                    _text_line(line_of, loc, problem.line),
                    f"prompts.{field}: {problem.message}",
                    "balance the markers: every '# promptbot:protected begin NAME' needs "
                    "one '# promptbot:protected end' after it",
                )
            )
    error = templating.compile_error(agent.prompts.user_template)
    if error is not None:
        line, message = error
        findings.append(
            Finding(
                path,
                _text_line(line_of, ("prompts", "user_template"), line - 1),
                f"prompts.user_template does not compile: {message}",
                "fix the Jinja2 syntax ({{ var }}, {% if %}...{% endif %})",
            )
        )
    else:
        for line, name in templating.unsafe_access(agent.prompts.user_template):
            findings.append(
                Finding(
                    path,
                    _text_line(line_of, ("prompts", "user_template"), line - 1),
                    f"prompts.user_template reaches for the private attribute '{name}'",
                    "use only the data's public fields; the sandbox refuses '_' names",
                )
            )
    names = [tool.name for tool in agent.tools]
    for index, name in enumerate(names):
        if name in names[:index]:
            findings.append(
                Finding(path, line_of(("tools", index)), f"tool '{name}' is defined twice",
                        "give each tool a unique name")
            )
    return findings


def check_variant(old: AgentFile, new: AgentFile, fields: tuple[str, ...]) -> list[str]:
    """Why `new` may not replace `old`; empty when it may.

    `fields` are the dotted fields the change is allowed to touch.
    """
    problems: list[str] = []
    for name in ("system", "user_template"):
        before = protected.sections_of(getattr(old.prompts, name))
        after = protected.sections_of(getattr(new.prompts, name))
        if before != after:
            problems.append(f"protected sections of prompts.{name} changed")
    if templating.variables(old.prompts.user_template) != templating.variables(
        new.prompts.user_template
    ):
        problems.append("the template variables changed")
    old_data, new_data = old.model_dump(), new.model_dump()
    for key in old_data:
        if key == "prompts":
            for sub in old_data["prompts"]:
                if (
                    old_data["prompts"][sub] != new_data["prompts"][sub]
                    and f"prompts.{sub}" not in fields
                ):
                    problems.append(f"prompts.{sub} changed outside the proposal's scope")
        elif old_data[key] != new_data[key] and key not in fields:
            problems.append(f"{key} changed outside the proposal's scope")
    return problems
