"""From a problem to a proposal: the edit, the expectation, the criteria, the way back."""

from __future__ import annotations

import difflib
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import yaml

from bot.core import variants
from bot.core.agentfile import LoadedAgent, parse_agent
from bot.core.analysis import Problem
from bot.core.calibration import Calibration, Outcome, calibrate
from bot.core.checks import check_variant
from bot.core.model import Policy, is_safe_id
from bot.core.yamledit import RoundTripError, set_prompt

TokenCounter = Callable[[str], int]


@dataclass(frozen=True)
class Expectation:
    success_rate_delta: float
    low: float
    high: float
    confidence: str
    method: str


@dataclass(frozen=True)
class Economics:
    """Effort, money and priority of a proposal (see `economics` for how)."""

    effort: str  # trivial | small | medium | large
    hours: float
    executions_per_month: float
    value_usd_per_month: float  # success-rate gain x volume x value of a success
    cost_usd_per_month: float  # change in token spend (negative = saving)
    cost_pct: float  # change in cost per execution
    roi_usd_per_month: float  # value - cost change
    priority: float  # ROI per hour of effort


@dataclass(frozen=True)
class Proposal:
    id: str
    agent_id: str
    type: str
    title: str
    problem: Problem
    base_version: str
    new_version: str
    agent_path: str
    new_text: str
    diff: str
    added_lines: tuple[str, ...]
    tokens_before: int
    tokens_after: int
    expected: Expectation
    success_criteria: tuple[str, ...]
    rollback_plan: str
    files: dict[str, str] = field(default_factory=dict)
    economics: Economics | None = None
    calibration: Calibration = field(default_factory=lambda: Calibration(0, 1.0))

    @property
    def branch(self) -> str:
        return branch_name(self.agent_id, self.id)


@dataclass(frozen=True)
class Skipped:
    agent_id: str
    reason: str


def proposal_id(agent_id: str, base_version: str, signature: str) -> str:
    digest = hashlib.sha256(f"{agent_id}|{base_version}|{signature}".encode()).hexdigest()
    return f"p-{digest[:10]}"


def branch_name(agent_id: str, pid: str) -> str:
    if not (is_safe_id(agent_id) and is_safe_id(pid)):
        raise ValueError(f"unsafe id in branch name: {agent_id!r}/{pid!r}")
    return f"promptbot/{agent_id}/{pid}"


def unified_diff(old: str, new: str, path: str) -> str:
    lines = difflib.unified_diff(
        old.splitlines(keepends=True), new.splitlines(keepends=True), f"a/{path}", f"b/{path}", n=2
    )
    return "".join(lines)


def expectation(problem: Problem, fix_rate: float,
                calibration: Calibration | None = None) -> Expectation:
    """Share of executions failing this way × the share an added rule is expected to fix,
    times the repository's own calibration factor for this type of proposal."""
    cal = calibration or Calibration(0, 1.0)
    share = problem.share
    rate = min(fix_rate * cal.factor, 1.0)
    return Expectation(
        success_rate_delta=share * rate,
        low=share * rate * 0.25,
        high=min(share * min(1.0, rate * 1.75), 1.0 - problem.stats.success_rate),
        confidence="medium" if cal.n >= 3 else "low",
        method=(
            f"{share:.1%} of executions fail this way × {fix_rate:.0%} prior fix rate for an "
            f"added instruction; {cal.note()}"
        ),
    )


def economics(problem: Problem, expected: Expectation, tokens_added: int,
              policy: Policy) -> Economics:
    """ROI = success-rate gain × executions per month × value of a success - added token
    spend per month; priority = ROI per hour of effort (review, deploy, follow-up)."""
    stats = problem.stats
    days = max((stats.last_seen - stats.first_seen).total_seconds() / 86_400, 1.0)
    per_month = stats.executions / days * 30
    value = expected.success_rate_delta * per_month * policy.pricing.value_per_success_usd
    added = tokens_added * policy.pricing.input_per_mtok / 1e6
    cost_month = added * per_month
    cost_pct = added / stats.cost_per_execution if stats.cost_per_execution else 0.0
    hours = policy.propose.hours_per_proposal
    roi = value - cost_month
    return Economics("small", hours, per_month, value, cost_month, cost_pct, roi, roi / hours)


def build(
    loaded: LoadedAgent, problem: Problem, policy: Policy, count_tokens: TokenCounter,
    history: list[Outcome] | None = None,
) -> Proposal | Skipped:
    category = variants.categorize(problem.failure)
    if category is None:
        return Skipped(loaded.agent.id, f"no offline rule addresses '{problem.failure.error_type}'")
    variant = variants.add_rule(loaded.agent.prompts.system, category)
    if variant is None:
        return Skipped(loaded.agent.id, f"the prompt already carries the {category.key} rule")
    try:
        new_text = set_prompt(loaded.text, "system", variant.system)
    except RoundTripError as exc:
        return Skipped(loaded.agent.id, f"{loaded.path}: {exc}")
    new = parse_agent(new_text, loaded.path, folder_id=loaded.agent.id)
    problems = check_variant(loaded.agent, new.agent, fields=("prompts.system",))
    if problems:
        return Skipped(loaded.agent.id, "variant failed validation: " + "; ".join(problems))
    pid = proposal_id(loaded.agent.id, loaded.version, problem.signature)
    cal = calibrate(history or [], "error_handling")
    expected = expectation(problem, policy.propose.fix_rate_prior, cal)
    tokens_before = count_tokens(loaded.agent.prompts.system)
    tokens_after = count_tokens(variant.system)
    measure = policy.measure
    criteria = (
        f"success rate of {new.version} is higher than {loaded.version}'s "
        f"({problem.stats.success_rate:.1%}) at significance {measure.alpha} "
        f"with at least {measure.min_executions_per_arm} executions per version",
        f"'{category.summary}' failures fall below {problem.share / 2:.1%} of executions "
        f"(from {problem.share:.1%})",
        f"guardrail: success rate does not drop by more than "
        f"{measure.rollback_threshold * 100:.0f} points (else the bot recommends a rollback)",
    )
    rollback = (
        "Revert the merge commit (`git revert -m 1 <merge-commit>`) or run "
        f"`promptbot rollback {pid}`: the agent returns to version {loaded.version}. The bot "
        "notices the revert and records the proposal as rolled back."
    )
    title = f"{loaded.agent.id}: fix {category.summary}"
    proposal = Proposal(
        id=pid,
        agent_id=loaded.agent.id,
        type="error_handling",
        title=title,
        problem=problem,
        base_version=loaded.version,
        new_version=new.version,
        agent_path=loaded.path,
        new_text=new_text,
        diff=unified_diff(loaded.text, new_text, loaded.path),
        added_lines=variant.added_lines,
        tokens_before=tokens_before,
        tokens_after=tokens_after,
        expected=expected,
        success_criteria=criteria,
        rollback_plan=rollback,
        economics=economics(problem, expected, tokens_after - tokens_before, policy),
        calibration=cal,
    )
    record = proposal_record(proposal)
    files = {loaded.path: new_text, f"prompts/{loaded.agent.id}/proposals/{pid}.yaml": record}
    return Proposal(**{**proposal.__dict__, "files": files})


def proposal_record(p: Proposal) -> str:
    """The pre-registered expectation, committed with the change itself."""
    failure = p.problem.failure
    data: dict[str, Any] = {
        "id": p.id,
        "agent": p.agent_id,
        "type": p.type,
        "title": p.title,
        "base_version": p.base_version,
        "new_version": p.new_version,
        "problem": {
            "kind": p.problem.kind,
            "error_type": failure.error_type,
            "template": failure.template,
            "count": failure.count,
            "executions": p.problem.stats.executions,
            "share": round(p.problem.share, 4),
            "success_rate": round(p.problem.stats.success_rate, 4),
        },
        "change": {"field": "prompts.system", "added_lines": list(p.added_lines)},
        "tokens": {"system_before": p.tokens_before, "system_after": p.tokens_after},
        "expected_effect": {
            "success_rate_delta": round(p.expected.success_rate_delta, 4),
            "interval": [round(p.expected.low, 4), round(p.expected.high, 4)],
            "confidence": p.expected.confidence,
            "method": p.expected.method,
        },
        "success_criteria": list(p.success_criteria),
        "rollback_plan": p.rollback_plan,
    }
    if p.economics is not None:
        e = p.economics
        data["economics"] = {
            "effort": e.effort, "hours": e.hours,
            "executions_per_month": round(e.executions_per_month),
            "roi_usd_per_month": round(e.roi_usd_per_month, 2),
            "cost_change_pct": round(e.cost_pct * 100, 2),
            "priority_usd_per_hour": round(e.priority, 2),
        }
    header = (
        "# Pre-registered expectation of a promptbot proposal. Written before the change\n"
        "# is deployed, so the measured result can be compared with what was predicted.\n"
    )
    return header + yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100)
