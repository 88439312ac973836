"""A local stand-in for the part of the Anthropic Messages API that promptbot uses.

Tests point the real `anthropic` client at it (``base_url=standin.base_url``), so the SDK's own
request building, retries (429/529 with ``retry-after``) and response parsing run for real.

Shapes follow Anthropic's API reference:
- a message: ``{"id", "type": "message", "role": "assistant", "model", "content": [...],
  "stop_reason", "stop_sequence", "usage": {"input_tokens", "output_tokens",
  "cache_creation_input_tokens", "cache_read_input_tokens"}}``; a forced tool call is a
  ``{"type": "tool_use", "id", "name", "input"}`` block with ``stop_reason: "tool_use"``;
- authentication: ``x-api-key`` or ``Authorization: Bearer`` (the installed SDK sends the
  latter) plus ``anthropic-version``;
- an error: ``{"type": "error", "error": {"type", "message"}, "request_id"}``, e.g.
  429 ``rate_limit_error`` (with ``retry-after``), 529 ``overloaded_error``,
  401 ``authentication_error``; every response carries a ``request-id`` header;
- ``POST /v1/messages/count_tokens`` answers ``{"input_tokens": N}``.

Responses to ``POST /v1/messages`` are scripted: a test queues them in order; with a
``reply_fn`` (a function of the request body returning text) every request the queue does not
answer gets a plain text message from it, which is how a deterministic "model" is played.  Usage is
computed like the real service would report it: the prompt prefix up to the last
``cache_control`` breakpoint counts as a cache write the first time it is seen and as a cache
read afterwards (the real API also needs a minimum prefix length; the stand-in does not).
Requests the real API would reject (no key, no version, malformed messages, a tool_result
that answers no tool_use) get the real 400/401 error, so the client cannot drift silently.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import math
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

CHARS_PER_TOKEN = 4


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]  # names lower-cased
    json: Any


@dataclass(frozen=True)
class _Scripted:
    status: int
    body: dict[str, Any]
    headers: dict[str, str]


def _tokens(value: Any) -> int:
    return max(1, math.ceil(len(json.dumps(value, ensure_ascii=False)) / CHARS_PER_TOKEN))


def api_key_of(headers: Any) -> str:
    """The key a request carries: `x-api-key`, or a bearer token (anthropic SDK 2.x sends the
    key as `Authorization: Bearer`; the API accepts both)."""
    key = headers.get("x-api-key") or ""
    auth = headers.get("authorization") or ""
    if not key and auth.lower().startswith("bearer "):
        key = auth[len("bearer "):].strip()
    return str(key)


def _error_body(error_type: str, message: str, request_id: str) -> dict[str, Any]:
    return {
        "type": "error",
        "error": {"type": error_type, "message": message},
        "request_id": request_id,
    }


def _cache_prefix(body: dict[str, Any]) -> Any | None:
    """The request prefix (tools, then system, then messages) up to the last breakpoint."""
    tools = body.get("tools") or []
    system = body.get("system") or []
    if isinstance(system, str):
        system = [{"type": "text", "text": system}]
    blocks: list[Any] = [*tools, *system]
    for message in body.get("messages") or []:
        content = message.get("content")
        if isinstance(content, list):
            blocks.extend(content)
    last = max((i for i, b in enumerate(blocks) if isinstance(b, dict) and b.get("cache_control")),
               default=None)
    return None if last is None else blocks[: last + 1]


def _validate_messages_request(body: Any) -> str | None:
    """The checks the real API makes that a client bug could trip; None when acceptable."""
    if not isinstance(body, dict):
        return "request body must be a JSON object"
    if not isinstance(body.get("model"), str) or not body["model"]:
        return "model: Field required"
    if not isinstance(body.get("max_tokens"), int) or body["max_tokens"] < 1:
        return "max_tokens: Field required"
    if "temperature" in body:
        # API version 2026-10-21 (the installed SDK's) removed the sampling parameters.
        return "temperature: Extra inputs are not permitted"
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return "messages: at least one message is required"
    if messages[0].get("role") != "user":
        return "messages: first message must use the \"user\" role"
    previous_tool_ids: set[str] = set()
    for index, message in enumerate(messages):
        role, content = message.get("role"), message.get("content")
        if role not in ("user", "assistant"):
            return f"messages.{index}.role: Input should be 'user' or 'assistant'"
        if isinstance(content, str):
            blocks: list[Any] = [{"type": "text", "text": content}]
        elif isinstance(content, list) and content:
            blocks = content
        else:
            return f"messages.{index}.content: must be a string or a non-empty list"
        for block in blocks:
            if block.get("type") == "tool_result" and (
                role != "user" or block.get("tool_use_id") not in previous_tool_ids
            ):
                return (f"messages.{index}: unexpected `tool_use_id` found in `tool_result` "
                        "blocks; each tool_result must answer a tool_use of the previous message")
        previous_tool_ids = {
            b.get("id") for b in blocks if role == "assistant" and b.get("type") == "tool_use"
        }
    tools = body.get("tools") or []
    names = {t.get("name") for t in tools}
    for index, tool in enumerate(tools):
        schema = tool.get("input_schema")
        if not isinstance(schema, dict) or schema.get("type") != "object":
            return f"tools.{index}.input_schema: type must be 'object'"
    choice = body.get("tool_choice")
    if isinstance(choice, dict) and choice.get("type") == "tool" and (
        choice.get("name") not in names
    ):
        return "tool_choice: tool name not found in tools"
    system = body.get("system")
    if isinstance(system, list):
        for index, block in enumerate(system):
            if block.get("type") != "text":
                return f"system.{index}.type: Input should be 'text'"
    prefix = _cache_prefix(body) or []
    breakpoints = [b for b in prefix if isinstance(b, dict) and b.get("cache_control")]
    if len(breakpoints) > 4:
        return "A maximum of 4 blocks with cache_control may be provided."
    if any(b["cache_control"].get("type") != "ephemeral" for b in breakpoints):
        return "cache_control.type: Input should be 'ephemeral'"
    return None


class AnthropicStandIn:
    def __init__(self, *, count_tokens_available: bool = True,
                 reply_fn: Callable[[dict[str, Any]], str] | None = None) -> None:
        self.requests: list[RecordedRequest] = []
        self.reply_fn = reply_fn
        self.count_tokens_available = count_tokens_available
        self._queue: deque[_Scripted] = deque()
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._seen_prefixes: set[str] = set()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        # A short poll interval so shutdown (every test's teardown) takes milliseconds, not 0.5 s.
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.02}, daemon=True)

    # --- lifecycle ----------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def __enter__(self) -> AnthropicStandIn:
        self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    # --- scripting ----------------------------------------------------------------------------

    def queue_json(self, status: int, body: dict[str, Any],
                   headers: dict[str, str] | None = None) -> None:
        with self._lock:
            self._queue.append(_Scripted(status, copy.deepcopy(body), dict(headers or {})))

    def queue_error(self, status: int, error_type: str, message: str,
                    retry_after: float | None = None) -> None:
        headers = {} if retry_after is None else {"retry-after": f"{retry_after:g}"}
        # request_id is filled in when sent, like the header.
        self.queue_json(status, _error_body(error_type, message, ""), headers)

    def queue_tool_result(self, candidates: list[dict[str, Any]],
                          usage: dict[str, int] | None = None, *,
                          tool_name: str = "submit_variants",
                          stop_reason: str = "tool_use") -> None:
        """A forced tool call answering with `{"candidates": candidates}`.

        Without `usage`, usage is computed from the request when it arrives (see module doc).
        """
        body: dict[str, Any] = {
            "id": "",
            "type": "message",
            "role": "assistant",
            "model": "",
            "content": [
                {"type": "tool_use", "id": "", "name": tool_name,
                 "input": {"candidates": candidates}},
            ],
            "stop_reason": stop_reason,
            "stop_sequence": None,
        }
        if usage is not None:
            body["usage"] = {"input_tokens": 0, "output_tokens": 0,
                             "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0,
                             **usage}
        self.queue_json(200, body)

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._queue)

    @property
    def message_requests(self) -> list[RecordedRequest]:
        with self._lock:
            return [r for r in self.requests if r.path == "/v1/messages"]

    # --- serving ------------------------------------------------------------------------------

    def _next_id(self, prefix: str) -> str:
        return f"{prefix}_standin{next(self._ids):06d}"

    def _respond_messages(self, body: dict[str, Any]) -> tuple[int, dict[str, Any], dict[str, str]]:
        with self._lock:
            scripted = self._queue.popleft() if self._queue else None
        if scripted is None and self.reply_fn is not None:
            scripted = _Scripted(200, {
                "id": "", "type": "message", "role": "assistant", "model": "",
                "content": [{"type": "text", "text": self.reply_fn(body)}],
                "stop_reason": "end_turn", "stop_sequence": None}, {})
        if scripted is None:
            # 400 is not retried by the SDK, so a missing script fails fast and visibly.
            return 400, _error_body("invalid_request_error",
                                    "stand-in: no scripted response left", ""), {}
        out = copy.deepcopy(scripted.body)
        if out.get("type") == "message":
            out["id"] = self._next_id("msg")
            out["model"] = body.get("model", "")
            for block in out["content"]:
                if block.get("type") == "tool_use" and not block.get("id"):
                    block["id"] = self._next_id("toolu")
            if "usage" not in out:
                out["usage"] = self._usage_for(body, out)
        return scripted.status, out, scripted.headers

    def _usage_for(self, request: dict[str, Any], response: dict[str, Any]) -> dict[str, int]:
        total = _tokens([request.get("tools"), request.get("system"), request.get("messages")])
        prefix = _cache_prefix(request)
        created = read = 0
        if prefix is not None:
            size = min(_tokens(prefix), total)
            key = hashlib.sha256(json.dumps(prefix, sort_keys=True).encode()).hexdigest()
            with self._lock:
                seen = key in self._seen_prefixes
                self._seen_prefixes.add(key)
            created, read = (0, size) if seen else (size, 0)
        return {
            "input_tokens": max(total - created - read, 1),
            "output_tokens": _tokens(response["content"]),
            "cache_creation_input_tokens": created,
            "cache_read_input_tokens": read,
        }

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        standin = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass  # keep pytest output clean

            def _send(self, status: int, body: dict[str, Any],
                      headers: dict[str, str] | None = None) -> None:
                request_id = standin._next_id("req")
                if body.get("type") == "error":
                    body = {**body, "request_id": request_id}
                payload = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(payload)))
                self.send_header("request-id", request_id)
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(payload)

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body: Any = json.loads(raw) if raw else None
                except json.JSONDecodeError:
                    body = None
                path = urlsplit(self.path).path
                with standin._lock:
                    standin.requests.append(RecordedRequest(
                        "POST", path, {k.lower(): v for k, v in self.headers.items()}, body))
                if not api_key_of(self.headers):
                    self._send(401, _error_body("authentication_error",
                                                "x-api-key header is required", ""))
                    return
                if not self.headers.get("anthropic-version"):
                    self._send(400, _error_body("invalid_request_error",
                                                "anthropic-version header is required", ""))
                    return
                if path == "/v1/messages/count_tokens":
                    if not standin.count_tokens_available:
                        self._send(404, _error_body("not_found_error", "Not Found", ""))
                        return
                    tokens = _tokens([body.get("tools"), body.get("system"), body.get("messages")])
                    self._send(200, {"input_tokens": tokens})
                    return
                if path != "/v1/messages":
                    self._send(404, _error_body("not_found_error", "Not Found", ""))
                    return
                problem = _validate_messages_request(body)
                if problem is not None:
                    self._send(400, _error_body("invalid_request_error", problem, ""))
                    return
                status, out, headers = standin._respond_messages(body)
                self._send(status, out, headers)

        return Handler
