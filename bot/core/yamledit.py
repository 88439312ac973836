"""Minimal-diff edits of agent files through ruamel.yaml's round-trip mode.

Comments, key order, quoting and block styles survive, so the PR diff shows only
the lines that really change.
"""

from __future__ import annotations

from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import CommentMark
from ruamel.yaml.scalarstring import LiteralScalarString
from ruamel.yaml.tokens import CommentToken
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


def dump(data: Any, *, mapping: int = 2, sequence: int = 4, offset: int = 2) -> str:
    """New YAML text (comments and literal blocks kept) in the indentation given."""
    return _dump(_yaml(mapping, sequence, offset), data)


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
    """Return `text` with one few-shot example appended to `examples` (created if absent).

    The new item goes directly after the last line of the value it follows; the blank
    lines and comments that came after that value (usually introducing the next key) stay
    after the new item. Every other line is kept byte for byte, but for an empty or flow-style
    `examples: [...]`, whose own line is written anew (ruamel keeps a non-empty flow list in
    flow style); RoundTripError when the edit would change any other line.
    """
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    yaml, data = _yaml_for(text)

    def block(value: str) -> Any:
        value = value if value.endswith("\n") else value + "\n"
        return LiteralScalarString(value)

    item = CommentedMap()
    item["input"] = block(example_input)
    item["output"] = block(example_output)
    examples = data.get("examples")
    # An empty or flow-style list (`examples: []`) is written anew: its own line changes.
    rewritten = examples is not None and (not examples or bool(examples.fa.flow_style()))
    # ruamel keeps the lines after a value as a comment of the deepest last node before
    # them, so an item appended as-is would be written below those lines: below the
    # comment that introduces the next key. They move to the new item, which ends last now.
    before = examples if examples else data if "examples" not in data else None
    trailing = _take_trailing_lines(before) if before is not None else None
    if examples is None:
        data["examples"] = CommentedSeq()
    data["examples"].append(item)
    if trailing is not None:
        item.ca.items["output"] = [None, None, CommentToken(trailing, CommentMark(0), None), None]
    new_text = _dump(yaml, data)
    if not rewritten and not _only_inserted(text, new_text):
        raise RoundTripError("adding an example here would change existing lines of the file")
    return new_text


_Slot = tuple[list[Any], int, bool]  # a comment list, the index in it, after a block scalar


def _trailing_slot(node: Any) -> _Slot | None:
    """Where ruamel keeps the comment written after the last line of `node`, deepest first."""
    from ruamel.yaml.comments import CommentedMap, CommentedSeq
    from ruamel.yaml.scalarstring import FoldedScalarString

    if isinstance(node, CommentedMap) and node:
        key: Any = list(node)[-1]
        slot = 2
    elif isinstance(node, CommentedSeq) and node:
        key, slot = len(node) - 1, 0
    else:
        return None
    value = node[key]
    if isinstance(value, CommentedMap | CommentedSeq) and value and not value.fa.flow_style():
        inner = _trailing_slot(value)
        if inner is not None:
            return inner
    entry = node.ca.items.get(key)
    if entry is not None and len(entry) > slot and entry[slot] is not None:
        return entry, slot, isinstance(value, LiteralScalarString | FoldedScalarString)
    return None


def _take_trailing_lines(node: Any) -> str | None:
    """Remove and return the whole lines (blank or comment) that follow `node`'s last line,
    as a comment after a block scalar is written; an end-of-line comment stays."""
    found = _trailing_slot(node)
    if found is None:
        return None
    entry, slot, after_block = found
    value: str = entry[slot].value
    # After a plain or quoted scalar the comment starts on the value's own line (with its
    # end-of-line comment or just the newline); after a block scalar, on the next line.
    cut = 0 if after_block else value.find("\n") + 1
    head, tail = value[:cut], value[cut:]
    if not tail:
        return None
    if head.strip():
        entry[slot] = CommentToken(head, entry[slot].start_mark, None)
    else:
        entry[slot] = None
    return tail


def _only_inserted(old: str, new: str) -> bool:
    """True when `new` is `old` with one run of whole lines inserted."""
    a, b = old.splitlines(keepends=True), new.splitlines(keepends=True)
    at = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), len(a))
    return b[:at] + b[at + len(b) - len(a):] == a


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
