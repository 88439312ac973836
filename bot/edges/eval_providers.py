"""Who answers eval requests: Anthropic live, recorded replies, or live while recording.

Recordings live in `prompts/<agent>/eval-recordings.jsonl`, beside the tests they answer, so
a reviewer sees them change in the same PR. One JSON object per line keyed by the sha256 of
the canonical request (`EvalRequest.key`): model, temperature, max_tokens, system prompt and
the messages (few-shot turns and the rendered case). Any prompt change gives new keys, so a
recording can never answer for a prompt it was not made with; a miss is "unavailable".

Retries are the SDK's (408/409/429/5xx/529 with backoff and `retry-after`), as in the
generator; the budget is checked before every request so a run never ends above it.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from bot.core.evaluation import EvalRequest, Reply
from bot.core.generation import sanitize_untrusted
from bot.edges.anthropic_generator import CHARS_PER_TOKEN, BudgetExceeded, Usage
from bot.errors import InputError, PromptbotError

if TYPE_CHECKING:
    # Imported where the API is called: the recorded provider and `promptbot event` for a
    # comment never pay the SDK's import time.
    import anthropic
    from anthropic.types import MessageParam

RECORDINGS = "eval-recordings.jsonl"
HEADER = {
    "_comment": "promptbot eval recordings: one reply per request, keyed by the sha256 of the "
    "canonical request. Records with \"illustrative\": true were written by hand for the "
    "example; `promptbot eval --record` (with ANTHROPIC_API_KEY) replaces them with real "
    "replies and keeps real ones. Delete a line to record it again."
}


@dataclass(frozen=True)
class Record:
    key: str
    reply: str
    input_tokens: int
    output_tokens: int
    case: str  # for a reader of the file; the key alone decides a match
    model: str
    illustrative: bool = False

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"key": self.key, "case": self.case, "model": self.model,
                                "reply": self.reply, "input_tokens": self.input_tokens,
                                "output_tokens": self.output_tokens}
        if self.illustrative:
            data["illustrative"] = True
        return data


def recordings_rel(agent_id: str) -> str:
    """Where an agent's recordings live, relative to the repository root."""
    return f"prompts/{agent_id}/{RECORDINGS}"


def recordings_path(root: Path, agent_id: str) -> Path:
    return root / recordings_rel(agent_id)


def read_recordings(path: Path, display: str) -> dict[str, Record]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    return parse_recordings(text, display)


def parse_recordings(text: str, display: str) -> dict[str, Record]:
    records: dict[str, Record] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
            if "_comment" in data:
                continue
            record = Record(key=str(data["key"]), reply=str(data["reply"]),
                            input_tokens=int(data.get("input_tokens", 0)),
                            output_tokens=int(data.get("output_tokens", 0)),
                            case=str(data.get("case", "")), model=str(data.get("model", "")),
                            illustrative=bool(data.get("illustrative", False)))
        except (json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):
            raise InputError(f"{display}:{number} is not a valid recording",
                             fix="each line is a JSON object with at least `key` and `reply`; "
                             "delete the line and run `promptbot eval --record` to "
                             "record it again") from None
        records[record.key] = record
    return records


def render_recordings(records: dict[str, Record]) -> str:
    # Sorted by key: the same set of records is always the same bytes, so re-recording
    # unchanged prompts leaves the file (and the diff) alone.
    lines = [json.dumps(HEADER, ensure_ascii=False)]
    lines += [json.dumps(records[k].to_json(), ensure_ascii=False, sort_keys=True)
              for k in sorted(records)]
    return "\n".join(lines) + "\n"


def write_recordings(path: Path, records: dict[str, Record]) -> bool:
    """Atomic, and only when the bytes change. True when the file was written."""
    text = render_recordings(records)
    try:
        if path.read_text(encoding="utf-8") == text:
            return False
    except FileNotFoundError:
        pass
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return True


class RecordedProvider:
    """Replays recordings; never calls anything."""

    label = "recorded"

    def __init__(self, records: dict[str, Record]) -> None:
        self.records = records

    def complete(self, request: EvalRequest) -> Reply | None:
        record = self.records.get(request.key())
        if record is None:
            return None
        return Reply(record.reply, record.input_tokens, record.output_tokens, billed=False)


class AnthropicEvalProvider:
    """`messages.create` with the agent's model config: no tools, plain text back."""

    def __init__(self, *, api_key: str, base_url: str | None = None, max_retries: int = 4,
                 timeout: float = 120.0, price_in: float = 3.0, price_out: float = 15.0,
                 budget_usd: float = 1.0, budget_tokens: int = 300_000) -> None:
        if not api_key:
            raise PromptbotError("the Anthropic eval provider needs an API key",
                                 fix="set ANTHROPIC_API_KEY, or set eval.provider: recorded")
        # The client (and the SDK's import) waits for the first request.
        self._client_args: dict[str, Any] = dict(api_key=api_key, base_url=base_url,
                                                 max_retries=max_retries, timeout=timeout)
        self._secret = api_key  # only to scrub it from text we show; never printed
        self.label = "anthropic"
        self.price_in, self.price_out = price_in, price_out
        self.budget_usd, self.budget_tokens = budget_usd, budget_tokens
        self.usage = Usage()

    @cached_property
    def _client(self) -> anthropic.Anthropic:
        import anthropic

        return anthropic.Anthropic(**self._client_args)

    def __repr__(self) -> str:
        return f"AnthropicEvalProvider(usage={self.usage.as_dict()!r})"

    def _check_budget(self, request: EvalRequest) -> None:
        # Worst case for the next request: the character estimate of the input, and the
        # output running to max_tokens.
        size = len(request.system) + sum(len(text) for _, text in request.messages)
        tokens_in = math.ceil(size / CHARS_PER_TOKEN)
        next_tokens = tokens_in + request.max_tokens
        next_cost = (tokens_in * self.price_in + request.max_tokens * self.price_out) / 1e6
        if self.usage.total_tokens + next_tokens > self.budget_tokens:
            raise BudgetExceeded(
                f"eval token budget reached ({self.usage.total_tokens} of {self.budget_tokens} "
                f"used; the next request may need {next_tokens})",
                fix="raise eval.budget_tokens in policies/promptbot.yaml or lower eval.max_cases")
        if self.usage.cost_usd + next_cost > self.budget_usd:
            raise BudgetExceeded(
                f"eval dollar budget reached (${self.usage.cost_usd:.4f} of "
                f"${self.budget_usd:.2f} spent; the next request may cost ${next_cost:.4f})",
                fix="raise eval.budget_usd in policies/promptbot.yaml or lower eval.max_cases")

    def complete(self, request: EvalRequest) -> Reply | None:
        import anthropic

        self._check_budget(request)
        messages = [{"role": role, "content": text} for role, text in request.messages]
        try:
            # No `temperature`: the SDK's API version (2026-10-21) removed sampling parameters.
            # The agent's temperature still belongs to the request key (a runtime on an older
            # API version would use it), so changing it asks for a new recording.
            response = self._client.messages.create(
                model=request.model, max_tokens=request.max_tokens, system=request.system,
                messages=cast("list[MessageParam]", messages))
        except anthropic.APIStatusError as exc:
            detail = ""
            if isinstance(exc.body, dict) and isinstance(exc.body.get("error"), dict):
                detail = str(exc.body["error"].get("message", ""))
            raise PromptbotError(
                f"the Anthropic API refused an eval request: {exc.status_code}: "
                f"{self._shown(detail)}",
                fix="check ANTHROPIC_API_KEY and the agent's model name; the SDK retried "
                "already (or run without a key to use the recorded replies)") from None
        except anthropic.APIConnectionError as exc:
            raise PromptbotError(
                f"cannot reach the Anthropic API ({type(exc).__name__})",
                fix="check the network and ANTHROPIC_BASE_URL; the request was retried "
                "already") from None
        usage = response.usage
        self.usage.add(input_tokens=usage.input_tokens, output_tokens=usage.output_tokens,
                       cache_creation_input_tokens=usage.cache_creation_input_tokens or 0,
                       cache_read_input_tokens=usage.cache_read_input_tokens or 0,
                       price_in=self.price_in, price_out=self.price_out)
        text = "".join(block.text for block in response.content if block.type == "text")
        return Reply(text, usage.input_tokens, usage.output_tokens, billed=True)

    def _shown(self, text: str) -> str:
        if self._secret:
            text = text.replace(self._secret, "[redacted]")
        return sanitize_untrusted(text, 300)


@dataclass
class RecordingProvider:
    """Live answers written into the recordings; real recordings are reused, not re-asked.

    Reusing them is what makes a second `--record` run a no-op (and free): a model at any
    temperature would otherwise rewrite the file with new wording every time.
    """

    live: AnthropicEvalProvider
    records: dict[str, Record]
    added: int = 0
    label: str = field(default="anthropic (recording)")

    def complete(self, request: EvalRequest) -> Reply | None:
        key = request.key()
        known = self.records.get(key)
        if known is not None and not known.illustrative:
            return Reply(known.reply, known.input_tokens, known.output_tokens, billed=False)
        reply = self.live.complete(request)
        if reply is not None:
            self.records[key] = Record(key, reply.text, reply.input_tokens,
                                       reply.output_tokens, request.case, request.model)
            self.added += 1
        return reply
