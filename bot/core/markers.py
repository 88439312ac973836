"""Hidden markers that let the bot find its own PRs and comments again.

`<!-- promptbot: {...} -->` at the end of a PR body or comment. Anyone can type
such a comment, so parsing is strict (size cap, JSON object, known keys only)
and callers also check the branch name before trusting a marker.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

_MARKER = re.compile(r"<!-- promptbot: (\{[^\n]{0,2000}\}) -->")
_KEYS = frozenset(
    {"kind", "proposal_id", "agent", "base_version", "new_version", "body_hash", "state",
     "canary", "step", "rule", "alert"}
)


def body_hash(body: str) -> str:
    return hashlib.sha256(body.encode("utf-8")).hexdigest()[:16]


def attach(body: str, fields: dict[str, str]) -> str:
    """Append the marker, with a hash of the visible body, so edits can be detected."""
    payload = {**fields, "body_hash": body_hash(body)}
    data = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return f"{body.rstrip()}\n\n<!-- promptbot: {data} -->\n"


def parse(text: str | None) -> dict[str, str] | None:
    if not text:
        return None
    found = list(_MARKER.finditer(text))
    if not found:
        return None
    match = found[-1]  # the bot writes its marker last
    try:
        data: Any = json.loads(match.group(1))
    except json.JSONDecodeError:
        return None
    if not isinstance(data, dict) or not set(data) <= _KEYS:
        return None
    if not all(isinstance(v, str) and len(v) <= 200 for v in data.values()):
        return None
    return {str(k): str(v) for k, v in data.items()}
