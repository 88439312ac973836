"""The gate on a pull request that changes prompts: validation, then the offline eval.

Runs for every PR that changes prompts — a person's as well as the bot's — from the
`pull_request` event. The table goes into one PR comment (edited in place) and the
gate into the `promptbot/eval` commit status on the PR's head; on a fork the token is
read-only, so nothing is written and the job's exit code is the gate.
"""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Literal

from bot.app import EVAL_STATUS, Context
from bot.core import markers
from bot.core.eval_render import render_eval_markdown
from bot.core.evaluation import commit_status
from bot.core.events import Plan
from bot.load.check import check_paths
from bot.load.repo import WorkingTree, load_policy

if TYPE_CHECKING:
    from bot.events import Outcome


def changed_agents(paths: list[str]) -> list[str]:
    """Agents whose agent.yaml or tests.yaml the PR changes."""
    out = []
    for path in paths:
        parts = PurePosixPath(path).parts
        if len(parts) == 3 and parts[0] == "prompts" and parts[2] in ("agent.yaml",
                                                                        "tests.yaml"):
            out.append(parts[1])
    return sorted(set(out))


def check_pr(ctx: Context, plan: Plan, out: Outcome) -> None:
    from bot.eval_run import run_eval_with

    if not plan.before or ctx.git.sha(plan.before) is None:
        out.errors.append(f"the PR's base commit {plan.before[:12] or '?'} is not in this "
                          "checkout\n  fix: check out with `fetch-depth: 0`")
        return
    changed = ctx.git.changed_paths(plan.before)
    ours = [p for p in changed if p.startswith(("prompts/", "policies/"))]
    if not ours:
        out.actions.append("no prompt or policy file changed; nothing to check")
        return
    # YAML only: recordings (.jsonl) and results files are data, not configuration.
    findings = check_paths(ctx.root, [ctx.root / p for p in ours if (ctx.root / p).exists()
                                      and p.endswith((".yaml", ".yml"))])
    for f in findings:
        out.errors.append(f.render())
    out.actions.append(f"checked {len(ours)} changed file(s): "
                       + (f"{len(findings)} problem(s)" if findings else "all valid"))
    if findings:
        return
    work = WorkingTree(ctx.root)
    agents = [a for a in changed_agents(ours)
              if work.read(f"prompts/{a}/tests.yaml") is not None
              and work.read(f"prompts/{a}/agent.yaml") is not None]
    if not agents:
        out.actions.append("no changed agent has a tests.yaml; no offline eval")
        return
    policy = load_policy(work)
    run = run_eval_with(ctx.root, agents, plan.before, record=False, live=ctx.eval_live)
    tables = "\n\n".join(render_eval_markdown(r) for r in run.reports)
    states = [commit_status(r.gate, policy.eval.require_replies) for r in run.reports]
    state: Literal["success", "failure"] = \
        "failure" if any(s == "failure" for s, _ in states) else "success"
    description = "; ".join(d for _, d in states) if len(states) == 1 else \
        f"{sum(s == 'failure' for s, _ in states)} of {len(states)} agents regress: " + \
        ", ".join(r.agent for r, (s, _) in zip(run.reports, states, strict=True) if s == "failure")
    for r in run.reports:
        out.actions.append(f"eval {r.agent}: {r.gate.state} — {r.gate.description}")
    if state == "failure":
        out.failed = True
    if plan.fork or plan.pr is None:
        out.actions.append("fork PR: read-only token, no comment or status; the exit code gates")
        return
    body = markers.attach(f"### promptbot offline eval\n\n{tables}", {"kind": "eval"})
    ctx.forge.upsert_comment(plan.pr, "eval", body)
    ctx.forge.set_status(plan.after, state, description[:140], EVAL_STATUS)
    out.actions.append(f"status {EVAL_STATUS}: {state} on {plan.after[:12]}")
