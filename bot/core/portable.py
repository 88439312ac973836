"""Scalars that YAML 1.1 and YAML 1.2 read differently.

The prompt version hashes what PyYAML reads from an agent file, and PyYAML reads YAML 1.1.
A runtime in another language most likely reads YAML 1.2 (core schema: Go yaml.v3, JS
`yaml`, ruamel), and for some unquoted scalars the two disagree: `yes` is a boolean in one
and text in the other, `010` is 8 or 10, `1e-7` text or a number. Such a file hashes to a
different version in each runtime, so it is reported before it is served.
"""

from __future__ import annotations

import datetime
import re
from dataclasses import dataclass

import yaml
from yaml.constructor import SafeConstructor

# The C loader is much faster; both resolve tags with PyYAML's own (YAML 1.1) resolver.
_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

HASHED = ("model", "prompts", "tools", "examples")

# YAML 1.2.2, section 10.3.2 (core schema): the tag of a plain scalar with no explicit tag.
_NULL = re.compile(r"null|Null|NULL|~|")
_TRUE = re.compile(r"true|True|TRUE")
_FALSE = re.compile(r"false|False|FALSE")
_INT_10 = re.compile(r"[-+]?[0-9]+")
_INT_8 = re.compile(r"0o([0-7]+)")
_INT_16 = re.compile(r"0x([0-9a-fA-F]+)")
_FLOAT = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?")
_INF = re.compile(r"([-+]?)(\.inf|\.Inf|\.INF)")
_NAN = re.compile(r"\.nan|\.NaN|\.NAN")

_TAG = "tag:yaml.org,2002:"
_NON_SPECIFIC = "!"  # `! 010`: text in YAML 1.2, but PyYAML still resolves it like `010`
_FLOAT_TAG = f"{_TAG}float"
_CORE_TYPES: dict[str, type] = {f"{_TAG}null": type(None), f"{_TAG}bool": bool,
                                f"{_TAG}int": int, _FLOAT_TAG: float}
# YAML 1.1 tags PyYAML resolves plain `<<` and `=` to, but cannot load on their own.
_UNLOADABLE = {f"{_TAG}merge": "a merge key", f"{_TAG}value": "a value key"}

Plain = None | bool | int | float | str


@dataclass(frozen=True)
class Ambiguity:
    """A scalar YAML 1.1 (PyYAML) and YAML 1.2 read differently."""

    line: int  # 1-based
    path: str  # e.g. `tools[0].parameters.default`; a mapping key's own entry for a key
    value: str  # the scalar as written (without quotes or tag)
    yaml11: str  # e.g. "boolean true"
    yaml12: str  # e.g. "text 'yes'"


def core_value(scalar: str) -> Plain:
    """What the YAML 1.2 core schema reads a plain, untagged scalar as."""
    if _NULL.fullmatch(scalar):
        return None
    if _TRUE.fullmatch(scalar):
        return True
    if _FALSE.fullmatch(scalar):
        return False
    if _INT_10.fullmatch(scalar):
        return int(scalar, 10)
    if match := _INT_8.fullmatch(scalar):
        return int(match.group(1), 8)
    if match := _INT_16.fullmatch(scalar):
        return int(match.group(1), 16)
    if _FLOAT.fullmatch(scalar):
        return float(scalar)
    if match := _INF.fullmatch(scalar):
        return float(f"{match.group(1)}inf")
    if _NAN.fullmatch(scalar):
        return float("nan")
    return scalar


def describe(value: object) -> str:
    """A short reading of a loaded value; two readings are equal exactly when the values are
    (`repr` keeps floats apart, `nan` included, and bool is tested before int)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    if isinstance(value, int):
        return f"integer {value}"
    if isinstance(value, float):
        return f"float {value!r}"
    if isinstance(value, datetime.datetime):
        return f"timestamp {value}"
    if isinstance(value, datetime.date):
        return f"date {value}"
    if isinstance(value, str):
        return f"text {value!r}"
    return f"{type(value).__name__} {value!r}"


def _short(tag: str) -> str:
    return f"!!{tag.removeprefix(_TAG)}" if tag.startswith(_TAG) else tag


def _pyyaml_reading(node: yaml.ScalarNode) -> str:
    try:
        return describe(SafeConstructor().construct_object(node))
    except (yaml.YAMLError, ValueError, OverflowError):
        # `2024-02-30` matches the timestamp pattern but is no date.
        return _UNLOADABLE.get(node.tag, f"a {_short(node.tag)} PyYAML cannot load")


def _core_reading(scalar: str, tag: str | None) -> str:
    """What YAML 1.2 reads a scalar as, given the tag written on it (None: none)."""
    if tag is None:
        return describe(core_value(scalar))
    if tag in (_NON_SPECIFIC, f"{_TAG}str"):
        return describe(scalar)
    if tag not in _CORE_TYPES:
        return f"a {_short(tag)} outside the YAML 1.2 core schema"
    value = core_value(scalar)
    if tag == _FLOAT_TAG and type(value) is int:
        value = float(value)  # `!!float 1` is 1.0 to every reader
    if type(value) is not _CORE_TYPES[tag]:  # `type`, not isinstance: a bool is no int here
        return f"no valid {_short(tag)} ({describe(value)})"
    return describe(value)


class _Walk:
    """Scalars under the hashed keys, each once (an alias repeats its anchor's node)."""

    def __init__(self) -> None:
        self.seen: set[int] = set()
        self.scalars: list[tuple[str, yaml.ScalarNode]] = []

    def visit(self, node: yaml.Node, path: str) -> None:
        if id(node) in self.seen:
            return
        self.seen.add(id(node))
        if isinstance(node, yaml.ScalarNode):
            self.scalars.append((path, node))
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                self.visit(item, f"{path}[{index}]")
        elif isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                inner = f"{path}.{key.value if isinstance(key, yaml.ScalarNode) else '?'}"
                self.visit(key, inner)
                self.visit(value, inner)


def _written_tags(text: str) -> dict[tuple[int, int], str | None]:
    """The tag written on each scalar (None: none), by where the scalar starts: a composed
    node no longer tells `!!str 010` (text in both) or `!!int 010` from `010`."""
    return {(mark.line, mark.column): event.tag
            for event in yaml.parse(text, Loader=_LOADER)
            if isinstance(event, yaml.ScalarEvent)
            for mark in [event.start_mark] if mark is not None}


def ambiguous_scalars(text: str, under: tuple[str, ...] = HASHED) -> list[Ambiguity]:
    """Scalars under the top-level keys `under` that YAML 1.1 (PyYAML) and the YAML 1.2 core
    schema read differently, in file order. Malformed YAML gives []: the parser's own error
    is reported elsewhere."""
    try:
        return _ambiguities(text, under)
    except (yaml.YAMLError, RecursionError):
        return []


def _ambiguities(text: str, under: tuple[str, ...]) -> list[Ambiguity]:
    root = yaml.compose(text, Loader=_LOADER)
    if not isinstance(root, yaml.MappingNode):
        return []
    walk = _Walk()
    for key, value in root.value:
        if isinstance(key, yaml.ScalarNode) and key.value in under:
            walk.visit(value, key.value)
    tags = _written_tags(text) if walk.scalars else {}
    found = []
    for path, node in walk.scalars:
        mark = node.start_mark
        tag = tags.get((mark.line, mark.column))
        # Quoted and block scalars are text to every reader unless tagged otherwise (the C
        # loader marks a plain scalar with style '', the Python one with None).
        if node.style and tag in (None, _NON_SPECIFIC):
            continue
        old, new = _pyyaml_reading(node), _core_reading(node.value, tag)
        if old != new:
            found.append(Ambiguity(mark.line + 1, path, node.value, old, new))
    return found
