"""Prompt version: a short hash of what the model actually sees.

Only prompt-affecting fields count, in canonical form (parsed, key-sorted JSON),
so comments, quoting and re-indentation never create a new version, and owner
or description edits do not either.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from bot.core.model import AgentFile

VERSION_LENGTH = 12
PROMPT_FIELDS = ("model", "prompts", "tools", "examples")


def canonical(agent: AgentFile) -> str:
    data: dict[str, Any] = agent.model_dump(mode="json", by_alias=True, include=set(PROMPT_FIELDS))
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def prompt_version(agent: AgentFile) -> str:
    return hashlib.sha256(canonical(agent).encode("utf-8")).hexdigest()[:VERSION_LENGTH]
