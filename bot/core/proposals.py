"""From a problem to a proposal: the edit, the expectation, the criteria, the way back."""

from __future__ import annotations

import difflib
import hashlib
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import yaml

from bot.core import diagnosis, variants
from bot.core.agentfile import LoadedAgent, parse_agent
from bot.core.analysis import Problem
from bot.core.calibration import Calibration, Outcome, calibrate, calibrate_or_borrow
from bot.core.checks import check_variant
from bot.core.evaluation import Gate, Shot
from bot.core.impact import (
    Estimate,
    TokenChange,
    cost_estimate,
    estimate_json,
    latency_estimate,
    unknown,
)
from bot.core.model import AgentFile, Policy, PromotedRules, is_safe_id
from bot.core.yamledit import (
    RoundTripError,
    add_example,
    set_model_field,
    set_prompt,
    set_tool_description,
)
from bot.errors import PromptbotError

TokenCounter = Callable[[str], int]
OFFLINE = "offline rules"  # the generator of the offline candidates, as records name it


@dataclass(frozen=True)
class Expectation:
    success_rate_delta: float
    low: float
    high: float
    confidence: str
    method: str
    # A failure-mode fix's estimate before the calibration factor, and that factor: a rule's
    # own factor is measured against the former (bot/core/learning.py `uncalibrated`).
    uncalibrated: float | None = None
    factor: float | None = None


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
    words: str  # word-level diff of the system prompt
    tokens_before: int
    tokens_after: int
    expected: Expectation
    success_criteria: tuple[str, ...]
    rollback_plan: str
    files: dict[str, str] = field(default_factory=dict)
    economics: Economics | None = None
    calibration: Calibration = field(default_factory=lambda: Calibration(0, 1.0))
    alternatives: tuple[str, ...] = ()  # other candidates, one line each, for the PR body
    generator: str = OFFLINE
    # The offline rule the change adds (its key): recorded, so the learning loop can tell
    # which rules keep working (bot/core/learning.py).
    rule: str = ""
    rationale: str = ""
    description: str = ""
    plan: tuple[str, ...] = ()  # implementation plan, in order
    dependencies: tuple[str, ...] = ()  # proposal ids that must be merged first
    chars_before: int = 0
    chars_after: int = 0
    eval_gate: Gate | None = None  # the offline eval's verdict, when the agent has tests
    cost: Estimate = field(default_factory=lambda: unknown("not estimated"))
    latency: Estimate = field(default_factory=lambda: unknown("not estimated"))
    quality: Estimate = field(default_factory=lambda: unknown(QUALITY_LATER))
    changed_field: str = "prompts.system"  # or "examples" for a worked example
    judged_by: str = "improvement"  # the rule the deployed change is judged by (stats)
    diagnosis: str = ""  # a failure mode's category and the agent's format, for the reviewer
    canary: tuple[float, ...] = ()  # stage plan in percent when merged as a canary

    @property
    def branch(self) -> str:
        return branch_name(self.agent_id, self.id)


@dataclass(frozen=True)
class Skipped:
    agent_id: str
    reason: str


QUALITY_LATER = ("no offline-eval result for this change: the agent has no tests.yaml, or "
                 "the eval has not run (it runs when the PR opens); a quality score in the "
                 "export is measured after the deploy")


# What a deployed change is judged by follows from the problem it addresses, whatever field
# it edits: a temperature change for a format failure must raise the success rate like a
# rule would; a cap for slow answers must be faster.
RULE_OF_PROBLEM = {"failure_mode": "improvement", "latency": "faster", "conciseness": "cheaper",
                   "accuracy": "better_quality", "clarity": "not_worse", "safety": "not_worse"}


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


def word_diff(old: str, new: str, context: int = 6) -> str:
    """The changed prompt text word by word: [-removed-] and {+added+}, with a few words of
    context around each change, so re-wrapped lines do not hide what really changed."""
    a, b = old.split(), new.split()
    parts: list[str] = []
    ops = difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes()
    for index, (tag, i1, i2, j1, j2) in enumerate(ops):
        if tag == "equal":
            words = a[i1:i2]
            first, last = index == 0, index == len(ops) - 1
            if len(words) > 2 * context:
                head = [] if first else words[:context]
                tail = [] if last else words[-context:]
                parts += [*head, "…", *tail] if head or tail else ["…"]
            else:
                parts += words
            continue
        if i2 > i1:
            parts.append("[-" + " ".join(a[i1:i2]) + "-]")
        if j2 > j1:
            parts.append("{+" + " ".join(b[j1:j2]) + "+}")
    return " ".join(parts)


def expectation(problem: Problem, fix_rate: float,
                calibration: Calibration | None = None, rule: str = "") -> Expectation:
    """Share of executions failing this way × the share an added rule is expected to fix,
    times the repository's own calibration factor for this type of proposal — or, for a
    promoted `rule` with measured uses, that rule's own factor."""
    cal = calibration or Calibration(0, 1.0)
    how = (f"calibrated on the promoted rule `{rule}`'s own {cal.n} measured use(s): "
           f"measured/expected ×{cal.factor:.2f} after shrinkage") if rule else cal.note()
    share = problem.share
    rate = min(fix_rate * cal.factor, 1.0)
    return Expectation(
        uncalibrated=share * min(fix_rate, 1.0),
        factor=cal.factor,
        success_rate_delta=share * rate,
        low=share * rate * 0.25,
        high=min(share * min(1.0, rate * 1.75), 1.0 - problem.stats.success_rate),
        confidence="medium" if cal.n >= 3 else "low",
        method=(
            f"{share:.1%} of executions fail this way × {fix_rate:.0%} prior fix rate for an "
            f"added instruction; {how}"
        ),
    )


# Review effort by type, as a multiple of propose.hours_per_proposal: a wording-only edit or
# one sentence on a tool is read in minutes; a new rule or example needs the reviewer to judge
# behaviour; a model setting changes every answer's bounds and deserves a closer look.
EFFORT: dict[str, tuple[str, float]] = {
    "prompt_optimization": ("trivial", 0.5), "tool_descriptions": ("trivial", 0.5),
    "error_handling": ("small", 1.0), "safety": ("small", 1.0),
    "few_shot_examples": ("small", 1.0), "latency": ("small", 1.0),
    "model_config": ("medium", 2.0), "accuracy": ("small", 1.0),
}


def economics(problem: Problem, expected: Expectation, cost: Estimate, tokens_added: int,
              policy: Policy, kind: str = "error_handling") -> Economics:
    """ROI = success-rate gain × executions per month × value of a success - change in
    token spend per month (the cost estimate's point value; without a cost in the export,
    the added prompt tokens at the policy's price); priority = ROI per hour of effort
    (review, deploy, follow-up), the hours graded by type (EFFORT)."""
    stats = problem.stats
    days = max((stats.last_seen - stats.first_seen).total_seconds() / 86_400, 1.0)
    per_month = stats.executions / days * 30
    value = expected.success_rate_delta * per_month * policy.pricing.value_per_success_usd
    if cost.value is not None and stats.cost_per_execution:
        cost_pct = cost.value
        cost_month = cost_pct * stats.cost_per_execution * per_month
    else:
        cost_pct = 0.0
        cost_month = tokens_added * policy.pricing.input_per_mtok / 1e6 * per_month
    effort, factor = EFFORT.get(kind, ("small", 1.0))
    hours = policy.propose.hours_per_proposal * factor
    roi = value - cost_month
    return Economics(effort, hours, per_month, value, cost_month, cost_pct, roi, roi / hours)


def diagnosed(loaded: LoadedAgent, problem: Problem) -> str:
    if problem.failure is None:
        return ""
    tools = tuple(t.name for t in loaded.agent.tools)
    category = diagnosis.of_failure(problem.failure.error_type, problem.failure.template,
                                    problem.failure.example, tools)
    return (f"{category.replace('_', ' ')} (`{category}`, from the error type and "
            f"template); the agent answers in {agent_format(loaded.agent).describe()}")


def below_floor(e: Economics | None, policy: Policy) -> str | None:
    """Why a proposal is not worth a reviewer's time (its value per month does not pay back
    its review hours within propose.payback_months), or None when it is."""
    p = policy.propose
    if e is None or p.review_hour_usd <= 0:
        return None
    floor = e.hours * p.review_hour_usd / p.payback_months
    if e.roi_usd_per_month >= floor:
        return None
    return (f"worth ≈ ${e.roi_usd_per_month:,.0f}/month, below the review floor of "
            f"${floor:,.0f}/month ({e.hours:g} h × ${p.review_hour_usd:g}/h over "
            f"{p.payback_months:g} months; pricing.value_per_success_usd says what a success "
            "is worth)")


_URL = re.compile(r"(?i)\b(?:https?://|www\.)\S+")
_SECRET = re.compile(r"\b(?:sk-[A-Za-z0-9_-]{16,}|AKIA[0-9A-Z]{16}|ghp_[A-Za-z0-9]{20,}|"
                     r"xox[abp]-[A-Za-z0-9-]{10,})")


def _edited(loaded: LoadedAgent, edit: Callable[[str], str], fields: tuple[str, ...],
            ) -> tuple[str, LoadedAgent | None, list[str]]:
    """The agent file after `edit`, parsed, and what `check_variant` says of it with only
    `fields` allowed to move: the common part of every candidate's gate."""
    try:
        new_text = edit(loaded.text)
    except RoundTripError as exc:
        return "", None, [f"{loaded.path}: {exc}"]
    try:
        new = parse_agent(new_text, loaded.path, folder_id=loaded.agent.id)
    except PromptbotError as exc:
        return "", None, [f"the new file does not load: {exc.message}"]
    return new_text, new, check_variant(loaded.agent, new.agent, fields=fields)


def validate_system(loaded: LoadedAgent, system: str, policy: Policy,
                    count_tokens: TokenCounter) -> tuple[str, list[str]]:
    """(new agent file text, why it may not be proposed) for a new system prompt.

    The same gate for every generator: the file parses and keeps its schema, protected
    sections and template variables are unchanged, nothing outside prompts.system moved,
    no new URL or secret-looking string appeared, and the prompt stays within the
    policy's token limits.
    """
    new_text, new, problems = _edited(
        loaded, lambda text: set_prompt(text, "system", system), ("prompts.system",))
    if new is None:
        return new_text, problems
    old_system = loaded.agent.prompts.system
    if set(_URL.findall(system)) - set(_URL.findall(old_system)):
        problems.append("adds a URL")
    if set(_SECRET.findall(system)) - set(_SECRET.findall(old_system)):
        problems.append("adds a secret-looking string")
    before, after = count_tokens(old_system), count_tokens(system)
    if after > policy.propose.max_system_tokens:
        problems.append(f"{after} tokens exceed propose.max_system_tokens")
    if before and (after - before) / before > policy.propose.max_token_growth:
        problems.append(f"grows the prompt by {(after - before) / before:.0%}, more than "
                        f"propose.max_token_growth")
    return new_text, problems


def validate_example(loaded: LoadedAgent, shot: Shot, policy: Policy,
                     count_tokens: TokenCounter) -> tuple[str, list[str]]:
    """(new agent file text, why it may not be proposed) for one added few-shot example:
    the same gate as a new system prompt, with `examples` the only field allowed to move."""
    new_text, new, problems = _edited(
        loaded, lambda text: add_example(text, shot.input, shot.output), ("examples",))
    if new is None:
        return new_text, problems
    shown = f"{shot.input}\n{shot.output}"
    if _URL.search(shown):
        problems.append("the example carries a URL")
    if _SECRET.search(shown):
        problems.append("the example carries a secret-looking string")
    before = prompt_tokens(loaded.agent.prompts.system, loaded.agent.examples, count_tokens)
    added = count_tokens(shown)
    if before and added / before > policy.propose.max_token_growth:
        problems.append(f"grows the prompt by {added / before:.0%}, more than "
                        f"propose.max_token_growth")
    return new_text, problems


def validate_tool(loaded: LoadedAgent, tool: str, policy: Policy,
                  count_tokens: TokenCounter) -> tuple[str, list[str]]:
    """(new agent file text, why not) for the tool-description note: only `tools` moves."""
    old = next(t for t in loaded.agent.tools if t.name == tool)
    if variants.TOOL_NOTE in old.description:
        return "", [f"the {tool} description already carries the note"]
    head = old.description.rstrip()
    head += "" if head.endswith((".", "!", "?")) else "."
    new_text, new, problems = _edited(
        loaded, lambda text: set_tool_description(text, tool, f"{head} {variants.TOOL_NOTE}"),
        ("tools",))
    if new is None:
        return new_text, problems
    before = count_tokens(loaded.agent.prompts.system)
    if before and count_tokens(variants.TOOL_NOTE) / before > policy.propose.max_token_growth:
        problems.append("grows the prompt by more than propose.max_token_growth")
    return new_text, problems


def validate_model(loaded: LoadedAgent, name: str, value: int | float,
                   ) -> tuple[str, list[str]]:
    """(new agent file text, why not) for one model setting: only `model` moves."""
    new_text, _, problems = _edited(
        loaded, lambda text: set_model_field(text, name, value), ("model",))
    return new_text, problems


def prompt_tokens(system: str, examples: Sequence[Any], count_tokens: TokenCounter) -> int:
    """Tokens sent with every request before the user's message: system prompt + examples."""
    shots = "\n".join(f"{e.input}\n{e.output}" for e in examples)
    return count_tokens(system) + (count_tokens(shots) if shots else 0)


def promoted_categories(
    rules: PromotedRules, evidence: Mapping[str, tuple[tuple[float, float], ...]] | None = None,
) -> tuple[variants.Category, ...]:
    """The promoted rules as the generator's rules. A promoted copy of a built-in rule keeps
    that rule's claims (a prompt that says it in other words gets neither); `evidence`: per
    rule id, its measured uses (bot/learning.py `learned_categories`)."""
    out = []
    for r in rules.rules:
        twin = variants.builtin_twin(r.instruction)
        out.append(variants.Category(r.id, tuple(k.lower() for k in r.keywords),
                                     r.instruction, r.summary,
                                     claims=twin.claims if twin is not None else (),
                                     evidence=(evidence or {}).get(r.id, ())))
    return tuple(out)


def build(
    loaded: LoadedAgent, problem: Problem, policy: Policy, count_tokens: TokenCounter,
    history: list[Outcome] | None = None, promoted: tuple[variants.Category, ...] = (),
) -> Proposal | Skipped:
    """The offline generator's preferred proposal, the other candidates as alternatives."""
    made = build_all(loaded, problem, policy, count_tokens, history, promoted)
    return made if isinstance(made, Skipped) else with_alternatives(made[0], made[1:])


def agent_format(agent: AgentFile) -> diagnosis.Format:
    return diagnosis.output_format(agent.output_format, agent.prompts.system,
                                   tuple(e.output for e in agent.examples))


def rules_that_hold(loaded: LoadedAgent, problem: Problem,
                    promoted: tuple[variants.Category, ...] = ()
                    ) -> list[variants.Category] | Skipped:
    """The rules that address a failure mode and whose premise holds for this agent, or
    why none is proposed: a failure no prompt rule fixes (a rate limit), a rule that
    contradicts the agent's format (a JSON rule for an SQL agent), a rule the prompt
    already states in other words."""
    failure = problem.failure
    assert failure is not None
    agent = loaded.agent
    tools = tuple(t.name for t in agent.tools)
    rules = variants.categories(failure, promoted, tools)
    category = diagnosis.of_failure(failure.error_type, failure.template, failure.example, tools)
    if not rules:
        why = diagnosis.NOT_THE_PROMPT.get(category, "no prompt rule addresses it")
        return Skipped(agent.id, f"'{failure.error_type}' failures ({category}): {why}")
    fmt = agent_format(agent)
    held: list[variants.Category] = []
    reasons: list[str] = []
    for rule in rules:
        # A promoted rule refines the built-in rule of its category and shares its premise.
        premise = rule.key if rule.key in variants.BUILTIN else \
            diagnosis.RULE_FOR.get(category, rule.key)
        why_not = diagnosis.contradiction(premise, fmt, bool(agent.tools))
        if why_not is not None:
            reasons.append(why_not)
        elif variants.states_already(agent.prompts.system, rule):
            reasons.append(f"the prompt already says what the `{rule.key}` rule would add")
        else:
            held.append(rule)
    if not held:
        return Skipped(agent.id, f"'{failure.error_type}' failures: " + "; ".join(reasons))
    return held


def build_all(
    loaded: LoadedAgent, problem: Problem, policy: Policy, count_tokens: TokenCounter,
    history: list[Outcome] | None = None, promoted: tuple[variants.Category, ...] = (),
    shots: Sequence[Shot] = (),
) -> list[Proposal] | Skipped:
    """Every valid offline candidate for a problem, most preferred first.

    For a failure mode: each rule that addresses it (a promoted one, then the built-in
    one), alone and on a prompt with its filler removed. They carry the same estimate, so
    without an offline eval the smallest change is preferred (fewest changed lines, then
    fewest tokens): it is the easiest to review and to attribute.
    """
    system = loaded.agent.prompts.system
    if problem.kind == "latency":
        return _speed_candidates(loaded, problem, policy, count_tokens, history)
    if problem.kind == "accuracy":
        return _accuracy_candidates(loaded, problem, policy, count_tokens, history, shots)
    if problem.failure is None:
        return _rewrite(loaded, problem, policy, count_tokens, history)
    held = rules_that_hold(loaded, problem, promoted)
    if isinstance(held, Skipped):
        return held
    rules = held
    tidy = variants.concise(system)
    found: list[tuple[int, int, int, Proposal]] = []
    reasons: list[str] = []
    for rank, category in enumerate(rules):
        bases = [(system, f"offline rule `{category.key}`")]
        if tidy is not None:
            bases.append((tidy.system, f"offline rule `{category.key}` + filler removed"))
        for start, label in bases:
            variant = variants.add_rule(start, category)
            if variant is None:
                reasons.append(f"the prompt already carries the {category.key} rule")
                continue
            made = assemble(loaded, problem, policy, count_tokens, history, variant.system,
                            variant.added_lines, category.summary, rule=category)
            if isinstance(made, Skipped):
                reasons.append(made.reason)
                continue
            changed = sum(1 for line in made.diff.splitlines()
                          if line[:1] in "+-" and line[:3] not in ("+++", "---"))
            found.append((rank, changed, made.tokens_after, replace(made, rationale=label)))
    tools = tuple(t.name for t in loaded.agent.tools)
    tool = variants.failing_tool(problem.failure.error_type, problem.failure.template, tools) \
        if rules[0].key in TOOL_RULES else None
    if tool is not None:
        note = (f"    {variants.TOOL_NOTE}",)
        made = assemble(loaded, problem, policy, count_tokens, history,
                        loaded.agent.prompts.system, note, rules[0].summary, tool=tool)
        if isinstance(made, Skipped):
            reasons.append(made.reason)
        else:
            found.append((len(rules), 1, made.tokens_after, replace(
                made, rationale=f"note on the `{tool}` tool description")))
    example = _new_shot(loaded, shots) if rules[0].key in FORMAT_RULES else None
    if example is not None:
        # A worked example of the format, from a case the model already gets right.
        made = assemble(loaded, problem, policy, count_tokens, history,
                        loaded.agent.prompts.system, _shot_lines(example), rules[0].summary,
                        example=example)
        if isinstance(made, Skipped):
            reasons.append(made.reason)
        else:
            changed = sum(1 for line in made.diff.splitlines()
                          if line[:1] in "+-" and line[:3] not in ("+++", "---"))
            found.append((len(rules), changed, made.tokens_after, replace(
                made, rationale=f"worked example from tests.yaml case "
                f"`{_case_name(example)}`")))
    if rules[0].key in FORMAT_RULES and loaded.agent.model.temperature > 0:
        # Sampling noise breaks structured output more often than plain text.
        made = assemble(loaded, problem, policy, count_tokens, history,
                        loaded.agent.prompts.system, ("temperature: 0",), rules[0].summary,
                        temperature=0.0)
        if isinstance(made, Skipped):
            reasons.append(made.reason)
        else:
            found.append((len(rules) + 1, 2, made.tokens_after, replace(
                made, rationale=f"model config: temperature "
                f"{loaded.agent.model.temperature:g} → 0")))
    if not found:
        return Skipped(loaded.agent.id, "; ".join(dict.fromkeys(reasons)))
    found.sort(key=lambda f: f[:3])
    return [f[3] for f in found]


def _rewrite(loaded: LoadedAgent, problem: Problem, policy: Policy,
             count_tokens: TokenCounter, history: list[Outcome] | None,
             ) -> list[Proposal] | Skipped:
    """The one offline rewrite of a safety, clarity or conciseness problem."""
    system = loaded.agent.prompts.system
    if problem.kind == "safety":
        variant, category = variants.add_rule(system, variants.SAFETY), variants.SAFETY
        none, label = ("the prompt already carries the input guard",
                       "offline safety rule `untrusted_input`")
    elif problem.kind == "clarity":
        variant, category = variants.clarify(system), variants.CLARITY
        none, label = ("no hedged instruction left to state directly",
                       "offline clarity rewrite (hedges removed)")
    else:
        variant, category = variants.concise(system), variants.CONCISENESS
        none, label = "no filler wording left to remove", ""
    if variant is None:
        return Skipped(loaded.agent.id, none)
    made = assemble(loaded, problem, policy, count_tokens, history, variant.system,
                    variant.added_lines, category.summary)
    return [replace(made, rationale=label)] if isinstance(made, Proposal) else made


def _accuracy_candidates(loaded: LoadedAgent, problem: Problem, policy: Policy,
                         count_tokens: TokenCounter, history: list[Outcome] | None,
                         shots: Sequence[Shot]) -> list[Proposal] | Skipped:
    """For a version whose quality score is low: a rule to check the answer against the
    input before answering, and a worked example from a case the model gets right."""
    found: list[Proposal] = []
    reasons: list[str] = []
    rule = variants.add_rule(loaded.agent.prompts.system, variants.ACCURACY)
    if rule is None:
        reasons.append("the prompt already carries the accuracy rule")
    else:
        _keep(assemble(loaded, problem, policy, count_tokens, history, rule.system,
                       rule.added_lines, variants.ACCURACY.summary),
              "offline accuracy rule (check the answer against the input)", found, reasons)
    example = _new_shot(loaded, shots)
    if example is not None:
        _keep(assemble(loaded, problem, policy, count_tokens, history,
                       loaded.agent.prompts.system, _shot_lines(example),
                       variants.ACCURACY.summary, example=example),
              f"worked example from tests.yaml case `{_case_name(example)}`", found, reasons)
    if not found:
        return Skipped(loaded.agent.id, "; ".join(reasons) or "no offline accuracy change left")
    return found


def _case_name(shot: Shot) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", shot.case)[:80]


def _shot_lines(shot: Shot) -> tuple[str, ...]:
    return tuple(ln for ln in f"{shot.input}\n{shot.output}".splitlines() if ln.strip())[:20]


def _keep(made: Proposal | Skipped, rationale: str, found: list[Proposal],
          reasons: list[str]) -> None:
    """Collect one candidate: a valid one with its rationale, or why it was dropped."""
    if isinstance(made, Skipped):
        reasons.append(made.reason)
    else:
        found.append(replace(made, rationale=rationale))


def _speed_candidates(loaded: LoadedAgent, problem: Problem, policy: Policy,
                      count_tokens: TokenCounter, history: list[Outcome] | None,
                      ) -> list[Proposal] | Skipped:
    """For a version slower than the SLA: a brevity rule, and a lower max_tokens that cuts
    the longest answers (output tokens drive generation time)."""
    found: list[Proposal] = []
    reasons: list[str] = []
    rule = variants.add_rule(loaded.agent.prompts.system, variants.SPEED)
    if rule is not None:
        _keep(assemble(loaded, problem, policy, count_tokens, history, rule.system,
                       rule.added_lines, variants.SPEED.summary),
              "offline speed rule (brevity)", found, reasons)
    cap = variants.token_cap(loaded.agent.model.max_tokens, problem.stats.output_tokens_mean)
    if cap is not None:
        _keep(assemble(loaded, problem, policy, count_tokens, history,
                       loaded.agent.prompts.system, (f"max_tokens: {cap}",),
                       variants.SPEED.summary, max_tokens=cap),
              f"model config: max_tokens {loaded.agent.model.max_tokens} → {cap}", found,
              reasons)
    if not found:
        return Skipped(loaded.agent.id, "; ".join(reasons) or "no offline speed change left")
    return found


# Failure categories about the shape of the answer, where a worked example shows the format.
FORMAT_RULES = frozenset({"invalid_json", "missing_field"})
# Failure categories about calls of a tool, where its own description is the place to fix.
TOOL_RULES = frozenset({"tool_misuse", "ungrounded"})
MAX_SHOT_CHARS = 2_000


def _new_shot(loaded: LoadedAgent, shots: Sequence[Shot]) -> Shot | None:
    """The first successful case that is short enough, not an example already, and — for
    an agent that answers in JSON — a bare JSON document (a passing reply may still wear
    the code fence the failure mode is about; it must not be taught)."""
    have = {" ".join(e.output.split()) for e in loaded.agent.examples}
    wants_json = any(_is_json(e.output) for e in loaded.agent.examples) or \
        "json" in loaded.agent.prompts.system.lower()
    for shot in shots:
        if len(shot.input) + len(shot.output) > MAX_SHOT_CHARS:
            continue
        if wants_json and not _is_json(shot.output):
            continue
        if _UNSAFE_SHOT.search(f"{shot.input}\n{shot.output}"):
            continue  # an injection test case, or a reply that talks like instructions
        if " ".join(shot.output.split()) not in have:
            return shot
    return None


# A worked example is sent with every request: never one that carries instruction-like or
# template text, whatever its case asserted.
_UNSAFE_SHOT = re.compile(
    r"(?i)ignore (?:all |any )?(?:previous|prior|above|earlier) instructions|system prompt|"
    r"you are now|promptbot:protected|\{\{|\{%")


def _is_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


def with_quality(p: Proposal, quality: Estimate) -> Proposal:
    """`p` with its offline-eval quality estimate, pre-registered in its proposal file too."""
    return _recorded(replace(p, quality=quality))


def with_alternatives(best: Proposal, others: Sequence[Proposal],
                      notes: dict[int, str] | None = None) -> Proposal:
    """`best` carrying one line per other candidate for the PR's collapsed section."""
    notes = notes or {}
    lines = tuple(f"{o.rationale[:200] or 'candidate'} "
                  f"({o.tokens_after - o.tokens_before:+d} tokens){notes.get(i, '')}"
                  for i, o in enumerate(others))
    return replace(best, alternatives=lines)


def assemble(
    loaded: LoadedAgent, problem: Problem, policy: Policy, count_tokens: TokenCounter,
    history: list[Outcome] | None, system: str, added_lines: tuple[str, ...], summary: str,
    alternatives: tuple[str, ...] = (), example: Shot | None = None, tool: str | None = None,
    max_tokens: int | None = None, temperature: float | None = None,
    rule: variants.Category | None = None,
) -> Proposal | Skipped:
    """A proposal from any generator's new system prompt (or one added worked example, a
    note on a failing tool's description, a model setting), validated before anything
    else."""
    if example is not None:
        new_text, problems = validate_example(loaded, example, policy, count_tokens)
    elif tool is not None:
        new_text, problems = validate_tool(loaded, tool, policy, count_tokens)
    elif max_tokens is not None:
        new_text, problems = validate_model(loaded, "max_tokens", max_tokens)
    elif temperature is not None:
        new_text, problems = validate_model(loaded, "temperature", temperature)
    else:
        new_text, problems = validate_system(loaded, system, policy, count_tokens)
    if problems:
        return Skipped(loaded.agent.id, "variant failed validation: " + "; ".join(problems))
    new = parse_agent(new_text, loaded.path, folder_id=loaded.agent.id)
    pid = proposal_id(loaded.agent.id, loaded.version, problem.signature)
    kind = "error_handling" if problem.failure is not None else \
        "safety" if problem.kind == "safety" else "prompt_optimization"
    if example is not None:
        kind = "few_shot_examples"
    elif tool is not None:
        kind = "tool_descriptions"
    elif max_tokens is not None or temperature is not None:
        kind = "model_config"
    elif problem.kind == "latency":
        kind = "latency"
    if problem.kind == "accuracy":
        kind = "accuracy"  # judged by the quality score, whatever field the change edits
    # A worked example, a tool note or a setting aimed at a failure mode is a fix of it.
    cal = calibrate_or_borrow(history or [], kind, "error_handling" if
                              problem.failure is not None else kind)
    by_rule = ""
    if rule is not None and rule.evidence:
        # A promoted rule's own record says more about it than its proposal type's.
        own = calibrate([Outcome(kind, e, m) for e, m in rule.evidence], kind)
        if own.n:
            cal, by_rule = own, rule.key
    if example is not None:
        tokens_before = prompt_tokens(system, loaded.agent.examples, count_tokens)
        tokens_after = prompt_tokens(system, new.agent.examples, count_tokens)
    elif tool is not None:
        tokens_before = count_tokens(system + "".join(t.description
                                                      for t in loaded.agent.tools))
        tokens_after = count_tokens(system + "".join(t.description for t in new.agent.tools))
    else:
        tokens_before = count_tokens(loaded.agent.prompts.system)
        tokens_after = count_tokens(system)
    change = TokenChange(tokens_after - tokens_before,
                         "cap" if max_tokens is not None else
                         "brevity" if problem.kind == "latency" else "edit")
    prices = policy.pricing
    cost = cost_estimate(change, problem.stats, prices.input_per_mtok, prices.output_per_mtok)
    latency = latency_estimate(change, problem.stats)
    measure = policy.measure
    guardrail = (f"guardrail: success rate does not drop by more than "
                 f"{measure.rollback_threshold * 100:.0f} points (else the bot recommends a "
                 "rollback)")
    if problem.failure is not None:
        expected = expectation(problem, policy.propose.fix_rate_prior, cal, by_rule)
        criteria: tuple[str, ...] = (
            f"success rate of {new.version} is higher than {loaded.version}'s "
            f"({problem.stats.success_rate:.1%}) by the day-by-day always-valid test at "
            f"significance {measure.alpha} (no decision before "
            f"{measure.min_executions_per_arm} executions per version; the results comment "
            "says after each run how many more it needs)",
            f"'{summary}' failures fall below {problem.share / 2:.1%} of executions "
            f"(from {problem.share:.1%})",
            guardrail,
        )
        title = f"{loaded.agent.id}: fix {summary}" + (
            " with a worked example" if example is not None else
            f" with temperature {temperature:g}" if temperature is not None else
            f" in the `{tool}` tool description" if tool is not None else "")
    elif problem.kind == "latency":
        sla = problem.stats.latency_p95_ms or 0.0
        expected = Expectation(
            0.0, -0.005, 0.005, "low",
            f"a speed change: p95 latency {sla:.0f} ms is above the SLA; no success-rate "
            "effect expected, judged by latency (lower, interval below ×1) with the success "
            "rate not worse")
        criteria = (
            f"latency of {new.version} lower than {loaded.version}'s (p95 "
            f"{sla:.0f} ms), the interval of the ratio below 1",
            f"success rate of {new.version} not lower than {loaded.version}'s "
            f"({problem.stats.success_rate:.1%}) by more than "
            f"{measure.rollback_threshold * 100:.0f} points",
            guardrail,
        )
        title = (f"{loaded.agent.id}: cap answers at {max_tokens} tokens (p95 latency above "
                 "SLA)" if max_tokens is not None else
                 f"{loaded.agent.id}: shorter answers (p95 latency above SLA)")
    elif problem.kind == "clarity":
        hedges = len(added_lines)
        expected = Expectation(
            0.0, -0.005, 0.01, "low",
            f"a wording change: {hedges} hedged instruction(s) stated directly; a small "
            "gain where the model followed them loosely, none expected otherwise")
        criteria = (
            f"success rate of {new.version} not lower than {loaded.version}'s "
            f"({problem.stats.success_rate:.1%}) beyond the always-valid interval",
            "no offline-eval case regresses",
            guardrail,
        )
        title = f"{loaded.agent.id}: state {hedges} hedged instruction(s) directly"
    elif kind == "accuracy":
        quality = problem.stats.quality_mean or 0.0
        expected = Expectation(
            0.0, -0.005, 0.005, "low",
            f"an accuracy change: mean quality score {quality:.3g} is below the policy's "
            f"{policy.propose.min_quality:g}; judged by the quality score (higher, interval "
            "of the ratio above ×1) with the success rate not worse")
        criteria = (
            f"mean quality score of {new.version} higher than {loaded.version}'s "
            f"({quality:.3g}), the always-valid interval of the ratio above 1",
            f"success rate of {new.version} not lower than {loaded.version}'s "
            f"({problem.stats.success_rate:.1%}) by more than "
            f"{measure.rollback_threshold * 100:.0f} points",
            guardrail,
        )
        title = (f"{loaded.agent.id}: a worked example for more accurate answers"
                 if example is not None else
                 f"{loaded.agent.id}: check answers against the input (quality "
                 f"{quality:.3g} < {policy.propose.min_quality:g})")
    elif kind == "safety":
        expected = Expectation(
            0.0, -0.005, 0.005, "low",
            "a safety instruction: no success-rate effect expected in normal traffic; its "
            "value shows on hostile input (prompt-injection cases of the offline eval)")
        criteria = (
            f"success rate of {new.version} not lower than {loaded.version}'s "
            f"({problem.stats.success_rate:.1%}) beyond the always-valid interval",
            "no offline-eval case regresses; prompt-injection cases pass",
            guardrail,
        )
        title = f"{loaded.agent.id}: treat user input as data, not instructions"
    else:
        saved = tokens_before - tokens_after
        expected = Expectation(
            0.0, -0.005, 0.005, "low",
            f"a wording-only change: no success-rate effect expected; {saved} fewer prompt "
            f"tokens in every execution")
        criteria = (
            f"success rate of {new.version} not lower than {loaded.version}'s "
            f"({problem.stats.success_rate:.1%}) beyond the always-valid interval",
            f"input tokens per execution down by about {saved}",
            guardrail,
        )
        title = f"{loaded.agent.id}: remove {summary} ({-saved:+d} tokens)"
    rollback = (
        "Revert the merge commit (`git revert -m 1 <merge-commit>`) or run "
        f"`promptbot rollback {pid}`: the agent returns to version {loaded.version}. The bot "
        "notices the revert and records the proposal as rolled back."
    )
    evidence = "" if problem.failure is None else (
        f"{problem.failure.count} of {problem.stats.executions} executions of version "
        f"{loaded.version} ({problem.share:.1%}) failed with {summary}")
    if problem.failure is not None and example is not None:
        description = (
            f"{evidence}. The change adds "
            f"one worked example to `examples`: the input of tests.yaml case "
            f"`{_case_name(example)}` "
            "and the model's recorded reply to it, which passes every assertion of that case. "
            "Nothing else changes. That case is now part of the prompt, so its own eval result "
            "no longer says much; the other cases still do.")
    elif problem.failure is not None and temperature is not None:
        description = (
            f"{evidence}. The agent samples "
            f"at temperature {loaded.agent.model.temperature:g}; the change sets "
            f"model.temperature to {temperature:g}, so the model picks its most likely "
            "tokens and strays less from the required format. Nothing else changes; answers "
            "also vary less between runs of the same input.")
    elif problem.failure is not None and tool is not None:
        description = (
            f"{evidence}, in calls of the "
            f"`{tool}` tool. The change adds one sentence to that tool's description, where "
            "the model reads it when it decides on the call, and touches nothing else.")
    elif problem.failure is not None:
        description = (
            f"{evidence}. The change adds "
            "one instruction aimed at that failure mode to prompts.system and touches "
            "nothing else.")
    elif problem.kind == "latency":
        description = (
            f"Version {loaded.version} answers with p95 latency "
            f"{problem.stats.latency_p95_ms or 0:.0f} ms, above the policy's SLA "
            f"(triggers.sla_latency_p95_ms), and generation time grows with output tokens "
            f"(mean {problem.stats.output_tokens_mean or 0:.0f}). " + (
                f"The change lowers model.max_tokens from {loaded.agent.model.max_tokens} to "
                f"{max_tokens} (four times the mean output): the longest answers are cut, "
                "which the offline eval checks against every case."
                if max_tokens is not None else
                "The change adds one brevity rule to prompts.system and touches nothing "
                "else."))
    elif problem.kind == "clarity":
        description = (
            "The system prompt softens some instructions (\"try to\", \"you might want "
            "to\", \"do your best to\"), which leaves the model free to skip them. The change "
            "removes those hedges in place, so each instruction reads as one; conditions such "
            "as \"if possible\" and anything after a negation stay as written.")
    elif kind == "accuracy":
        description = (
            f"The mean quality score of version {loaded.version} is "
            f"{problem.stats.quality_mean or 0:.3g}, below the policy's propose.min_quality "
            f"({policy.propose.min_quality:g}), over {problem.stats.executions} executions. " + (
                f"The change adds one worked example to `examples`: the input of tests.yaml "
                f"case `{_case_name(example)}` and the model's recorded reply to it, which "
                "passes every assertion of that case. Nothing else changes."
                if example is not None else
                "The change adds one rule to prompts.system: check the answer against the "
                "input and the tool results, and say what is missing rather than guess. "
                "Nothing else changes."))
    elif kind == "safety":
        description = (
            "prompts.user_template fills in text that users control, and prompts.system never "
            "says to treat it as data: an instruction hidden in that text (\"ignore previous "
            "instructions…\") competes with yours. The change adds one safety rule and touches "
            "nothing else.")
    else:
        description = (
            "The system prompt carries filler phrases (or sentences that repeat an earlier "
            "one word for word) that add tokens to every execution without adding an "
            "instruction; the change removes them in place and touches nothing else.")
    field_name = "examples" if example is not None else "tools" if tool is not None \
        else "model" if max_tokens is not None or temperature is not None \
        else "prompts.system"
    plan = (
        f"Review the diff (only {field_name} changes; protected sections and template "
        "variables are unchanged) and merge: the runtime reads prompts/ from the base branch.",
        f"The runtime logs prompt_version {new.version}; promptbot measures it against "
        f"{loaded.version} on every run with an always-valid test.",
        "The results comment and prompts/<agent>/results/ record the decision; a drop beyond "
        "the rollback threshold gets a rollback recommendation.",
    )
    proposal = Proposal(
        id=pid,
        agent_id=loaded.agent.id,
        type=kind,
        title=title,
        problem=problem,
        base_version=loaded.version,
        new_version=new.version,
        agent_path=loaded.path,
        new_text=new_text,
        diff=unified_diff(loaded.text, new_text, loaded.path),
        words=word_diff(loaded.agent.prompts.system, system),
        added_lines=added_lines,
        tokens_before=tokens_before,
        tokens_after=tokens_after,
        expected=expected,
        success_criteria=criteria,
        rollback_plan=rollback,
        economics=economics(problem, expected, cost, tokens_after - tokens_before, policy,
                            kind),
        cost=cost,
        latency=latency,
        calibration=cal,
        alternatives=alternatives,
        description=description,
        plan=plan,
        chars_before=len(loaded.agent.prompts.system) if field_name == "prompts.system"
        else len(loaded.text),
        chars_after=len(system) if field_name == "prompts.system" else len(new_text),
        changed_field=field_name,
        judged_by=RULE_OF_PROBLEM.get(problem.kind, "improvement"),
        diagnosis=diagnosed(loaded, problem),
        rule=rule.key if rule is not None else "",
    )
    # Only a failure-mode fix is priced whole (success rate × value of a success): a saving
    # of tokens, speed, clarity or safety shows its value elsewhere.
    low = below_floor(proposal.economics, policy) if problem.kind == "failure_mode" else None
    if low is not None:
        return Skipped(loaded.agent.id, low)
    record = proposal_record(proposal)
    files = {loaded.path: new_text, f"prompts/{loaded.agent.id}/proposals/{pid}.yaml": record}
    return Proposal(**{**proposal.__dict__, "files": files})


def from_candidates(
    loaded: LoadedAgent, problem: Problem, policy: Policy, count_tokens: TokenCounter,
    history: list[Outcome] | None, candidates: list[tuple[str, str]], generator: str,
) -> tuple[list[Proposal] | Skipped, list[str]]:
    """A model's (system prompt, rationale) candidates that pass validation, cheapest first,
    and why the others dropped.

    Every candidate passes the same validation as the offline generator's. They address
    the same problem and so carry the same estimate: without an offline eval the one that
    adds the fewest tokens is preferred.
    """
    summary = variants.CONCISENESS.summary
    if problem.failure is not None:
        category = variants.categorize(problem.failure)
        summary = category.summary if category else f"'{problem.failure.error_type}' failures"
    valid: list[tuple[int, int, Proposal]] = []
    dropped: list[str] = []
    old_lines = set(loaded.agent.prompts.system.splitlines())
    for index, (system, rationale) in enumerate(candidates, start=1):
        added = tuple(line for line in system.splitlines() if line and line not in old_lines)
        made = assemble(loaded, problem, policy, count_tokens, history, system, added, summary)
        if isinstance(made, Skipped):
            dropped.append(f"candidate {index}: {made.reason}")
            continue
        title, description = _generated_text(problem, made, generator, summary)
        valid.append((made.tokens_after, index, _recorded(replace(
            made, generator=generator, rationale=rationale[:300], title=title,
            description=description))))
    if not valid:
        return Skipped(loaded.agent.id, f"no {generator} candidate passed validation"), dropped
    valid.sort(key=lambda v: v[:2])
    return [v[2] for v in valid], dropped


def _generated_text(problem: Problem, made: Proposal, generator: str,
                    summary: str) -> tuple[str, str]:
    """Title and description of a model's rewrite: what the offline text says of its own
    one-rule edits (adds one instruction, removes filler in place) is not true of it."""
    checked = ("Protected sections, template variables and every field outside "
               "prompts.system are unchanged (checked before this PR); review the word-level "
               "diff.")
    if problem.failure is not None:
        return made.title, (
            f"{problem.failure.count} of {problem.stats.executions} executions of version "
            f"{made.base_version} ({problem.share:.1%}) failed with {summary}. The {generator} "
            f"generator rewrote prompts.system to prevent that. {checked}")
    goal = {"latency": "speed"}.get(problem.kind, problem.kind)
    return (f"{made.agent_id}: {goal} rewrite of the system prompt "
            f"({made.tokens_after - made.tokens_before:+d} tokens)",
            f"The {generator} generator rewrote prompts.system for the {goal} goal. {checked}")


def _recorded(p: Proposal) -> Proposal:
    """`p` with its proposal file written again from its current fields."""
    record = f"prompts/{p.agent_id}/proposals/{p.id}.yaml"
    return replace(p, files={**p.files, record: proposal_record(p)}) \
        if record in p.files else p


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
            **({"error_type": failure.error_type, "template": failure.template,
                "count": failure.count} if failure is not None else {}),
            "executions": p.problem.stats.executions,
            "share": round(p.problem.share, 4),
            "success_rate": round(p.problem.stats.success_rate, 4),
        },
        "description": p.description,
        "implementation_plan": list(p.plan),
        "dependencies": list(p.dependencies),
        # `rule` always, null when none: a record without the key is an older one, whose
        # added lines the learning loop searches for a rule instead.
        "change": {"field": p.changed_field, "added_lines": list(p.added_lines),
                   "generator": p.generator, "rule": p.rule or None},
        "tokens": {"system_before": p.tokens_before, "system_after": p.tokens_after},
        "expected_effect": {
            "success_rate_delta": round(p.expected.success_rate_delta, 4),
            "interval": [round(p.expected.low, 4), round(p.expected.high, 4)],
            "confidence": p.expected.confidence,
            "method": p.expected.method,
            **({"uncalibrated_delta": round(p.expected.uncalibrated, 6),
                "calibration_factor": round(p.expected.factor, 4)}
               if p.expected.uncalibrated is not None and p.expected.factor is not None
               else {}),
            **{name: estimate_json(e) for name, e in (("cost_per_execution", p.cost),
                                                  ("latency", p.latency),
                                                  ("quality", p.quality))},
        },
        "success_criteria": list(p.success_criteria),
        "judged_by": p.judged_by,
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

