"""One run of the bot: the imperative shell that wires the pure core to git, forge and files.

Order (SPEC §2): sync, ingest, measure deployed proposals, analyze, propose,
write reports. Each agent is handled in isolation; every step compares what it
wants with what exists and writes only the difference, so a second run with
nothing new changes nothing.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from typing import Any, Protocol

import yaml

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
    latency_problem,
    safety_problem,
)
from bot.core.assertions import parse_cases
from bot.core.calibration import Outcome
from bot.core.eval_render import render_eval_markdown
from bot.core.evaluation import EvalReport, Provider, Shot, commit_status, successful_shots
from bot.core.generation import GenerationRequest, VariantCandidate
from bot.core.impact import estimate_json, paired_quality
from bot.core.metrics import MetricsSnapshot
from bot.core.model import Policy, TestsFile, is_safe_id
from bot.core.proposals import (
    Proposal,
    Skipped,
    TokenCounter,
    branch_name,
    build_all,
    from_candidates,
    promoted_categories,
    proposal_id,
    with_alternatives,
    with_quality,
)
from bot.core.report import analysis, analysis_text
from bot.core.results import (
    COMPLETED,
    MEASURING,
    PROPOSED,
    REJECTED,
    ROLLED_BACK,
    SUPERSEDED,
    Deployment,
    Result,
    labels_for,
    measure,
)
from bot.core.roadmap import Item, roadmap
from bot.core.stats import JUDGED_BY
from bot.core.templating import variables
from bot.core.variants import Category
from bot.core.yamlparse import parse_yaml, validate_as
from bot.edges.eval_providers import (
    AnthropicEvalProvider,
    RecordedProvider,
    RecordingProvider,
    parse_recordings,
    recordings_rel,
    render_recordings,
)
from bot.edges.forge import Forge, PullRequest
from bot.edges.git import Git, GitTree
from bot.errors import GitError, PromptbotError, UsageError
from bot.load.metrics import ingest_with, resolve_sources
from bot.load.repo import RepoState, load_repo, tests_path

RESULTS_BRANCH = "promptbot/results"
EVAL_STATUS = "promptbot/eval"


@dataclass
class Context:
    root: Path
    git: Git
    forge: Forge
    count_tokens: TokenCounter
    say: Callable[[str], None] = lambda _line: None
    progress: bool = False  # a progress bar while reading large exports
    generator: VariantSource | None = None  # None: the offline generator
    eval_live: AnthropicEvalProvider | None = None  # None: the offline eval replays recordings


class VariantSource(Protocol):
    """A model that writes candidate system prompts (bot/edges/anthropic_generator.py)."""

    label: str

    def generate(self, req: GenerationRequest) -> list[VariantCandidate]: ...


@dataclass
class RunReport:
    actions: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    analysis: dict[str, Any] = field(default_factory=dict)
    superseded: set[int] = field(default_factory=set)  # PRs this run closed as out of date

    def to_json(self) -> dict[str, Any]:
        return {"actions": self.actions, "errors": self.errors, "skipped": self.skipped}


@dataclass(frozen=True)
class Tracked:
    """A bot PR with its parsed marker."""

    pr: PullRequest
    marker: dict[str, str]

    @property
    def kind(self) -> str:
        return self.marker.get("kind", "")

    @property
    def proposal_id(self) -> str:
        return self.marker.get("proposal_id", "")

    @property
    def agent(self) -> str:
        return self.marker.get("agent", "")

    @property
    def closed_as(self) -> str:
        """What a closed, unmerged proposal was: superseded by the bot, else rejected."""
        return SUPERSEDED if self.marker.get("state") == SUPERSEDED else REJECTED


# ---------------------------------------------------------------- loading


def base_tree(ctx: Context, policy_base: str | None = None) -> tuple[str, str, RepoState]:
    base = policy_base or "main"
    sha = ctx.git.sha(f"refs/heads/{base}")
    if sha is None:
        raise GitError(f"the base branch '{base}' has no commits",
                       fix=f"commit the prompts to '{base}' first, or set forge.base_branch")
    state = load_repo(GitTree(ctx.git, sha))
    if state.policy.forge.base_branch != base:
        return base_tree(ctx, state.policy.forge.base_branch)
    return base, sha, state


def _outcome(text: str | None) -> Outcome | None:
    """The measured effect a results file records, if it is final evidence."""
    try:
        data = json.loads(text or "")
        if data.get("state") not in ("completed", "rolled_back"):
            return None
        if data["comparison"]["decision"] not in ("success", "regression", "no_effect"):
            return None
        return Outcome(str(data.get("proposal_type", "error_handling")),
                       float(data["expected_delta"]), float(data["comparison"]["delta"]))
    except (json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):
        return None  # a hand-edited or foreign file: not evidence


def history(ctx: Context, base_sha: str,
            fresh: dict[str, Recorded] | None = None) -> list[Outcome]:
    """Predicted vs measured effects of past proposals: the results files on the base, and
    the records this run has just kept or written (not committed yet, or on the results
    branch): the same evidence the next run will read."""
    out: dict[str, Outcome | None] = {}
    for path in ctx.git.ls(base_sha, "prompts/"):
        if "/results/" in path and path.endswith(".json"):
            out[path] = _outcome(ctx.git.read(base_sha, path))
    for r in (fresh or {}).values():
        out[r.path] = _outcome(r.record)
    return [o for o in out.values() if o is not None]


def load_metrics(ctx: Context, policy: Policy, patterns: list[str] | None) -> MetricsSnapshot:
    files = resolve_sources(patterns or [policy.metrics.source], ctx.root)
    ctx.say(f"reading {len(files)} metrics file(s)")
    return ingest_with(files, policy.metrics, policy.pricing, progress=ctx.progress)


def tracked_prs(ctx: Context) -> list[Tracked]:
    out = []
    for pr in ctx.forge.list_prs():
        marker = markers.parse(pr.body)
        # A marker alone can be typed by anyone; the branch must be the bot's too.
        if marker is None or not pr.branch.startswith("promptbot/"):
            continue
        ids = (marker.get("agent", ""), marker.get("proposal_id", ""))
        if all(is_safe_id(i) for i in ids):
            out.append(Tracked(pr, marker))
    return out


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
    results = measure_all(ctx, state, base, snapshot, prs, report, dry_run)
    current = {a: loaded.version for a, loaded in state.agents.items()}
    report.analysis = analysis(snapshot, current, state.policy)
    propose_all(ctx, state, base, base_sha, snapshot, prs, results, report, dry_run)
    if not dry_run:
        write_reports(ctx, state.policy, report)
    return report


# ---------------------------------------------------------------- measuring


def version_at(ctx: Context, sha: str, path: str) -> str | None:
    text = ctx.git.read(sha, path)
    if text is None:
        return None
    try:
        return parse_agent(text, path).version
    except PromptbotError:
        return None


def deployment(ctx: Context, state: RepoState, base: str, t: Tracked,
               by_version: bool = True) -> Deployment:
    """What git says about a merged proposal: versions as merged, when each was live."""
    pr = t.pr
    assert pr.merge_sha is not None and pr.merged_at is not None
    path = f"prompts/{t.agent}/agent.yaml"
    loaded = state.agents.get(t.agent)
    parents = ctx.git.parents(pr.merge_sha)
    # The versions really merged, not what the marker promised: a person may have
    # pushed to the branch, or the base may have moved before the merge.
    base_version = (version_at(ctx, parents[0], path) if parents else None) \
        or t.marker.get("base_version", "")
    new_version = version_at(ctx, pr.merge_sha, path) or t.marker.get("new_version", "")
    history = [(sha, version_at(ctx, sha, path))
               for sha in ctx.git.first_parent_log(f"refs/heads/{base}", path)]
    shas = [sha for sha, _ in history]
    base_since = until = None
    reverted_at, revert_sha = None, None
    if pr.merge_sha in shas:
        at = shas.index(pr.merge_sha)
        start = at
        while start > 0 and history[start - 1][1] == base_version:
            start -= 1
        if start > 0:  # an older version ran before: the base side starts at this commit
            base_since = ctx.git.commit_time(history[start][0])
        for sha, version in history[at + 1:]:
            if version != new_version:
                until = ctx.git.commit_time(sha)
                if version == base_version:
                    reverted_at, revert_sha = until, sha
                break
    # Natural controls: with a version column the export itself shows which of the
    # repository's agents kept one version; without one, the agents whose file nobody
    # touched from the start of the base window on (an addition or a comment edit excludes
    # one too).
    controls = tuple(sorted(a for a in state.agents if a != t.agent))
    if not by_version:
        since = pr.merged_at.replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(
            days=state.policy.measure.base_days)
        touched = ctx.git.touched_since(f"refs/heads/{base}", since, "prompts/")
        controls = tuple(sorted(a for a in state.agents
                                if a != t.agent and f"prompts/{a}/agent.yaml" not in touched))
    expected, kind, rule = 0.0, "error_handling", None
    # Read the pre-registration as merged: a revert deletes it from the base branch.
    record = ctx.git.read(pr.merge_sha, f"prompts/{t.agent}/proposals/{t.proposal_id}.yaml")
    if record:
        try:
            data = yaml.safe_load(record)
            expected = float(data["expected_effect"]["success_rate_delta"])
            kind = str(data.get("type", kind))
            rule = data.get("judged_by")
            rule = rule if rule in JUDGED_BY else None
        except (yaml.YAMLError, KeyError, TypeError, ValueError, AttributeError):
            expected = 0.0
    return Deployment(
        proposal_id=t.proposal_id,
        agent_id=t.agent,
        base_version=base_version,
        new_version=new_version,
        merged_at=pr.merged_at,
        merge_sha=pr.merge_sha,
        current_version=loaded.version if loaded else None,
        reverted_at=reverted_at,
        revert_sha=revert_sha,
        expected_delta=expected,
        base_since=base_since,
        new_until=until,
        proposal_type=kind,
        judged_by=rule,
        controls=controls,
    )


def results_paths(r: Result) -> tuple[str, str]:
    stem = f"prompts/{r.agent_id}/results/{r.proposal_id}"
    return f"{stem}.json", f"{stem}.md"


def results_comment(r: Result | dict[str, Any]) -> str:
    body = render.render("results.md.j2", r=r)
    ids = r if isinstance(r, dict) else {"proposal_id": r.proposal_id, "state": r.state}
    return markers.attach(body, {"kind": "results", "proposal_id": ids["proposal_id"],
                                 "state": ids["state"]})


@dataclass(frozen=True)
class Recorded:
    """A deployed proposal after this run: today's measurement and what stands on record."""

    result: Result
    state: str  # the state on record (a frozen one, or this run's)
    path: str  # its results JSON
    record: str  # that JSON as it stands after this run
    kept: bool = False  # the record was final already: this run changed nothing in it


def rolled_back_record(recorded: str | None, result: Result) -> dict[str, Any] | None:
    """A completed result kept as it was measured, marked rolled back: the revert changes
    the state, not what the traffic before it showed."""
    try:
        data = json.loads(recorded or "")
    except json.JSONDecodeError:
        return None
    if not isinstance(data, dict) or data.get("state") != COMPLETED \
            or result.state != ROLLED_BACK:
        return None
    return {**data, "state": ROLLED_BACK, "rolled_back_by": result.rolled_back_by,
            "recommend_rollback": False, "days_needed": None,
            "headline": f"rolled back ({data.get('headline', '')})"}


def measure_all(
    ctx: Context,
    state: RepoState,
    base: str,
    snapshot: MetricsSnapshot,
    prs: list[Tracked],
    report: RunReport,
    dry_run: bool,
) -> dict[str, Recorded]:
    prefix = state.policy.forge.label_prefix
    results: dict[str, Recorded] = {}
    files: dict[str, str] = {}
    for t in prs:
        if t.kind != "proposal":
            continue
        try:
            if t.pr.state == "closed":
                ensure_labels(ctx, t.pr, labels_for(prefix, t.closed_as), report, dry_run)
                continue
            if t.pr.state == "open":
                loaded = state.agents.get(t.agent)
                if loaded is not None and loaded.version != t.marker.get("base_version"):
                    supersede(ctx, base, t, loaded.version, prefix, report, dry_run)
                    continue
                ensure_labels(ctx, t.pr, labels_for(prefix, PROPOSED), report, dry_run)
                continue
            result = measure(deployment(ctx, state, base, t, snapshot.has_version), snapshot,
                             state.policy.measure)
            json_path, md_path = results_paths(result)
            recorded = existing_results(ctx, state, base, json_path)
            kept = standing(recorded, result.state)
            if kept is not None:
                # A decided result stays as recorded, whatever today's numbers say, and
                # the agent is as free as the record says.
                results[t.proposal_id] = Recorded(result, kept, json_path, recorded or "",
                                                  kept=True)
                ensure_labels(ctx, t.pr, labels_for(prefix, kept), report, dry_run)
                continue
            record: Result | dict[str, Any] = rolled_back_record(recorded, result) or result
            text = result.to_json() if isinstance(record, Result) else \
                json.dumps(record, indent=2, sort_keys=True) + "\n"
            headline = str(record["headline"]) if isinstance(record, dict) else result.headline
            results[t.proposal_id] = Recorded(result, result.state, json_path, text)
            want = {json_path: text,
                    md_path: f"# {result.agent_id} · {result.proposal_id}\n\n"
                    + render.render("results.md.j2", r=record)}
            if recorded == want[json_path] and \
                    existing_results(ctx, state, base, md_path) == want[md_path]:
                ensure_labels(ctx, t.pr, labels_for(prefix, result.state), report, dry_run)
                continue
            report.actions.append(f"#{t.pr.number} {t.agent}: results {headline}")
            if not dry_run:
                # The comment goes first: if the run dies before the commit, the next
                # run sees the file missing, finds the comment unchanged and commits.
                ctx.forge.upsert_comment(t.pr.number, "results", results_comment(record))
            ensure_labels(ctx, t.pr, labels_for(prefix, result.state), report, dry_run)
            files.update(want)
        except PromptbotError as exc:
            report.errors.append(f"#{t.pr.number} {t.agent}: {exc.render()}")
    if files and not dry_run:
        try:
            record_results(ctx, state.policy, base, files, report)
        except PromptbotError as exc:
            report.errors.append(f"results not recorded (the next run retries): {exc.render()}")
    return results


def supersede(
    ctx: Context, base: str, t: Tracked, current: str, prefix: str, report: RunReport,
    dry_run: bool,
) -> None:
    """The agent changed on the base branch: this proposal no longer applies.

    Closed (and proposed again from the new version by this same run) unless a person
    pushed to its branch; their work is never thrown away, the PR stays open.
    """
    branch = t.pr.branch
    if ctx.forge.name == "github":
        ctx.git.fetch(branch)
        tip = ctx.git.sha(f"refs/remotes/origin/{branch}")
    else:
        tip = ctx.git.sha(f"refs/heads/{branch}")
    touched = tip is not None and ctx.git.touched_by_people(f"refs/heads/{base}", tip)
    if touched:
        note = (f"`{t.agent}` changed on `{base}` (now version `{current}`); this proposal "
                f"was made for `{t.marker.get('base_version')}`. Someone pushed to this "
                "branch, so promptbot leaves it open for them; rebase it or close it.")
    else:
        note = (f"Superseded: `{t.agent}` changed on `{base}` (now version `{current}`); "
                f"this proposal was made for `{t.marker.get('base_version')}`. promptbot "
                "closes it and proposes again from the new version.")
    body = markers.attach(note, {"kind": "superseded", "proposal_id": t.proposal_id})
    report.actions.append(f"#{t.pr.number} {t.agent}: "
                          + ("base changed; left open (a person pushed to it)" if touched
                             else "superseded by a change on the base branch; closed"))
    if not touched:
        report.superseded.add(t.pr.number)
    if dry_run:
        return
    ctx.forge.upsert_comment(t.pr.number, "superseded", body)
    if touched:
        return
    marker = {**{k: v for k, v in t.marker.items() if k != "body_hash"}, "state": SUPERSEDED}
    head, found, _ = t.pr.body.rpartition("<!-- promptbot:")  # the bot's marker comes last
    visible = head if found else t.pr.body
    ctx.forge.update_pr(t.pr.number, title=t.pr.title, body=markers.attach(visible, marker))
    ctx.forge.set_state(t.pr.number, "closed")
    ensure_labels(ctx, t.pr, labels_for(prefix, SUPERSEDED), report, dry_run)


def standing(recorded: str | None, state: str) -> str | None:
    """The recorded state when it stands against a new measurement in `state`, else None.

    A final result is frozen: later traffic never rewrites it. Only a rollback of a
    completed proposal changes it (to rolled back)."""
    if recorded is None:
        return None
    try:
        data = json.loads(recorded)
    except json.JSONDecodeError:
        return None
    old = data.get("state") if isinstance(data, dict) else None
    if old == ROLLED_BACK or (old == COMPLETED and state != ROLLED_BACK):
        return str(old)
    return None


def existing_results(ctx: Context, state: RepoState, base: str, path: str) -> str | None:
    on_base = ctx.git.read(f"refs/heads/{base}", path)
    if on_base is not None or state.policy.forge.results != "pr":
        return on_base
    return ctx.git.read(f"refs/heads/{RESULTS_BRANCH}", path)


def record_results(
    ctx: Context, policy: Policy, base: str, files: dict[str, str], report: RunReport
) -> None:
    message = "promptbot: record measured results\n\n" + "\n".join(sorted(files))
    if policy.forge.results == "commit":
        old = ctx.git.sha(f"refs/heads/{base}")
        assert old is not None
        remote = ctx.forge.name == "github" and ctx.git.has_remote()
        # On GitHub the remote branch is the record: build on its tip and push that, so a
        # failed push leaves nothing local that would hide the results from the next run.
        parent = (ctx.git.fetch(base) or old) if remote else old
        new = ctx.git.commit_files(parent, files, message)
        if remote:
            ctx.git.push(base, sha=new)
        if ctx.git.is_ancestor(old, new):
            ctx.git.move_branch(base, new, old)
        report.actions.append(f"committed {len(files)} results file(s) to {base}")
        return
    # Branch protection forbids pushing to the base branch: one results PR, kept up to date.
    old_branch = ctx.git.sha(f"refs/heads/{RESULTS_BRANCH}")
    if ctx.forge.name == "github" and ctx.git.has_remote():
        # A fresh Actions checkout has no local results branch: continue origin's.
        remote_tip = ctx.git.fetch(RESULTS_BRANCH)
        if remote_tip is not None and remote_tip != old_branch:
            ctx.git.move_branch(RESULTS_BRANCH, remote_tip, old_branch)
            old_branch = remote_tip
    is_open = any(p.branch == RESULTS_BRANCH and p.state == "open" for p in ctx.forge.list_prs())
    # A merged or closed results PR is done with: start the branch again from the base.
    start = old_branch if is_open and old_branch else ctx.git.sha(f"refs/heads/{base}")
    assert start is not None
    new = ctx.git.commit_files(start, files, message)
    ctx.git.move_branch(RESULTS_BRANCH, new, old_branch)
    ctx.forge.publish(RESULTS_BRANCH, force=not is_open)
    if not is_open:
        body = markers.attach("Measured results of deployed promptbot proposals.",
                              {"kind": "results-pr", "agent": "results", "proposal_id": "results"})
        ctx.forge.open_pr(branch=RESULTS_BRANCH, base=base, title="promptbot: measured results",
                          body=body, labels=[policy.forge.label_prefix])
    report.actions.append(f"updated results PR branch {RESULTS_BRANCH}")


def ensure_labels(
    ctx: Context, pr: PullRequest, labels: list[str], report: RunReport, dry_run: bool
) -> None:
    prefix = labels[0]
    keep = [lab for lab in pr.labels if lab != prefix and not lab.startswith(prefix + ":")]
    want = sorted(set(keep + labels))
    if sorted(pr.labels) == want:
        return
    report.actions.append(f"#{pr.number}: labels {', '.join(labels[1:])}")
    if not dry_run:
        ctx.forge.set_labels(pr.number, want)


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
    return markers.attach(body, {"kind": "proposal", "proposal_id": p.id, "agent": p.agent_id,
                                 "base_version": p.base_version, "new_version": p.new_version})


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
) -> None:
    policy = state.policy
    past = history(ctx, base_sha, results)
    promoted = promoted_categories(state.promoted)
    by_id = {t.proposal_id: t for t in prs if t.kind == "proposal"}
    busy = {t.agent for t in prs if t.kind in ("proposal", "rollback") and t.pr.state == "open"
            and t.pr.number not in report.superseded}
    busy |= {r.result.agent_id for r in results.values() if r.state == MEASURING}
    opened = 0
    for agent_id, loaded in sorted(state.agents.items()):
        stats = current_stats(snapshot, agent_id, loaded.version)
        problems = problems_for(loaded, snapshot, policy)
        if not problems:
            continue
        cooldown = timedelta(days=policy.propose.cooldown_days)
        if stats and snapshot.newest and stats.first_seen > snapshot.newest - cooldown:
            report.skipped.append(f"{agent_id}: version {loaded.version} is live for less than "
                                  f"{policy.propose.cooldown_days:g} days (cooldown)")
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
                        report.skipped.append(f"{agent_id}: a change is open or being measured")
                        said_busy = True
                    continue
                if existing is None and opened >= policy.propose.max_prs_per_run:
                    report.skipped.append(f"{agent_id}: max_prs_per_run reached")
                    break
                if existing is not None and ctx.generator is not None:
                    break  # a model's PR is not rewritten on every run (cost, churn)
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
                else:
                    chosen, section = choose(ctx, base, base_sha, loaded, made, policy, report)
                    if chosen is None:
                        continue
                    proposal = chosen
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
                    open_proposal(ctx, base, base_sha, proposal, body, policy)
                    if proposal.eval_gate is not None:
                        state_, text = commit_status(proposal.eval_gate,
                                                     policy.eval.require_replies)
                        head = ctx.git.sha(f"refs/heads/{proposal.branch}")
                        assert head is not None
                        ctx.forge.set_status(head, state_, text, EVAL_STATUS)
                break
        except PromptbotError as exc:
            report.errors.append(f"{agent_id}: {exc.render()}")


def plan(ctx: Context, patterns: list[str] | None = None, only: str | None = None,
         goals: tuple[str, ...] = GOALS) -> list[dict[str, Any]]:
    """What `propose` would do, per agent, as data (nothing is written)."""
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
            if t.kind in ("proposal", "rollback") and t.pr.state == "open"}
    past = history(ctx, base_sha)
    promoted = promoted_categories(state.promoted)
    policy = state.policy
    found: list[tuple[Proposal, str]] = []
    for agent_id, loaded in sorted(state.agents.items()):
        if only is not None and agent_id != only:
            continue
        shots = successful_cases(ctx, base_sha, loaded)
        for problem in problems_for(loaded, snapshot, policy, goals):
            pid = proposal_id(agent_id, loaded.version, problem.signature)
            existing = by_id.get(pid)
            if existing is not None and existing.pr.state != "open" and \
                    existing.marker.get("state") != SUPERSEDED:
                continue
            made = make_proposal(ctx, loaded, problem, policy, past, RunReport(), promoted,
                                 shots)
            if isinstance(made, Skipped):
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
    failures = tuple((e.error_type, e.template, e.count) for e in problem.stats.top_errors[:5])
    goal = {"failure_mode": "error_handling", "latency": "speed"}.get(problem.kind,
                                                                      problem.kind)
    request = GenerationRequest(loaded.agent.id, loaded.text, loaded.agent.prompts.system,
                                (goal,), failures, policy.generator.candidates)
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
    if not scored:
        return None, None
    scored.sort(key=lambda s: s[:2])
    best, evaluated = scored[0][2], scored[0][3]
    section = render_eval_markdown(evaluated)
    if len(scored) > 1:
        ran = len(evaluated.cases)
        rows = [f"- {render.untrusted(s[2].rationale or 'candidate', 200)} "
                f"({s[2].tokens_after - s[2].tokens_before:+d} tokens): {-s[0]}/{ran} passed"
                for s in scored]
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
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
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
    for other in tracked_prs(ctx):
        if other.pr.branch == branch and other.pr.state == "open":
            return other.pr, False
    if ctx.git.sha(f"refs/heads/{branch}") is None:
        message = f"Roll back {t.pr.title}\n\nReverts merge {t.pr.merge_sha} (#{t.pr.number})."
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
                           labels=[state.policy.forge.label_prefix,
                                   f"{state.policy.forge.label_prefix}:rollback"])
    return pr, True

