"""What one GitHub event asks of the bot, decided from the payload alone (sans I/O).

`classify` reads a webhook/Actions payload defensively — any field may be missing,
null or of the wrong type — and returns a `Plan`: which handler runs, on which PR or
commits, and why. Every event it does not act on is ignored with a reason, so the
workflow log always says what happened.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from bot.core import dashboard
from bot.core.commands import Command, denied_reply, is_bot, may_command, parse

CYCLE, DEPLOY, CLOSED, CHECK, COMMAND, DENY, IGNORE = (
    "cycle", "deploy", "closed", "check", "command", "deny", "ignore")
ZERO_SHA = "0" * 40
PR_CHECK_ACTIONS = ("opened", "synchronize", "reopened", "ready_for_review")


@dataclass(frozen=True)
class Plan:
    event: str  # e.g. "pull_request.closed"
    handler: str  # one of the constants above
    reason: str
    pr: int | None = None
    actor: str = ""
    command: Command | None = None
    before: str = ""  # push range, or the PR's base sha
    after: str = ""  # push head, the PR head or its merge commit
    branch: str = ""  # the PR's head branch
    base: str = ""  # the PR's base branch
    fork: bool = False  # the PR comes from another repository: read-only token, no writes
    bot_pr: bool = False  # the PR is on a promptbot/ branch
    reply: str = ""  # the one answer a person gets when they may not command
    steps: tuple[str, ...] = field(default=())

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"event": self.event, "handler": self.handler,
                               "reason": self.reason, "steps": list(self.steps)}
        for key in ("pr", "actor", "before", "after", "branch", "base"):
            value = getattr(self, key)
            if value:
                out[key] = value
        if self.fork:
            out["fork"] = True
        if self.command is not None:
            out["command"] = {"name": self.command.name, "argument": self.command.argument,
                              "note": self.command.note}
        return out


def get(data: object, *path: str) -> Any:
    """`data[a][b]...`, or None as soon as a level is missing or not an object."""
    for key in path:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


def text(data: object, *path: str) -> str:
    value = get(data, *path)
    return value if isinstance(value, str) else ""


def number(data: object, *path: str) -> int | None:
    value = get(data, *path)
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 \
        else None


def classify(name: str, payload: object, *, base_branch: str, bot_login: str) -> Plan:
    action = text(payload, "action")
    event = f"{name}.{action}" if action else name
    if not isinstance(payload, dict):
        return Plan(event, IGNORE, "the event payload is not a JSON object")
    if name in ("schedule", "workflow_dispatch"):
        return Plan(event, CYCLE, "scheduled or manual cycle",
                    steps=("sync, measure deployed proposals, analyze, propose, write reports",))
    if name == "push":
        return _push(event, payload, base_branch)
    if name == "pull_request":
        return _pull_request(event, action, payload, base_branch)
    if name == "issue_comment":
        return _comment(event, action, payload, bot_login)
    if name == "issues":
        return _issue(event, action, payload, bot_login)
    if name == "pull_request_target":
        return Plan(event, IGNORE, "promptbot never runs on pull_request_target: it would run "
                    "with a write token next to untrusted code; use pull_request")
    reasons = {
        "pull_request_review": "reviews are read when the PR is merged or closed",
        "check_run": "check results of other tools are not promptbot's to act on",
        "check_suite": "check results of other tools are not promptbot's to act on",
        "status": "commit statuses (including promptbot's own) need no action",
        "workflow_run": "promptbot acts on the events themselves, not on workflow runs",
    }
    return Plan(event, IGNORE, reasons.get(name, f"promptbot does not handle '{name[:60]}' "
                                           "events"))


def _issue(event: str, action: str, payload: dict[str, Any], bot_login: str) -> Plan:
    """A box ticked on the dashboard: the cycle reads the boxes back (any other issue edit,
    or the bot's own, is nothing to act on)."""
    if action != "edited":
        return Plan(event, IGNORE, f"issues.{action[:40] or '?'}: only an edited dashboard "
                    "matters")
    if text(payload, "issue", "user", "login") != bot_login:
        return Plan(event, IGNORE, "the issue is not the bot's dashboard")
    if text(payload, "sender", "login") == bot_login:
        return Plan(event, IGNORE, "the bot's own edit of its dashboard")
    body = text(payload, "issue", "body")
    if dashboard.START not in body:
        return Plan(event, IGNORE, "the issue is not the bot's dashboard")
    if not dashboard.commands(body):
        return Plan(event, IGNORE, "the dashboard was edited, but no box is ticked")
    return Plan(event, CYCLE, "a box was ticked on the dashboard",
                steps=("read the ticked boxes, then the whole cycle",))


def _push(event: str, payload: dict[str, Any], base_branch: str) -> Plan:
    ref = text(payload, "ref")
    before, after = text(payload, "before"), text(payload, "after")
    if not ref.startswith("refs/heads/"):
        return Plan(event, IGNORE, f"push to '{ref[:80] or '?'}' is not a branch")
    branch = ref.removeprefix("refs/heads/")
    if branch != base_branch:
        return Plan(event, IGNORE, f"push to '{branch[:80]}', not the base branch "
                    f"'{base_branch}': nothing is deployed")
    if get(payload, "deleted") is True or after in ("", ZERO_SHA):
        return Plan(event, IGNORE, "the base branch was deleted")
    return Plan(event, DEPLOY, f"push to '{base_branch}': what changed is deployed now",
                before="" if before == ZERO_SHA else before, after=after, base=base_branch,
                steps=("record the agent versions this push deployed",
                       "label merged proposals as measuring and note the deploy time"))


def _pull_request(event: str, action: str, payload: dict[str, Any], base_branch: str) -> Plan:
    pr = number(payload, "pull_request", "number") or number(payload, "number")
    if pr is None:
        return Plan(event, IGNORE, "the payload names no pull request")
    head_repo = text(payload, "pull_request", "head", "repo", "full_name")
    base_repo = text(payload, "pull_request", "base", "repo", "full_name")
    branch = text(payload, "pull_request", "head", "ref")
    base = text(payload, "pull_request", "base", "ref")
    # A deleted fork has head.repo null: treat it as a fork (no writes).
    fork = not head_repo or bool(base_repo and head_repo != base_repo)
    plan = Plan(event, IGNORE, "", pr=pr, branch=branch, base=base, fork=fork,
                bot_pr=branch.startswith("promptbot/"), actor=text(payload, "sender", "login"))
    if base and base != base_branch:
        return replace(plan, reason=f"PR #{pr} targets '{base[:80]}', not '{base_branch}'")
    if action == "closed":
        if get(payload, "pull_request", "merged") is True:
            return replace(plan, handler=DEPLOY, reason=f"PR #{pr} merged: merge time is "
                           "deploy time", after=text(payload, "pull_request", "merge_commit_sha"),
                           steps=(f"record the deploy of #{pr}",
                                  "label it measuring if it is a promptbot proposal"))
        if not plan.bot_pr:
            return replace(plan, reason=f"PR #{pr} closed unmerged; it is not a promptbot "
                           "proposal, nothing to record")
        return replace(plan, handler=CLOSED, reason=f"proposal PR #{pr} closed unmerged: "
                       "rejected", steps=(f"label #{pr} rejected; its proposal id is not "
                                          "proposed again",))
    if action in PR_CHECK_ACTIONS:
        gate = "commit status promptbot/eval"
        if fork:
            gate += " (skipped for a fork: read-only token; the job's exit code gates)"
        return replace(plan, handler=CHECK, reason=f"PR #{pr} {action}: validate and evaluate "
                       "changed prompts", before=text(payload, "pull_request", "base", "sha"),
                       after=text(payload, "pull_request", "head", "sha"),
                       steps=("promptbot check on the changed files",
                              "offline eval of changed agents against the base", gate))
    return replace(plan, reason=f"pull_request '{action[:40] or '?'}' needs no action")


def _comment(event: str, action: str, payload: dict[str, Any], bot_login: str) -> Plan:
    pr = number(payload, "issue", "number")
    login = get(payload, "comment", "user", "login")
    actor = login if isinstance(login, str) else ""
    if action != "created":
        return Plan(event, IGNORE, "only new comments command promptbot; edited or deleted "
                    "ones do not (post a new comment)", pr=pr, actor=actor)
    if get(payload, "issue", "pull_request") is None or pr is None:
        return Plan(event, IGNORE, "comment on an issue, not a pull request", pr=pr, actor=actor)
    command = parse(get(payload, "comment", "body"))
    if command is None:
        return Plan(event, IGNORE, "no /promptbot command in the comment", pr=pr, actor=actor)
    user_type = get(payload, "comment", "user", "type")
    if is_bot(user_type, login, bot_login):
        return Plan(event, IGNORE, "comments by bots never command promptbot", pr=pr,
                    actor=actor, command=command)
    association = get(payload, "comment", "author_association")
    if not may_command(association, user_type, login, bot_login):
        return Plan(event, DENY, f"{actor or 'the commenter'} ({association or 'no association'})"
                    " has no write access", pr=pr, actor=actor, command=command,
                    reply=denied_reply(actor),
                    steps=("reply once (edited, never repeated) that only writers can command",))
    return Plan(event, COMMAND, f"/promptbot {command.name} by {actor}", pr=pr, actor=actor,
                command=command, steps=(f"run /promptbot {command.name} on #{pr}",
                                        "answer in one comment, edited on repeats"))
