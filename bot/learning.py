"""The learning loop: promotion and demotion PRs for policies/promoted_rules.yaml.

Which rule kept working is pure (bot/core/learning.py); this module gathers its uses —
every final results file on the base (and this run's), each with the rule its proposal
record says it added, read as merged — and opens one PR per rule on its own branch,
`promptbot/learning/<promote|demote>-<rule id>`, that adds the rule to (or removes it from)
the rules file, with the evidence in the body. As for a canary's steps: an open PR is
edited only when its evidence or the rules file on the base changed; a PR a person closed
stays closed for the evidence it showed; a dry run decides and writes nothing.

A merged PR never stands in the way of the next one: a rule can be promoted, demoted and
promoted again, each time on a new commit on the base as it is then.
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import yaml

from bot.context import Context, RunReport, Tracked, ensure_labels
from bot.core import learning, markers, render, variants
from bot.core.ids import is_safe_id
from bot.core.learning import LEARNING_AGENT, Change, Thresholds, Use
from bot.core.model import Policy
from bot.core.proposals import promoted_categories
from bot.core.yamledit import RoundTripError
from bot.edges.forge import PullRequest
from bot.errors import MachineError, PromptbotError
from bot.load.repo import PROMOTED_FILE, RepoState
from bot.measuring import (
    Recorded,
    branch_tip,
    build_branch,
    people_pushed,
    results_texts,
    retire,
    text_digest,
)

KINDS = frozenset(learning.KIND.values())


def thresholds(policy: Policy) -> Thresholds:
    """The bar a rule must clear (`learning` in the policy)."""
    p = policy.learning
    return Thresholds(p.min_successes, p.min_agents, p.min_non_regressing)


Final = tuple[Use, Any]  # a final result's use and its proposal record as merged (or None)


def final_records(ctx: Context, base_sha: str, results: dict[str, Recorded]) -> list[Final]:
    """Every final measurement of a merged proposal, with its proposal record as merged: a
    git read per results file and per record, so a run reads them once (`run` passes them
    to the learning loop and the regression cases)."""
    out: list[Final] = []
    for _, text in sorted(results_texts(ctx, base_sha, results).items()):
        try:
            data = json.loads(text or "")
        except json.JSONDecodeError:
            continue  # a hand-edited file is not evidence
        use = learning.parse_result(data)
        if use is None:
            continue
        path = f"prompts/{use.agent}/proposals/{use.proposal_id}.yaml"
        sha = learning.merge_sha(data)
        # As merged: a revert deletes the record from the base branch.
        record_text = (ctx.git.read(sha, path) if sha else None) or ctx.git.read(base_sha, path)
        try:
            record = yaml.safe_load(record_text) if record_text else None
        except yaml.YAMLError:
            record = None
        out.append((use, record))
    return out


def measured_uses(ctx: Context, base_sha: str, state: RepoState, prs: list[Tracked],
                  results: dict[str, Recorded], finals: list[Final] | None = None
                  ) -> list[Use]:
    """Every final measurement of a merged proposal that added a known rule (`finals`
    when the run has read them already)."""
    rules = (*variants.CATEGORIES, *promoted_categories(state.promoted))
    numbers = {t.proposal_id: t.pr.number for t in prs if t.kind == "proposal"}
    if finals is None:
        finals = final_records(ctx, base_sha, results)
    out = []
    for use, record in finals:
        rule = learning.rule_of(record, rules)
        if rule is not None:
            out.append(replace(use, rule=rule, pr=numbers.get(use.proposal_id),
                               uncalibrated=learning.uncalibrated(record, use.expected)))
    return out


def learned_categories(ctx: Context, base_sha: str, state: RepoState, prs: list[Tracked],
                       results: dict[str, Recorded], uses: list[Use] | None = None
                       ) -> tuple[variants.Category, ...]:
    """The promoted rules for the generator, each with its measured uses (`uses` when the
    run has read them already): a proposal that adds one is estimated from them
    (proposals.assemble). No rule promoted: no reads."""
    promoted = promoted_categories(state.promoted)
    if not promoted:
        return promoted
    if uses is None:
        uses = measured_uses(ctx, base_sha, state, prs, results)
    return promoted_categories(state.promoted, learning.rule_evidence(uses, promoted))


def promote_all(ctx: Context, state: RepoState, base: str, base_sha: str,
                prs: list[Tracked], results: dict[str, Recorded], report: RunReport,
                dry_run: bool, finals: list[Final] | None = None) -> list[Use] | None:
    """Open (or refresh) the PR promoting or demoting a rule when its evidence says so.
    Returns the uses it read (None when it read none), for the proposals of the same run."""
    if not state.policy.learning.enabled:
        return None
    bar = thresholds(state.policy)
    try:
        uses = measured_uses(ctx, base_sha, state, prs, results, finals)
    except MachineError:
        raise  # the whole run stops: a full disk is no rule's problem
    except PromptbotError as exc:
        report.errors.append(f"learning: {exc.render()}")
        return None
    promoted = promoted_categories(state.promoted)
    changes = (learning.promotions(uses, promoted, thresholds=bar)
               + learning.demotions(uses, promoted, thresholds=bar))
    for ev in learning.held_back(uses, promoted, thresholds=bar):
        report.skipped.append(
            f"learning: rule {ev.rule.key}: {ev.simulated} result(s) measured on simulated "
            "exports would promote it, but simulated results are never evidence (measure "
            "real traffic, or exports without the simulate mark)")
    mine = [t for t in prs if t.kind in KINDS and is_safe_id(t.marker.get("rule", ""))]
    wanted = {(c.kind, c.rule_id) for c in changes}
    for t in mine:
        if t.pr.state == "open" and (t.kind, t.marker["rule"]) not in wanted:
            try:
                retire(ctx, base, t, _why_not(t, promoted), "learning", "learning-closed", report,
                       dry_run)
            except MachineError:
                raise
            except PromptbotError as exc:
                report.errors.append(f"#{t.pr.number} learning: {exc.render()}")
    text = ctx.git.read(base_sha, PROMOTED_FILE)
    for change in changes:
        try:
            opened = open_change(ctx, state, base, base_sha, change, text, mine, bar, report,
                                 dry_run)
            if opened is not None:
                # On the dashboard this run renders, as the next run will list it.
                prs.append(Tracked(opened, markers.parse(opened.body) or {}))
        except MachineError:
            raise
        except PromptbotError as exc:
            report.errors.append(f"learning: rule {change.rule_id}: {exc.render()}")
        except RoundTripError as exc:
            report.errors.append(
                f"learning: rule {change.rule_id}: {exc} (or {change.action} it by hand in "
                f"{PROMOTED_FILE}; the evidence: {change.reason})")
    return uses


def _why_not(t: Tracked, promoted: tuple[variants.Category, ...]) -> str:
    here = any(r.key == t.marker["rule"] for r in promoted)
    if t.kind == "promotion":
        return (f"rule {t.marker['rule']} is in {PROMOTED_FILE} already" if here else
                "the rule's measured uses no longer clear the bar for a promotion")
    return ("the rule's measured uses clear the bar again" if here else
            f"rule {t.marker['rule']} is no longer in {PROMOTED_FILE}")


def open_change(ctx: Context, state: RepoState, base: str, base_sha: str, change: Change,
                text: str | None, mine: list[Tracked], bar: Thresholds, report: RunReport,
                dry_run: bool) -> PullRequest | None:
    """The PR a change needs, opened (and returned) or refreshed; None when nothing opened."""
    rid = change.rule_id
    branch = f"promptbot/learning/{change.action}-{rid}"
    prefix = state.policy.forge.label_prefix
    labels = [prefix, f"{prefix}:learning"]
    new_text = learning.file_after(change, text)
    title = learning.title(change)
    body = markers.attach(render.cap(learning.body(change, bar), "prompts/*/results/"), {
        "kind": change.kind, "agent": LEARNING_AGENT, "proposal_id": rid, "rule": rid,
        "step": change.evidence.digest(), "base_version": text_digest(text),
        "new_version": text_digest(new_text)})
    same = sorted((t for t in mine if t.kind == change.kind and t.marker["rule"] == rid),
                  key=lambda t: t.pr.number)
    current = next((t for t in same if t.pr.state == "open"), None)
    if current is not None:
        ensure_labels(ctx, current.pr, labels, report, dry_run)
        if current.pr.body == body and current.pr.title == title:
            return None
        if current.marker.get("base_version") != text_digest(text):
            # The rules file moved on the base (another rule merged): the branch is built
            # again on it, or the PR would conflict.
            if people_pushed(ctx, base, branch):
                report.skipped.append(
                    f"#{current.pr.number} learning: rule {rid}: {PROMOTED_FILE} changed on "
                    f"{base}; a person pushed to the PR, so promptbot leaves it as it is")
                return None
            report.actions.append(f"#{current.pr.number} learning: rule {rid}: branch built "
                                  f"again on {base} ({PROMOTED_FILE} changed there)")
            if not dry_run:
                _build(ctx, base_sha, branch, new_text, change)
        report.actions.append(f"#{current.pr.number} learning: rule {rid}: refreshed")
        if not dry_run:
            ctx.forge.update_pr(current.pr.number, title=title, body=body)
        return None
    last = same[-1] if same else None
    # Only a closed PR says "not with this evidence". A merged one did its change, and the
    # change is wanted again, so it was undone since (a later demotion, a revert): the
    # rule is proposed again.
    if last is not None and last.pr.state == "closed" \
            and last.marker.get("step") == change.evidence.digest():
        report.skipped.append(f"learning: rule {rid}: the {change.kind} PR #{last.pr.number} "
                              "was closed with this same evidence; not opened again")
        return None
    tip = branch_tip(ctx, branch)
    if tip is not None and ctx.git.touched_by_people(f"refs/heads/{base}", tip):
        report.skipped.append(f"learning: rule {rid}: a person pushed to {branch} (of a closed "
                              "PR); delete that branch to let promptbot open a new PR")
        return None
    report.actions.append(f"learning: open PR '{title}' ({branch})")
    if dry_run:
        return None
    _build(ctx, base_sha, branch, new_text, change, tip)
    return ctx.forge.open_pr(branch=branch, base=base, title=title, body=body, labels=labels)


def _build(ctx: Context, base_sha: str, branch: str, new_text: str, change: Change,
           tip: str | None = None) -> None:
    """The branch at a commit on the base with the rules file edited, published."""
    build_branch(ctx, base_sha, branch, {PROMOTED_FILE: new_text},
                 f"{learning.title(change)}\n\npromptbot learning: {change.reason}", tip)
