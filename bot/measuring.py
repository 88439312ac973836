"""Measuring deployed proposals: from a merged PR to a results file, comment and label.

The statistics are pure (bot/core/results.py and what it calls); this stage reads git for
what was really merged and when, writes the results comment first and the files after,
and never rewrites a final result (`standing`).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import yaml

from bot.context import (
    RESULTS_BRANCH,
    Context,
    RunReport,
    Tracked,
    ensure_labels,
)
from bot.core import markers, render
from bot.core.agentfile import parse_agent
from bot.core.calibration import Outcome
from bot.core.canary import rollout_path
from bot.core.learning import is_simulated
from bot.core.metrics import MetricsSnapshot
from bot.core.model import Policy
from bot.core.results import (
    COMPLETED,
    PROPOSED,
    ROLLED_BACK,
    SUPERSEDED,
    Deployment,
    Result,
    labels_for,
    measure,
)
from bot.core.rollout import RolloutPlan, parse_rollout
from bot.core.stats import JUDGED_BY
from bot.core.version import FieldError
from bot.errors import MachineError, PromptbotError
from bot.load.repo import RepoState


def _outcome(text: str | None) -> Outcome | None:
    """The measured effect a results file records, if it is final evidence."""
    try:
        data = json.loads(text or "")
        if data.get("state") not in ("completed", "rolled_back"):
            return None
        if data["comparison"]["decision"] not in ("success", "regression", "no_effect"):
            return None
        if is_simulated(data):
            # `promptbot simulate` data says nothing about this repo's estimates; the learning
            # loop asks the same question of the same files, so both share one answer.
            return None
        # Measured against the estimate before the calibration then in force: against the
        # calibrated one, each calibration would be judged by its predecessor's factor and
        # the factor would swing instead of settling.
        raw = data.get("expected_uncalibrated")
        expected = float(raw) if isinstance(raw, (int, float)) else float(data["expected_delta"])
        return Outcome(str(data.get("proposal_type", "error_handling")), expected,
                       float(data["comparison"]["delta"]))
    except (json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):
        return None  # a hand-edited or foreign file: not evidence


def history(ctx: Context, base_sha: str,
            fresh: dict[str, Recorded] | None = None) -> list[Outcome]:
    """Predicted vs measured effects of past proposals: the results files on the base, and
    the records this run has just kept or written (not committed yet, or on the results
    branch): the same evidence the next run will read."""
    outcomes = (_outcome(text) for text in results_texts(ctx, base_sha, fresh).values())
    return [o for o in outcomes if o is not None]


def results_texts(ctx: Context, base_sha: str,
                  fresh: dict[str, Recorded] | None = None) -> dict[str, str | None]:
    """Every results JSON by path: as on the base, this run's records over them."""
    out: dict[str, str | None] = {}
    for path in ctx.git.ls(base_sha, "prompts/"):
        if "/results/" in path and path.endswith(".json"):
            out[path] = ctx.git.read(base_sha, path)
    for r in (fresh or {}).values():
        out[r.path] = r.record
    return out


def _uncalibrated(record: Any) -> float | None:
    """The pre-registered estimate before calibration (records since 0.9 keep it), else
    None."""
    try:
        value = record["expected_effect"]["uncalibrated_delta"]
        return float(value) if isinstance(value, (int, float)) else None
    except (KeyError, TypeError):
        return None


def version_at(ctx: Context, sha: str, path: str) -> str | None:
    text = ctx.git.read(sha, path)
    if text is None:
        return None
    try:
        return parse_agent(text, path).version
    except PromptbotError:
        return None


Canary = tuple[RolloutPlan, datetime | None, datetime | None]


def deployment(ctx: Context, state: RepoState, base: str, t: Tracked,
               by_version: bool = True, canary: Canary | None = None) -> Deployment:
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
    interval: tuple[float, float] | None = None
    uncalibrated: float | None = None
    # Read the pre-registration as merged: a revert deletes it from the base branch.
    record = ctx.git.read(pr.merge_sha, f"prompts/{t.agent}/proposals/{t.proposal_id}.yaml")
    if record:
        data: Any = None
        try:
            data = yaml.safe_load(record)
            expected = float(data["expected_effect"]["success_rate_delta"])
            kind = str(data.get("type", kind))
            rule = data.get("judged_by")
            rule = rule if rule in JUDGED_BY else None
        except (yaml.YAMLError, KeyError, TypeError, ValueError, AttributeError):
            expected = 0.0
        try:
            low, high = data["expected_effect"]["interval"]
            interval = (float(low), float(high))
        except (KeyError, TypeError, ValueError, AttributeError):
            interval = None  # a record from before intervals were kept, or hand-edited
        uncalibrated = _uncalibrated(data)
    return Deployment(
        canary_share=canary[0].share / 100 if canary else None,
        canary_since=canary[1] if canary else None,
        canary_stages=len(canary[0].stages) if canary else 0,
        canary_until=canary[2] if canary else None,
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
        expected_uncalibrated=uncalibrated,
        expected_interval=interval,
        base_since=base_since,
        new_until=until,
        proposal_type=kind,
        judged_by=rule,
        controls=controls,
    )


def canary_history(ctx: Context, base: str, t: Tracked) -> Canary | None:
    """This proposal's canary on the base branch: its last rollout file (the stage it
    reached), when that stage's share was committed, and when the file stopped splitting
    (None: it still does). None: the proposal never ran as a canary."""
    path = rollout_path(t.agent)
    ref = f"refs/heads/{base}"
    last: Canary | None = None
    for sha in ctx.git.first_parent_log(ref, path):
        text = ctx.git.read(sha, path)
        when = ctx.git.commit_time(sha)
        if last is not None and last[2] is None:
            last = (last[0], last[1], when)  # this commit ended or changed that stage
        if text is None:
            continue
        current = version_at(ctx, sha, f"prompts/{t.agent}/agent.yaml")
        try:
            plan = parse_rollout(yaml.safe_load(text), current or "")
        except (yaml.YAMLError, FieldError):
            continue
        if plan.rollout_id == t.proposal_id:
            last = (plan, when, None)
    return last


def running_canary(ctx: Context, base: str, t: Tracked
                   ) -> tuple[RolloutPlan, datetime | None] | None:
    """This proposal's canary, when the base branch runs one now: its rollout file and
    the time its current share was committed. None when there is none, or the file is not
    this proposal's or not valid (check names the problem; the runtime refuses it too)."""
    return running(canary_history(ctx, base, t))


def running(canary: Canary | None) -> tuple[RolloutPlan, datetime | None] | None:
    """The canary when its rollout file still splits traffic."""
    if canary is None or canary[2] is not None:
        return None
    return canary[0], canary[1]


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
    canary: Canary | None = None  # its canary's history on the base branch, if it ran as one


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
        if t.kind == "results-pr" and t.pr.state == "open":
            # A run stopped between opening it and labelling it left it bare.
            ensure_labels(ctx, t.pr, [prefix], report, dry_run)
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
            # Read once: the canary's next step (bot/canary.py) needs it too.
            canary = canary_history(ctx, base, t)
            result = measure(deployment(ctx, state, base, t, snapshot.has_version, canary),
                             snapshot,
                             state.policy.measure)
            json_path, md_path = results_paths(result)
            recorded = existing_results(ctx, state, base, json_path)
            # A ticked "measure again" box lifts a completed result's freeze for one run.
            again = t.proposal_id in report.remeasure and result.state != ROLLED_BACK
            kept = None if again else standing(recorded, result.state)
            if kept is not None:
                # A decided result stays as recorded, whatever today's numbers say, and
                # the agent is as free as the record says.
                results[t.proposal_id] = Recorded(result, kept, json_path, recorded or "",
                                                  kept=True, canary=canary)
                ensure_labels(ctx, t.pr, labels_for(prefix, kept), report, dry_run)
                continue
            record: Result | dict[str, Any] = rolled_back_record(recorded, result) or result
            text = result.to_json() if isinstance(record, Result) else \
                json.dumps(record, indent=2, sort_keys=True) + "\n"
            headline = str(record["headline"]) if isinstance(record, dict) else result.headline
            results[t.proposal_id] = Recorded(result, result.state, json_path, text,
                                              canary=canary)
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
        except MachineError:
            raise  # the whole run stops: a full disk is no agent's problem
        except PromptbotError as exc:
            report.errors.append(f"#{t.pr.number} {t.agent}: {exc.render()}")
    if files and not dry_run:
        try:
            record_results(ctx, state.policy, base, files, report)
        except MachineError:
            raise  # the whole run stops: a full disk is no agent's problem
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
    touched = people_pushed(ctx, base, t.pr.branch)
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


def people_pushed(ctx: Context, base: str, branch: str) -> bool:
    """Whether a person pushed to one of the bot's branches (on GitHub: as origin has it)."""
    if ctx.forge.name == "github":
        ctx.git.fetch(branch)
        tip = ctx.git.sha(f"refs/remotes/origin/{branch}")
    else:
        tip = ctx.git.sha(f"refs/heads/{branch}")
    return tip is not None and ctx.git.touched_by_people(f"refs/heads/{base}", tip)


def text_digest(text: str | None) -> str:
    """The file a bot branch was built on, as a marker value (`base_version`): a PR is
    built again when the file on the base no longer has it."""
    return hashlib.sha256((text or "").encode("utf-8")).hexdigest()[:12]


def branch_tip(ctx: Context, branch: str) -> str | None:
    """Where a bot branch is: on GitHub as origin has it (a fresh checkout has no local
    one)."""
    if ctx.forge.name == "github" and ctx.git.has_remote():
        return ctx.git.fetch(branch)
    return ctx.git.sha(f"refs/heads/{branch}")


def build_branch(ctx: Context, base_sha: str, branch: str, files: dict[str, str],
                 message: str, tip: str | None = None) -> None:
    """A bot branch at one commit on the base that writes `files`, published (learning
    and regression-case PRs). A tip that is that very commit (a run stopped before opening
    the PR built it) is kept; any other is not: an earlier PR's tip may hold the same files
    but be merged already, and a PR from it would change nothing."""
    if tip is None:
        tip = branch_tip(ctx, branch)
    want = tip if tip is not None and ctx.git.parents(tip) == [base_sha] and all(
        ctx.git.read(tip, path) == text for path, text in files.items()) else None
    if want is None:
        want = ctx.git.commit_files(base_sha, files, message)
    local = ctx.git.sha(f"refs/heads/{branch}")
    if local != want:
        ctx.git.move_branch(branch, want, local)
    # A bot-owned branch: a closed PR's old tip is replaced (callers checked for a person's
    # push first).
    ctx.forge.publish(branch, force=True)


def retire(ctx: Context, base: str, t: Tracked, why: str, what: str, key: str,
           report: RunReport, dry_run: bool) -> None:
    """Close a bot PR that no longer applies (a canary step, a learning PR), with a note
    (its marker kind `key`), unless a person pushed to it; `what` names it in the report."""
    if people_pushed(ctx, base, t.pr.branch):
        report.skipped.append(f"#{t.pr.number} {what}: no longer applies ({why}); a person "
                              "pushed to it, so it stays open")
        return
    report.actions.append(f"#{t.pr.number} {what}: closed: {why}")
    if dry_run:
        return
    note = markers.attach(f"promptbot closes this PR: {why}.",
                          {"kind": key, "proposal_id": t.proposal_id})
    ctx.forge.upsert_comment(t.pr.number, key, note)
    ctx.forge.set_state(t.pr.number, "closed")
    report.superseded.add(t.pr.number)


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
