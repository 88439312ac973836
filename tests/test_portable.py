"""Scalars YAML 1.1 (PyYAML) and YAML 1.2 read differently: reported, so that runtimes in
other languages hash the same prompt version as promptbot."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from ruamel.yaml import YAML

from bot.core import portable
from bot.core.agentfile import parse_agent
from bot.core.portable import Ambiguity, ambiguous_scalars, describe
from bot.errors import InputError

PROJECT = Path(__file__).resolve().parents[1]

# A plain scalar as written, PyYAML's (YAML 1.1) reading, the YAML 1.2 core schema's.
CASES = [
    # YAML 1.1 booleans are words in YAML 1.2.
    ("yes", "boolean true", "text 'yes'"),
    ("no", "boolean false", "text 'no'"),
    ("on", "boolean true", "text 'on'"),
    ("Off", "boolean false", "text 'Off'"),
    # The YAML 1.1 spec lists y/n as booleans too, but PyYAML (like SnakeYAML) leaves them
    # text, so PyYAML and YAML 1.2 agree. Go's yaml.v2 (YAML 1.1) would read a boolean.
    ("y", "text 'y'", "text 'y'"),
    ("n", "text 'n'", "text 'n'"),
    # PyYAML wants a dot and a signed exponent in a float.
    ("1e-7", "text '1e-7'", "float 1e-07"),
    ("1e7", "text '1e7'", "float 10000000.0"),
    ("1.0e3", "text '1.0e3'", "float 1000.0"),
    ("1e999", "text '1e999'", "float inf"),
    ("-.5", "text '-.5'", "float -0.5"),
    # Octal: a leading zero in YAML 1.1, `0o` in YAML 1.2.
    ("010", "integer 8", "integer 10"),
    ("08", "text '08'", "integer 8"),
    ("0o17", "text '0o17'", "integer 15"),
    # Digit separators, sexagesimal and binary numbers, signed hex: YAML 1.1 only.
    ("1_000", "integer 1000", "text '1_000'"),
    ("1_0.5", "float 10.5", "text '1_0.5'"),
    ("1.5_0", "float 1.5", "text '1.5_0'"),
    ("1:20", "integer 80", "text '1:20'"),
    ("1:20.5", "float 80.5", "text '1:20.5'"),
    ("0b101", "integer 5", "text '0b101'"),
    ("-0x1F", "integer -31", "text '-0x1F'"),
    ("0x_1F", "integer 31", "text '0x_1F'"),
    # Dates and timestamps are not in the YAML 1.2 core schema.
    ("2024-01-31", "date 2024-01-31", "text '2024-01-31'"),
    ("2024-01-31 10:00:00", "timestamp 2024-01-31 10:00:00", "text '2024-01-31 10:00:00'"),
    ("2024-02-30", "a !!timestamp PyYAML cannot load", "text '2024-02-30'"),
    # YAML 1.1's merge and value keys.
    ("<<", "a merge key", "text '<<'"),
    ("=", "a value key", "text '='"),
    # Read alike.
    ("0.2", "float 0.2", "float 0.2"),
    ("1024", "integer 1024", "integer 1024"),
    ("claude-sonnet-4-5", "text 'claude-sonnet-4-5'", "text 'claude-sonnet-4-5'"),
    ("1.0e+3", "float 1000.0", "float 1000.0"),
    ("1.0E-3", "float 0.001", "float 0.001"),
    ("1.", "float 1.0", "float 1.0"),
    (".5", "float 0.5", "float 0.5"),
    ("-0.0", "float -0.0", "float -0.0"),
    ("+1", "integer 1", "integer 1"),
    ("-0", "integer 0", "integer 0"),
    ("00", "integer 0", "integer 0"),
    ("0x1F", "integer 31", "integer 31"),
    ("0o8", "text '0o8'", "text '0o8'"),
    ("~", "null", "null"),
    ("Null", "null", "null"),
    ("NULL", "null", "null"),
    ("nULL", "text 'nULL'", "text 'nULL'"),
    ("true", "boolean true", "boolean true"),
    ("True", "boolean true", "boolean true"),
    ("FALSE", "boolean false", "boolean false"),
    ("tRUE", "text 'tRUE'", "text 'tRUE'"),
    (".inf", "float inf", "float inf"),
    ("-.Inf", "float -inf", "float -inf"),
    ("+.INF", "float inf", "float inf"),
    (".NaN", "float nan", "float nan"),
    (".Nan", "text '.Nan'", "text '.Nan'"),
]

# Where ruamel.yaml's safe loader (YAML 1.2 by default) does not follow the 1.2 core
# schema: it keeps YAML 1.1's digit separators, binary and signed hex numbers, dates,
# timestamps and the merge and value keys. A runtime built on ruamel would hash such files
# like PyYAML does, a Go or JS one would not: that disagreement is why they are reported.
RUAMEL_DIVERGES = {
    "1_000": "integer 1000",
    "1_0.5": "float 10.5",
    "1.5_0": "float 1.5",
    "0b101": "integer 5",
    "-0x1F": "integer -31",
    "0x_1F": "integer 31",
    "2024-01-31": "date 2024-01-31",
    "2024-01-31 10:00:00": "timestamp 2024-01-31 10:00:00",
    "2024-02-30": "an error",  # the timestamp pattern again, then no such date
    "<<": "an error",
    "=": "an error",
}

# Resolved to a YAML 1.1 tag that PyYAML then fails to load (parse_yaml reports them).
PYYAML_CANNOT_LOAD = {"2024-02-30", "<<", "="}

AGENT = """\
id: demo
owner: "@acme/team"
description: "A demo agent."
model: {name: claude-sonnet-4-5, temperature: 0.2, max_tokens: 1024}
prompts:
  system: |
    You answer questions.
  user_template: |
    {{ question }}
tools:
  - name: search
    description: "Search the archive."
    parameters:
      type: object
      properties:
        exact: {type: boolean, default: true}
examples:
  - input: {question: "Where is it?", n: 10}
    output: "Here."
"""


@pytest.fixture(params=["C", "Python"])
def loader(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Both PyYAML loaders: the C one marks plain scalars differently (style '')."""
    if request.param == "C":
        if not hasattr(yaml, "CSafeLoader"):
            pytest.skip("PyYAML built without libyaml")
        monkeypatch.setattr(portable, "_LOADER", yaml.CSafeLoader)
    else:
        monkeypatch.setattr(portable, "_LOADER", yaml.SafeLoader)
    return str(request.param)


def _ruamel_reading(scalar: str) -> str:
    try:
        return describe(YAML(typ="safe").load(f"v: {scalar}")["v"])
    except Exception:  # ruamel's own errors, or a bad date's ValueError
        return "an error"


@pytest.mark.parametrize(("scalar", "yaml11", "yaml12"), CASES)
def test_each_scalar_is_reported_exactly_when_the_readings_differ(
        loader: str, scalar: str, yaml11: str, yaml12: str) -> None:
    found = ambiguous_scalars(f"tools:\n  - default: {scalar}\n")
    expected = [] if yaml11 == yaml12 else [
        Ambiguity(2, "tools[0].default", scalar, yaml11, yaml12)]
    assert found == expected


@pytest.mark.parametrize(("scalar", "yaml11", "yaml12"), CASES)
def test_the_readings_match_pyyaml_and_ruamel(scalar: str, yaml11: str, yaml12: str) -> None:
    try:
        pyyaml = describe(yaml.safe_load(f"v: {scalar}")["v"])
    except (yaml.YAMLError, ValueError):
        pyyaml = "an error"
    assert pyyaml == ("an error" if scalar in PYYAML_CANNOT_LOAD else yaml11)
    assert _ruamel_reading(scalar) == RUAMEL_DIVERGES.get(scalar, yaml12)


def test_every_divergence_of_ruamel_is_a_case() -> None:
    assert set(RUAMEL_DIVERGES) <= {scalar for scalar, _, _ in CASES}


def test_lines_and_paths_in_tool_parameters_and_example_inputs(loader: str) -> None:
    text = """\
id: demo
description: yes
model: {name: claude-sonnet-4-5, temperature: 0.2}
tools:
  - name: search
    parameters:
      properties:
        exact: {type: boolean, default: yes}
        on: {type: string}
        mode: {enum: [fast, 1_000, slow]}
examples:
  - input: plain text
    output: ok
  - input:
      n: 010
      code: 0o17
    output: ok
"""
    found = [(a.line, a.path, a.value) for a in ambiguous_scalars(text)]
    assert found == [
        (8, "tools[0].parameters.properties.exact.default", "yes"),
        (9, "tools[0].parameters.properties.on", "on"),  # a mapping key is checked too
        (10, "tools[0].parameters.properties.mode.enum[1]", "1_000"),
        (15, "examples[1].input.n", "010"),
        (16, "examples[1].input.code", "0o17"),
    ]  # `description: yes` is not hashed, so not checked


def test_only_the_keys_asked_for_are_walked(loader: str) -> None:
    text = "description: yes\ntools: [yes]\n"
    assert [a.path for a in ambiguous_scalars(text)] == ["tools[0]"]
    assert [a.path for a in ambiguous_scalars(text, under=("description",))] == ["description"]


def test_quoted_block_and_str_tagged_scalars_are_not_reported(loader: str) -> None:
    text = """\
tools:
  - a: 'yes'
    b: "010"
    c: |
      yes
    d: >
      010
    e: !!str 1e-7
    f: ! "1_000"
    g: !!int 10
    h: !!float 1
"""
    assert ambiguous_scalars(text) == []


def test_tags_that_still_read_differently_are_reported(loader: str) -> None:
    # `!` makes a plain scalar text in YAML 1.2, yet PyYAML resolves it as if untagged; and
    # `!!int` makes PyYAML read a leading zero as octal, quoted or not.
    text = 'tools:\n  - a: ! 010\n    b: !!int 010\n    c: !!int "010"\n    d: !!bool yes\n'
    assert [(a.value, a.yaml11, a.yaml12) for a in ambiguous_scalars(text)] == [
        ("010", "integer 8", "text '010'"),
        ("010", "integer 8", "integer 10"),
        ("010", "integer 8", "integer 10"),
        ("yes", "boolean true", "no valid !!bool (text 'yes')"),
    ]


def test_an_alias_is_reported_once_at_its_anchor(loader: str) -> None:
    text = "tools:\n  - a: &n 010\n    b: *n\n"
    assert [(a.line, a.path) for a in ambiguous_scalars(text)] == [(2, "tools[0].a")]


@pytest.mark.parametrize("text", [
    "tools: [yes\n",  # unclosed
    "tools: [yes]\n---\ntools: [no]\n",  # two documents
    "- tools: [yes]\n",  # no mapping at the top
    "",
])
def test_malformed_or_unexpected_yaml_gives_nothing(loader: str, text: str) -> None:
    assert ambiguous_scalars(text) == []


def test_the_example_agent_is_valid() -> None:
    assert parse_agent(AGENT, "prompts/demo/agent.yaml", folder_id="demo").agent.id == "demo"


@pytest.mark.parametrize(("old", "new", "line"), [
    ("default: true}", "default: yes}", 16),
    ("n: 10}", "n: 010}", 18),
    ("n: 10}", "code: 0o17}", 18),
])
def test_an_otherwise_valid_agent_with_an_ambiguity_is_refused(
        old: str, new: str, line: int) -> None:
    text = AGENT.replace(old, new)
    assert text != AGENT
    with pytest.raises(InputError) as caught:
        parse_agent(text, "prompts/demo/agent.yaml", folder_id="demo")
    [finding] = caught.value.findings
    value = new.split(": ")[1].rstrip("}")
    assert finding.path == "prompts/demo/agent.yaml"
    assert finding.line == line
    assert f"`{value}` at " in finding.message
    assert "in YAML 1.1 (PyYAML) but as" in finding.message
    assert "would hash a different prompt version" in finding.message
    assert finding.fix == f'quote it ("{value}") or write it unambiguously'


def test_the_finding_names_both_readings() -> None:
    text = AGENT.replace("default: true}", "default: yes}")
    with pytest.raises(InputError) as caught:
        parse_agent(text, "prompts/demo/agent.yaml", folder_id="demo")
    assert caught.value.findings[0].render() == (
        "prompts/demo/agent.yaml:16: `yes` at tools[0].parameters.properties.exact.default "
        "reads as boolean true in YAML 1.1 (PyYAML) but as text 'yes' in YAML 1.2: runtimes "
        "in other languages would hash a different prompt version\n"
        '  fix: quote it ("yes") or write it unambiguously')


def test_an_invalid_agent_also_explains_the_yaml_reading() -> None:
    # PyYAML reads `1e-1` as text, so the schema refuses the temperature; the ambiguity says
    # why a number is not one.
    text = AGENT.replace("temperature: 0.2", "temperature: 1e-1")
    with pytest.raises(InputError) as caught:
        parse_agent(text, "prompts/demo/agent.yaml", folder_id="demo")
    messages = [(f.line, f.message) for f in caught.value.findings]
    assert any(line == 4 and "model.temperature" in m and "`1e-1`" not in m
               for line, m in messages)
    assert (4, "`1e-1` at model.temperature reads as text '1e-1' in YAML 1.1 (PyYAML) but "
               "as float 0.1 in YAML 1.2: runtimes in other languages would hash a different "
               "prompt version") in messages


@pytest.mark.parametrize("path", sorted(PROJECT.glob("prompts/*/agent.yaml")),
                         ids=lambda p: p.parent.name)
def test_every_shipped_agent_reads_the_same_in_yaml_1_1_and_1_2(path: Path) -> None:
    text = path.read_text()
    assert ambiguous_scalars(text) == []
    parse_agent(text, f"prompts/{path.parent.name}/agent.yaml", folder_id=path.parent.name)


def test_there_are_shipped_agents() -> None:
    assert len(list(PROJECT.glob("prompts/*/agent.yaml"))) >= 3
