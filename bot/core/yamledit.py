"""Minimal-diff edits of agent files through ruamel.yaml's round-trip mode.

Comments, key order, quoting and block styles survive, so the PR diff shows only
the lines that really change.
"""

from __future__ import annotations

from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.scalarstring import LiteralScalarString
from ruamel.yaml.util import load_yaml_guess_indent


class RoundTripError(ValueError):
    pass


def _yaml(mapping: int, sequence: int, offset: int) -> YAML:
    yaml = YAML()
    yaml.preserve_quotes = True
    yaml.width = 4096
    yaml.indent(mapping=mapping, sequence=sequence, offset=offset)
    return yaml


class _Text:
    """A write-only text sink (ruamel dumps to streams; the core keeps to strings)."""

    def __init__(self) -> None:
        self.parts: list[str] = []

    def write(self, chunk: str | bytes) -> None:
        self.parts.append(chunk.decode("utf-8") if isinstance(chunk, bytes) else chunk)


def _dump(yaml: YAML, data: Any) -> str:
    sink = _Text()
    yaml.dump(data, sink)
    return "".join(sink.parts)


def _yaml_for(text: str) -> tuple[YAML, Any]:
    """A YAML instance whose round trip reproduces `text` exactly, with the loaded data.

    ruamel's indentation guess misses common styles, so the usual ones are tried too.
    """
    _, indent, offset = load_yaml_guess_indent(text)
    styles = [(indent or 2, (indent or 2) + (offset or 0), offset or 0),
              (2, 4, 2), (2, 2, 0), (4, 4, 0), (4, 6, 2), (4, 4, 2)]
    for style in dict.fromkeys(styles):
        yaml = _yaml(*style)
        data = yaml.load(text)
        if _dump(yaml, data) == text:
            return yaml, data
    raise RoundTripError(
        "this file's formatting does not survive a YAML round trip unchanged, so an "
        "automatic edit would touch unrelated lines (use 2-space indentation, no tabs, "
        "and a newline at the end of the file)"
    )


def set_prompt(text: str, field: str, value: str) -> str:
    """Return `text` with prompts.<field> replaced by `value` (kept as a literal block)."""
    yaml, data = _yaml_for(text)
    data["prompts"][field] = LiteralScalarString(value) if "\n" in value else value
    return _dump(yaml, data)


def add_example(text: str, example_input: str, example_output: str) -> str:
    """Return `text` with one few-shot example appended to `examples` (created if absent)."""
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    yaml, data = _yaml_for(text)

    def block(value: str) -> Any:
        value = value if value.endswith("\n") else value + "\n"
        return LiteralScalarString(value)

    item = CommentedMap()
    item["input"] = block(example_input)
    item["output"] = block(example_output)
    if data.get("examples") is None:
        data["examples"] = CommentedSeq()
    data["examples"].append(item)
    return _dump(yaml, data)


def set_tool_description(text: str, tool: str, value: str) -> str:
    """Return `text` with the description of tool `tool` replaced, in its quoting style."""
    from ruamel.yaml.scalarstring import DoubleQuotedScalarString, SingleQuotedScalarString

    yaml, data = _yaml_for(text)
    for item in data.get("tools") or []:
        if item.get("name") == tool:
            old = item.get("description")
            style = type(old) if isinstance(old, DoubleQuotedScalarString |
                                            SingleQuotedScalarString) else None
            item["description"] = style(value) if style else value
            return _dump(yaml, data)
    raise RoundTripError(f"no tool named {tool!r}")


def set_model_field(text: str, field: str, value: int | float | str) -> str:
    """Return `text` with model.<field> set (flow or block style kept)."""
    yaml, data = _yaml_for(text)
    data["model"][field] = value
    return _dump(yaml, data)
