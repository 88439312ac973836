"""Regression-case PRs: a fixed failure mode's production inputs into the agent's tests.yaml.

For every merged proposal whose final result is a success and whose record names the
failure mode it fixed, the run reads the inputs of the executions that failed that way on
the version before the fix (the export's `input` column, or an OpenTelemetry input
attribute), builds cases with an assertion derived from the failure (bot/core/regression.py:
scrubbed, neutralised), and opens one PR per fix on `promptbot/regression/<proposal id>`.

Once per fix: a PR in any state (open, merged, closed) means the fix has had its cases
proposed, so nothing is opened again; a run stopped after pushing the branch but before
opening the PR finds the branch (the bot's, at a commit on the base) and opens the PR from
it. Nothing is added without review: the PR is the only way into tests.yaml.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import yaml

from bot.context import Context, RunReport, Tracked
from bot.core import diagnosis, markers, regression, render, templating
from bot.core.learning import Use
from bot.core.proposals import agent_format
from bot.edges.forge import PullRequest
from bot.errors import MachineError, PromptbotError
from bot.load.repo import RepoState, tests_path
from bot.measuring import branch_tip, build_branch, people_pushed, retire, text_digest

KIND = "regression"


@dataclass(frozen=True)
class Fix:
    """A merged proposal measured as a success, with the failure mode its record names."""

    use: Use
    base_version: str
    error_type: str
    template: str


def fixes(finals: Sequence[tuple[Use, Any]]) -> list[Fix]:
    """The final results that fixed a failure mode: a kept success whose proposal record
    names the failure (error type and template) and the version it was fixed on."""
    out = []
    for use, record in finals:
        if not use.success or not isinstance(record, dict):
            continue
        problem = record.get("problem")
        base = record.get("base_version")
        if not isinstance(problem, dict) or not isinstance(base, str) or not base:
            continue
        etype, template = problem.get("error_type"), problem.get("template")
        if isinstance(etype, str) and isinstance(template, str) and etype and template:
            out.append(Fix(use, base, etype, template))
    return out


def regress_all(ctx: Context, state: RepoState, base: str, base_sha: str,
                prs: list[Tracked], finals: Sequence[tuple[Use, Any]], files: Sequence[str],
                oldest: datetime | None, fresh: set[str], report: RunReport,
                dry_run: bool) -> None:
    """Open the regression-case PR of every fix that has none yet, keep open ones mergeable,
    close those whose fix was rolled back.

    `oldest`: the export's first execution; a fix merged before it has no failing inputs
    in the export, so it costs no query. `fresh`: proposals whose result this run
    decided — only their skips are said (not again on every later run)."""
    policy = state.policy.regression
    if not policy.enabled:
        return
    done = {t.proposal_id for t in prs if t.kind == KIND}
    # A fix that was rolled back has nothing left to guard: its open PR is closed (a
    # reviewer would merge cases that the running prompt fails).
    undone = {use.proposal_id for use, _ in finals if use.rolled_back}
    for t in [t for t in prs if t.kind == KIND and t.pr.state == "open"]:
        try:
            if t.proposal_id in undone:
                retire(ctx, base, t, "the fix these cases guard was rolled back",
                       "regression cases", "regression-closed", report, dry_run)
            else:
                _refresh(ctx, base, base_sha, t, report, dry_run)
        except MachineError:
            raise
        except (PromptbotError, regression.EditError) as exc:
            why = exc.render() if isinstance(exc, PromptbotError) else str(exc)
            report.errors.append(f"#{t.pr.number} regression cases: {why}")
    merged_at = {t.proposal_id: t.pr.merged_at for t in prs if t.kind == "proposal"}
    numbers = {t.proposal_id: t.pr.number for t in prs if t.kind == "proposal"}
    no_input = []
    for fix in fixes(finals):
        pid, agent = fix.use.proposal_id, fix.use.agent
        if pid in done or agent not in state.agents:
            continue
        merged = merged_at.get(pid)
        canary = bool(state.policy.measure.canary_agents.get(
            agent, state.policy.measure.canary_stages))
        if merged is not None and oldest is not None and oldest >= merged and not canary:
            # The export starts after the fix: no failure before it to read (a canary's
            # baseline keeps serving after the merge, so it is read all the same).
            continue
        # A decided result's skips are said once, in the run that decided it.
        quiet = report if pid in fresh else RunReport()
        try:
            opened = _one(ctx, state, base, base_sha, fix, merged, numbers.get(pid),
                          files, quiet, dry_run)
        except MachineError:
            raise
        except _NoInputColumn:
            if pid in fresh:
                no_input.append(f"{agent} ({pid})")
            continue
        except PromptbotError as exc:
            report.errors.append(f"regression cases: {agent} ({pid}): {exc.render()}")
            continue
        except regression.EditError as exc:
            report.errors.append(
                f"regression cases: {agent} ({pid}): {tests_path(agent)}: {exc}; no PR "
                "opened (fix the file's layout, or add the cases by hand)")
            continue
        except (UnicodeError, RecursionError, ValueError) as exc:
            # Production data is anything: one fix's odd input never stops the run.
            report.errors.append(f"regression cases: {agent} ({pid}): {exc}")
            continue
        if quiet is not report:
            report.actions += quiet.actions
        if opened is not None:
            prs.append(Tracked(opened, markers.parse(opened.body) or {}))
    if no_input:
        report.skipped.append(
            "regression cases: the export has no `input` column (nor an OpenTelemetry input "
            f"attribute), so the fixes of {', '.join(no_input)} get no cases from production; "
            "log the user template's variables as JSON in `input` (docs/WAREHOUSE.md)")


def _refresh(ctx: Context, base: str, base_sha: str, t: Tracked, report: RunReport,
             dry_run: bool) -> None:
    """An open PR whose tests file changed on the base since its branch was built: the
    same cases appended again on the base as it is now (else the PR no longer merges), or
    the PR closed when they are all on the base already. A branch a person pushed to is
    theirs."""
    path = tests_path(t.agent)
    text = ctx.git.read(base_sha, path)
    if t.marker.get("base_version") == text_digest(text):
        return
    branch = t.pr.branch
    if people_pushed(ctx, base, branch):
        report.skipped.append(f"#{t.pr.number} regression cases: {path} changed on {base}; a "
                              "person pushed to the PR, so promptbot leaves it as it is")
        return
    tip = branch_tip(ctx, branch)
    parents = ctx.git.parents(tip) if tip else []
    if tip is None or len(parents) != 1:
        report.skipped.append(f"#{t.pr.number} regression cases: {path} changed on {base}, "
                              f"and the branch {branch} is not the bot's one commit; "
                              "promptbot leaves the PR as it is")
        return
    # This PR's own cases: those its commit added (a prod case a person deleted from the
    # base since is not brought back).
    built_on = {name for name, _ in _cases(ctx.git.read(parents[0], path))}
    ours = _existing(text)
    cases = [regression.NewCase(name, inputs, tuple(asserts), "", "")
             for name, (inputs, asserts) in _cases(ctx.git.read(tip, path))
             if name not in built_on and name not in ours]
    if not cases:
        retire(ctx, base, t, f"its cases are in {path} on {base} already", "regression cases",
               "regression-closed", report, dry_run)
        return
    new_text = regression.add_cases(text, t.agent, cases)
    title = re.sub(r"\b\d+ regression cases?\b",
                   f"{len(cases)} regression case{'s' if len(cases) != 1 else ''}", t.pr.title)
    report.actions.append(f"#{t.pr.number} regression cases: branch built again on {base} "
                          f"({path} changed there)")
    if dry_run:
        return
    build_branch(ctx, base_sha, branch, {path: new_text},
                 f"{title}\n\npromptbot regression cases for {t.proposal_id}")
    body = t.pr.body[:t.pr.body.rfind("<!-- promptbot:")].rstrip()
    ctx.forge.update_pr(t.pr.number, title=title, body=markers.attach(
        body, {**{k: v for k, v in t.marker.items() if k != "body_hash"},
               "base_version": text_digest(text)}))


def _cases(text: str | None) -> list[tuple[str, tuple[Any, list[dict[str, Any]]]]]:
    """(name, (inputs, assertions)) of a tests file's cases, in order."""
    try:
        data = yaml.safe_load(text) if text else None
    except yaml.YAMLError:
        return []
    cases = data.get("cases") if isinstance(data, dict) else None
    if not isinstance(cases, list):
        return []
    return [(str(c.get("name")), (c.get("inputs") or {}, list(c.get("assert") or [])))
            for c in cases if isinstance(c, dict)]


class _NoInputColumn(Exception):
    pass


def _one(ctx: Context, state: RepoState, base: str, base_sha: str, fix: Fix,
         merged_at: datetime | None, number: int | None, files: Sequence[str],
         report: RunReport, dry_run: bool) -> PullRequest | None:
    from bot.load.metrics import failing_inputs  # DuckDB loads with the first fix

    agent_id, pid = fix.use.agent, fix.use.proposal_id
    loaded = state.agents[agent_id]
    agent = loaded.agent
    category = diagnosis.of_failure(fix.error_type, fix.template, "",
                                    tuple(t.name for t in agent.tools))
    path = tests_path(agent_id)
    text = ctx.git.read(base_sha, path)
    existing = _existing(text)
    fmt = agent_format(agent).name
    if not regression.derivable(category, fmt):
        report.skipped.append(
            f"regression cases: {agent_id} ({pid}): no offline assertion tells a "
            f"`{category}` failure from a good reply; no cases proposed")
        return None
    rows = failing_inputs(files, state.policy.metrics, state.policy.pricing, agent=agent_id,
                          error_type=fix.error_type, version=fix.base_version,
                          before=merged_at, template=fix.template)
    if rows is None:
        raise _NoInputColumn()
    template = agent.prompts.user_template
    p = regression.plan(rows, template=fix.template, variables=templating.variables(template),
                        category=category, fmt=fmt, existing=existing,
                        max_cases=state.policy.regression.max_cases,
                        max_chars=state.policy.regression.max_input_chars,
                        renders=lambda inputs: _renders(template, inputs))
    if not p.cases:
        why = "; ".join(f"{n} × {w}" for w, n in sorted(p.unusable.items())) or \
            "no failing execution of this failure mode carries an input"
        report.skipped.append(f"regression cases: {agent_id} ({pid}): no usable input ({why})")
        return None
    cases, new_text = _appendable(text, agent_id, p.cases)
    if len(cases) < len(p.cases):
        p = replace(p, cases=cases)
    branch = f"promptbot/regression/{pid}"
    prefix = state.policy.forge.label_prefix
    title = regression.title(agent_id, category, len(p.cases), number)
    body = markers.attach(render.cap(regression.body(
        agent=agent_id, proposal_id=pid, pr=number, category=category,
        template=fix.template, p=p, tests_path=path, simulated=fix.use.simulated),
        path), {"kind": KIND, "agent": agent_id, "proposal_id": pid,
                "base_version": text_digest(text)})
    report.actions.append(f"{agent_id}: open PR '{title}' ({branch})")
    if dry_run:
        return None
    build_branch(ctx, base_sha, branch, {path: new_text},
                 f"{title}\n\npromptbot regression cases for {pid}")
    return ctx.forge.open_pr(branch=branch, base=base, title=title, body=body,
                             labels=[prefix, f"{prefix}:{KIND}"])


def _appendable(text: str | None, agent: str, cases: tuple[regression.NewCase, ...]
                ) -> tuple[tuple[regression.NewCase, ...], str]:
    """The cases that append cleanly, and the tests file with them: one that does not read
    back as written is left out, not the whole PR (the file's own layout problems still
    raise)."""
    try:
        return cases, regression.add_cases(text, agent, cases)
    except regression.EditError:
        ok = []
        for case in cases:
            try:
                regression.add_cases(text, agent, [case])
            except regression.EditError:
                continue
            ok.append(case)
        if not ok:
            raise
        return tuple(ok), regression.add_cases(text, agent, ok)


def _renders(template: str, inputs: dict[str, Any]) -> str | None:
    try:
        templating.render(template, inputs, strict=False)
    except templating.RenderError as exc:
        return f"the user template does not render with it ({exc})"
    return None


def _existing(text: str | None) -> dict[str, Any]:
    """The tests file's cases, name -> inputs (a file that does not parse has none: the
    edit then refuses it with its own message)."""
    return {name: inputs for name, (inputs, _) in _cases(text)}
