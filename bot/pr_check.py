"""The gate on a pull request that changes prompts: validation, then the offline eval.

Runs for every PR (a person's too), from the `pull_request` event. On a fork the
token is read-only: nothing is written and the job's exit code is the gate.
"""

from __future__ import annotations

from pathlib import Path

from bot.app import Context
from bot.core.events import Plan
from bot.load.check import check_paths

STATUS_CONTEXT = "promptbot/eval"


def changed_files(ctx: Context, base_sha: str) -> list[str]:
    return ctx.git.changed_paths(base_sha) if base_sha and ctx.git.sha(base_sha) else []


def check_pr(ctx: Context, plan: Plan, out: object) -> None:
    from bot.events import Outcome

    assert isinstance(out, Outcome)
    changed = [p for p in changed_files(ctx, plan.before)
               if p.startswith(("prompts/", "policies/"))]
    if not changed:
        out.actions.append("no prompt or policy file changed; nothing to check")
        return
    findings = check_paths(ctx.root, [ctx.root / Path(p) for p in changed
                                      if (ctx.root / p).exists()])
    for f in findings:
        out.errors.append(f.render())
    out.actions.append(f"checked {len(changed)} changed file(s): "
                       f"{'all valid' if not findings else f'{len(findings)} problem(s)'}")
