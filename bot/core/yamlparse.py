"""Safe YAML parsing that remembers where every key was written and rejects duplicates.

PyYAML keeps the last of two equal keys without a word; in a prompt file that
silently drops half a prompt, so a duplicate key is an error here.
"""

from __future__ import annotations

import difflib
import types
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError

from bot.errors import Finding, InputError

try:  # the C loader is much faster; fall back when libyaml is missing
    _Loader: type[yaml.SafeLoader] = yaml.CSafeLoader  # type: ignore[assignment]
except AttributeError:  # pragma: no cover - depends on the build
    _Loader = yaml.SafeLoader

Loc = tuple[str | int, ...]
M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class Located:
    """Parsed YAML plus the 1-based line of every key path in it."""

    data: Any
    lines: dict[Loc, int]
    path: str

    def line_of(self, loc: Loc) -> int | None:
        # pydantic locations may point below what the file spells out (e.g. a
        # missing field): fall back to the nearest enclosing key.
        for end in range(len(loc), -1, -1):
            line = self.lines.get(tuple(loc[:end]))
            if line is not None:
                return line
        return None


MAX_NODES = 100_000


class _Walk:
    """Line numbers of every key path, duplicate keys, and no alias of a mapping or list.

    An alias to a collection is how "billion laughs" files explode (and how a
    collection can contain itself); prompt files never need one, so it is refused.
    """

    def __init__(self, display: str) -> None:
        self.display = display
        self.lines: dict[Loc, int] = {}
        self.seen: set[int] = set()
        self.visited = 0


def _walk(node: yaml.Node, loc: Loc, lines: dict[Loc, int], display: str,
          state: _Walk | None = None) -> list[Finding]:
    state = state or _Walk(display)
    findings: list[Finding] = []
    lines.setdefault(loc, node.start_mark.line + 1)
    state.visited += 1
    if state.visited > MAX_NODES:
        raise InputError(f"{display} is too large to be a prompt file",
                         fix=f"keep it under {MAX_NODES} YAML nodes")
    if isinstance(node, yaml.MappingNode | yaml.SequenceNode):
        if id(node) in state.seen:
            where = ".".join(str(p) for p in loc) or "(top level)"
            return [Finding(display, node.start_mark.line + 1,
                            f"'{where}' repeats an anchored mapping or list (*alias)",
                            "write the value out; anchors and aliases of mappings and lists "
                            "are not allowed in promptbot files")]
        state.seen.add(id(node))
    if isinstance(node, yaml.MappingNode):
        seen: dict[Any, int] = {}
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else str(key_node)
            line = key_node.start_mark.line + 1
            if key in seen:
                where = ".".join(str(p) for p in (*loc, key))
                findings.append(
                    Finding(
                        display,
                        line,
                        f"duplicate key '{where}' (first defined on line {seen[key]})",
                        "keep one of the two; YAML would silently use only the last one",
                    )
                )
                continue
            seen[key] = line
            lines[(*loc, key)] = line
            findings += _walk(value_node, (*loc, key), lines, display, state)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            lines[(*loc, index)] = item.start_mark.line + 1
            findings += _walk(item, (*loc, index), lines, display, state)
    return findings


def parse_yaml(text: str, display: str) -> Located:
    """Parse `text` safely; raise InputError naming the line on syntax errors or duplicates."""
    try:
        return _parse(text, display)
    except RecursionError:
        raise InputError(
            f"{display} is nested too deeply to be a prompt file",
            findings=(Finding(display, None, "nesting too deep", "flatten the structure"),),
        ) from None


def _parse(text: str, display: str) -> Located:
    try:
        node = yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        problem = exc.problem or exc.context or "invalid YAML"
        raise InputError(
            f"{display} is not valid YAML",
            findings=(
                Finding(display, line, f"YAML syntax: {problem}", "fix the indentation or quoting"),
            ),
        ) from None
    except yaml.YAMLError as exc:
        raise InputError(
            f"{display} is not valid YAML",
            findings=(Finding(display, None, str(exc), "fix the YAML syntax"),),
        ) from None
    if node is None:
        return Located(None, {}, display)
    lines: dict[Loc, int] = {}
    findings = _walk(node, (), lines, display)
    if findings:
        raise InputError(f"{display} is not valid", findings=tuple(findings))
    try:
        data = yaml.load(text, Loader=_Loader)  # _Loader is a SafeLoader
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        raise InputError(
            f"{display} uses YAML that is not allowed",
            findings=(
                Finding(display, mark.line + 1 if mark else None,
                        f"YAML: {exc.problem or exc.context}",
                        "use plain mappings, lists and strings; tags like !!python are refused"),
            ),
        ) from None
    return Located(data, lines, display)


def closest(word: str, options: Sequence[str], n: int = 1) -> list[str]:
    """The options `word` is most likely a misspelling of (ignoring case), best first."""
    lowered = {o.lower(): o for o in options}
    return [lowered[m] for m in difflib.get_close_matches(word.lower(), list(lowered), n=n)]


def _options(annotation: Any) -> tuple[Any, ...]:
    if get_origin(annotation) in (Union, types.UnionType):
        return get_args(annotation)
    return (annotation,)


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _child(annotation: Any, part: str | int) -> Any:
    for option in _options(annotation):
        if _is_model(option) and isinstance(part, str):
            for name, info in option.model_fields.items():
                if part in (name, info.alias):
                    return info.annotation
        elif get_origin(option) is list and isinstance(part, int):
            return get_args(option)[0]
        elif get_origin(option) is dict and isinstance(part, str):
            return get_args(option)[1]
    return None


def _type_at(model: type[BaseModel], loc: Loc) -> Any:
    """The annotation a value at `loc` in a file of `model` has; None when the path leaves
    what the models describe (e.g. inside a free-form mapping)."""
    current: Any = model
    for part in loc:
        current = _child(current, part)
        if current is None:
            return None
    return current


def _keys(model: type[BaseModel]) -> list[str]:
    return [info.alias or name for name, info in model.model_fields.items()]


def _unknown_key(model: type[BaseModel] | None, loc: Loc, field: str) -> tuple[str, str]:
    """Message and fix for an unknown key: the allowed key it is most likely a misspelling
    of, or the section it belongs in, and the keys allowed where it was written."""
    message = f"unknown key '{field}'"
    parents = [o for o in _options(_type_at(model, loc[:-1]) if model else None)
               if _is_model(o)]
    if not parents:
        return message, "remove it or check its spelling against the documented keys"
    allowed = _keys(parents[0])
    key = str(loc[-1])
    listed = f"the keys allowed here: {', '.join(allowed)} (promptbot's docs/REFERENCE.md)"
    match = closest(key, allowed)
    if match:
        return f"{message} (did you mean `{match[0]}`?)", f"rename it to `{match[0]}`; {listed}"
    # A key written one level too high, e.g. `temperature:` beside `model:` instead of in
    # it: the exact key in a section of this level first, then a close one.
    sections = [(info.alias or name, inner[0]) for name, info in parents[0].model_fields.items()
                for inner in [[o for o in _options(info.annotation) if _is_model(o)]] if inner]
    for section, inner_model in sections:
        if key in _keys(inner_model):
            return (f"{message} (it belongs under `{section}:`)",
                    f"move it into the `{section}` section; {listed}")
    for section, inner_model in sections:
        match = closest(key, _keys(inner_model))
        if match:
            return (f"{message} (did you mean `{section}.{match[0]}`?)",
                    f"move it into the `{section}` section as `{match[0]}`; {listed}")
    return message, f"remove it or check its spelling; {listed}"


def _allowed_values(model: type[BaseModel] | None, loc: Loc) -> list[str]:
    """The words a value at `loc` may be (a Literal), or []."""
    if model is None:
        return []
    return [str(a) for o in _options(_type_at(model, loc)) if get_origin(o) is Literal
            for a in get_args(o)]


def validation_findings(exc: ValidationError, located: Located,
                        model: type[BaseModel] | None = None) -> tuple[Finding, ...]:
    """One finding per error; with `model` (the one validated), unknown keys and misspelt
    values name what was probably meant."""
    out: list[Finding] = []
    for err in exc.errors():
        loc: Loc = tuple(err["loc"])
        field = ".".join(str(p) for p in loc) or "(top level)"
        kind = err["type"]
        if kind == "extra_forbidden":
            message, fix = _unknown_key(model, loc, field)
        elif kind == "missing":
            message = f"missing required key '{field}'"
            fix = "add it"
        elif kind == "literal_error":
            allowed = _allowed_values(model, loc)
            value = err.get("input")
            # A long list of words reads better in the fix than in the message.
            message = f"field '{field}': " + (
                f"'{value}' is not one of the {len(allowed)} allowed values"
                if len(allowed) > 6 else err["msg"])
            fix = f"use one of: {', '.join(allowed)}" if len(allowed) > 6 else \
                "correct the value"
            meant = closest(value, allowed) if isinstance(value, str) else []
            if meant:
                message += f" (did you mean `{meant[0]}`?)"
                fix = f"write `{meant[0]}`" + (f"; {fix}" if len(allowed) > 6 else "")
        else:
            message = f"field '{field}': {err['msg']}"
            fix = "correct the value"
        out.append(Finding(located.path, located.line_of(loc), message, fix))
    return tuple(out)


def validate_as(model: type[M], located: Located) -> M:
    """Validate parsed YAML as `model`; errors point at the file and line."""
    if not isinstance(located.data, dict):
        raise InputError(
            f"{located.path} must be a mapping of keys",
            findings=(Finding(located.path, 1, "top level is not a mapping", "see the docs"),),
        )
    try:
        return model.model_validate(located.data)
    except ValidationError as exc:
        raise InputError(
            f"{located.path} is not a valid {model.__name__}",
            findings=validation_findings(exc, located, model),
        ) from None
