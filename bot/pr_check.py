"""The gate on a pull request: validation, then the offline eval of the changed agents.

Runs for every PR — a person's as well as the bot's — from the `pull_request` event, and
always ends in one `promptbot/eval` commit status on the PR's head, so branch protection
can require it (a PR that changes no prompt gets a passing one). The policy and the cases
come from the base: a PR cannot relax the gate that judges it. The table goes into one
PR comment, edited in place, after the status (the comment is a courtesy, the status is
the gate). On a fork, or with `--read-only`, nothing is written and the job's exit code
is the gate.
"""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Literal

from bot.app import EVAL_STATUS, Context
from bot.core import markers
from bot.core.eval_render import render_eval_markdown
from bot.core.evaluation import commit_status
from bot.core.events import Plan
from bot.edges.git import GitTree
from bot.errors import ForgeError
from bot.load.check import check_paths
from bot.load.repo import WorkingTree, load_policy, tests_path

if TYPE_CHECKING:
    from bot.events import Outcome

State = Literal["success", "failure"]


def changed_agents(paths: list[str]) -> list[str]:
    """Agents whose agent.yaml or tests.yaml the PR changes."""
    out = []
    for path in paths:
        parts = PurePosixPath(path).parts
        if len(parts) == 3 and parts[0] == "prompts" and parts[2] in ("agent.yaml",
                                                                        "tests.yaml"):
            out.append(parts[1])
    return sorted(set(out))


def merge_base(ctx: Context, plan: Plan) -> str:
    """What the PR is compared with. Actions checks out refs/pull/N/merge, a merge of the
    head into the base as it is now: its first parent is that base, which the payload's
    base.sha may no longer be (the base moved since the PR was opened)."""
    head = ctx.git.sha("HEAD")
    parents = ctx.git.parents(head) if head else []
    if len(parents) == 2 and parents[1] == plan.after:
        return parents[0]
    return plan.before


def check_pr(ctx: Context, plan: Plan, out: Outcome) -> None:
    from bot.eval_run import run_eval_with

    base = merge_base(ctx, plan)
    if not base or ctx.git.sha(base) is None:
        out.errors.append(f"the PR's base commit {base[:12] or '?'} is not in this checkout\n"
                          "  fix: check out with `fetch-depth: 0`")
        _status(ctx, plan, out, "failure", "base commit missing from the checkout")
        return
    policy = load_policy(GitTree(ctx.git, base))
    changed = ctx.git.changed_paths(base)
    ours = [p for p in changed if p.startswith(("prompts/", "policies/"))]
    if not ours:
        out.actions.append("no prompt or policy file changed; nothing to check")
        _status(ctx, plan, out, "success", "no prompt or policy change")
        return
    # YAML only: recordings (.jsonl) and results files are data, not configuration.
    findings = check_paths(ctx.root, [ctx.root / p for p in ours if (ctx.root / p).exists()
                                      and p.endswith((".yaml", ".yml"))])
    for f in findings:
        out.errors.append(f.render())
    out.actions.append(f"checked {len(ours)} changed file(s): "
                       + (f"{len(findings)} problem(s)" if findings else "all valid"))
    if findings:
        _status(ctx, plan, out, "failure", f"{len(findings)} invalid file(s): see the job log")
        return
    work, at_base = WorkingTree(ctx.root), GitTree(ctx.git, base)
    agents = [a for a in changed_agents(ours)
              if work.read(f"prompts/{a}/agent.yaml") is not None
              and (work.read(tests_path(a)) is not None
                   or at_base.read(tests_path(a)) is not None)]
    if not agents:
        out.actions.append("no changed agent has a tests.yaml; no offline eval")
        state: State = "failure" if policy.eval.require_replies and changed_agents(ours) \
            else "success"
        _status(ctx, plan, out, state, "valid; no eval cases for the changed agents")
        return
    run = run_eval_with(ctx.root, agents, base, record=False, live=ctx.eval_live,
                        gate_from_base=True)
    states = [commit_status(r.gate, policy.eval.require_replies) for r in run.reports]
    failing = [r.agent for r, (s, _) in zip(run.reports, states, strict=True) if s == "failure"]
    state = "failure" if failing else "success"
    description = states[0][1] if len(states) == 1 else (
        f"{len(failing)} of {len(states)} agents fail: {', '.join(failing)}" if failing
        else f"{len(states)} agents pass")
    for r in run.reports:
        out.actions.append(f"eval {r.agent}: {r.gate.state} — {r.gate.description}")
    if policy != load_policy(work):
        out.actions.append("this PR changes policies/promptbot.yaml: judged by the base's policy")
    _status(ctx, plan, out, state, description)
    if plan.fork or plan.pr is None:
        return
    tables = "\n\n".join(render_eval_markdown(r) for r in run.reports)
    body = markers.attach(f"### promptbot offline eval\n\n{tables}", {"kind": "eval"})
    try:
        ctx.forge.upsert_comment(plan.pr, "eval", body)
    except ForgeError as exc:
        out.actions.append(f"eval table not posted ({exc.message[:120]}); the status stands")


def _status(ctx: Context, plan: Plan, out: Outcome, state: State, description: str) -> None:
    if state == "failure":
        out.failed = True
    if plan.fork or not plan.after:
        out.actions.append(f"{EVAL_STATUS}: {state} ({description}); read-only: the exit code "
                           "gates")
        return
    ctx.forge.set_status(plan.after, state, description[:140], EVAL_STATUS)
    out.actions.append(f"status {EVAL_STATUS}: {state} on {plan.after[:12]}")
