"""docs/REFERENCE.md: generated from the models, in sync, and it lists every key."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from conftest import PROJECT
from pydantic import BaseModel

from bot.load.schemas import MODELS, _flow, generate, reference_markdown

REGENERATE = "python scripts/gen_schemas.py --write"
REFERENCE = PROJECT / "docs" / "REFERENCE.md"


def test_committed_reference_is_what_the_models_generate() -> None:
    assert REFERENCE.read_text(encoding="utf-8") == reference_markdown(), (
        f"docs/REFERENCE.md differs from bot/core/model.py: run {REGENERATE}")


def _sections(text: str) -> dict[str, str]:
    """Heading -> the text under it, for the `## file` and `### section` headings."""
    parts = re.split(r"^(#{2,3} .*)$", text, flags=re.M)
    return {parts[i].strip(): parts[i + 1] for i in range(1, len(parts) - 1, 2)}


def _walk(model: type[BaseModel], prefix: str = "") -> list[tuple[str, str]]:
    """(section, key) for every key of `model` and the models nested in it."""
    out = []
    for name, info in model.model_fields.items():
        key = info.alias or name
        out.append((prefix, key))
        annotation: Any = info.annotation
        inner = getattr(annotation, "__args__", (annotation,))[0] if \
            getattr(annotation, "__origin__", None) is list else annotation
        if isinstance(inner, type) and issubclass(inner, BaseModel):
            suffix = "[]" if inner is not annotation else ""
            out += _walk(inner, f"{prefix}{key}{suffix}.")
    return out


@pytest.mark.parametrize(("kind", "heading"), [
    ("agent", "prompts/<agent>/agent.yaml"),
    ("tests", "prompts/<agent>/tests.yaml"),
    ("policy", "policies/promptbot.yaml"),
])
def test_every_key_has_a_row_in_its_section(kind: str, heading: str) -> None:
    walked = _walk(MODELS[kind])
    assert len(walked) > {"agent": 15, "tests": 3, "policy": 60}[kind]
    sections = _sections(REFERENCE.read_text(encoding="utf-8"))
    top = next(text for title, text in sections.items() if f"`{heading}`" in title)
    missing = []
    for section, key in walked:
        if section:
            title = f"### `{section.rstrip('.')}`"
            text = next((t for h, t in sections.items() if h.startswith(title)), "")
        else:
            text = top
        row = re.search(rf"^\| `{re.escape(key)}` \| (.+?) \| (.+?) \| (.+?) \| (.+) \|$",
                        text, flags=re.M)
        if row is None or not all(cell.strip() for cell in row.groups()):
            missing.append(f"{section}{key}")
    assert missing == []


def test_the_reference_shows_type_default_and_example_of_a_key() -> None:
    text = REFERENCE.read_text(encoding="utf-8")
    assert ("| `window_days` | integer (≥ 1, ≤ 3650) | `28` | `window_days: 14` | Days of "
            "data") in text
    assert "| `status_values` | mapping: name → one of `success`, `failure`, `error`, " \
        "`timeout` | `{}` |" in text
    # The 29 column names are listed under the table, not squeezed into a cell.
    assert "- `metrics.columns`: one of `timestamp`, `agent_id`" in text
    assert "| `contains` | string (not empty) | `contains: Lena` |" in text


def _examples(schema: dict[str, Any]) -> list[tuple[str, Any]]:
    models = [schema, *schema.get("$defs", {}).values()]
    return [(key, node["examples"][0]) for model in models
            for key, node in model.get("properties", {}).items() if node.get("examples")]


@pytest.mark.parametrize("kind", sorted(MODELS))
def test_every_example_in_the_reference_is_yaml_that_means_the_example(kind: str) -> None:
    examples = _examples(generate(kind))
    assert examples
    text = REFERENCE.read_text(encoding="utf-8")
    for key, value in examples:
        written = f"{key}: {_flow(value)}"
        assert yaml.safe_load(written) == {key: value}, written
        assert written.replace("|", "\\|") in text, written


def _gen_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_schemas", PROJECT / "scripts" /
                                                  "gen_schemas.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_generator_checks_and_writes(tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    gen = _gen_script()
    assert gen.main(["--check"]) == 0  # the committed files are current
    gen.ROOT = tmp_path  # an empty tree: every file is missing
    assert gen.main(["--check"]) == 1
    assert "docs/REFERENCE.md is out of date: run python scripts/gen_schemas.py --write" \
        in capsys.readouterr().err
    assert gen.main(["--write"]) == 0
    assert (tmp_path / "docs" / "REFERENCE.md").read_text() == reference_markdown()
    assert sorted(p.name for p in (tmp_path / "bot" / "schemas").iterdir()) == [
        "agent.schema.json", "policy.schema.json", "tests.schema.json"]
    assert gen.main(["--check"]) == 0
