"""The assertions of tests.yaml: parsed strictly up front, then checked against a reply.

Parsing happens before any request is sent, so a typo in the last case cannot waste a paid
run: an unknown kind, a malformed value, a regex that does not compile or a JSON schema that
is not one are errors naming the file, line, case and assertion index.

`rubric` assertions are graded by a model (see `evaluation.rubric_request`); everything else
is decided here, deterministically.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from bot.core.model import SQL_DIALECTS, TestsFile
from bot.core.yamlparse import closest
from bot.errors import Finding, InputError

Kind = Literal["contains", "not_contains", "regex", "equals", "json_schema", "sql_parses",
               "rubric"]
KINDS: tuple[Kind, ...] = ("contains", "not_contains", "regex", "equals", "json_schema",
                           "sql_parses", "rubric")

SHOWN = 80  # characters of an expected value or a reply quoted in a failure reason

LineOf = Callable[[tuple[str | int, ...]], int | None]


@dataclass(frozen=True)
class Assertion:
    kind: Kind
    value: Any  # str for the text kinds, a dict for json_schema
    index: int  # 1-based position in the case's `assert` list, as a person counts

    def describe(self) -> str:
        if self.kind == "json_schema":
            return f"#{self.index} json_schema"
        return f"#{self.index} {self.kind} '{_short(str(self.value))}'"


@dataclass(frozen=True)
class Case:
    name: str
    inputs: dict[str, Any]
    assertions: tuple[Assertion, ...]

    @property
    def graded(self) -> tuple[Assertion, ...]:
        return tuple(a for a in self.assertions if a.kind == "rubric")


def _short(text: str, limit: int = SHOWN) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _problem(kind: str, value: Any) -> str | None:
    """Why `value` is not a valid argument for `kind`, or None."""
    if kind in ("contains", "not_contains", "regex", "equals", "rubric"):
        if not isinstance(value, str) or (kind != "equals" and not value):
            return f"'{kind}' needs a non-empty string, got {type(value).__name__}"
        if kind == "regex":
            try:
                re.compile(value)
            except re.error as exc:
                return f"regex does not compile: {exc}"
        return None
    if kind == "sql_parses":
        if value not in SQL_DIALECTS:
            meant = closest(str(value), SQL_DIALECTS)
            hint = f" (did you mean `{meant[0]}`?)" if meant else ""
            return f"'sql_parses' needs a dialect, got {value!r}{hint}; one of: " + \
                ", ".join(SQL_DIALECTS)
        return None
    if not isinstance(value, dict):
        return f"'json_schema' needs a mapping (a JSON schema), got {type(value).__name__}"
    # jsonschema (~50 ms to import) loads with the first json_schema assertion, not with
    # every command that imports the eval's types (`promptbot event` for a comment).
    from jsonschema import exceptions as schema_errors
    from jsonschema import validators

    try:
        validators.validator_for(value).check_schema(value)
    except schema_errors.SchemaError as exc:
        return f"json_schema is not a valid JSON schema: {_short(exc.message, 160)}"
    return None


def parse_cases(tests: TestsFile, path: str, line_of: LineOf | None = None) -> tuple[Case, ...]:
    """Every case with its assertions validated; InputError listing every bad assertion."""
    findings: list[Finding] = []
    cases: list[Case] = []
    names: dict[str, int] = {}
    for ci, case in enumerate(tests.cases):
        where = line_of(("cases", ci)) if line_of else None
        if case.name in names:
            findings.append(Finding(path, where, f"case '{case.name}' is defined twice "
                                    f"(cases {names[case.name] + 1} and {ci + 1})",
                                    "give every case a unique name; results are keyed by it"))
        names.setdefault(case.name, ci)
        parsed: list[Assertion] = []
        for ai, item in enumerate(case.assert_):
            line = line_of(("cases", ci, "assert", ai)) if line_of else where
            label = f"case '{case.name}', assertion #{ai + 1}"
            if len(item) != 1:
                findings.append(Finding(path, line, f"{label} has {len(item)} keys "
                                        f"({', '.join(map(str, item)) or 'none'})",
                                        f"write one kind per list item: {', '.join(KINDS)}"))
                continue
            (kind, value), = item.items()
            if kind not in KINDS:
                meant = closest(str(kind), KINDS)
                hint = f" (did you mean `{meant[0]}`?)" if meant else ""
                findings.append(Finding(path, line, f"{label}: unknown kind '{kind}'{hint}",
                                        f"use one of: {', '.join(KINDS)}"))
                continue
            problem = _problem(kind, value)
            if problem is not None:
                findings.append(Finding(path, line, f"{label}: {problem}", "correct the value"))
                continue
            parsed.append(Assertion(kind, value, ai + 1))
        if not case.assert_:
            findings.append(Finding(path, where, f"case '{case.name}' has no assertions",
                                    "add at least one under `assert:`; a case that checks "
                                    "nothing always passes"))
        cases.append(Case(case.name, dict(case.inputs), tuple(parsed)))
    if findings:
        raise InputError(f"{path} has invalid eval cases", findings=tuple(findings))
    return tuple(cases)


def check(assertion: Assertion, reply: str) -> str | None:
    """None when the deterministic assertion holds, else why not (one short line)."""
    kind, value = assertion.kind, assertion.value
    if kind == "contains":
        return None if value in reply else f"{assertion.describe()}: not found in the reply"
    if kind == "not_contains":
        return f"{assertion.describe()}: found in the reply" if value in reply else None
    if kind == "regex":
        # `search`, like most test frameworks: anchor with ^ or \A when the start matters.
        if re.search(value, reply):
            return None
        return f"{assertion.describe()}: no match in the reply"
    if kind == "equals":
        if reply.strip() == value.strip():
            return None
        return f"{assertion.describe()}: the reply is {_short(reply.strip(), 40)!r}"
    if kind == "json_schema":
        return _check_schema(assertion, reply)
    if kind == "sql_parses":
        return _check_sql(assertion, reply)
    raise ValueError(f"{kind} assertions are graded by a model, not checked here")


_SQL_FENCE = re.compile(r"```[ \t]*sql[^\n]*\n(.*?)```", re.DOTALL | re.IGNORECASE)
_ANY_FENCE = re.compile(r"```[^\n]*\n(.*?)```", re.DOTALL)


def sql_of(reply: str) -> str:
    """The SQL of a reply: its first ```sql block, else its first fenced block, else all
    of it (an agent that answers with bare SQL)."""
    found = _SQL_FENCE.search(reply) or _ANY_FENCE.search(reply)
    return (found.group(1) if found else reply).strip()


def _check_sql(assertion: Assertion, reply: str) -> str | None:
    # sqlglot (~0.2 s to import) loads with the first sql_parses assertion.
    import sqlglot
    from sqlglot.errors import ParseError, TokenError

    sql = sql_of(reply)
    if not sql:
        return f"{assertion.describe()}: the reply holds no SQL"
    dialect = None if assertion.value == "generic" else assertion.value
    try:
        statements = [s for s in sqlglot.parse(sql, read=dialect) if s is not None]
    except (ParseError, TokenError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return f"{assertion.describe()}: the SQL does not parse: {_short(first)}"
    if not statements:
        return f"{assertion.describe()}: the reply holds no SQL statement"
    return None


def _check_schema(assertion: Assertion, reply: str) -> str | None:
    # The whole reply must be the JSON document: a parser downstream gets the raw reply too,
    # so a reply wrapped in ``` fences or prose fails here as it would fail there.
    try:
        document = json.loads(reply)
    except json.JSONDecodeError as exc:
        return (f"{assertion.describe()}: the reply is not JSON ({exc.msg} at line "
                f"{exc.lineno} column {exc.colno})")
    from jsonschema import exceptions as schema_errors
    from jsonschema import validators
    from jsonschema_specifications import REGISTRY as METASCHEMAS
    from referencing.exceptions import Unresolvable

    # Only the metaschemas are resolvable: without an explicit registry jsonschema would
    # fetch a remote `$ref` over the network, and a tests file must not make the eval do that.
    validator = validators.validator_for(assertion.value)(assertion.value,
                                                          registry=METASCHEMAS)
    try:
        error = schema_errors.best_match(validator.iter_errors(document))
    except Unresolvable as exc:
        return f"{assertion.describe()}: the schema's $ref cannot be resolved offline ({exc})"
    if error is None:
        return None
    where = "/".join(str(p) for p in error.absolute_path) or "(root)"
    return f"{assertion.describe()}: at {where}: {_short(error.message)}"
