"""JSON Schemas of agent.yaml, tests.yaml and the policy, and docs/REFERENCE.md.

Both are generated from the pydantic models in bot/core/model.py, so the reference, the
editor's completion and what `promptbot check` accepts cannot drift apart: the schemas
ship as package data (bot/schemas/), and tests fail when a committed file differs from
what the models generate (`python scripts/gen_schemas.py --write` regenerates them).

The schemas describe the shape of a file; `promptbot check` checks more (a template that
compiles, balanced protected markers, an id that matches its folder, regexes that
compile).
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

import yaml
from pydantic import BaseModel

from bot.core.model import AgentFile, Policy, TestsFile

DIALECT = "https://json-schema.org/draft/2020-12/schema"
MODELS: dict[str, type[BaseModel]] = {"agent": AgentFile, "tests": TestsFile, "policy": Policy}
FILES = {kind: f"{kind}.schema.json" for kind in MODELS}
# Where each file lives in a prompts repository: the titles, and what `init` points the
# `yaml-language-server` line at.
PATHS = {"agent": "prompts/<agent>/agent.yaml", "tests": "prompts/<agent>/tests.yaml",
         "policy": "policies/promptbot.yaml"}
REGENERATE = "python scripts/gen_schemas.py --write"


def _kind(kind: str) -> type[BaseModel]:
    if kind not in MODELS:
        raise ValueError(f"unknown schema '{kind}': use one of {', '.join(MODELS)}")
    return MODELS[kind]


def generate(kind: str) -> dict[str, Any]:
    """The JSON Schema of one kind of file (`agent`, `tests`, `policy`)."""
    schema = _kind(kind).model_json_schema(by_alias=True, mode="validation")
    return {"$schema": DIALECT, **schema, "title": f"promptbot {PATHS[kind]}"}


def generated_text(kind: str) -> str:
    return json.dumps(generate(kind), indent=2, ensure_ascii=False) + "\n"


def schema_text(kind: str) -> str:
    """The shipped schema of one kind of file, as `promptbot init` copies it into a
    repository (identical to `generated_text`; a test holds them together)."""
    _kind(kind)
    return (resources.files("bot") / "schemas" / FILES[kind]).read_text(encoding="utf-8")


# ---------------------------------------------------------------- docs/REFERENCE.md


def _resolve(schema: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    ref = node.get("$ref")
    if not ref:
        return node
    name = ref.rsplit("/", 1)[-1]
    resolved: dict[str, Any] = schema["$defs"][name]
    return resolved


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _flow(value: Any) -> str:
    """A value as it would be written in YAML, on one line."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_flow(k)}: {_flow(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_flow(v) for v in value) + "]"
    if isinstance(value, str) and "\n" in value:
        return json.dumps(value, ensure_ascii=False)  # a JSON string is a YAML string too
    # Dumped inside a flow list, so a string is quoted wherever a flow needs it (`, `).
    return yaml.safe_dump([value], default_flow_style=True, allow_unicode=True,
                          width=10_000).strip()[1:-1]


def _code(text: str) -> str:
    # A backtick inside would end the code span early: widen the fence instead.
    fence = "``" if "`" in text else "`"
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def _words(values: list[Any]) -> str:
    return ", ".join(_code(str(v)) for v in values)


_LONG_ENUM = 6  # longer lists of allowed words are listed below the table


def _type(schema: dict[str, Any], node: dict[str, Any], notes: list[str], key: str) -> str:
    """A person's name for the type and limits of a schema node."""
    if "anyOf" in node:
        return " or ".join(_type(schema, option, notes, key) for option in node["anyOf"])
    if "$ref" in node:
        return "mapping (section below)"
    if "enum" in node:
        if len(node["enum"]) > _LONG_ENUM:
            notes.append(f"`{key}`: one of {_words(node['enum'])}.")
            return f"one of {len(node['enum'])} names (listed below)"
        return f"one of {_words(node['enum'])}"
    kind = node.get("type")
    if kind == "array":
        items = node.get("items", {})
        if "$ref" in items:
            return "list of mappings (section below)"
        inner = "mappings (section below)" if items.get("maxProperties") == 1 else \
            _type(schema, items, notes, key)
        text = f"list of {inner}"
        if node.get("minItems"):
            text += f", at least {node['minItems']}"
        return text
    if kind == "object":
        extra = node.get("additionalProperties")
        if isinstance(extra, dict):
            return f"mapping: name → {_type(schema, extra, notes, key)}"
        return "mapping (free-form)"
    words = {"string": "string", "integer": "integer", "number": "number",
             "boolean": "boolean", "null": "null"}
    text = words.get(str(kind), str(kind))
    limits = []
    if "minimum" in node:
        limits.append(f"≥ {node['minimum']}")
    if "exclusiveMinimum" in node:
        limits.append(f"> {node['exclusiveMinimum']}")
    if "maximum" in node:
        limits.append(f"≤ {node['maximum']}")
    if "exclusiveMaximum" in node:
        limits.append(f"< {node['exclusiveMaximum']}")
    if node.get("minLength") == 1:
        limits.append("not empty")
    if "maxLength" in node:
        limits.append(f"at most {node['maxLength']} characters")
    if "pattern" in node and len(node["pattern"]) <= 40:
        limits.append(f"matching {_code(node['pattern'])}")
    return f"{text} ({', '.join(limits)})" if limits else text


def _default(node: dict[str, Any], required: bool) -> str:
    if required:
        return "**required**"
    if "default" in node:
        return _code(_flow(node["default"]))
    if "$ref" in node:
        return "(all defaults)"
    if node.get("type") == "array":
        return _code("[]")
    if node.get("type") == "object":
        return _code("{}")
    return "—"


def _example(key: str, node: dict[str, Any]) -> str:
    if "examples" not in node:
        return "—"
    return _code(f"{key}: {_flow(node['examples'][0])}")


def _table(schema: dict[str, Any], model: dict[str, Any], prefix: str) -> list[str]:
    notes: list[str] = []
    lines = ["| key | type | default | example | what it does |", "|---|---|---|---|---|"]
    required = set(model.get("required", []))
    for key, node in model["properties"].items():
        full = f"{prefix}{key}"
        # pydantic leaves out a field's description when it repeats its model's docstring.
        what = node.get("description") or _resolve(schema, node).get("description", "")
        lines.append(
            f"| `{key}` | {_cell(_type(schema, node, notes, full))} "
            f"| {_cell(_default(node, key in required))} | {_cell(_example(key, node))} "
            f"| {_cell(what)} |")
    if notes:
        lines += [""] + [f"- {note}" for note in notes]
    return lines


def _sections(schema: dict[str, Any], model: dict[str, Any], prefix: str,
              heading: str) -> list[str]:
    """The table of one mapping, then one section per nested mapping (depth first)."""
    out = []
    for key, node in model["properties"].items():
        target = node.get("items", {}) if node.get("type") == "array" else node
        if "$ref" not in target:
            continue
        inner = _resolve(schema, target)
        name = f"{prefix}{key}" + ("[]" if node.get("type") == "array" else "")
        what = " (each item of the list)" if node.get("type") == "array" else ""
        out += ["", f"{heading} `{name}`{what}", ""]
        if inner.get("description"):
            out += [_cell(inner["description"]), ""]
        out += _table(schema, inner, f"{name}.")
        out += _sections(schema, inner, f"{name}.", heading)
    return out


def _assertions(schema: dict[str, Any]) -> list[str]:
    case = schema["$defs"]["TestCase"]
    kinds = case["properties"]["assert"]["items"]["properties"]
    lines = ["", "### `cases[].assert[]` (each item: one kind)", "",
             "Each item of `assert` is a mapping with exactly one of these keys; "
             "`promptbot check` reports a bad one with its file, line, case and index.", "",
             "| kind | value | example | what it checks |", "|---|---|---|---|"]
    examples = {"contains": "Lena", "not_contains": "voucher", "regex": "(?i)\\border\\b",
                "equals": "SELECT 1", "json_schema": {"type": "object", "required": ["category"]},
                "sql_parses": "postgres", "rubric": "The reply does not promise a refund."}
    for kind, node in kinds.items():
        value = "mapping (a JSON Schema)" if node["type"] == "object" else (
            "a dialect name" if "enum" in node else
            "string (not empty)" if node.get("minLength") else "string")
        lines.append(f"| `{kind}` | {value} | {_cell(_code(f'{kind}: {_flow(examples[kind])}'))} "
                     f"| {_cell(node['description'])} |")
    return lines


def reference_markdown() -> str:
    """docs/REFERENCE.md: every key of agent.yaml, tests.yaml and the policy."""
    out = [
        "# Reference: agent.yaml, tests.yaml and the policy",
        "",
        "<!-- Generated from bot/core/model.py; do not edit by hand. Regenerate with",
        f"     `{REGENERATE}`. -->",
        "",
        "Every key of the three files promptbot reads, with its type, default and an "
        "example. The same models give the JSON Schemas shipped in `bot/schemas/` "
        "(`agent.schema.json`, `tests.schema.json`, `policy.schema.json`): point your "
        "editor at one with a first line such as "
        "`# yaml-language-server: $schema=<path or URL of agent.schema.json>` for "
        "completion and checks while you type.",
        "",
        "Unknown keys are errors (a typo never silently falls back to a default): `promptbot "
        "check` names the file and line, and the key it was probably meant to be. Fractions "
        "are written 0–1 (`0.02` = 2 percentage points of success rate).",
    ]
    titles = {"agent": "one agent: its prompt and configuration",
              "tests": "offline evaluation cases (optional)",
              "policy": "the bot's configuration (optional; every key has a default)"}
    for kind in MODELS:
        schema = generate(kind)
        out += ["", f"## `{PATHS[kind]}` — {titles[kind]}", ""]
        out += _table(schema, schema, "")
        out += _sections(schema, schema, "", "###")
        if kind == "tests":
            out += _assertions(schema)
    return "\n".join(out) + "\n"
