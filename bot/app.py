"""One run of the bot: the imperative shell that wires the pure core to git, forge and files.

Order (SPEC §2): sync, ingest, measure deployed proposals, analyze, propose,
write reports. Each agent is handled in isolation; every step compares what it
wants with what exists and writes only the difference, so a second run with
nothing new changes nothing.
"""

from __future__ import annotations

import json
import os
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

from bot import dashboard
from bot.canary import advance_all, end_files, rollouts_on
from bot.context import (
    EVAL_STATUS,
    RESULTS_BRANCH,
    Context,
    RunReport,
    Tracked,
    VariantSource,
    base_tree,
    ensure_labels,
    tracked_prs,
)
from bot.core import markers, render, variants
from bot.core.agentfile import LoadedAgent, parse_agent
from bot.core.analysis import (
    GOALS,
    Problem,
    accuracy_problem,
    clarity_problem,
    conciseness_problem,
    current_stats,
    failure_problems,
    healthy,
    latency_problem,
    safety_problem,
)
from bot.core.assertions import parse_cases
from bot.core.calibration import Outcome
from bot.core.canary import as_canary, stages_for
from bot.core.dashboard import BUSY_NOTE
from bot.core.eval_render import render_eval_markdown
from bot.core.evaluation import EvalReport, Provider, Shot, commit_status, successful_shots
from bot.core.generation import GenerationRequest
from bot.core.impact import estimate_json, paired_quality
from bot.core.learning import Use
from bot.core.metrics import MetricsSnapshot, VersionStats
from bot.core.model import Policy, TestsFile, is_safe_id
from bot.core.proposals import (
    Proposal,
    Skipped,
    branch_name,
    build_all,
    diagnosed,
    from_candidates,
    proposal_id,
    rules_that_hold,
    with_alternatives,
    with_quality,
)
from bot.core.report import analysis, analysis_text
from bot.core.results import (
    MEASURING,
    PROPOSED,
    SUPERSEDED,
    labels_for,
)
from bot.core.roadmap import Item, roadmap
from bot.core.stats import JUDGED_BY
from bot.core.templating import variables
from bot.core.variants import Category
from bot.core.version import agent_fields
from bot.core.yamlparse import parse_yaml, validate_as
from bot.edges.eval_providers import (
    RecordedProvider,
    RecordingProvider,
    parse_recordings,
    recordings_rel,
    render_recordings,
)
from bot.edges.forge import PullRequest
from bot.errors import MachineError, PromptbotError, UsageError
from bot.learning import Final, final_records, learned_categories, promote_all
from bot.load.repo import RepoState, tests_path
from bot.measuring import (
    Recorded,
    history,
    measure_all,
    results_paths,
    running_canary,
    standing,
    version_at,
)
from bot.regression import regress_all

# Other modules and tests reach these through bot.app, the wiring.
__all__ = [
    "EVAL_STATUS", "RESULTS_BRANCH", "Context", "Recorded", "RunReport", "Tracked",
    "VariantSource", "base_tree", "ensure_labels", "history", "measure_all", "results_paths",
    "run", "standing", "tracked_prs", "version_at",
]


# ---------------------------------------------------------------- loading


def load_metrics(ctx: Context, policy: Policy, patterns: list[str] | None) -> MetricsSnapshot:
    # DuckDB and numpy load here, not with bot.app: event handlers that read no metrics
    # (a comment, a closed PR) start without them.
    from bot.load.metrics import ingest_with, resolve_sources
    from bot.load.simulate import SIMULATED_MARK

    files = resolve_sources(patterns or [policy.metrics.source], ctx.root)
    ctx.say(f"reading {len(files)} metrics file(s)")
    snapshot = ingest_with(files, policy.metrics, policy.pricing, progress=ctx.progress)
    marked = any((Path(f).parent / SIMULATED_MARK).exists() for f in files)
    return replace(snapshot, simulated=True) if marked else snapshot


# ---------------------------------------------------------------- the run


def sync(ctx: Context, base: str) -> None:
    """On a forge with a remote, bring the local base branch up to the remote's."""
    if ctx.forge.name != "github" or not ctx.git.has_remote():
        return
    remote = ctx.git.fetch(base)
    local = ctx.git.sha(f"refs/heads/{base}")
    if remote and local and remote != local and ctx.git.is_ancestor(local, remote):
        ctx.git.move_branch(base, remote, local)


def synced_tree(ctx: Context) -> tuple[str, str, RepoState]:
    """`base_tree` after bringing the base branch up to the remote's (on GitHub)."""
    base, base_sha, state = base_tree(ctx)
    if ctx.forge.name != "github":
        return base, base_sha, state
    sync(ctx, base)
    return base_tree(ctx)


def run(ctx: Context, patterns: list[str] | None = None, dry_run: bool = False) -> RunReport:
    report = RunReport()
    base, base_sha, state = base_tree(ctx) if dry_run else synced_tree(ctx)
    for path, error in sorted(state.broken.items()):
        report.errors.append(f"{path}: {error.render()}")
    snapshot = load_metrics(ctx, state.policy, patterns)
    prs = tracked_prs(ctx)
    # The dashboard's ticked boxes (snooze, open now) are this run's guardrail input.
    board = dashboard.read(ctx, state.policy, set(state.agents), report, prs, base_sha)
    results = measure_all(ctx, state, base, snapshot, prs, report, dry_run)
    if not dry_run:
        # Proposals start from the base as it is now, with the results just committed: a
        # run stopped after that commit and run again opens the very same branches.
        base_sha = ctx.git.sha(f"refs/heads/{base}") or base_sha
    advance_all(ctx, state, base, base_sha, prs, results, snapshot, report, dry_run)
    finals = _finals(ctx, state, base_sha, results, report)
    uses = promote_all(ctx, state, base, base_sha, prs, results, report, dry_run, finals)
    regress_all(ctx, state, base, base_sha, prs, finals or [], snapshot.sources,
                snapshot.oldest,
                {pid for pid, r in results.items() if not r.kept}, report, dry_run)
    current = {a: loaded.version for a, loaded in state.agents.items()}
    report.analysis = analysis(snapshot, current, state.policy)
    # Every results file, read once: the proposals' calibration and the dashboard's.
    past = history(ctx, base_sha, results)
    propose_all(ctx, state, base, base_sha, snapshot, prs, results, report, dry_run, past,
                uses)
    try:
        dashboard.publish(ctx, state, board, snapshot, prs, results, report, dry_run, past)
    except MachineError:
        raise
    except PromptbotError as exc:  # e.g. the write cap reached: the next run continues
        report.errors.append(f"dashboard and alerts: {exc.render()}")
    if not dry_run:
        write_reports(ctx, state.policy, report)
    return report


def _finals(ctx: Context, state: RepoState, base_sha: str, results: dict[str, Recorded],
            report: RunReport) -> list[Final] | None:
    """The final results with their records, read once for the learning loop and the
    regression cases; None when neither wants them or they cannot be read."""
    if not (state.policy.learning.enabled or state.policy.regression.enabled):
        return None
    try:
        return final_records(ctx, base_sha, results)
    except MachineError:
        raise
    except PromptbotError as exc:
        report.errors.append(f"measured results: {exc.render()}")
        return None


# ---------------------------------------------------------------- proposing


EVAL_START, EVAL_END = "<!-- offline-eval -->", "<!-- /offline-eval -->"


def eval_section(body: str) -> str | None:
    """The offline-eval table of an open PR, kept as it was when the PR was opened."""
    # The last pair: prompt text quoted earlier in the body (the diff) may contain the
    # same strings, the bot's own section comes after it.
    start, end = body.rfind(EVAL_START), body.rfind(EVAL_END)
    if start < 0 or end < start:
        return None
    return body[start + len(EVAL_START):end].strip("\n")


def eval_provider(ctx: Context, base_sha: str, agent_id: str) -> Provider:
    """Recorded replies from the base, or the live provider recording on top of them."""
    rec = recordings_rel(agent_id)
    records = parse_recordings(ctx.git.read(base_sha, rec) or "", rec)
    if ctx.eval_live is None:
        return RecordedProvider(records)
    return RecordingProvider(ctx.eval_live, records)


def with_recordings(p: Proposal, provider: Provider) -> Proposal:
    """`p` carrying the live replies its eval recorded, so the PR check replays them."""
    if not isinstance(provider, RecordingProvider) or not provider.added:
        return p
    return replace(p, files={**p.files,
                             recordings_rel(p.agent_id): render_recordings(provider.records)})


def pr_body(p: Proposal, window_days: int, eval_md: str | None = None) -> str:
    section = f"{EVAL_START}\n{eval_md.strip(chr(10))}\n{EVAL_END}" if eval_md else None
    body = render.cap(render.render("pr_body.md.j2", p=p, window_days=window_days,
                                    eval_section=section, judged_by_text=JUDGED_BY),
                      f"prompts/{p.agent_id}/proposals/{p.id}.yaml")
    marker = {"kind": "proposal", "proposal_id": p.id, "agent": p.agent_id,
              "base_version": p.base_version, "new_version": p.new_version}
    if p.canary:
        marker["canary"] = ",".join(f"{s:g}" for s in p.canary)
    return markers.attach(body, marker)


def canary_of(marker: dict[str, str]) -> tuple[float, ...]:
    """The stage plan an open proposal was opened with (a policy change later does not
    rewrite it: its branch holds that rollout file)."""
    try:
        return tuple(float(s) for s in marker.get("canary", "").split(",") if s)
    except ValueError:
        return ()


def propose_all(
    ctx: Context,
    state: RepoState,
    base: str,
    base_sha: str,
    snapshot: MetricsSnapshot,
    prs: list[Tracked],
    results: dict[str, Recorded],
    report: RunReport,
    dry_run: bool,
    past: list[Outcome],
    uses: list[Use] | None = None,
) -> None:
    """`past`: the measured outcomes calibrating the estimates; `uses`: the learning loop's
    read of the rules' uses (None: read here, when a rule is promoted)."""
    policy = state.policy
    # Promoted rules carry their measured uses: a proposal adding one is estimated from them.
    promoted = learned_categories(ctx, base_sha, state, prs, results, uses)
    by_id = {t.proposal_id: t for t in prs if t.kind == "proposal"}
    busy = {t.agent for t in prs if t.kind in ("proposal", "rollback") and t.pr.state == "open"
            and t.pr.number not in report.superseded}
    busy |= {r.result.agent_id for r in results.values() if r.state == MEASURING}
    # A canary runs until its promote or end PR is merged: agent.yaml must stay the
    # candidate the rollout file names.
    busy |= {t.agent for t in prs if t.kind == "canary" and t.pr.state == "open"
             and t.pr.number not in report.superseded}
    busy |= set(rollouts_on(ctx, base_sha, state.agents))
    open_count = len({t.pr.number for t in prs if t.kind == "proposal" and t.pr.state == "open"
                      and t.pr.number not in report.superseded})
    opened = 0
    for agent_id, loaded in sorted(state.agents.items()):
        stats = current_stats(snapshot, agent_id, loaded.version)
        report.skipped += healthy_note(agent_id, stats, policy)
        problems = problems_for(loaded, snapshot, policy)
        if not problems:
            continue
        cooldown = timedelta(days=policy.guardrails.cooldown_days)
        if stats and snapshot.newest and stats.first_seen > snapshot.newest - cooldown:
            report.skipped.append(f"{agent_id}: version {loaded.version} is live for less than "
                                  f"{policy.guardrails.cooldown_days:g} days (cooldown)")
            continue
        shots = successful_cases(ctx, base_sha, loaded)
        said_busy = False
        try:
            for problem in problems:
                pid = proposal_id(agent_id, loaded.version, problem.signature)
                existing = by_id.get(pid)
                if existing is not None and existing.marker.get("state") == SUPERSEDED:
                    existing = None  # the agent is back on that version: propose it again
                if existing is not None and existing.pr.state != "open":
                    word = "rejected" if existing.pr.state == "closed" else "already merged"
                    report.skipped.append(f"{agent_id}: proposal {pid} {word} "
                                          f"(#{existing.pr.number}); not reopened")
                    continue
                # Cheap checks first: building a variant is the expensive part of a run.
                if existing is None and agent_id in busy:
                    # Nothing new while a change is open, but a later problem's open PR may
                    # still need its description refreshed.
                    if not said_busy:
                        report.skipped.append(f"{agent_id}: {BUSY_NOTE}")
                        said_busy = True
                    continue
                if existing is None and agent_id in report.snoozed:
                    report.skipped.append(f"{agent_id}: snoozed until "
                                          f"{report.snoozed[agent_id]}; no new proposal")
                    break
                if existing is None and agent_id not in report.open_now:
                    limit = waits_on(policy, opened, open_count)
                    if limit:
                        report.skipped.append(f"{agent_id}: {limit}")
                        report.waiting.add(agent_id)
                        break
                if existing is not None and ctx.generator is not None:
                    break  # a model's PR is not rewritten on every run (cost, churn)
                if existing is None and policy.guardrails.min_confidence == "medium" and \
                        len(past) < 3:
                    # Medium confidence needs 3 measured proposals of the type: without 3
                    # in all, no candidate can reach it, so none is generated (a model's
                    # would cost money on every run).
                    report.skipped.append(f"{agent_id}: guardrails.min_confidence medium "
                                          f"needs 3 measured proposals; this repository has "
                                          f"{len(past)}")
                    break
                made = make_proposal(ctx, loaded, problem, policy, past, report, promoted,
                                     shots)
                if isinstance(made, Skipped):
                    report.skipped.append(f"{agent_id}: {made.reason}")
                    continue
                # An open PR keeps the eval it was opened with: evaluating again could cost
                # model calls on every run and rewrite the PR for sampling noise alone.
                if existing is not None:
                    kept = refreshed(existing, made)
                    if kept is None:
                        break  # the branch holds a variant no longer generated: leave it
                    proposal, section = kept
                    stages = canary_of(existing.marker)
                else:
                    chosen, section = choose(ctx, base, base_sha, loaded, made, policy, report)
                    if chosen is None:
                        continue
                    if CONFIDENCE.index(chosen.expected.confidence) < \
                            CONFIDENCE.index(policy.guardrails.min_confidence):
                        report.skipped.append(
                            f"{agent_id}: '{chosen.title}' has {chosen.expected.confidence} "
                            "confidence, below guardrails.min_confidence "
                            f"{policy.guardrails.min_confidence}")
                        continue
                    proposal = chosen
                    stages = stages_for(policy.measure, agent_id)
                if stages:
                    proposal = as_canary(proposal, agent_fields(loaded.agent), stages)
                body = pr_body(proposal, snapshot.window_days, section)
                if existing is not None:
                    if existing.pr.body != body or existing.pr.title != proposal.title:
                        report.actions.append(f"#{existing.pr.number} {agent_id}: refreshed")
                        if not dry_run:
                            ctx.forge.update_pr(existing.pr.number, title=proposal.title,
                                                body=body)
                    break
                opened += 1
                report.actions.append(f"{agent_id}: open PR '{proposal.title}' "
                                      f"({proposal.id}, {proposal.branch})")
                if not dry_run:
                    pr = open_proposal(ctx, base, base_sha, proposal, body, policy)
                    # The dashboard shows it in flight without listing the PRs again.
                    prs.append(Tracked(pr, markers.parse(body) or {}))
                break
        except MachineError:
            raise  # the whole run stops: a full disk is no agent's problem
        except PromptbotError as exc:
            report.errors.append(f"{agent_id}: {exc.render()}")


CONFIDENCE = ("none", "low", "medium", "high")


def waits_on(policy: Policy, opened: int, open_count: int) -> str:
    """The guardrail a new proposal waits on, or "" (a ticked dashboard box skips these)."""
    g = policy.guardrails
    if opened >= g.max_prs_per_run:
        return f"waits: guardrails.max_prs_per_run ({g.max_prs_per_run}) reached this run"
    if open_count + opened >= g.max_open_proposals:
        return (f"waits: guardrails.max_open_proposals ({g.max_open_proposals}) proposals "
                "are open")
    return ""


def plan(ctx: Context, patterns: list[str] | None = None, only: str | None = None,
         goals: tuple[str, ...] = GOALS, skipped: list[str] | None = None
         ) -> list[dict[str, Any]]:
    """What `propose` would do, per agent, as data (nothing is written); what it would not
    propose, and why, is appended to `skipped`."""
    said: list[str] = [] if skipped is None else skipped
    _, base_sha, state = base_tree(ctx)
    if only is not None and only not in state.agents:
        known = ", ".join(sorted(state.agents)) or "none"
        raise UsageError(f"unknown agent '{only[:80]}'", fix=f"known agents: {known}")
    snapshot = load_metrics(ctx, state.policy, patterns)
    tracked = tracked_prs(ctx)
    prs = [t for t in tracked if t.kind == "proposal"]
    by_id = {t.proposal_id: t for t in prs}
    # An agent's open proposal (or rollback) comes first: a new one for it waits on that.
    busy = {t.agent: t.proposal_id for t in sorted(tracked, key=lambda t: t.pr.number)
            if t.kind in ("proposal", "rollback", "canary") and t.pr.state == "open"}
    # A running canary holds its agent as `run` does (its proposal id is the rollout's).
    busy = {**rollouts_on(ctx, base_sha, state.agents), **busy}
    past = history(ctx, base_sha)
    promoted = learned_categories(ctx, base_sha, state, tracked, {})
    policy = state.policy
    found: list[tuple[Proposal, str]] = []
    for agent_id, loaded in sorted(state.agents.items()):
        if only is not None and agent_id != only:
            continue
        shots = successful_cases(ctx, base_sha, loaded)
        if "error_handling" in goals:
            said += healthy_note(agent_id, current_stats(snapshot, agent_id, loaded.version),
                                 policy)
        for problem in problems_for(loaded, snapshot, policy, goals):
            pid = proposal_id(agent_id, loaded.version, problem.signature)
            existing = by_id.get(pid)
            if existing is not None and existing.pr.state != "open" and \
                    existing.marker.get("state") != SUPERSEDED:
                continue
            made = make_proposal(ctx, loaded, problem, policy, past, RunReport(), promoted,
                                 shots)
            if isinstance(made, Skipped):
                said.append(f"{agent_id}: {made.reason}")
                continue
            # A dry run makes no model call: candidates in the generator's order.
            proposal = with_alternatives(made[0], made[1:])
            if existing is not None and existing.pr.state == "open":
                status = f"open as #{existing.pr.number}"
            elif agent_id in busy:
                status = "waits: another change of this agent is open or being measured"
                proposal = replace(proposal, dependencies=(busy[agent_id],))
            else:
                status = "would open"
            found.append((proposal, status))
            break
    slots = roadmap([Item(p.id, p.economics.priority if p.economics else 0.0,
                          p.economics.hours if p.economics else 1.0, p.dependencies)
                     for p, _ in found],
                    policy.propose.hours_budget, started=frozenset(busy.values()))
    out = []
    for p, status in sorted(found, key=lambda f: (slots[f[0].id] or 10**6, f[0].id)):
        e = p.economics
        out.append({
            "id": p.id, "agent": p.agent_id, "type": p.type, "title": p.title,
            "status": status, "branch": p.branch,
            "base_version": p.base_version, "new_version": p.new_version,
            "problem": {"kind": p.problem.kind, "share": round(p.problem.share, 6),
                        **({"error_type": p.problem.failure.error_type,
                            "template": p.problem.failure.template,
                            "count": p.problem.failure.count,
                            "failure_id": p.problem.failure.failure_id}
                           if p.problem.failure is not None else {})},
            "impact": {"success_rate_delta": round(p.expected.success_rate_delta, 6),
                       "interval": [round(p.expected.low, 6), round(p.expected.high, 6)],
                       "confidence": p.expected.confidence, "method": p.expected.method,
                       "cost_pct": estimate_json(p.cost, 100, 3),
                       "latency_pct": estimate_json(p.latency, 100, 3),
                       "quality_pts": estimate_json(p.quality, 100, 3),
                       "tokens_before": p.tokens_before, "tokens_after": p.tokens_after},
            "judged_by": p.judged_by,
            "effort": e.effort if e else None, "hours": e.hours if e else None,
            "roi_usd_per_month": round(e.roi_usd_per_month, 2) if e else None,
            "priority": round(e.priority, 3) if e else None,
            "roadmap_slot": slots[p.id],
            "dependencies": list(p.dependencies),
            "calibration": {"n": p.calibration.n, "factor": round(p.calibration.factor, 4)},
            "alternatives": list(p.alternatives),
            "diff": p.diff,
        })
    return out


def healthy_note(agent_id: str, stats: VersionStats | None, policy: Policy) -> list[str]:
    """The report's line for a healthy agent that has failure modes: why no PR."""
    if stats is None or not healthy(stats, policy.propose) or not any(
            e.count >= policy.propose.min_failure_count for e in stats.top_errors):
        return []
    return [f"{agent_id}: healthy ({stats.success_rate * 100:.1f} % success, at least "
            f"propose.healthy_success_rate {policy.propose.healthy_success_rate * 100:g} %): "
            "its failure modes are in the report, no PR"]


def problems_for(loaded: LoadedAgent, snapshot: MetricsSnapshot, policy: Policy,
                 goals: tuple[str, ...] = GOALS) -> list[Problem]:
    """The agent's problems worth a proposal, most valuable first: failure modes (the
    evidence is strongest), a low quality score, filler, hedges, latency over the SLA, an
    unguarded user template."""
    agent_id = loaded.agent.id
    stats = current_stats(snapshot, agent_id, loaded.version)
    found: list[Problem] = []
    if "error_handling" in goals:
        found += failure_problems(stats, agent_id, loaded.version, policy.propose)
    if "accuracy" in goals:
        low = accuracy_problem(stats, agent_id, loaded.version, policy.propose)
        if low is not None:
            found.append(low)
    if "conciseness" in goals:
        filler = variants.concise(loaded.agent.prompts.system)
        extra = conciseness_problem(stats, agent_id, loaded.version,
                                    (*filler.added_lines, *filler.removed) if filler else (),
                                    policy.propose)
        if extra is not None:
            found.append(extra)
    if "clarity" in goals:
        direct = variants.clarify(loaded.agent.prompts.system)
        hedged = clarity_problem(stats, agent_id, loaded.version,
                                 direct.added_lines if direct else (), policy.propose)
        if hedged is not None:
            found.append(hedged)
    if "speed" in goals:
        slow = latency_problem(stats, agent_id, loaded.version,
                               policy.triggers.sla_latency_p95_ms, policy.propose)
        if slow is not None:
            found.append(slow)
    if "safety" in goals and variants.needs_input_guard(loaded.agent.prompts.system):
        names = tuple(sorted(variables(loaded.agent.prompts.user_template)))
        guard = safety_problem(stats, agent_id, loaded.version, names, policy.propose)
        if guard is not None:
            found.append(guard)
    return found


def successful_cases(ctx: Context, base_sha: str, loaded: LoadedAgent) -> list[Shot]:
    """Worked examples the offline generator may add: tests.yaml cases whose real recorded
    reply (not an illustrative one) passes every assertion, on the base."""
    agent_id = loaded.agent.id
    rel, rec = tests_path(agent_id), recordings_rel(agent_id)
    text, recorded = ctx.git.read(base_sha, rel), ctx.git.read(base_sha, rec)
    if text is None or recorded is None:
        return []
    try:
        cases = parse_cases(validate_as(TestsFile, parse_yaml(text, rel)), rel)
        records = parse_recordings(recorded, rec)
    except PromptbotError:
        return []  # `promptbot check` / `eval` report these files; no examples from them
    replies = {key: r.reply for key, r in records.items() if not r.illustrative}
    return successful_shots(loaded.agent, cases, replies)


def make_proposal(
    ctx: Context, loaded: LoadedAgent, problem: Problem, policy: Policy,
    past: list[Outcome], report: RunReport, promoted: tuple[Category, ...] = (),
    shots: list[Shot] | None = None,
) -> list[Proposal] | Skipped:
    """The configured generator's valid candidates, preferred first; the offline
    generator's when there is no model or it fails."""
    if ctx.generator is None:
        return build_all(loaded, problem, policy, ctx.count_tokens, past, promoted,
                         shots or ())
    said = ""
    if problem.failure is not None:
        # No model call for a failure no prompt rule fixes or whose rule contradicts the agent.
        held = rules_that_hold(loaded, problem, promoted)
        if isinstance(held, Skipped):
            return held
        said = diagnosed(loaded, problem)
    failures = tuple((e.error_type, e.template, e.count) for e in problem.stats.top_errors[:5])
    goal = {"failure_mode": "error_handling", "latency": "speed"}.get(problem.kind,
                                                                      problem.kind)
    request = GenerationRequest(loaded.agent.id, loaded.text, loaded.agent.prompts.system,
                                (goal,), failures, policy.generator.candidates, said)
    try:
        candidates = ctx.generator.generate(request)
    except PromptbotError as exc:
        report.skipped.append(f"{loaded.agent.id}: {ctx.generator.label} failed "
                              f"({exc.message[:200]}); used the offline generator")
        return build_all(loaded, problem, policy, ctx.count_tokens, past, promoted,
                         shots or ())
    made, dropped = from_candidates(loaded, problem, policy, ctx.count_tokens, past,
                                    [(c.system, c.rationale) for c in candidates],
                                    ctx.generator.label)
    report.skipped += [f"{loaded.agent.id}: {line}" for line in dropped]
    return made


def _ran(evaluated: EvalReport) -> int:
    return evaluated.variant.count("pass") + evaluated.variant.count("fail")


def choose(ctx: Context, base: str, base_sha: str, loaded: LoadedAgent,
           candidates: list[Proposal], policy: Policy, report: RunReport,
           ) -> tuple[Proposal | None, str | None]:
    """The candidate to propose and the Markdown of its offline eval.

    Ranked by the offline eval when the agent has tests (most cases passed; one that
    regresses beyond the gate is dropped), else in the generator's order. The others are
    listed as alternatives: inside the eval section when there was an eval (so the PR keeps
    the ranking it was opened with), in the PR's collapsed section otherwise.
    """
    from bot.eval_run import evaluate_pair

    agent_id = loaded.agent.id
    rel = tests_path(agent_id)
    text = ctx.git.read(base_sha, rel)
    if text is None:
        return with_alternatives(candidates[0], candidates[1:]), None
    located = parse_yaml(text, rel)
    tests = validate_as(TestsFile, located)
    # One provider for all candidates: the base's replies are asked (or recorded) once.
    provider = eval_provider(ctx, base_sha, agent_id)
    scored: list[tuple[int, int, Proposal, EvalReport]] = []
    for index, candidate in enumerate(candidates):
        variant = parse_agent(candidate.new_text, candidate.agent_path).agent
        evaluated = evaluate_pair(loaded.agent, variant, tests, provider, policy,
                                  base_label=f"{base} {loaded.version}",
                                  variant_label=f"proposal {candidate.new_version}",
                                  tests_path=rel, line_of=located.line_of)
        if evaluated.gate.state == "failure":
            report.skipped.append(f"{agent_id}: {candidate.rationale or 'candidate'}: offline "
                                  f"eval regressed ({evaluated.gate.description}); not proposed")
            continue
        scored.append((-evaluated.variant.count("pass"), index, candidate, evaluated))
    ranked = [s for s in scored if _ran(s[3])]
    if not scored:
        return None, None
    scored.sort(key=lambda s: s[:2])
    best, evaluated = scored[0][2], scored[0][3]
    section = render_eval_markdown(evaluated)
    if len(scored) > 1:
        # A candidate whose cases could not run (no recorded reply, no key) was not
        # evaluated: said as such, never as "0/N passed".
        rows = [f"- {render.untrusted(s[2].rationale or 'candidate', 200)} "
                f"({s[2].tokens_after - s[2].tokens_before:+d} tokens): "
                + (f"{-s[0]}/{_ran(s[3])} passed" if _ran(s[3]) else "not evaluated")
                for s in scored]
        if not ranked:
            rows.append("- none of them could be evaluated: they are in the generator's "
                        "order")
        section += ("\n\n<details><summary>Candidates ranked by this eval (the first is "
                    "proposed)</summary>\n\n" + "\n".join(rows) + "\n</details>")
    quality = paired_quality(evaluated.pairs(), evaluated.provider)
    # In the eval section, which an open PR keeps verbatim when it is refreshed without
    # re-running the eval.
    section += "\n\n" + render.estimate_line("Quality estimate (pass rate)", quality, "pts")
    return with_recordings(with_quality(replace(best, eval_gate=evaluated.gate), quality),
                           provider), section


def refreshed(existing: Tracked, candidates: list[Proposal]
              ) -> tuple[Proposal, str | None] | None:
    """An open PR's proposal as opened — the same variant, and the eval it was judged by —
    or None when no candidate is that variant any more (the description must keep matching
    the branch, so it is left alone)."""
    same = [i for i, c in enumerate(candidates)
            if c.new_version == existing.marker.get("new_version")]
    if not same:
        return None
    section = eval_section(existing.pr.body)
    chosen = candidates[same[0]]
    if section is not None:
        return chosen, section
    return with_alternatives(chosen, candidates[:same[0]] + candidates[same[0] + 1:]), None


def open_proposal(
    ctx: Context, base: str, base_sha: str, p: Proposal, body: str, policy: Policy
) -> PullRequest:
    branch = p.branch
    if ctx.git.sha(f"refs/heads/{branch}") is None:
        message = f"{p.title}\n\npromptbot proposal {p.id}: {p.base_version} -> {p.new_version}"
        commit = ctx.git.commit_files(base_sha, p.files, message)
        ctx.git.move_branch(branch, commit, None)
    ctx.forge.publish(branch)
    if p.eval_gate is not None:
        # Before the PR exists: a run that dies in between sets it again with the PR on
        # its next try, and a required check can never be left without a status.
        state, text = commit_status(p.eval_gate, policy.eval.require_replies)
        head = ctx.git.sha(f"refs/heads/{branch}")
        assert head is not None
        ctx.forge.set_status(head, state, text, EVAL_STATUS)
    return ctx.forge.open_pr(branch=branch, base=base, title=p.title, body=body,
                             labels=labels_for(policy.forge.label_prefix, PROPOSED))


# ---------------------------------------------------------------- reports


def write_if_changed(path: Path, text: str) -> bool:
    try:
        if path.read_text(encoding="utf-8") == text:
            return False
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)  # a full disk leaves the old report, no temp file
        raise
    return True


def write_reports(ctx: Context, policy: Policy, report: RunReport) -> None:
    folder = ctx.root / policy.reports_dir
    data = report.analysis
    write_if_changed(folder / "analysis.json", json.dumps(data, indent=2, sort_keys=True) + "\n")
    write_if_changed(folder / "analysis.md", "# promptbot analysis\n\n```\n"
                     + analysis_text(data) + "```\n")


# ---------------------------------------------------------------- rollback


def find_proposal(ctx: Context, ref: str) -> Tracked:
    prs = [t for t in tracked_prs(ctx) if t.kind == "proposal"]
    number = ref.lstrip("#")
    for t in prs:
        if t.proposal_id == ref or (number.isdigit() and t.pr.number == int(number)):
            return t
    if not (number.isdigit() or is_safe_id(ref)):
        raise UsageError(f"'{ref[:80]}' is neither a PR number nor a proposal id",
                         fix="pass a number from `promptbot pr list` or an id like p-3fa9c2d1e0")
    raise UsageError(f"no promptbot proposal '{ref[:80]}'",
                     fix="see `promptbot pr list` for the numbers and proposal ids")


def rollback(ctx: Context, ref: str) -> tuple[PullRequest, bool]:
    """Open (or find) the PR that reverts a deployed proposal. (pr, created)."""
    t = find_proposal(ctx, ref)
    if t.pr.state != "merged" or t.pr.merge_sha is None:
        raise UsageError(f"proposal {t.proposal_id} (#{t.pr.number}) is {t.pr.state}, not merged",
                         fix="only a merged proposal can be rolled back")
    base, base_sha, state = synced_tree(ctx)
    loaded = state.agents.get(t.agent)
    if loaded is not None and loaded.version == t.marker.get("base_version"):
        raise UsageError(f"{t.agent} is already back on version {loaded.version}",
                         fix="nothing to roll back; the next `promptbot run` records it")
    rid = f"rollback-{t.proposal_id}"
    branch = branch_name(t.agent, rid)
    prefix = state.policy.forge.label_prefix
    labels = [prefix, f"{prefix}:rollback"]
    for other in tracked_prs(ctx):
        if other.pr.branch == branch and other.pr.state == "open":
            if not set(labels) <= set(other.pr.labels):
                # Opened by a command stopped before it could label it.
                ctx.forge.set_labels(other.pr.number, sorted({*other.pr.labels, *labels}))
            return other.pr, False
    canary = running_canary(ctx, base, t)
    if ctx.git.sha(f"refs/heads/{branch}") is None:
        message = f"Roll back {t.pr.title}\n\nReverts merge {t.pr.merge_sha} (#{t.pr.number})."
        if canary is not None:
            # The stages changed the rollout file since the merge: a revert would conflict.
            commit = ctx.git.commit_files(base_sha, end_files(ctx, t, canary[0]), message)
        else:
            commit = ctx.git.revert_merge(t.pr.merge_sha, base_sha, message)
        ctx.git.move_branch(branch, commit, None)
    ctx.forge.publish(branch)
    body = markers.attach(
        f"Rolls back #{t.pr.number} (`{t.proposal_id}`): reverts merge commit "
        f"`{t.pr.merge_sha}` so `{t.agent}` returns to version "
        f"`{t.marker.get('base_version')}`.\n\nAfter merge, the next run records the "
        "proposal as rolled back.",
        {"kind": "rollback", "proposal_id": t.proposal_id, "agent": t.agent,
         "base_version": t.marker.get("new_version", ""),
         "new_version": t.marker.get("base_version", "")},
    )
    pr = ctx.forge.open_pr(branch=branch, base=base, title=f"Roll back: {t.pr.title}", body=body,
                           labels=labels)
    return pr, True

