"""Minimal-diff edits of agent files through ruamel.yaml's round-trip mode.

Comments, key order, quoting and block styles survive, so the PR diff shows only
the lines that really change.
"""

from __future__ import annotations

import io
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.scalarstring import LiteralScalarString
from ruamel.yaml.util import load_yaml_guess_indent


class RoundTripError(ValueError):
    pass


def _yaml_for(text: str) -> tuple[YAML, Any]:
    _, indent, block_seq_indent = load_yaml_guess_indent(text)
    yaml = YAML()
    yaml.preserve_quotes = True
    yaml.width = 4096
    yaml.indent(mapping=indent or 2, sequence=(indent or 2) + (block_seq_indent or 0),
                offset=block_seq_indent or 0)
    return yaml, yaml.load(text)


def _dump(yaml: YAML, data: Any) -> str:
    buf = io.StringIO()
    yaml.dump(data, buf)
    return buf.getvalue()


def set_prompt(text: str, field: str, value: str) -> str:
    """Return `text` with prompts.<field> replaced by `value` (kept as a literal block)."""
    yaml, data = _yaml_for(text)
    if _dump(yaml, data) != text:
        raise RoundTripError(
            "this file's formatting does not survive a YAML round trip unchanged, so an "
            "automatic edit would touch unrelated lines"
        )
    data["prompts"][field] = LiteralScalarString(value) if "\n" in value else value
    return _dump(yaml, data)
