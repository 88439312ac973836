"""One GitHub event, handled: the shell around `bot.core.events.classify`.

One small handler per kind of event (as CPython's bots do). Each handler is
idempotent — comments are edited in place by their marker, labels compared
before they are set — so a re-delivered event or a re-run job changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import yaml

from bot import app
from bot.app import Context, RunReport, Tracked
from bot.core import markers, render
from bot.core.commands import denied_reply, help_text
from bot.core.evaluation import commit_status
from bot.core.events import CHECK, CLOSED, COMMAND, CYCLE, DENY, DEPLOY, Plan
from bot.core.proposals import Proposal, Skipped, proposal_id
from bot.core.results import (
    COMPLETED,
    MEASURING,
    PROPOSED,
    REJECTED,
    ROLLED_BACK,
    labels_for,
)
from bot.errors import PromptbotError
from bot.learning import learned_categories


@dataclass
class Outcome:
    plan: Plan
    actions: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    failed: bool = False  # the job should fail (e.g. the eval gate)

    def to_json(self) -> dict[str, Any]:
        return {**self.plan.to_json(), "actions": self.actions, "errors": self.errors,
                "failed": self.failed}


def handle(ctx: Context, plan: Plan, metrics: list[str] | None = None) -> Outcome:
    out = Outcome(plan)
    handler: Callable[[Context, Plan, Outcome, list[str] | None], None] | None = {
        CYCLE: _cycle, DEPLOY: _deploy, CLOSED: _closed, COMMAND: _command, DENY: _deny,
        CHECK: _check,
    }.get(plan.handler)
    if handler is None:
        return out
    try:
        handler(ctx, plan, out, metrics)
    except PromptbotError as exc:
        out.errors.append(exc.render())
    return out


def _label_prefix(ctx: Context) -> str:
    return app.base_tree(ctx)[2].policy.forge.label_prefix


def _final(labels: tuple[str, ...], prefix: str) -> bool:
    """The PR already carries a decided lifecycle label: an event never moves it back."""
    return any(labels_for(prefix, s)[1] in labels for s in (COMPLETED, ROLLED_BACK))


# ---------------------------------------------------------------- handlers


def _cycle(ctx: Context, plan: Plan, out: Outcome, metrics: list[str] | None) -> None:
    report = app.run(ctx, metrics)
    out.actions += report.actions
    out.errors += report.errors


def _deploy(ctx: Context, plan: Plan, out: Outcome, metrics: list[str] | None) -> None:
    """Merge time is deploy time: label merged proposals `measuring` and say so once."""
    base, base_sha, state = app.synced_tree(ctx)
    prefix = state.policy.forge.label_prefix
    shas = _pushed(ctx, plan, base_sha)
    report = RunReport()
    for t in app.tracked_prs(ctx):
        if t.kind != "proposal" or t.pr.state != "merged":
            continue
        if t.pr.number != plan.pr and t.pr.merge_sha not in shas:
            continue
        when = t.pr.merged_at.strftime("%Y-%m-%d %H:%M UTC") if t.pr.merged_at else "merge time"
        if t.marker.get("canary"):
            first = t.marker["canary"].split(",")[0]
            note = (f"Deployed as a canary: merged into `{base}` at {when} "
                    f"(`{(t.pr.merge_sha or '')[:12]}`); `prompts/{t.agent}/rollout.yaml` "
                    f"serves `{t.marker.get('new_version', '?')}` to {first} % of request keys "
                    f"and `{t.marker.get('base_version', '?')}` to the rest.\n\npromptbot "
                    "compares the two over the same hours on every cycle and opens a PR for "
                    "each next stage, then a promote or end-canary PR; the result is posted "
                    "here. `/promptbot rollback` ends the canary.")
        else:
            note = (f"Deployed: merged into `{base}` at {when} "
                    f"(`{(t.pr.merge_sha or '')[:12]}`); `{t.agent}` now runs version "
                    f"`{t.marker.get('new_version', '?')}`.\n\npromptbot compares equal "
                    "windows before and after this time on every cycle (at least "
                    f"{state.policy.measure.min_executions_per_arm} executions and "
                    f"{state.policy.measure.min_failures_per_arm} failures per side) and posts "
                    "the result here. `/promptbot measure` measures now; `/promptbot rollback` "
                    "undoes it.")
        body = markers.attach(note, {"kind": "deployed", "proposal_id": t.proposal_id})
        if ctx.forge.upsert_comment(t.pr.number, "deployed", body) != "unchanged":
            out.actions.append(f"#{t.pr.number} {t.agent}: deploy recorded ({when})")
        if not _final(t.pr.labels, prefix):
            app.ensure_labels(ctx, t.pr, labels_for(prefix, MEASURING), report, False)
    out.actions += report.actions
    for agent, old, new in _changed_agents(ctx, plan, base_sha):
        out.actions.append(f"{agent}: deployed version {new}" + (f" (was {old})" if old else ""))


def _pushed(ctx: Context, plan: Plan, base_sha: str) -> set[str]:
    if plan.handler != DEPLOY or plan.pr is not None:
        return {plan.after} if plan.after else set()
    if plan.before and ctx.git.sha(plan.before) is not None:
        return set(ctx.git.rev_list(plan.before, plan.after or base_sha))
    return {plan.after} if plan.after else set()


def _changed_agents(ctx: Context, plan: Plan, base_sha: str) -> list[tuple[str, str, str]]:
    after = plan.after if plan.after and ctx.git.sha(plan.after) else base_sha
    before = plan.before if plan.before and ctx.git.sha(plan.before) else None
    if before is None:
        parents = ctx.git.parents(after)
        before = parents[0] if parents else None
    out = []
    for path in ctx.git.ls(after, "prompts/"):
        if not path.endswith("/agent.yaml"):
            continue
        new = app.version_at(ctx, after, path)
        old = app.version_at(ctx, before, path) if before else None
        if new is not None and new != old:
            out.append((path.split("/")[1], old or "", new))
    return out


def _closed(ctx: Context, plan: Plan, out: Outcome, metrics: list[str] | None) -> None:
    t = _tracked(ctx, plan)
    if t is None:
        out.actions.append(f"#{plan.pr}: not a promptbot proposal; nothing recorded")
        return
    report = RunReport()
    app.ensure_labels(ctx, t.pr, labels_for(_label_prefix(ctx), t.closed_as), report, False)
    out.actions += report.actions or [f"#{t.pr.number}: already recorded as {t.closed_as}"]


def _deny(ctx: Context, plan: Plan, out: Outcome, metrics: list[str] | None) -> None:
    assert plan.pr is not None
    body = markers.attach(plan.reply, {"kind": "command-denied"})
    if ctx.forge.upsert_comment(plan.pr, "command-denied", body) != "unchanged":
        out.actions.append(f"#{plan.pr}: told {plan.actor} that only writers can command")


def _check(ctx: Context, plan: Plan, out: Outcome, metrics: list[str] | None) -> None:
    from bot.pr_check import check_pr

    check_pr(ctx, plan, out)


# ---------------------------------------------------------------- slash commands


def _command(ctx: Context, plan: Plan, out: Outcome, metrics: list[str] | None) -> None:
    command = plan.command
    assert command is not None and plan.pr is not None
    name = command.name
    if name == "help":
        note = command.note
        if command.extra:
            note = (note + "; " if note else "") + "only the first command of a comment runs"
        return _reply(ctx, plan, out, help_text(note))
    if not ctx.forge.can_write(plan.actor):
        # The association let the comment through; the permission level says no.
        return _deny(ctx, replace(plan, reply=denied_reply(plan.actor)), out, metrics)
    t = _tracked(ctx, plan)
    if t is None:
        return _reply(ctx, plan, out, f"#{plan.pr} is not a promptbot proposal, so "
                      f"`/promptbot {name}` does not apply here.\n\n" + help_text())
    try:
        answer = {"explain": _explain, "measure": _measure, "reject": _reject,
                  "rollback": _rollback, "regenerate": _regenerate}[name](ctx, plan, t, out,
                                                                          metrics)
    except PromptbotError as exc:
        # The person who asked hears why it did not work, not only the workflow log.
        out.errors.append(exc.render())
        answer = f"`/promptbot {name}` did not run: {_safe(exc.message)}"
        answer += f"\n\nWhat to do: {_safe(exc.fix)}" if exc.fix else ""
    except Exception as exc:  # a bug must still get the person an answer
        out.errors.append(f"internal error in /promptbot {name}: {type(exc).__name__}")
        answer = (f"`/promptbot {name}` failed with an internal error "
                  f"({type(exc).__name__}); the workflow run's log has the details.")
    if answer is None:
        return  # nothing new to say, and the earlier answer must stay as it was
    text = answer
    if command.extra:
        text += "\n\n(Only the first command of a comment runs.)"
    _reply(ctx, plan, out, text)


def _reply(ctx: Context, plan: Plan, out: Outcome, text: str) -> None:
    assert plan.pr is not None and plan.command is not None
    key = f"command-{plan.command.name}"
    body = markers.attach(f"@{plan.actor} {text}" if plan.actor else text, {"kind": key})
    outcome = ctx.forge.upsert_comment(plan.pr, key, body)
    if outcome != "unchanged":
        out.actions.append(f"#{plan.pr}: /promptbot {plan.command.name} answered ({outcome})")


def _tracked(ctx: Context, plan: Plan) -> Tracked | None:
    for t in app.tracked_prs(ctx):
        if t.pr.number == plan.pr and t.kind == "proposal":
            return t
    return None


def _record(ctx: Context, t: Tracked) -> dict[str, Any] | None:
    """The proposal file as committed on its branch (or in its merge)."""
    path = f"prompts/{t.agent}/proposals/{t.proposal_id}.yaml"
    ref = t.pr.merge_sha
    if ref is None:
        ref = ctx.git.fetch(t.pr.branch) if ctx.forge.name == "github" else None
        ref = ref or ctx.git.sha(f"refs/heads/{t.pr.branch}")
    text = ctx.git.read(ref, path) if ref else None
    try:
        data = yaml.safe_load(text) if text else None
    except yaml.YAMLError:
        return None
    return data if isinstance(data, dict) else None


def _explain(ctx: Context, plan: Plan, t: Tracked, out: Outcome,
             metrics: list[str] | None) -> str:
    data = _record(ctx, t)
    if data is None:
        return (f"the proposal file of `{t.proposal_id}` is missing or unreadable on "
                f"`{t.pr.branch}`; the PR description has the details.")
    problem = _mapping(data.get("problem"))
    effect = _mapping(data.get("expected_effect"))
    lines = [f"**Why {_safe(t.proposal_id)} exists** ({_safe(data.get('type'))}, "
             f"{_safe(t.agent)} {_safe(data.get('base_version'))} → "
             f"{_safe(data.get('new_version'))})", ""]
    if problem.get("template"):
        lines.append(f"- Evidence: {_safe(problem.get('error_type'))} — "
                     f"{_safe(problem.get('template'))}, {_safe(problem.get('count'))} "
                     f"failures, {render.pct(_number(problem.get('share')))} of executions "
                     f"({_safe(problem.get('executions'))} executions).")
    else:
        lines.append(f"- Evidence: {_safe(problem.get('kind'))} over "
                     f"{_safe(problem.get('executions'))} executions.")
    interval = effect.get("interval")
    low, high = interval if isinstance(interval, list) and len(interval) == 2 else (None, None)
    delta, low, high = (render.signed_pts(_number(v))
                        for v in (effect.get("success_rate_delta"), low, high))
    lines.append(f"- Expected: success rate {delta} ({low} … {high}), confidence "
                 f"{_safe(effect.get('confidence'))}; method: {_safe(effect.get('method'))}.")
    criteria = data.get("success_criteria")
    for criterion in criteria if isinstance(criteria, list) else []:
        lines.append(f"- Success criterion: {_safe(criterion)}")
    lines.append(f"- Rollback: {_safe(data.get('rollback_plan'))}")
    lines.append(f"\nFull record: `prompts/{t.agent}/proposals/{t.proposal_id}.yaml`.")
    return "\n".join(lines)


def _mapping(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _measure(ctx: Context, plan: Plan, t: Tracked, out: Outcome,
             metrics: list[str] | None) -> str:
    if t.pr.state != "merged":
        return f"`{t.proposal_id}` is {t.pr.state}, not deployed; nothing to measure yet."
    base, _, state = app.synced_tree(ctx)
    snapshot = app.load_metrics(ctx, state.policy, metrics)
    report = RunReport()
    results = app.measure_all(ctx, state, base, snapshot, [t], report, False)
    out.actions += report.actions
    out.errors += report.errors
    recorded = results.get(t.proposal_id)
    if recorded is None:
        return "measuring failed: " + _safe("; ".join(report.errors))
    if recorded.kept:
        return (f"the result on record stands ({recorded.state.replace('_', ' ')}): a final "
                "result is not rewritten by later traffic. The results comment above and "
                f"`prompts/{t.agent}/results/{t.proposal_id}.md` have the details.")
    return (f"measured now: **{recorded.result.headline}**. The results comment above and "
            f"`prompts/{t.agent}/results/{t.proposal_id}.md` have the details.")


def _reject(ctx: Context, plan: Plan, t: Tracked, out: Outcome,
            metrics: list[str] | None) -> str | None:
    assert plan.command is not None
    reason = _safe(plan.command.argument)
    if t.pr.state != "open":
        # Already decided (a redelivered or repeated command): keep the first answer, which
        # holds the reason.
        return None
    ctx.forge.set_state(t.pr.number, "closed")
    report = RunReport()
    app.ensure_labels(ctx, t.pr, labels_for(_label_prefix(ctx), REJECTED), report, False)
    out.actions.append(f"#{t.pr.number}: closed as rejected")
    return (f"rejected `{t.proposal_id}`: {reason}\n\npromptbot will not propose this id "
            "again; `/promptbot regenerate` on this PR asks for a fresh attempt.")


def _rollback(ctx: Context, plan: Plan, t: Tracked, out: Outcome,
              metrics: list[str] | None) -> str:
    pr, created = app.rollback(ctx, str(t.pr.number))
    out.actions.append(f"#{pr.number}: rollback PR {'opened' if created else 'already open'}")
    return (f"{'opened' if created else 'already open'}: #{pr.number} reverts this merge. "
            "Merging it deploys the previous version; the next cycle records the rollback.")


def _regenerate(ctx: Context, plan: Plan, t: Tracked, out: Outcome,
                metrics: list[str] | None) -> str:
    """Rebuild the proposal on the current base with the current generator and metrics.

    Only a branch that no person pushed to is rewritten (force-with-lease against the
    tip just checked), so a reviewer's commits are never thrown away.
    """
    if t.pr.state == "merged":
        return f"`{t.proposal_id}` is merged; `/promptbot rollback` undoes it."
    base, base_sha, state = app.synced_tree(ctx)
    remote = ctx.forge.name == "github" and ctx.git.has_remote()
    tip = ctx.git.fetch(t.pr.branch) if remote else ctx.git.sha(f"refs/heads/{t.pr.branch}")
    if tip is None:
        return (f"the branch `{t.pr.branch}` no longer exists, so there is nothing to rebuild "
                "on; close this PR and the next cycle proposes again.")
    if ctx.git.touched_by_people(f"refs/heads/{base}", tip):
        return ("someone pushed to this branch, so promptbot will not rewrite it. Revert or "
                "remove those commits first, or edit the prompt yourself.")
    loaded = state.agents.get(t.agent)
    if loaded is None:
        return f"`{t.agent}` no longer exists on `{base}`; close this PR."
    snapshot = app.load_metrics(ctx, state.policy, metrics)
    problems = [p for p in app.problems_for(loaded, snapshot, state.policy)
                if proposal_id(t.agent, loaded.version, p.signature) == t.proposal_id]
    if not problems:
        return ("the problem behind this proposal no longer shows in the metrics for the "
                f"current version of `{t.agent}`; nothing to regenerate. Close the PR, or let "
                "the next cycle supersede it.")
    report = RunReport()
    made = app.make_proposal(ctx, loaded, problems[0], state.policy,
                             app.history(ctx, base_sha), report,
                             learned_categories(ctx, base_sha, state, [], {}),
                             app.successful_cases(ctx, base_sha, loaded))
    if isinstance(made, Skipped):
        return f"no valid variant this time: {_safe(made.reason)}"
    proposal, section = app.choose(ctx, base, base_sha, loaded, made, state.policy, report)
    if proposal is None:
        return ("every regenerated candidate regresses the offline eval; this PR is left as "
                "it was. " + _safe("; ".join(report.skipped))[:300])
    body = app.pr_body(proposal, snapshot.window_days, section)
    if t.pr.state == "closed":
        # Closed = rejected, and the cycle never reopens it; a person asking is the exception.
        ctx.forge.set_state(t.pr.number, "open")
        app.ensure_labels(ctx, t.pr, labels_for(state.policy.forge.label_prefix, PROPOSED),
                          report, False)
        out.actions.append(f"#{t.pr.number}: reopened on request")
    reply = _rewrite(ctx, base, base_sha, t, proposal, tip, body, out,
                     state.policy.eval.require_replies)
    if t.pr.state == "closed":
        reply = "reopened this proposal on your request. " + reply
    return reply


def _rewrite(ctx: Context, base: str, base_sha: str, t: Tracked, p: Proposal,
             tip: str, body: str, out: Outcome, require_replies: bool) -> str:
    if ctx.git.parents(tip)[:1] == [base_sha] and all(
            ctx.git.read(tip, path) == text for path, text in p.files.items()) \
            and t.pr.body == body:
        return "regenerated: the result is identical to this PR; nothing changed."
    message = f"{p.title}\n\npromptbot proposal {p.id} (regenerated): {p.base_version} -> " \
        f"{p.new_version}"
    commit = ctx.git.commit_files(base_sha, p.files, message)
    local = ctx.git.sha(f"refs/heads/{t.pr.branch}")
    ctx.git.move_branch(t.pr.branch, commit, local)
    if ctx.forge.name == "github" and ctx.git.has_remote():
        ctx.git.push(t.pr.branch, force=True, lease=tip)
    if p.eval_gate is not None:
        state, text = commit_status(p.eval_gate, require_replies)
        ctx.forge.set_status(commit, state, text, app.EVAL_STATUS)
    ctx.forge.update_pr(t.pr.number, title=p.title, body=body)
    out.actions.append(f"#{t.pr.number}: regenerated on {base} ({base_sha[:12]})")
    return (f"regenerated on `{base}` at `{base_sha[:12]}` with {p.generator}; the "
            "description above is updated.")


def _safe(value: object) -> str:
    """Text from files, comments or metrics, shown inline as a code span: one line, no
    markup (links, images, HTML comments) and no @mention that could ping anyone."""
    text = str(value if value is not None else "?").replace("@", "@\u200b")
    return render.untrusted(text, 300)


def _number(value: object) -> float | None:
    """A number from a hand-editable file, or None (shown as n/a) for anything else."""
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) \
        else None
