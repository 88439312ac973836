"""Variant generation with Claude through the `anthropic` SDK (SPEC §8).

Retries: the SDK itself retries 408, 409, 429, 5xx and 529 (overloaded) with exponential
backoff and honours `retry-after` / `retry-after-ms` (`_base_client._should_retry` and
`_calculate_retry_timeout`), so we only set `max_retries`; a second retry loop here would
multiply the waits.  What the SDK cannot know is handled here: the answer's *shape* (one forced
tool call validated by pydantic, one corrective retry) and the run's token and dollar budget.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any, cast

from pydantic import ValidationError

from bot.core.generation import (
    TOOL_NAME,
    CandidateSet,
    GenerationRequest,
    VariantCandidate,
    build_messages,
    sanitize_untrusted,
    submit_tool,
    tool_choice,
)
from bot.errors import PromptbotError

if TYPE_CHECKING:
    # The SDK costs ~1-2 s to import: only the commands that call the API load it (in
    # __init__, _estimate_input and _create below), not `promptbot event` for a comment.
    import anthropic
    from anthropic.types import (
        Message,
        MessageParam,
        TextBlockParam,
        ToolChoiceToolParam,
        ToolParam,
    )

# Prompt-caching prices relative to the base input price (Anthropic's published multipliers
# for the 5-minute cache).
CACHE_WRITE_FACTOR = 1.25
CACHE_READ_FACTOR = 0.1
# Without the count endpoint, ~4 characters per token is Anthropic's own rule of thumb.
CHARS_PER_TOKEN = 4
SHOWN_LIMIT = 300  # never echo more than this much model output or server text to a user


class BudgetExceeded(PromptbotError):
    """The next request could take the run over its token or dollar budget."""


@dataclass
class Usage:
    """Tokens and dollars of one run (one generator instance), across all its requests."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0
    requests: int = 0
    cost_usd: float = 0.0

    @property
    def total_tokens(self) -> int:
        return (
            self.input_tokens
            + self.output_tokens
            + self.cache_creation_input_tokens
            + self.cache_read_input_tokens
        )

    def add(
        self,
        *,
        input_tokens: int,
        output_tokens: int,
        cache_creation_input_tokens: int = 0,
        cache_read_input_tokens: int = 0,
        price_in: float,
        price_out: float,
    ) -> None:
        # The API's `input_tokens` excludes cached tokens; each kind is billed at its own rate.
        self.input_tokens += input_tokens
        self.output_tokens += output_tokens
        self.cache_creation_input_tokens += cache_creation_input_tokens
        self.cache_read_input_tokens += cache_read_input_tokens
        self.requests += 1
        self.cost_usd += (
            input_tokens * price_in
            + cache_creation_input_tokens * price_in * CACHE_WRITE_FACTOR
            + cache_read_input_tokens * price_in * CACHE_READ_FACTOR
            + output_tokens * price_out
        ) / 1e6

    def as_dict(self) -> dict[str, float | int]:
        return {
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cache_creation_input_tokens": self.cache_creation_input_tokens,
            "cache_read_input_tokens": self.cache_read_input_tokens,
            "requests": self.requests,
            "cost_usd": round(self.cost_usd, 6),
        }


class AnthropicGenerator:
    def __init__(
        self,
        *,
        api_key: str,
        model: str = "claude-sonnet-4-6",
        base_url: str | None = None,
        max_retries: int = 4,
        price_in: float = 3.0,
        price_out: float = 15.0,
        budget_usd: float = 1.0,
        budget_tokens: int = 200_000,
        timeout: float = 60.0,
        max_tokens: int = 8192,
    ) -> None:
        if not api_key:
            raise PromptbotError(
                "the Anthropic generator needs an API key",
                fix="set ANTHROPIC_API_KEY, or use the offline generator (the default)",
            )
        # The client (and the SDK's import) waits for the first request: a run or an event
        # that never generates does not pay for it.
        self._client_args: dict[str, Any] = dict(
            api_key=api_key, base_url=base_url, max_retries=max_retries, timeout=timeout
        )
        # Kept only to scrub it from any text we show; never printed.
        self._secret = api_key
        self.model = model
        self.label = f"anthropic ({model})"
        self.price_in = price_in
        self.price_out = price_out
        self.budget_usd = budget_usd
        self.budget_tokens = budget_tokens
        self.max_tokens = max_tokens
        self.usage = Usage()
        self._count_endpoint = True  # switched off after the first refusal

    @cached_property
    def _client(self) -> anthropic.Anthropic:
        import anthropic

        return anthropic.Anthropic(**self._client_args)

    def __repr__(self) -> str:
        return f"AnthropicGenerator(model={self.model!r}, usage={self.usage.as_dict()!r})"

    # --- public -------------------------------------------------------------------------------

    def generate(self, req: GenerationRequest) -> list[VariantCandidate]:
        system, messages = build_messages(req)
        tools = [submit_tool()]
        response = self._create(system, messages, tools)
        parsed, problem, tool_use_id = _parse(response)
        if parsed is None:
            # One corrective turn: show the model its own call and the validation error, the
            # way a tool reports a failure, so it can fix the input rather than start over.
            messages = [*messages, *_correction(response, problem, tool_use_id)]
            response = self._create(system, messages, tools)
            parsed, problem, _ = _parse(response)
        if parsed is None:
            raise PromptbotError(
                f"the model's structured output was invalid twice ({self._shown(problem)})",
                fix="run again (the output varies), try another model in the policy, or use "
                "the offline generator",
            )
        return list(parsed.candidates[: req.n_candidates])

    def count_tokens(self, system: Sequence[dict[str, Any]],
                     messages: Sequence[dict[str, Any]],
                     tools: Sequence[dict[str, Any]] = ()) -> int:
        """Exact prompt tokens from the API's count endpoint (raises the SDK's error on failure)."""
        kwargs: dict[str, Any] = {}
        if tools:
            kwargs["tools"] = list(tools)
            kwargs["tool_choice"] = tool_choice()
        result = self._client.messages.count_tokens(
            model=self.model,
            system=cast("list[TextBlockParam]", list(system)),
            messages=cast("list[MessageParam]", list(messages)),
            **kwargs,
        )
        return int(result.input_tokens)

    def report(self) -> dict[str, float | int]:
        return self.usage.as_dict()

    # --- internals ----------------------------------------------------------------------------

    def _estimate_input(self, system: list[dict[str, Any]], messages: list[dict[str, Any]],
                        tools: list[dict[str, Any]]) -> int:
        import anthropic

        if self._count_endpoint:
            try:
                return self.count_tokens(system, messages, tools)
            except anthropic.APIStatusError as exc:
                # Some gateways and older deployments do not offer the endpoint; an auth or
                # rate problem will surface again, clearly, on the real request.
                if exc.status_code in (401, 403):
                    raise self._api_error(exc) from None
                self._count_endpoint = False
            except anthropic.APIConnectionError:
                self._count_endpoint = False
        text = json.dumps([tools, system, messages], ensure_ascii=False)
        return math.ceil(len(text) / CHARS_PER_TOKEN)

    def _check_budget(self, estimated_input: int) -> None:
        # Worst case for the next request: every input token written to the cache and the
        # output running to max_tokens; so a run never ends above its budget.
        next_tokens = estimated_input + self.max_tokens
        next_cost = (
            estimated_input * self.price_in * CACHE_WRITE_FACTOR
            + self.max_tokens * self.price_out
        ) / 1e6
        spent = self.usage
        if spent.total_tokens + next_tokens > self.budget_tokens:
            raise BudgetExceeded(
                f"the Anthropic token budget would be exceeded: {spent.total_tokens} of "
                f"{self.budget_tokens} tokens used, the next request may need up to "
                f"{next_tokens}",
                fix="raise the generation token budget in the policy, ask for fewer goals or "
                "candidates, or use the offline generator",
            )
        if spent.cost_usd + next_cost > self.budget_usd:
            raise BudgetExceeded(
                f"the Anthropic dollar budget would be exceeded: ${spent.cost_usd:.4f} of "
                f"${self.budget_usd:.2f} spent, the next request may cost up to "
                f"${next_cost:.4f}",
                fix="raise the generation dollar budget in the policy, ask for fewer goals or "
                "candidates, or use the offline generator",
            )

    def _create(self, system: list[dict[str, Any]], messages: list[dict[str, Any]],
                tools: list[dict[str, Any]]) -> Message:
        import anthropic

        self._check_budget(self._estimate_input(system, messages, tools))
        try:
            response = self._client.messages.create(
                model=self.model,
                max_tokens=self.max_tokens,
                system=cast("list[TextBlockParam]", system),
                messages=cast("list[MessageParam]", messages),
                tools=cast("list[ToolParam]", tools),
                tool_choice=cast("ToolChoiceToolParam", tool_choice()),
            )
        except anthropic.APIStatusError as exc:
            raise self._api_error(exc) from None
        except anthropic.APIConnectionError as exc:
            raise PromptbotError(
                f"cannot reach the Anthropic API ({self._shown(type(exc).__name__)})",
                fix="check the network and the base URL; the request was retried already",
            ) from None
        usage = response.usage
        self.usage.add(
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            cache_creation_input_tokens=usage.cache_creation_input_tokens or 0,
            cache_read_input_tokens=usage.cache_read_input_tokens or 0,
            price_in=self.price_in,
            price_out=self.price_out,
        )
        return response

    def _api_error(self, exc: anthropic.APIStatusError) -> PromptbotError:
        kind, detail = "", ""
        body = exc.body
        if isinstance(body, dict) and isinstance(body.get("error"), dict):
            kind = str(body["error"].get("type", ""))
            detail = str(body["error"].get("message", ""))
        fixes = {
            401: "check ANTHROPIC_API_KEY (the key was rejected)",
            403: "the key lacks permission for this model or workspace",
            404: "check the model name in the policy and the base URL",
            429: "rate limited after all retries: wait, or lower the number of candidates",
        }
        fix = fixes.get(
            exc.status_code,
            "the request was retried already; try again later or use the offline generator",
        )
        what = f"{exc.status_code} {kind}".strip()
        return PromptbotError(
            f"the Anthropic API refused the request: {what}: {self._shown(detail)}", fix=fix
        )

    def _shown(self, text: str) -> str:
        # Whatever reaches a user is capped and can never carry the key, even if a server or a
        # gateway echoed it back.
        if self._secret:
            text = text.replace(self._secret, "[redacted]")
        return sanitize_untrusted(text, SHOWN_LIMIT)


def _parse(response: Message) -> tuple[CandidateSet | None, str, str | None]:
    """(the validated set, or None with the problem and the tool_use id to answer)."""
    tool_uses = [b for b in response.content if b.type == "tool_use" and b.name == TOOL_NAME]
    if not tool_uses:
        return None, f"no {TOOL_NAME} tool call in the answer (stop: {response.stop_reason})", None
    block = tool_uses[0]
    try:
        return CandidateSet.model_validate(block.input), "", block.id
    except ValidationError as exc:
        problems = [
            f"{'.'.join(str(p) for p in err['loc']) or 'input'}: {err['msg']}"
            for err in exc.errors(include_url=False, include_input=False)
        ]
        hint = " (the answer hit max_tokens)" if response.stop_reason == "max_tokens" else ""
        return None, "; ".join(problems) + hint, block.id


def _correction(response: Message, problem: str, tool_use_id: str | None) -> list[dict[str, Any]]:
    """The assistant's bad turn, then a user turn that reports the error for it."""
    # Rebuilt field by field: echoing SDK objects back would also echo response-only fields.
    assistant: list[dict[str, Any]] = []
    for block in response.content:
        if block.type == "text" and block.text:
            assistant.append({"type": "text", "text": block.text})
        elif block.type == "tool_use":
            assistant.append(
                {"type": "tool_use", "id": block.id, "name": block.name, "input": block.input}
            )
    if not assistant:
        assistant = [{"type": "text", "text": "(no answer)"}]
    message = (
        f"Your {TOOL_NAME} input is invalid: {sanitize_untrusted(problem, 2000)}. "
        f"Call {TOOL_NAME} again with the complete, corrected input."
    )
    if tool_use_id is None:
        reply: list[dict[str, Any]] = [{"type": "text", "text": message}]
    else:
        reply = [
            {"type": "tool_result", "tool_use_id": tool_use_id, "is_error": True,
             "content": message}
        ]
    return [{"role": "assistant", "content": assistant}, {"role": "user", "content": reply}]
