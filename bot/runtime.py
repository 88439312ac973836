"""Serve the merged prompt: an agent service loads it from `prompts/`, stamps its version.

    from bot.runtime import load_agent

    agent = load_agent("/srv/prompts", "support-triage")   # cached; re-read when files change
    prompt = agent.choose(request_key=ticket_id)           # the variant this request gets
    request = prompt.render(ticket=ticket)                 # system + messages, few-shot turns
    reply = anthropic_client.messages.create(**request.anthropic())
    span.set_attributes(prompt.attributes())               # prompt.version for promptbot

`root` is a checkout of the prompts repository (or the `prompts/` folder a deploy step
copied). The version is the one `promptbot version` prints: bot/core/version.py computes
it from the same fields. During a canary (`prompts/<agent>/rollout.yaml`, written by a
merged canary PR) `choose` splits requests by key between the baseline and the candidate
(bot/core/rollout.py); without one, every request gets agent.yaml.

Start-up is part of a service's deploy, so this module imports PyYAML and little of the
standard library (no dataclasses, pathlib or logging at import); Jinja2 comes with the
first render. No pydantic, DuckDB, numpy, anthropic or git (a test holds it to that).
Templates compile on first use and render in Jinja2's sandbox, leniently (a missing
optional variable is empty), exactly as the offline eval renders them; `promptbot check`
has compiled them before they reached `main`.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Mapping
from typing import Any

import yaml

from bot.core import rollout as assign
from bot.core.ids import is_safe_id
from bot.core.version import FieldError, fields_from_yaml, version_of

__all__ = ["Agent", "LoadError", "Prompt", "RenderError", "Request", "Rollout", "load_agent"]

try:  # the C loader is several times faster; fall back when libyaml is missing
    _Loader: type[yaml.SafeLoader] = yaml.CSafeLoader  # type: ignore[assignment]
except AttributeError:  # pragma: no cover - depends on the build
    _Loader = yaml.SafeLoader

AGENT_FILE = "agent.yaml"
ROLLOUT_FILE = "rollout.yaml"
RETRY_SECONDS = 1.0  # after a failed reload, how long the last good load serves unasked


class LoadError(ValueError):
    """An agent that cannot be served: names the file, the field and the fix."""


class RenderError(ValueError):
    """The user template failed for these inputs: names the variable or the operation."""


def _render(template: str, inputs: Mapping[str, Any]) -> str:
    # Jinja2 costs tens of ms to import: paid by the first render, not by start-up.
    from bot.core import templating

    try:
        return templating.render(template, dict(inputs), strict=False)
    except templating.RenderError as exc:
        raise RenderError(str(exc)) from None


class Request:
    """One model request, in the shape both Anthropic's and OpenAI's APIs take."""

    __slots__ = ("max_tokens", "messages", "model", "system", "temperature", "tools")

    def __init__(self, model: str, temperature: float, max_tokens: int, system: str,
                 messages: tuple[dict[str, str], ...],
                 tools: tuple[dict[str, Any], ...] = ()) -> None:
        self.model = model
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.system = system
        self.messages = messages  # {"role": "user" | "assistant", "content": text}
        self.tools = tools

    def __repr__(self) -> str:
        return f"Request(model={self.model!r}, messages={len(self.messages)})"

    def anthropic(self) -> dict[str, Any]:
        """Keyword arguments for `anthropic.Anthropic().messages.create(**...)`.

        No `temperature`: Messages API version 2026-10-21 refuses sampling parameters and
        the SDK requirements.lock installs no longer takes them. With an older SDK, add
        `temperature=request.temperature` yourself. The version hash counts it either way.
        """
        kwargs: dict[str, Any] = {
            "model": self.model, "max_tokens": self.max_tokens, "system": self.system,
            "messages": [dict(m) for m in self.messages]}
        if self.tools:
            kwargs["tools"] = [{"name": t["name"], "description": t["description"],
                                "input_schema": {"type": "object", **t["parameters"]}}
                               for t in self.tools]
        return kwargs

    def openai(self) -> dict[str, Any]:
        """Keyword arguments for `openai.OpenAI().chat.completions.create(**...)`."""
        kwargs: dict[str, Any] = {
            "model": self.model, "max_completion_tokens": self.max_tokens,
            "temperature": self.temperature,
            "messages": [{"role": "system", "content": self.system},
                         *(dict(m) for m in self.messages)]}
        if self.tools:
            kwargs["tools"] = [{"type": "function", "function": {
                "name": t["name"], "description": t["description"],
                "parameters": {"type": "object", **t["parameters"]}}} for t in self.tools]
        return kwargs


class Prompt:
    """One version of an agent's prompt: what a request is served."""

    def __init__(self, agent_id: str, fields: Mapping[str, Any], variant: str = "current",
                 rollout_id: str | None = None) -> None:
        self.agent_id = agent_id
        self.fields = fields  # canonical fields (bot/core/version.py)
        self.version = version_of(fields)
        self.variant = variant  # "current"; "baseline" or "candidate" during a canary
        self.rollout_id = rollout_id
        self._shots: tuple[dict[str, str], ...] | None = None

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({self.agent_id!r}, version={self.version!r}, "
                f"variant={self.variant!r})")

    @property
    def model(self) -> Mapping[str, Any]:
        """`name`, `temperature`, `max_tokens`."""
        model: Mapping[str, Any] = self.fields["model"]
        return model

    @property
    def system(self) -> str:
        system: str = self.fields["prompts"]["system"]
        return system

    @property
    def user_template(self) -> str:
        template: str = self.fields["prompts"]["user_template"]
        return template

    @property
    def shots(self) -> tuple[dict[str, str], ...]:
        """The few-shot examples as earlier turns (a structured example input rendered with
        the user template, as the offline eval does)."""
        if self._shots is None:
            turns: list[dict[str, str]] = []
            for i, example in enumerate(self.fields["examples"]):
                given = example["input"]
                try:
                    text = (given if isinstance(given, str)
                            else _render(self.user_template, given))
                except RenderError as exc:
                    raise RenderError(f"{self.agent_id}: examples[{i}].input: {exc}") from None
                turns += [{"role": "user", "content": text},
                          {"role": "assistant", "content": example["output"]}]
            self._shots = tuple(turns)
        return self._shots

    def render(self, **inputs: Any) -> Request:
        """The request for these template variables; raises RenderError when the template
        fails (it names the variable or the operation)."""
        user = _render(self.user_template, inputs)
        if not user.strip():
            raise RenderError(f"{self.agent_id}: the user message rendered empty (the model API "
                              "refuses an empty turn): pass the template's variables")
        model = self.model
        return Request(model["name"], model["temperature"], model["max_tokens"], self.system,
                       (*self.shots, {"role": "user", "content": user}),
                       tuple(self.fields["tools"]))

    def attributes(self) -> dict[str, str | int | float]:
        """Span attributes: OpenTelemetry GenAI names plus `prompt.version`, which
        promptbot's OTel reader takes as the execution's prompt version."""
        attrs: dict[str, str | int | float] = {
            "gen_ai.agent.name": self.agent_id,
            "gen_ai.request.model": self.model["name"],
            "gen_ai.request.temperature": self.model["temperature"],
            "gen_ai.request.max_tokens": self.model["max_tokens"],
            "prompt.version": self.version,
        }
        if self.rollout_id is not None:
            attrs["promptbot.rollout"] = self.rollout_id
            attrs["promptbot.variant"] = self.variant
        return attrs


class Rollout:
    """A canary in progress (`prompts/<agent>/rollout.yaml`)."""

    def __init__(self, rollout_id: str, share: float, baseline: Prompt,
                 stages: tuple[float, ...] = ()) -> None:
        self.id = rollout_id
        self.share = share  # percent of request keys served the candidate
        self.baseline = baseline
        self.stages = stages

    def __repr__(self) -> str:
        return f"Rollout({self.id!r}, share={self.share}, baseline={self.baseline.version!r})"


class Agent(Prompt):
    """The agent as `agent.yaml` has it (the candidate during a canary)."""

    def __init__(self, agent_id: str, fields: Mapping[str, Any],
                 rollout: Rollout | None = None) -> None:
        super().__init__(agent_id, fields, "candidate" if rollout else "current",
                         rollout.id if rollout else None)
        self.rollout = rollout

    def choose(self, request_key: str | None = None) -> Prompt:
        """The prompt this request is served. With a canary, a request key (a user, session
        or ticket id: whatever should see one variant throughout) picks the variant, the
        same one every time; without a key each call is a fresh random pick."""
        if self.rollout is None:
            return self
        key = request_key if request_key is not None else os.urandom(8).hex()
        if assign.variant(self.rollout.id, key, self.rollout.share) == "candidate":
            return self
        return self.rollout.baseline


# ------------------------------------------------------------------ loading


def _read_yaml(path: str, missing_ok: bool = False) -> Any:
    """The parsed file; None when it does not exist and `missing_ok`. Every failure is a
    LoadError, so a reload that fails keeps the last good version serving."""
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except FileNotFoundError:
        if missing_ok:
            return None
        raise LoadError(f"{path}: no such agent file; is {os.path.dirname(os.path.dirname(path))}"
                        " the prompts folder of a checkout (or a copy of it)?") from None
    except UnicodeDecodeError as exc:
        raise LoadError(f"{path}: not UTF-8 text ({exc.reason}); save it as UTF-8") from None
    except OSError as exc:
        raise LoadError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    try:
        return yaml.load(text, Loader=_Loader)  # _Loader is SafeLoader-based
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        raise LoadError(f"{path}{where}: not valid YAML ({getattr(exc, 'problem', exc)}); "
                        "run `promptbot check` in the prompts repository") from None
    except RecursionError:
        raise LoadError(f"{path}: nested too deeply to be an agent file") from None


def _fields(data: Any, path: str) -> Mapping[str, Any]:
    try:
        return fields_from_yaml(data)
    except FieldError as exc:
        raise LoadError(f"{path}: {exc.path}: {exc.message}; run `promptbot check`") from None


def _rollout(agent_id: str, data: Any, candidate: str, path: str) -> Rollout:
    try:
        plan = assign.parse_rollout(data, candidate)
    except FieldError as exc:
        raise LoadError(f"{path}: {exc.path}: {exc.message}") from None
    baseline = Prompt(agent_id, plan.baseline, "baseline", plan.rollout_id)
    return Rollout(plan.rollout_id, plan.share, baseline, plan.stages)


def _load(folder: str, agent_id: str) -> Agent:
    # Both files from one revision: a deploy that swaps a symlink between the two reads
    # must not pair one revision's agent.yaml with another's rollout file.
    folder = os.path.realpath(folder)
    path = os.path.join(folder, AGENT_FILE)
    data = _read_yaml(path)
    if isinstance(data, Mapping) and data.get("id") != agent_id:
        raise LoadError(f"{path}: id is {data.get('id')!r}, not the folder name {agent_id!r}")
    fields = _fields(data, path)
    plan = None
    rollout_path = os.path.join(folder, ROLLOUT_FILE)
    rollout = _read_yaml(rollout_path, missing_ok=True)
    if rollout is not None:
        plan = _rollout(agent_id, rollout, version_of(fields), rollout_path)
    return Agent(agent_id, fields, plan)


# --------------------------------------------------------------- the cache

Stamp = tuple[tuple[int, int, int] | None, ...]


class _Entry:
    __slots__ = ("agent", "failed_at", "stamp")

    def __init__(self, stamp: Stamp, agent: Agent) -> None:
        self.stamp = stamp
        self.agent = agent
        self.failed_at = 0.0


_cache: dict[tuple[str, str], _Entry] = {}
_lock = threading.Lock()


def _stamp(folder: str) -> Stamp:
    out: list[tuple[int, int, int] | None] = []
    for name in (AGENT_FILE, ROLLOUT_FILE):
        try:
            st = os.stat(os.path.join(folder, name))
        except FileNotFoundError:
            out.append(None)
        else:
            out.append((st.st_mtime_ns, st.st_size, st.st_ino))
    return tuple(out)


def _folder(root: str | os.PathLike[str], agent_id: str) -> str:
    if not isinstance(agent_id, str) or not is_safe_id(agent_id):
        raise LoadError(f"agent id {agent_id!r}: use the folder name under prompts/ "
                        "(lowercase letters, digits, -)")
    base = os.fspath(root)
    # A checkout has prompts/<agent>/; a copied prompts folder has <agent>/ (and an agent
    # may be called "prompts": look for the agent's folder, not the prompts folder).
    checkout = os.path.join(base, "prompts", agent_id)
    if os.path.isdir(checkout):
        return checkout
    return os.path.join(base, agent_id)


def _log_kept(agent: Agent, error: LoadError) -> None:
    import logging

    logging.getLogger("promptbot.runtime").error(
        "promptbot: keeps serving %s version %s: %s", agent.agent_id, agent.version, error)


def load_agent(root: str | os.PathLike[str], agent_id: str) -> Agent:
    """The agent as the files under `root` have it now.

    Parsed once and kept; a call re-reads the files only when one changed (size, time or
    inode), so calling this per request costs two `stat`s (and no lock while nothing
    changed). When a re-read fails (a deploy half-written, a hand edit), the last good load
    keeps serving and the error is logged (logger `promptbot.runtime`); the files are tried
    again after RETRY_SECONDS. The first load raises LoadError.
    """
    folder = _folder(root, agent_id)
    # The path as given, not its realpath: a deploy that swaps a symlink (git-sync) changes
    # the files' inodes, which the stamp sees, without adding a cache entry per revision.
    key = (os.path.abspath(folder), agent_id)
    stamp = _stamp(folder)
    entry = _cache.get(key)
    if entry is not None and entry.stamp == stamp:
        return entry.agent
    with _lock:
        entry = _cache.get(key)
        if entry is not None and (entry.stamp == stamp
                                  or time.monotonic() - entry.failed_at < RETRY_SECONDS):
            return entry.agent
        try:
            agent = _load(folder, agent_id)
        except LoadError as exc:
            if entry is None:
                raise
            entry.failed_at = time.monotonic()
            _log_kept(entry.agent, exc)
            return entry.agent
        # Stamped before the read: a change during the read is seen on the next call.
        _cache[key] = _Entry(stamp, agent)
        return agent
