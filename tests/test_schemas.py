"""The shipped JSON Schemas: generated from the models, in sync, and they agree with them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import PROJECT
from jsonschema import Draft202012Validator
from pydantic import BaseModel, ValidationError

from bot.core.assertions import KINDS
from bot.load.schemas import FILES, MODELS, generate, generated_text, schema_text

REGENERATE = "python scripts/gen_schemas.py --write"


def _validator(kind: str) -> Draft202012Validator:
    schema = json.loads(schema_text(kind))
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def _errors(kind: str, data: Any) -> list[str]:
    return [e.message for e in _validator(kind).iter_errors(data)]


@pytest.mark.parametrize("kind", sorted(MODELS))
def test_committed_schema_is_what_the_models_generate(kind: str) -> None:
    path = PROJECT / "bot" / "schemas" / FILES[kind]
    assert path.exists(), f"{path} is missing: run {REGENERATE}"
    assert path.read_text(encoding="utf-8") == generated_text(kind), (
        f"bot/schemas/{FILES[kind]} differs from bot/core/model.py: run {REGENERATE}")


@pytest.mark.parametrize("kind", sorted(MODELS))
def test_schema_text_is_the_shipped_package_data(kind: str) -> None:
    text = schema_text(kind)
    assert json.loads(text)["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert text == (PROJECT / "bot" / "schemas" / FILES[kind]).read_text(encoding="utf-8")


def test_schema_text_refuses_an_unknown_kind() -> None:
    with pytest.raises(ValueError, match="unknown schema 'agents'"):
        schema_text("agents")


def _shipped() -> list[tuple[str, Path]]:
    files = [("agent", p) for p in sorted(PROJECT.glob("prompts/*/agent.yaml"))]
    files += [("tests", p) for p in sorted(PROJECT.glob("prompts/*/tests.yaml"))]
    return [*files, ("policy", PROJECT / "policies" / "promptbot.yaml")]


def test_every_kind_of_shipped_file_is_covered() -> None:
    kinds = [kind for kind, _ in _shipped()]
    assert kinds.count("agent") == 3 and kinds.count("tests") == 2 and "policy" in kinds


@pytest.mark.parametrize(("kind", "path"), _shipped(),
                         ids=lambda x: x if isinstance(x, str) else x.parent.name)
def test_every_shipped_file_is_valid_under_its_schema(kind: str, path: Path) -> None:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert _errors(kind, data) == []


def _agent(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(
        (PROJECT / "prompts/support-triage/agent.yaml").read_text(encoding="utf-8"))
    data.update(changes)
    return data


def _tests(case: dict[str, Any]) -> dict[str, Any]:
    return {"cases": [{"name": "c", "inputs": {}, **case}]}


# Each wrong file must be refused by the schema *and* by the pydantic model (or by
# `promptbot check`'s assertion parsing, for the assertion items): an editor's red line
# and `check` agree.
WRONG: list[tuple[str, str, Any]] = [
    ("agent", "unknown top-level key", _agent(temperature=0.2)),
    ("agent", "misspelt nested key", _agent(model={"name": "m", "temprature": 0.2})),
    ("agent", "temperature out of range", _agent(model={"name": "m", "temperature": 3})),
    ("agent", "id with a slash", _agent(id="../etc")),
    ("agent", "missing prompts", {k: v for k, v in _agent().items() if k != "prompts"}),
    ("agent", "tool without description", _agent(tools=[{"name": "t"}])),
    ("tests", "no cases", {"cases": []}),
    ("tests", "assertions instead of assert", _tests({"assertions": [{"contains": "x"}]})),
    ("tests", "case without inputs", {"cases": [{"name": "c", "assert": []}]}),
    ("policy", "unknown section", {"metric": {}}),
    ("policy", "misspelt key in a section", {"propose": {"max_prs": 3}}),
    ("policy", "generator kind misspelt", {"generator": {"kind": "ofline"}}),
    ("policy", "column mapped onto a non-canonical name", {"metrics": {"columns": {"t": "x"}}}),
    ("policy", "status mapped onto a non-canonical status",
     {"metrics": {"status_values": {"ok": "passed"}}}),
    ("policy", "blank status key", {"metrics": {"status_values": {" ": "success"}}}),
    ("policy", "absolute reports_dir", {"reports_dir": "/tmp/reports"}),
    ("policy", "reports_dir escaping the repository", {"reports_dir": "a/../../b"}),
    ("policy", "alpha of 0", {"measure": {"alpha": 0}}),
    ("policy", "label prefix with capitals", {"forge": {"label_prefix": "Bot"}}),
]


@pytest.mark.parametrize(("kind", "what", "data"), WRONG, ids=[w[1] for w in WRONG])
def test_a_wrong_file_fails_the_schema_and_the_model(kind: str, what: str, data: Any) -> None:
    assert _errors(kind, data), f"the schema accepts: {what}"
    with pytest.raises(ValidationError):
        MODELS[kind].model_validate(data)


RIGHT: list[tuple[str, str, Any]] = [
    ("policy", "empty policy", {}),
    ("policy", "status mapping in any case", {"metrics": {"status_values": {"OK": "success"}}}),
    ("policy", "daily-form column target", {"metrics": {"columns": {"n": "executions"}}}),
    ("policy", "nested relative reports_dir", {"reports_dir": "build/..reports"}),
    ("tests", "assert left out", _tests({})),
    ("agent", "structured example input", _agent(examples=[{"input": {"a": 1}, "output": "x"}])),
]


@pytest.mark.parametrize(("kind", "what", "data"), RIGHT, ids=[r[1] for r in RIGHT])
def test_a_valid_file_passes_the_schema_and_the_model(kind: str, what: str, data: Any) -> None:
    assert _errors(kind, data) == []
    MODELS[kind].model_validate(data)


@pytest.mark.parametrize("item", [
    {"contain": "x"},                      # unknown kind
    {"contains": "x", "regex": "y"},       # two kinds in one item
    {},                                    # no kind
    {"contains": ""},                      # empty text
    {"json_schema": "not a mapping"},
])
def test_a_bad_assertion_fails_the_schema_and_check(item: dict[str, Any]) -> None:
    from bot.core.assertions import parse_cases
    from bot.core.model import TestsFile
    from bot.errors import InputError

    data = _tests({"assert": [item]})
    assert _errors("tests", data)
    with pytest.raises(InputError):
        parse_cases(TestsFile.model_validate(data), "tests.yaml")


def test_the_schema_offers_exactly_the_assertion_kinds_check_accepts() -> None:
    case = generate("tests")["$defs"]["TestCase"]
    assert tuple(case["properties"]["assert"]["items"]["properties"]) == KINDS


def _properties(schema: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    models = [("", schema), *((f"{name}.", d) for name, d in schema.get("$defs", {}).items())]
    return [(f"{where}{key}", node) for where, model in models
            for key, node in model.get("properties", {}).items()]


def _is_section(node: dict[str, Any]) -> bool:
    return "$ref" in node or "$ref" in node.get("items", {})


@pytest.mark.parametrize("kind", sorted(MODELS))
def test_every_key_has_a_description_and_every_value_key_a_valid_example(kind: str) -> None:
    schema = generate(kind)
    defs = {"$defs": schema.get("$defs", {})}
    undescribed, no_example, bad_example = [], [], []
    for key, node in _properties(schema):
        target = schema["$defs"].get(node.get("$ref", "").rsplit("/", 1)[-1], {})
        if not (node.get("description") or target.get("description")):
            undescribed.append(key)
        if _is_section(node):
            continue
        if not node.get("examples"):
            no_example.append(key)
            continue
        check = Draft202012Validator({**node, **defs})
        if any(True for _ in check.iter_errors(node["examples"][0])):
            bad_example.append(key)
    assert (undescribed, no_example, bad_example) == ([], [], [])


def test_the_model_descriptions_reach_the_schema() -> None:
    # A guard on the generator: pydantic puts Field(description=...) into the schema.
    metrics = generate("policy")["$defs"]["MetricsPolicy"]["properties"]
    assert "status values" in metrics["status_values"]["description"]
    assert metrics["status_values"]["additionalProperties"]["enum"] == [
        "success", "failure", "error", "timeout"]
    assert metrics["window_days"]["default"] == 28


def test_models_cover_the_three_files() -> None:
    assert {k: m.__name__ for k, m in MODELS.items()} == {
        "agent": "AgentFile", "tests": "TestsFile", "policy": "Policy"}
    assert all(issubclass(m, BaseModel) for m in MODELS.values())
