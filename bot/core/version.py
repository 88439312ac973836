"""Prompt version: a short hash of what the model actually sees.

Only prompt-affecting fields count, in canonical form (parsed, key-sorted JSON),
so comments, quoting and re-indentation never create a new version, and owner
or description edits do not either.

This module is the file contract a runtime in any language follows (docs/RUNTIME.md):
`fields_from_yaml` turns the parsed YAML of an agent file into the canonical fields with
the defaults filled in, `version_of` hashes them. It imports neither pydantic nor the
agent model, so `bot.runtime` can use it in a service; `prompt_version` gives the same
hash for a validated `AgentFile` (a test holds the two equal).
"""

from __future__ import annotations

import datetime
import hashlib
import json
import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bot.core.model import AgentFile

VERSION_LENGTH = 12
PROMPT_FIELDS = ("model", "prompts", "tools", "examples")
DEFAULT_TEMPERATURE = 0.0
DEFAULT_MAX_TOKENS = 1024


class FieldError(ValueError):
    """A prompt-affecting field that is not what the agent file contract allows."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path
        self.message = message


def canonical_json(fields: Mapping[str, Any]) -> str:
    return json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def version_of(fields: Mapping[str, Any]) -> str:
    """The version of canonical fields (as `fields_from_yaml` returns them)."""
    return hashlib.sha256(canonical_json(fields).encode("utf-8")).hexdigest()[:VERSION_LENGTH]


def canonical(agent: AgentFile) -> str:
    return canonical_json(agent_fields(agent))


def agent_fields(agent: AgentFile) -> dict[str, Any]:
    data: dict[str, Any] = agent.model_dump(mode="json", by_alias=True,
                                            include=set(PROMPT_FIELDS))
    return data


def prompt_version(agent: AgentFile) -> str:
    return version_of(agent_fields(agent))


# ------------------------------------------------------------ raw YAML -> fields


def json_value_error(value: Any) -> str | None:
    """Why a free-form value (tool parameters, a structured example input) is not plain
    JSON, or None. YAML dates, timestamps, NaN/infinity and non-text keys have no single
    JSON spelling, so two runtimes could hash them differently: the files must quote them."""
    if value is None or isinstance(value, (str, bool, int)):
        return None
    if isinstance(value, float):
        return None if math.isfinite(value) else "not a finite number (quote it)"
    if isinstance(value, (datetime.date, datetime.datetime)):
        return f"a YAML date or time ({value}); quote it to make it text"
    if isinstance(value, list):
        for item in value:
            why = json_value_error(item)
            if why:
                return why
        return None
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                return f"key {key!r} is not text (quote it)"
            why = json_value_error(item)
            if why:
                return why
        return None
    return f"a {type(value).__name__} is not a JSON value"


def _text(data: Mapping[str, Any], key: str, path: str, required: bool = True) -> str:
    value = data.get(key)
    if value is None and not required:
        return ""
    if not isinstance(value, str):
        raise FieldError(f"{path}.{key}", "must be text" if key in data else "is missing")
    if not value:
        raise FieldError(f"{path}.{key}", "must not be empty")
    return value


def _mapping(value: Any, path: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise FieldError(path, "must be a mapping")
    return value


def _only(data: Mapping[str, Any], keys: tuple[str, ...], path: str) -> None:
    for key in data:
        if key not in keys:
            raise FieldError(f"{path}.{key}", f"unknown key (allowed: {', '.join(keys)})")


def _model(value: Any) -> dict[str, Any]:
    data = _mapping(value, "model")
    _only(data, ("name", "temperature", "max_tokens"), "model")
    temperature = data.get("temperature", DEFAULT_TEMPERATURE)
    # bool is an int in Python; YAML `true` is no temperature.
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)):
        raise FieldError("model.temperature", "must be a number from 0 to 2")
    if not 0.0 <= float(temperature) <= 2.0:
        raise FieldError("model.temperature", "must be a number from 0 to 2")
    max_tokens = data.get("max_tokens", DEFAULT_MAX_TOKENS)
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int):
        raise FieldError("model.max_tokens", "must be a whole number from 1 to 200000")
    if not 1 <= max_tokens <= 200_000:
        raise FieldError("model.max_tokens", "must be a whole number from 1 to 200000")
    return {"name": _text(data, "name", "model"), "temperature": float(temperature),
            "max_tokens": max_tokens}


def _tools(value: Any) -> list[dict[str, Any]]:
    if not isinstance(value, list):
        raise FieldError("tools", "must be a list")
    tools = []
    for i, item in enumerate(value):
        path = f"tools[{i}]"
        data = _mapping(item, path)
        _only(data, ("name", "description", "parameters"), path)
        parameters = data.get("parameters", {})
        if not isinstance(parameters, dict):
            raise FieldError(f"{path}.parameters", "must be a mapping (a JSON Schema)")
        why = json_value_error(parameters)
        if why:
            raise FieldError(f"{path}.parameters", why)
        tools.append({"name": _text(data, "name", path),
                      "description": _text(data, "description", path),
                      "parameters": parameters})
    return tools


def _examples(value: Any) -> list[dict[str, Any]]:
    if not isinstance(value, list):
        raise FieldError("examples", "must be a list")
    examples = []
    for i, item in enumerate(value):
        path = f"examples[{i}]"
        data = _mapping(item, path)
        _only(data, ("input", "output"), path)
        given = data.get("input")
        if isinstance(given, dict):
            why = json_value_error(given)
            if why:
                raise FieldError(f"{path}.input", why)
        elif not isinstance(given, str):
            raise FieldError(f"{path}.input", "must be text or a mapping of template variables")
        elif not given.strip():
            raise FieldError(f"{path}.input", "must not be empty (the model API refuses an "
                                              "empty turn)")
        output = _text(data, "output", path)
        if not output.strip():
            raise FieldError(f"{path}.output", "must not be empty (the model API refuses an "
                                               "empty turn)")
        examples.append({"input": given, "output": output})
    return examples


def fields_from_yaml(data: Any) -> dict[str, Any]:
    """The canonical prompt-affecting fields of a parsed agent file.

    The same dict `agent_fields` gives for the validated file: defaults filled in
    (`temperature` 0.0, `max_tokens` 1024, no tools, no examples), temperature a float.
    Only these fields are checked here; `promptbot check` checks the whole file.
    Raises FieldError naming the field.
    """
    top = _mapping(data, "agent file")
    if "model" not in top:
        raise FieldError("model", "is missing")
    prompts = _mapping(top.get("prompts"), "prompts")
    _only(prompts, ("system", "user_template"), "prompts")
    return {
        "model": _model(top["model"]),
        "prompts": {"system": _text(prompts, "system", "prompts"),
                    "user_template": _text(prompts, "user_template", "prompts")},
        "tools": _tools(top["tools"]) if "tools" in top else [],
        "examples": _examples(top["examples"]) if "examples" in top else [],
    }
