"""The learning loop, pure: which rules kept working across agents, which stopped, and
the edit of policies/promoted_rules.yaml that promotes or demotes one.

A *use* of a rule is a merged proposal that added it (its record's `change.rule`, or for
an older record the rule whose instruction its added lines carry) and whose measured
result is final: completed or rolled back, decided success, regression or no effect.
Uses are pooled by mitigation, not by name: the built-in `invalid_json` rule and the
promoted `invalid-json` rule that carries the same instruction are one mitigation, so a
rule's record follows it through its promotion (and a demoted rule needs a better
record than before to come back).

Results measured on `promptbot simulate` exports (`simulated: true`) are never evidence:
a simulation's effects are the ones its author typed in, and a promoted rule changes
every later proposal of the repository. They are counted apart, so a run can say what
they would have done.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

import yaml
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import YAMLError
from ruamel.yaml.scalarstring import DoubleQuotedScalarString

from bot.core import render
from bot.core.ids import is_safe_id
from bot.core.model import PromotedRule, PromotedRules
from bot.core.proposals import OFFLINE
from bot.core.variants import CATEGORIES, Category
from bot.core.yamledit import RoundTripError
from bot.core.yamlparse import parse_yaml, validate_as

DECISIONS = ("success", "regression", "no_effect")
FINAL = ("completed", "rolled_back")
LEARNING_AGENT = "learning"  # the marker's agent of a learning PR (markers need a safe id)
KIND = {"promote": "promotion", "demote": "demotion"}
Action = Literal["promote", "demote"]


@dataclass(frozen=True)
class Thresholds:
    """When a rule counts as "kept working" (SPEC §11: at least 90 % of its measured uses).

    A promotion needs `min_successes` measured successes on at least `min_agents` agents
    (one agent's successes may be that agent's quirk) and at least `min_non_regressing` of
    all its measured uses not regressing; a promoted rule is proposed for demotion once a
    use made with it regressed and the share falls below that same bar.
    """

    min_successes: int = 3
    min_agents: int = 2
    min_non_regressing: float = 0.90


@dataclass(frozen=True)
class Use:
    """One merged proposal's final measurement, and the rule it added."""

    agent: str
    proposal_id: str
    decision: str  # success | regression | no_effect
    delta: float  # measured success-rate change
    low: float  # its always-valid interval
    high: float
    expected: float  # the pre-registered success-rate change
    simulated: bool = False
    rule: str = ""  # the rule key as recorded (built-in key or promoted id)
    pr: int | None = None  # the proposal's PR, when the forge still lists it


def _norm(text: str) -> str:
    return " ".join(text.split())


def rule_id(key: str) -> str:
    """A rule's id in promoted_rules.yaml: built-in keys use '_', ids allow only '-'."""
    return key.replace("_", "-")


def parse_result(data: Any) -> Use | None:
    """The use a results file records, without its rule yet; None unless final evidence
    (a hand-edited or foreign file is not evidence either)."""
    try:
        comparison = data["comparison"]
        agent, pid = str(data["agent_id"]), str(data["proposal_id"])
        if data.get("state") not in FINAL or comparison["decision"] not in DECISIONS:
            return None
        if not (is_safe_id(agent) and is_safe_id(pid)):
            return None
        delta, low, high = (float(comparison[k]) for k in ("delta", "ci_low", "ci_high"))
        expected = float(data.get("expected_delta") or 0.0)
    except (KeyError, TypeError, ValueError, AttributeError):
        return None
    if not all(math.isfinite(x) for x in (delta, low, high, expected)):
        return None
    return Use(agent, pid, str(comparison["decision"]), delta, low, high, expected,
               simulated=data.get("simulated") is True)


def merge_sha(data: Any) -> str | None:
    """The merge commit a results file names, if it looks like one (it goes to git)."""
    sha = data.get("merge_sha") if isinstance(data, dict) else None
    return sha if isinstance(sha, str) and re.fullmatch(r"[0-9a-f]{40}|[0-9a-f]{64}", sha) \
        else None


_RULE_KEY = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")


def rule_of(record: Any, rules: Sequence[Category]) -> str | None:
    """The rule a proposal record says it added: `change.rule`; for a record from before
    that field, the first of `rules` whose instruction its added lines carry (offline
    proposals only: a model's rewrite is not the rule, even where it quotes it)."""
    change = record.get("change") if isinstance(record, dict) else None
    if not isinstance(change, dict):
        return None
    named = change.get("rule")
    if isinstance(named, str):
        return named if _RULE_KEY.fullmatch(named) else None
    if change.get("generator", OFFLINE) != OFFLINE:
        return None
    lines = change.get("added_lines")
    if not isinstance(lines, list):
        return None
    # The generator wraps the instruction over bullet lines at spaces only: joined again
    # with single spaces, it reads as written.
    text = _norm(" ".join(str(line) for line in lines))
    return next((r.key for r in rules if _norm(r.instruction) in text), None)


@dataclass(frozen=True)
class Evidence:
    """A rule's measured uses (pooled with every rule that carries its instruction)."""

    rule: Category
    uses: tuple[Use, ...]  # measured, not simulated; by PR, then agent and proposal
    simulated: int = 0  # simulated uses left out

    @property
    def n(self) -> int:
        return len(self.uses)

    @property
    def successes(self) -> int:
        return sum(u.decision == "success" for u in self.uses)

    @property
    def regressions(self) -> int:
        return sum(u.decision == "regression" for u in self.uses)

    @property
    def agents(self) -> tuple[str, ...]:
        """The distinct agents it succeeded on."""
        return tuple(sorted({u.agent for u in self.uses if u.decision == "success"}))

    @property
    def share_not_regressing(self) -> float:
        return (self.n - self.regressions) / self.n if self.n else 1.0

    @property
    def mean_delta(self) -> float:
        return sum(u.delta for u in self.uses) / self.n if self.n else 0.0

    @property
    def mean_expected(self) -> float:
        return sum(u.expected for u in self.uses) / self.n if self.n else 0.0

    def digest(self) -> str:
        """Which uses, with which decisions: a PR a person closed is not opened again for
        the same evidence."""
        ids = "\n".join(sorted(f"{u.proposal_id}:{u.decision}" for u in self.uses))
        return "e-" + hashlib.sha256(ids.encode()).hexdigest()[:10]


def _matches(use: Use, rule: Category, instructions: Mapping[str, str]) -> bool:
    if rule_id(use.rule) == rule_id(rule.key):
        return True
    known = instructions.get(use.rule)
    return known is not None and _norm(known) == _norm(rule.instruction)


def evidence(rule: Category, uses: Sequence[Use], promoted: Sequence[Category] = (),
             builtin: Sequence[Category] = CATEGORIES, simulated: bool = False) -> Evidence:
    """`rule`'s uses; `simulated`: counting simulated ones as if they were real (only to
    say what they would have done)."""
    instructions = {c.key: c.instruction for c in (*builtin, *promoted)}
    mine = [u for u in uses if _matches(u, rule, instructions)]
    counted = [u for u in mine if simulated or not u.simulated]
    counted.sort(key=lambda u: (u.pr is None, u.pr or 0, u.agent, u.proposal_id))
    return Evidence(rule, tuple(counted), sum(u.simulated for u in mine) if not simulated
                    else 0)


def kept_working(ev: Evidence, t: Thresholds) -> bool:
    return (ev.successes >= t.min_successes and len(ev.agents) >= t.min_agents
            # Compared as counts: 9 of 10 is 90 % exactly, whatever floats make of it.
            and (ev.n - ev.regressions) >= t.min_non_regressing * ev.n - 1e-9)


@dataclass(frozen=True)
class Change:
    action: Action
    evidence: Evidence
    reason: str

    @property
    def rule_id(self) -> str:
        return rule_id(self.evidence.rule.key)

    @property
    def kind(self) -> str:
        return KIND[self.action]


def _promoted(rule: Category, promoted: Sequence[Category]) -> bool:
    return any(p.key == rule_id(rule.key) or _norm(p.instruction) == _norm(rule.instruction)
               for p in promoted)


def promotions(uses: Sequence[Use], promoted: Sequence[Category],
               builtin: Sequence[Category] = CATEGORIES,
               thresholds: Thresholds = Thresholds()) -> list[Change]:
    """Built-in rules that kept working across agents and are not promoted yet (by id or
    by instruction: a person may have promoted one under another name)."""
    out = []
    for rule in builtin:
        if _promoted(rule, promoted):
            continue
        ev = evidence(rule, uses, promoted, builtin)
        if kept_working(ev, thresholds):
            out.append(Change("promote", ev, (
                f"{ev.successes} measured successes on {len(ev.agents)} agents, "
                f"{_pct(ev.share_not_regressing)} of {ev.n} measured uses not regressing")))
    return out


def demotions(uses: Sequence[Use], promoted: Sequence[Category],
              builtin: Sequence[Category] = CATEGORIES,
              thresholds: Thresholds = Thresholds()) -> list[Change]:
    """Promoted rules that regressed once promoted (a use recorded under the promoted
    id regressed) and whose measured uses no longer meet the bar that promotes one."""
    out = []
    for rule in promoted:
        ev = evidence(rule, uses, promoted, builtin)
        later = [u for u in ev.uses if u.rule == rule.key and u.decision == "regression"]
        if later and ev.share_not_regressing < thresholds.min_non_regressing:
            out.append(Change("demote", ev, (
                f"{ev.regressions} of {ev.n} measured uses regressed "
                f"({_pct(ev.share_not_regressing)} not regressing, below "
                f"{_pct(thresholds.min_non_regressing)})")))
    return out


def held_back(uses: Sequence[Use], promoted: Sequence[Category],
              builtin: Sequence[Category] = CATEGORIES,
              thresholds: Thresholds = Thresholds()) -> list[Evidence]:
    """Built-in rules that would be promoted if simulated results counted (the report
    says so, for `promptbot demo` and anyone trying the loop on a simulation)."""
    real = {c.rule_id for c in promotions(uses, promoted, builtin, thresholds)}
    as_if = [replace(u, simulated=False) for u in uses]
    return [evidence(c.evidence.rule, uses, promoted, builtin)
            for c in promotions(as_if, promoted, builtin, thresholds)
            if c.rule_id not in real]


def rule_evidence(uses: Sequence[Use], promoted: Sequence[Category],
                  builtin: Sequence[Category] = CATEGORIES
                  ) -> dict[str, tuple[tuple[float, float], ...]]:
    """Per promoted rule, its measured uses as (expected, measured) success-rate changes:
    what its next proposals' estimates are calibrated on (bot/core/proposals.py)."""
    out = {}
    for rule in promoted:
        ev = evidence(rule, uses, promoted, builtin)
        if ev.n:
            out[rule.key] = tuple((u.expected, u.delta) for u in ev.uses)
    return out


# ---------------------------------------------------------------- the file


def entry(rule: Category) -> PromotedRule:
    """The promoted_rules.yaml entry of a built-in rule (validated as the file will be)."""
    return PromotedRule(id=rule_id(rule.key), keywords=[k.lower() for k in rule.keywords],
                        instruction=_norm(rule.instruction), summary=rule.summary)


HEADER = (
    "# Promoted rules: mitigations that kept working (at least 90 % of their measured uses,\n"
    "# SPEC section 11), reviewed like any other change. The offline generator tries them\n"
    "# before its built-in rule table.\n"
)
# Indentations tried, the documented one (`rules:` then `  - id:`) first.
_STYLES = ((2, 4, 2), (2, 2, 0), (4, 4, 0), (4, 6, 2), (4, 4, 2))


class _Text:
    def __init__(self) -> None:
        self.parts: list[str] = []

    def write(self, chunk: str | bytes) -> None:
        self.parts.append(chunk.decode("utf-8") if isinstance(chunk, bytes) else chunk)


def _yaml(mapping: int, sequence: int, offset: int) -> YAML:
    rt = YAML()
    rt.preserve_quotes = True
    rt.width = 4096
    rt.indent(mapping=mapping, sequence=sequence, offset=offset)
    return rt


def _dump(rt: YAML, data: Any) -> str:
    sink = _Text()
    rt.dump(data, sink)
    return "".join(sink.parts)


def _round_trip(text: str) -> tuple[YAML, Any]:
    for style in _STYLES:
        rt = _yaml(*style)
        try:
            data = rt.load(text)
        except YAMLError as exc:
            raise RoundTripError(f"policies/promoted_rules.yaml does not parse: "
                                 f"{str(exc).splitlines()[0]}") from None
        if _dump(rt, data) == text:
            return rt, data
    raise RoundTripError(
        "policies/promoted_rules.yaml does not survive a YAML round trip unchanged, so an "
        "automatic edit would touch unrelated lines (use 2-space indentation, no tabs, and "
        "a newline at the end of the file)")


def _rules(text: str) -> list[PromotedRule]:
    return validate_as(PromotedRules, parse_yaml(text, "policies/promoted_rules.yaml")).rules


def _comments(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip().startswith("#")]


def _checked(old: str, new: str, want: list[PromotedRule]) -> str:
    """`new` when it holds exactly `want` and every comment of `old`, in order."""
    if _rules(new) != want or _comments(new) != _comments(old):
        raise RoundTripError("editing policies/promoted_rules.yaml automatically would change "
                             "more than the one rule (its comments or other rules)")
    return new


def _empty(text: str) -> bool:
    try:
        return yaml.safe_load(text) is None
    except yaml.YAMLError:
        return False  # the round trip or the validation says what is wrong


def with_rule(text: str | None, rule: PromotedRule) -> str:
    """`text` (the file, or None when there is none) with `rule` appended to `rules`;
    every other line and comment kept."""
    if text is None or not text.strip():
        text = HEADER + "rules: []\n"
    elif _empty(text):  # comments only: ruamel would drop them
        text = text.rstrip("\n") + "\nrules: []\n"
    rt, data = _round_trip(text)
    if not isinstance(data, CommentedMap):
        raise RoundTripError("policies/promoted_rules.yaml is not a mapping with `rules:`")
    old = _rules(text)
    rules = data.get("rules")
    if not isinstance(rules, CommentedSeq):
        rules = data["rules"] = CommentedSeq()
    # `rules: []` becomes a block list: one rule per item, as a person writes them.
    rules.fa.set_block_style()
    item = CommentedMap()
    item["id"] = rule.id
    keywords = CommentedSeq([DoubleQuotedScalarString(k) for k in rule.keywords])
    keywords.fa.set_flow_style()
    item["keywords"] = keywords
    item["instruction"] = DoubleQuotedScalarString(rule.instruction)
    item["summary"] = DoubleQuotedScalarString(rule.summary)
    rules.append(item)
    return _checked(text, _dump(rt, data), [*old, rule])


def without_rule(text: str, rid: str) -> str:
    """`text` with the rule `rid` removed (the list written `[]` once empty)."""
    rt, data = _round_trip(text)
    old = _rules(text)
    rules = data.get("rules") if isinstance(data, CommentedMap) else None
    at = next((i for i, r in enumerate(rules or []) if isinstance(r, dict)
               and r.get("id") == rid), None)
    if rules is None or at is None:
        raise RoundTripError(f"policies/promoted_rules.yaml has no rule `{rid}`")
    del rules[at]
    if not rules:
        rules.fa.set_flow_style()
    return _checked(text, _dump(rt, data), [r for r in old if r.id != rid])


def file_after(change: Change, text: str | None) -> str:
    """promoted_rules.yaml as the change's PR leaves it."""
    if change.action == "promote":
        return with_rule(text, entry(change.evidence.rule))
    if text is None:
        raise RoundTripError("policies/promoted_rules.yaml is gone")
    return without_rule(text, change.evidence.rule.key)


# ---------------------------------------------------------------- the PR


def _pts(x: float) -> str:
    return f"{x * 100:+.1f} pts"


def _pct(share: float) -> str:
    """A share as the project writes one: "90 %" (floored: 89.9 % never reads as 90 %)."""
    return f"{math.floor(share * 100 + 1e-9):.0f} %"


def _plain(text: str, limit: int = 80) -> str:
    """Text from the rules file for a PR title: one line, capped."""
    one = _norm(text)
    return one if len(one) <= limit else one[:limit - 1] + "…"


def title(change: Change) -> str:
    ev = change.evidence
    if change.action == "promote":
        return (f"promptbot: promote rule {change.rule_id} ({_plain(ev.rule.summary)}; "
                f"{ev.successes} successes on {len(ev.agents)} agents)")
    return (f"promptbot: demote rule {change.rule_id} ({ev.regressions} of {ev.n} measured "
            "uses regressed)")


def evidence_table(ev: Evidence) -> str:
    rows = ["| agent | proposal | PR | decision | measured Δ success rate (interval) | "
            "expected |", "|---|---|---|---|---|---|"]
    for u in ev.uses:
        rows.append(f"| {render.untrusted(u.agent, 63)} | {render.untrusted(u.proposal_id, 63)}"
                    f" | {f'#{u.pr}' if u.pr is not None else '—'} | {u.decision} | "
                    f"{_pts(u.delta)} ({u.low * 100:+.1f} … {u.high * 100:+.1f}) | "
                    f"{_pts(u.expected)} |")
    return "\n".join(rows)


def body(change: Change, thresholds: Thresholds) -> str:
    """The PR's Markdown (the caller attaches the marker). Text from the rules file and the
    results files is quoted as untrusted."""
    ev = change.evidence
    rule = ev.rule
    bar = (f"at least {thresholds.min_successes} measured successes on at least "
           f"{thresholds.min_agents} agents and at least {_pct(thresholds.min_non_regressing)} "
           "of the measured uses not regressing")
    summary = (f"**{ev.n} measured use(s)**: {ev.successes} success(es), "
               f"{ev.regressions} regression(s), {ev.n - ev.successes - ev.regressions} "
               f"without effect; {_pct(ev.share_not_regressing)} not regressing; mean measured "
               f"effect {_pts(ev.mean_delta)} (mean expected {_pts(ev.mean_expected)}).")
    if ev.simulated:
        summary += (f" {ev.simulated} result(s) measured on simulated exports are left out: "
                    "they never count as evidence.")
    shown = (f"- id: {render.untrusted(rule_id(rule.key), 63)}\n"
             f"- instruction: {render.untrusted(_norm(rule.instruction), 600)}\n"
             f"- summary: {render.untrusted(rule.summary, 80)}\n"
             f"- keywords: {', '.join(render.untrusted(k, 60) for k in rule.keywords)}")
    if change.action == "promote":
        head = (f"The built-in `{rule.key}` rule kept working across agents ({change.reason}; "
                f"the bar: {bar}). This PR promotes it into `policies/promoted_rules.yaml`.")
        merging = (
            "**Merging** adds the rule to `policies/promoted_rules.yaml`. The offline generator "
            f"tries it first, wherever the built-in `{rule.key}` rule applies (it carries the "
            "same instruction, so its keywords do not take it to other failures), and the "
            "success-rate estimate of a proposal that adds it comes from its measured uses "
            "(measured/expected, shrunk toward the prior) instead of the prior fix rate. "
            "promptbot proposes demoting it once a use made with it regresses and fewer than "
            f"{_pct(thresholds.min_non_regressing)} of its measured uses are not regressions.")
    else:
        later = [u for u in ev.uses if u.rule == rule.key and u.decision == "regression"]
        which = ", ".join(f"{render.untrusted(u.proposal_id, 63)} on "
                          f"{render.untrusted(u.agent, 63)}"
                          + (f" (#{u.pr})" if u.pr is not None else "") for u in later)
        head = (f"The promoted rule {render.untrusted(rule.key, 63)} stopped working: "
                f"{change.reason}. Regressed since it was promoted: {which}.")
        merging = (
            "**Merging** removes the rule from `policies/promoted_rules.yaml`: the offline "
            "generator goes back to its built-in table, and estimates to the prior fix rate. "
            "The rule's record stays: promoting it again takes a better one.")
    closing = ("Closing this PR keeps things as they are; promptbot does not open it again "
               "until the rule has new measured uses.")
    return "\n\n".join([head, summary, "### Evidence", evidence_table(ev),
                        "### The rule", shown, merging, closing]) + "\n"
