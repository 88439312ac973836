"""A tiny deterministic 'model' for the support-triage eval cases, played by the Anthropic
stand-in (`reply_fn`): correct triage JSON for each case's ticket, and a knob that makes a
prompt variant worse."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

# A system-prompt sentence that makes this model wrap its JSON in a code fence, which fails
# the cases that want bare JSON: the stand-in for a variant that regresses.
FENCE_RULE = "Wrap the JSON in a ```json code block."


def triage_answer(user: str) -> dict[str, Any]:
    if "Parcel" in user:
        return {"category": "order_status", "priority": "high", "needs_human": False,
                "reply_draft": "Hi Lena, thanks for your patience, we are on it.",
                "internal_summary": "Late parcel."}
    if "double charge" in user:
        return {"category": "payment", "priority": "urgent", "needs_human": True,
                "reply_draft": "Hi Sam, payments will call you today.",
                "internal_summary": "Duplicate charge, chargeback threat."}
    if "Rückgabe" in user:
        return {"category": "returns_refunds", "priority": "normal", "needs_human": False,
                "reply_draft": "Hallo Jonas, so schickst du die Schuhe zurück.",
                "internal_summary": "Return."}
    if "Nordkap" in user:
        return {"category": "product_question", "priority": "low", "needs_human": False,
                "reply_draft": "Hi Priya, yes it is waterproof.", "internal_summary": "Q."}
    return {"category": "other", "priority": "normal", "needs_human": True,
            "reply_draft": "Hello, how can I help?", "internal_summary": "Injection attempt."}


def _text(content: Any) -> str:
    if isinstance(content, list):  # content blocks, e.g. a cached system prompt
        return "".join(block.get("text", "") for block in content)
    return str(content or "")


def triage_model(breaks_on: str = FENCE_RULE,
                 indent: int | None = None) -> Callable[[dict[str, Any]], str]:
    """Replies to a messages request: rubric grades PASS; triage JSON otherwise, fenced when
    the system prompt contains `breaks_on` ("" never breaks)."""
    def reply(body: dict[str, Any]) -> str:
        system = _text(body.get("system"))
        if "You grade one reply" in system:
            return "PASS: polite"
        user = _text(body["messages"][-1]["content"])
        text = json.dumps(triage_answer(user), indent=indent, ensure_ascii=False)
        return f"```json\n{text}\n```" if breaks_on and breaks_on in system else text
    return reply
