"""Running canaries: after the measurement, one pull request for the next step of each.

Which step is pure (bot/core/canary.py `next_step`); this module reads git for the rollout
file and the baseline, and opens the step's PR: the next stage (rollout.yaml's share),
promote (rollout.yaml deleted) or end (agent.yaml back to the baseline file as it was
before the canary's merge, rollout.yaml deleted). A person merges it; nothing moves
traffic without a merge. Each step has its own branch, so a rerun finds its PR again, and
a step a person closed is not opened again.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime, timedelta

import yaml

from bot.context import Context, RunReport, Tracked, ensure_labels
from bot.core import markers
from bot.core.agentfile import parse_agent
from bot.core.canary import Step, next_step, rollout_path, rollout_text
from bot.core.ids import is_safe_id
from bot.core.metrics import MetricsSnapshot
from bot.core.proposals import branch_name
from bot.core.render import share
from bot.core.rollout import RolloutPlan
from bot.errors import GitError, MachineError, PromptbotError
from bot.load.repo import RepoState
from bot.measuring import Recorded, retire, running


def rollouts_on(ctx: Context, sha: str, agents: Iterable[str]) -> dict[str, str]:
    """The agents with a rollout file at `sha` (a canary runs: no other change for them),
    each with the canary's id (its proposal's id)."""
    out = {}
    for agent_id in agents:
        text = ctx.git.read(sha, rollout_path(agent_id))
        if text is None:
            continue
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError:
            data = None
        rollout_id = data.get("rollout") if isinstance(data, dict) else None
        out[agent_id] = rollout_id if isinstance(rollout_id, str) and is_safe_id(rollout_id) \
            else f"{agent_id}-canary"
    return out


def step_key(step: Step) -> str:
    if step.action == "advance":
        assert step.share is not None
        return f"stage-{step.share:g}".replace(".", "-")
    return step.action


def _decision(recorded: Recorded) -> tuple[str, str]:
    """The decision on record (a frozen one stands, as in the results file)."""
    if recorded.kept:
        try:
            data = json.loads(recorded.record)
            return str(data["comparison"]["decision"]), str(data["comparison"]["reason"])
        except (json.JSONDecodeError, KeyError, TypeError):
            pass
    comparison = recorded.result.comparison
    return comparison.decision, comparison.reason


def newest_of(snapshot: MetricsSnapshot, agent: str) -> datetime | None:
    """The end of this agent's own data: another agent's newer rows say nothing of it."""
    hours = [b.hour for b in snapshot.buckets_of(agent)]
    return max(hours) + timedelta(hours=1) if hours else None


def advance_all(ctx: Context, state: RepoState, base: str, base_sha: str,
                prs: list[Tracked], results: dict[str, Recorded],
                snapshot: MetricsSnapshot, report: RunReport, dry_run: bool) -> None:
    for t in prs:
        if t.kind != "proposal" or t.pr.state != "merged" or t.proposal_id not in results:
            continue
        steps = [o for o in prs if o.kind == "canary" and o.proposal_id == t.proposal_id
                 and o.pr.state == "open"]
        try:
            canary = running(results[t.proposal_id].canary)
            if canary is None:
                # Promoted or ended: a step PR still open would start it again.
                for o in steps:
                    retire(ctx, base, o, "the canary is over (its rollout file is gone)",
                           f"{o.agent}: canary step", "canary-closed", report, dry_run)
                continue
            plan, since = canary
            decision, reason = _decision(results[t.proposal_id])
            comparison = results[t.proposal_id].result.comparison
            step = next_step(plan, decision, reason, comparison.drift, since,
                             newest_of(snapshot, t.agent), state.policy.measure,
                             comparison.delta)
            if step.action == "wait":
                report.skipped.append(f"{t.agent}: canary {plan.rollout_id}: {step.reason}")
                continue
            if step.action in ("promote", "end"):
                # The decision is final: a stage PR still open would raise the share of a
                # candidate that is being promoted or ended anyway, and conflict with it.
                for o in steps:
                    if o.marker.get("step", "").startswith("stage-"):
                        retire(ctx, base, o, f"decided: {step.action}",
                               f"{o.agent}: canary step", "canary-closed", report, dry_run)
            open_step(ctx, state, base, base_sha, t, plan, step, prs, report, dry_run)
        except MachineError:
            raise  # the whole run stops: a full disk is no agent's problem
        except PromptbotError as exc:
            report.errors.append(f"#{t.pr.number} {t.agent}: canary: {exc.render()}")


def end_files(ctx: Context, t: Tracked, plan: RolloutPlan) -> dict[str, str | None]:
    """agent.yaml as it was before the canary's merge (comments and all), the rollout file
    gone: every request gets the baseline again."""
    assert t.pr.merge_sha is not None
    agent_path = f"prompts/{t.agent}/agent.yaml"
    parents = ctx.git.parents(t.pr.merge_sha)
    text = ctx.git.read(parents[0], agent_path) if parents else None
    if text is None or parse_agent(text, agent_path).version != plan.baseline_version:
        raise GitError(f"the baseline {plan.baseline_version} of {t.agent} is not the parent "
                       f"of merge {t.pr.merge_sha[:12]}",
                       fix=f"restore {agent_path} to version {plan.baseline_version} by hand "
                       f"and delete {rollout_path(t.agent)}")
    return {agent_path: text, rollout_path(t.agent): None}


def open_step(ctx: Context, state: RepoState, base: str, base_sha: str, t: Tracked,
              plan: RolloutPlan, step: Step, prs: list[Tracked], report: RunReport,
              dry_run: bool) -> None:
    prefix = state.policy.forge.label_prefix
    labels = [prefix, f"{prefix}:canary"]
    key = step_key(step)
    branch = branch_name(t.agent, f"{t.proposal_id}-{key}")
    for other in prs:
        if other.pr.branch != branch:
            continue
        if other.pr.state == "open":
            ensure_labels(ctx, other.pr, labels, report, dry_run)
        elif other.pr.state == "closed":
            report.skipped.append(f"{t.agent}: canary {plan.rollout_id}: the {key} PR "
                                  f"#{other.pr.number} was closed; not reopened")
        else:
            # Merged, yet the base is back before that step: someone edited the file.
            report.skipped.append(f"{t.agent}: canary {plan.rollout_id}: the {key} PR "
                                  f"#{other.pr.number} was merged, but rollout.yaml says "
                                  f"{plan.share:g} % now; edit the share by hand to go on")
        return
    title, text, files = _step_content(ctx, t, plan, step)
    report.actions.append(f"{t.agent}: open PR '{title}' ({branch})")
    if dry_run:
        return
    if ctx.git.sha(f"refs/heads/{branch}") is None:
        commit = ctx.git.commit_files(base_sha, files,
                                      f"{title}\n\npromptbot canary {plan.rollout_id}: {key}")
        ctx.git.move_branch(branch, commit, None)
    ctx.forge.publish(branch)
    body = markers.attach(text, {"kind": "canary", "proposal_id": t.proposal_id,
                                 "agent": t.agent, "step": key})
    pr = ctx.forge.open_pr(branch=branch, base=base, title=title, body=body, labels=labels)
    # In flight for the dashboard this run renders (its loop skips canary PRs).
    prs.append(Tracked(pr, markers.parse(body) or {}))


def _step_content(ctx: Context, t: Tracked, plan: RolloutPlan, step: Step
                  ) -> tuple[str, str, dict[str, str | None]]:
    where = f"`{rollout_path(t.agent)}`"
    head = (f"Canary `{plan.rollout_id}` of #{t.pr.number} (`{t.agent}`): candidate "
            f"`{plan.candidate}`, baseline `{plan.baseline_version}`, now at "
            f"{share(plan.share)} of request keys.\n\n**Why now:** {step.reason}.\n\n")
    if step.action == "advance":
        assert step.share is not None
        title = f"{t.agent} canary: {share(plan.share)} → {share(step.share)}"
        text = head + (
            f"**Merging** sets `share: {step.share:g}` in {where}: the runtime serves the "
            f"candidate to {share(step.share)} of request keys (the keys it served keep it). "
            "promptbot compares the two versions again over this stage's own hours.")
        files: dict[str, str | None] = {rollout_path(t.agent): rollout_text(
            plan.rollout_id, plan.baseline, plan.candidate, step.share, plan.stages)}
        return title, text, files
    if step.action == "promote":
        title = f"{t.agent}: promote canary {plan.rollout_id} ({plan.candidate} to all traffic)"
        text = head + (
            f"**Merging** deletes {where}: agent.yaml already holds `{plan.candidate}`, so "
            "every request gets it. The measured result stays recorded on "
            f"#{t.pr.number} and in `prompts/{t.agent}/results/`.")
        return title, text, {rollout_path(t.agent): None}
    title = f"{t.agent}: end canary {plan.rollout_id} (back to {plan.baseline_version})"
    text = head + (
        f"**Merging** restores `prompts/{t.agent}/agent.yaml` to the baseline as it was "
        f"before #{t.pr.number} and deletes {where}: every request gets "
        f"`{plan.baseline_version}` again. promptbot records #{t.pr.number} as rolled back.")
    return title, text, end_files(ctx, t, plan)
