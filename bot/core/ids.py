"""Agent and proposal ids.

They end up in branch names and file paths: a small alphabet keeps any id from walking out
of `prompts/` or injecting into a ref name. Here, apart from the agent model, because the
runtime loader (bot/runtime.py) checks ids too and must not import pydantic.
"""

from __future__ import annotations

import re

ID_PATTERN = r"^[a-z0-9][a-z0-9-]{0,62}$"
_ID_RE = re.compile(ID_PATTERN)


def is_safe_id(value: str) -> bool:
    return bool(_ID_RE.match(value))
