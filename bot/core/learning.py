"""The learning loop, pure: which rules kept working across agents, which stopped, and
the edit of policies/promoted_rules.yaml that promotes or demotes one.

A *use* of a rule is a merged proposal that added it (its record's `change.rule`, or for
an older record the rule whose instruction its added lines carry) and whose measured
result is final: completed or rolled back, decided success, regression or no effect.
Uses are pooled by mitigation, not by name: the built-in `invalid_json` rule and the
promoted `invalid-json` rule that carries the same instruction are one mitigation, so a
rule's record follows it through its promotion (and a demoted rule needs a better
record than before to come back).

A use that was rolled back is never a success, whatever its traffic measured before the
revert: a person took the rule out again, so it was not kept. It counts against the share
of uses kept, like a regression.

Results measured on `promptbot simulate` exports are never evidence (`is_simulated`, the
test calibration shares): a simulation's effects are the ones its author typed in, and a
promoted rule changes every later proposal of the repository. They are counted apart, so a
run can say what they would have done.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

import yaml

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
    all its measured uses kept (neither regressed nor rolled back); a promoted rule is
    proposed for demotion once a use made with it regressed or was rolled back and the
    share falls below that same bar.
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
    state: str = "completed"  # completed | rolled_back
    # The pre-registered change before any calibration factor (`uncalibrated`); None when
    # the record cannot say it. A rule's own factor is measured against this, because it
    # replaces the calibration `expected` already carries.
    uncalibrated: float | None = None

    @property
    def rolled_back(self) -> bool:
        return self.state == "rolled_back"

    @property
    def success(self) -> bool:
        """A success that was kept: a reverted rule did not keep working."""
        return self.decision == "success" and not self.rolled_back

    @property
    def failed(self) -> bool:
        """Not kept: it regressed, or a person rolled it back."""
        return self.decision == "regression" or self.rolled_back


def _norm(text: str) -> str:
    return " ".join(text.split())


def rule_id(key: str) -> str:
    """A rule's id in promoted_rules.yaml: built-in keys use '_', ids allow only '-'."""
    return key.replace("_", "-")


def is_simulated(data: Any) -> bool:
    """Whether a results file was measured on simulated data, for calibration
    (bot/measuring.py) and the learning loop alike. Fails closed: anything but
    `simulated: false` or no such key (a string, a null, a hand-typed "no") is simulated,
    and simulated results are never evidence."""
    if not isinstance(data, dict):
        return True
    return data.get("simulated", False) is not False


def parse_result(data: Any) -> Use | None:
    """The use a results file records, without its rule yet; None unless final evidence
    (a hand-edited or foreign file is not evidence either)."""
    try:
        comparison = data["comparison"]
        agent, pid = str(data["agent_id"]), str(data["proposal_id"])
        state = data.get("state")
        if state not in FINAL or comparison["decision"] not in DECISIONS:
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
               simulated=is_simulated(data), state=str(state))


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
    if "rule" in change:
        # Written by every record since the field exists, null when the proposal added no
        # table rule: its added lines are then never searched for one.
        named = change["rule"]
        return named if isinstance(named, str) and _RULE_KEY.fullmatch(named) else None
    if change.get("generator", OFFLINE) != OFFLINE:
        return None
    lines = change.get("added_lines")
    if not isinstance(lines, list):
        return None
    # The generator wraps the instruction over bullet lines at spaces only: joined again
    # with single spaces, it reads as written.
    text = _norm(" ".join(str(line) for line in lines))
    return next((r.key for r in rules if _norm(r.instruction) in text), None)


def _finite(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def uncalibrated(record: Any, expected: float) -> float | None:
    """The success-rate change a proposal record expected before any calibration factor:
    `expected_effect.uncalibrated_delta`; for a record without it, `expected` divided by
    its `calibration_factor`, or `expected` itself when its method says no calibration was
    in force. None when the record cannot say (the use still counts for promotion, but not
    for the rule's own estimate: guessing the factor would bias it)."""
    effect = record.get("expected_effect") if isinstance(record, dict) else None
    if not isinstance(effect, dict):
        return None
    raw = _finite(effect.get("uncalibrated_delta"))
    if raw is not None:
        return raw
    factor = _finite(effect.get("calibration_factor"))
    if factor is not None:
        return expected / factor if factor > 0 else None
    method = effect.get("method")
    # Calibration.note()'s words for a factor of exactly 1.
    if isinstance(method, str) and "not yet calibrated" in method:
        return expected
    return None


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
        """Successes that were kept (not rolled back)."""
        return sum(u.success for u in self.uses)

    @property
    def regressions(self) -> int:
        return sum(u.decision == "regression" for u in self.uses)

    @property
    def rolled_back(self) -> int:
        return sum(u.rolled_back for u in self.uses)

    @property
    def failures(self) -> int:
        """Uses not kept: regressed or rolled back (a rolled-back regression once)."""
        return sum(u.failed for u in self.uses)

    @property
    def agents(self) -> tuple[str, ...]:
        """The distinct agents it succeeded on (and was kept)."""
        return tuple(sorted({u.agent for u in self.uses if u.success}))

    @property
    def share_kept(self) -> float:
        return (self.n - self.failures) / self.n if self.n else 1.0

    @property
    def mean_delta(self) -> float:
        return sum(u.delta for u in self.uses) / self.n if self.n else 0.0

    @property
    def mean_expected(self) -> float:
        return sum(u.expected for u in self.uses) / self.n if self.n else 0.0

    def digest(self) -> str:
        """Which uses, with which decisions: a PR a person closed is not opened again for
        the same evidence (a use rolled back since is new evidence)."""
        ids = "\n".join(sorted(f"{u.proposal_id}:{u.decision}"
                               + (":rolled_back" if u.rolled_back else "") for u in self.uses))
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
            and (ev.n - ev.failures) >= t.min_non_regressing * ev.n - 1e-9)


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
                f"{_pct(ev.share_kept)} of {ev.n} measured uses kept")))
    return out


def demotions(uses: Sequence[Use], promoted: Sequence[Category],
              builtin: Sequence[Category] = CATEGORIES,
              thresholds: Thresholds = Thresholds()) -> list[Change]:
    """Promoted rules that failed once promoted (a use recorded under the promoted id
    regressed or was rolled back) and whose measured uses no longer meet the bar that
    promotes one."""
    out = []
    for rule in promoted:
        ev = evidence(rule, uses, promoted, builtin)
        if since_promoted(ev) and ev.share_kept < thresholds.min_non_regressing:
            out.append(Change("demote", ev, (
                f"{_failed_words(ev)} ({_pct(ev.share_kept)} kept, below "
                f"{_pct(thresholds.min_non_regressing)})")))
    return out


def since_promoted(ev: Evidence) -> list[Use]:
    """The uses made with the promoted rule itself that were not kept."""
    return [u for u in ev.uses if u.rule == ev.rule.key and u.failed]


def _failed_words(ev: Evidence) -> str:
    """"1 of 4 measured uses regressed" (or "... regressed or were rolled back")."""
    how = "regressed or were rolled back" if ev.rolled_back else "regressed"
    return f"{ev.failures} of {ev.n} measured uses {how}"


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
    """Per promoted rule, its measured uses as (uncalibrated expected, measured)
    success-rate changes: what its next proposals' estimates are calibrated on
    (proposals.assemble applies the ratio to the uncalibrated prior, so the expectation it
    is measured against must be uncalibrated too; a use whose record cannot say is left
    out)."""
    out = {}
    for rule in promoted:
        ev = evidence(rule, uses, promoted, builtin)
        pairs = tuple((u.uncalibrated, u.delta) for u in ev.uses if u.uncalibrated is not None)
        if pairs:
            out[rule.key] = pairs
    return out


# ---------------------------------------------------------------- the file


# The file is edited line by line, not through a YAML round trip: a round trip rewrites
# what it does not keep (a flow list, where a comment after the last rule belongs), and a
# PR that promotes one rule must show that rule's lines and nothing else.
FILE = "policies/promoted_rules.yaml"


def entry(rule: Category) -> PromotedRule:
    """The promoted_rules.yaml entry of a built-in rule (validated as the file will be)."""
    return PromotedRule(id=rule_id(rule.key), keywords=[k.lower() for k in rule.keywords],
                        instruction=_norm(rule.instruction), summary=rule.summary)


HEADER = (
    "# Promoted rules: mitigations that kept working (at least 90 % of their measured uses,\n"
    "# SPEC section 11), reviewed like any other change. The offline generator tries them\n"
    "# before its built-in rule table.\n"
)


def _refuse(cause: str, fix: str) -> RoundTripError:
    return RoundTripError(f"{FILE} {cause}, so promptbot does not edit it automatically "
                          f"(fix: {fix})")


def _plain_text(text: str) -> list[str]:
    """The file's lines, once it is plain enough to edit line by line: the edit touches
    the rule's lines and nothing else, and these would each make that impossible or
    invisible."""
    if text.startswith("\ufeff"):
        raise _refuse("starts with a byte order mark (BOM)", "save it as UTF-8 without a BOM")
    if "\r" in text:
        raise _refuse("has CRLF (Windows) line endings",
                      "convert it to LF line endings, e.g. with your editor or dos2unix")
    if not text.endswith("\n"):
        raise _refuse("does not end with a newline", "add one after its last line")
    lines = text[:-1].split("\n")
    if any(line.startswith(("---", "...")) for line in lines):
        raise _refuse("has a `---` (or `...`) document marker line", "remove that line")
    return lines


@dataclass(frozen=True)
class _Layout:
    """Where the rules are written in the file (0-based lines and columns)."""

    key: yaml.Node  # the `rules` key
    rules: yaml.SequenceNode  # its value
    dash: int  # the column of an item's `-`
    indent: int  # the column of an item's keys


def _layout(text: str, lines: list[str]) -> _Layout:
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        raise _refuse(f"does not parse ({str(exc).splitlines()[0]})",
                      "correct the YAML; `promptbot check` points at the line") from None
    if not isinstance(root, yaml.MappingNode):
        raise _refuse("is not a mapping with `rules:`", "start the list with a `rules:` line")
    if root.flow_style:
        raise _refuse("is written in flow style (`{rules: ...}`)",
                      "write `rules:` on a line of its own, then one `- id:` item per rule")
    found = [(k, v) for k, v in root.value if isinstance(k, yaml.ScalarNode)
             and k.value == "rules"]
    if len(found) != 1:
        raise _refuse("has no `rules:` key", "add a `rules: []` line")
    key, rules = found[0]
    if not isinstance(rules, yaml.SequenceNode):
        raise _refuse("has a `rules:` that is not a list", "write `rules: []`")
    if rules.flow_style:
        if not rules.value and rules.start_mark.line == rules.end_mark.line:
            return _Layout(key, rules, key.start_mark.column + 2, key.start_mark.column + 4)
        raise _refuse("writes its rules in flow style (`rules: [{...}]`)",
                      "write them as a block list, `rules:` then one `- id:` item per rule, "
                      "as the file's header shows")
    dash = rules.start_mark.column
    first = rules.value[0]
    indent = dash + 2
    if isinstance(first, yaml.MappingNode) and not first.flow_style \
            and first.start_mark.line == rules.start_mark.line:
        indent = first.start_mark.column  # `-   id:` keeps its spacing
    return _Layout(key, rules, dash, indent)


def _last_line(node: yaml.Node, lines: list[str]) -> int:
    """The last line of `node`'s own text: a block mapping's end is where the next token
    starts (after any comments that follow it), so its values' ends are used instead."""
    if isinstance(node, yaml.MappingNode | yaml.SequenceNode) and not node.flow_style:
        children = [c for pair in node.value for c in (pair if isinstance(pair, tuple)
                                                        else (pair,))]
        return max((_last_line(c, lines) for c in children), default=node.start_mark.line)
    end = node.end_mark
    last = end.line - 1 if end.column == 0 else end.line
    # A block scalar (`|`) ends after the blank lines that follow it: they are not its text.
    while last > node.start_mark.line and not lines[last].strip():
        last -= 1
    return last


def _quoted(value: str) -> str:
    """A double-quoted YAML scalar (JSON's string syntax is YAML's)."""
    return json.dumps(value, ensure_ascii=False)


def _item(rule: PromotedRule, dash: int, indent: int) -> list[str]:
    rid = rule.id if yaml.safe_load(rule.id) == rule.id else _quoted(rule.id)  # e.g. `on`
    pad = " " * indent
    return [" " * dash + "-" + " " * (indent - dash - 1) + f"id: {rid}",
            pad + f"keywords: [{', '.join(_quoted(k) for k in rule.keywords)}]",
            pad + f"instruction: {_quoted(rule.instruction)}",
            pad + f"summary: {_quoted(rule.summary)}"]


def _rules(text: str) -> list[PromotedRule]:
    return validate_as(PromotedRules, parse_yaml(text, FILE)).rules


def _only_changed(old: list[str], new: list[str], block: list[str], key_at: int) -> bool:
    """Whether `new` is `old` with `block` inserted (or, swapped, deleted) in one piece and,
    at most, the `rules:` line's `[]` added or dropped."""
    def bare(lines: list[str]) -> list[str]:
        return [ln.replace(" []", "", 1) if i == key_at else ln for i, ln in enumerate(lines)]
    ops = [op for op in difflib.SequenceMatcher(None, bare(old), bare(new), autojunk=False)
           .get_opcodes() if op[0] != "equal"]
    if len(ops) != 1 or ops[0][0] != "insert":
        return False
    _, _, _, j1, j2 = ops[0]
    return new[j1:j2] == block


def _checked(new: list[str], want: list[PromotedRule], only: bool) -> str:
    """The edited file, when only the rule's lines changed and it holds exactly `want`."""
    text = "\n".join(new) + "\n"
    if not only or _rules(text) != want:
        raise _refuse("would change more than the one rule's lines if edited",
                      "add or remove the rule by hand")
    return text


def with_rule(text: str | None, rule: PromotedRule) -> str:
    """`text` (the file, or None when there is none) with `rule` appended to `rules`;
    every other line kept as it is (`rules: []` becomes `rules:`)."""
    if text is None or not text.strip():
        text = HEADER + "rules: []\n"
    elif _empty(text):  # comments only
        text = text + ("" if text.endswith("\n") else "\n") + "rules: []\n"
    lines = _plain_text(text)
    at = _layout(text, lines)
    old = _rules(text)
    block = _item(rule, at.dash, at.indent)
    key_at = at.key.start_mark.line
    new = list(lines)
    if at.rules.flow_style:  # `rules: []` (flow lists with rules are refused)
        row, start, end = key_at, at.rules.start_mark.column, at.rules.end_mark.column
        new[row] = new[row][:start].rstrip() + new[row][end:]
        where = row + 1
    else:
        # Right after the last rule's own lines: a comment below it stays below them all.
        where = _last_line(at.rules.value[-1], lines) + 1
    new[where:where] = block
    return _checked(new, [*old, rule], _only_changed(lines, new, block, key_at))


def without_rule(text: str, rid: str) -> str:
    """`text` with the rule `rid`'s lines removed (`rules:` written `rules: []` once the
    list is empty); every other line, comments included, kept as it is."""
    lines = _plain_text(text)
    at = _layout(text, lines)
    old = _rules(text)
    items = at.rules.value
    ids = [next((v.value for k, v in item.value if isinstance(k, yaml.ScalarNode)
                 and k.value == "id" and isinstance(v, yaml.ScalarNode)), None)
           if isinstance(item, yaml.MappingNode) else None for item in items]
    if rid not in ids:
        raise _refuse(f"has no rule `{rid}` in its `rules:` list", "remove it by hand")
    item = items[ids.index(rid)]
    first = item.start_mark.line
    if not re.fullmatch(r" *- +", lines[first][:item.start_mark.column]):
        raise _refuse(f"writes rule `{rid}` in an unusual layout",
                      "start it with `- id:` on one line")
    last = _last_line(item, lines)
    block = lines[first:last + 1]
    new = lines[:first] + lines[last + 1:]
    key_at = at.key.start_mark.line
    if len(items) == 1:
        row = new[key_at]
        colon = row.index(":", at.key.end_mark.column)
        new[key_at] = row[:colon + 1] + " []" + row[colon + 1:]
    # Checked as the same edit the other way round: `old` is `new` with the block added.
    only = _only_changed(new, lines, block, key_at)
    return _checked(new, [r for r in old if r.id != rid], only)


def _empty(text: str) -> bool:
    try:
        return yaml.safe_load(text) is None
    except yaml.YAMLError:
        return False  # the edit says what is wrong


def file_after(change: Change, text: str | None) -> str:
    """promoted_rules.yaml as the change's PR leaves it."""
    if change.action == "promote":
        return with_rule(text, entry(change.evidence.rule))
    if text is None:
        raise RoundTripError(f"{FILE} is gone")
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
    return f"promptbot: demote rule {change.rule_id} ({_failed_words(ev)})"


def evidence_table(ev: Evidence) -> str:
    rows = ["| agent | proposal | PR | decision | measured Δ success rate (interval) | "
            "expected |", "|---|---|---|---|---|---|"]
    for u in ev.uses:
        decision = f"{u.decision}, rolled back" if u.rolled_back else u.decision
        rows.append(f"| {render.untrusted(u.agent, 63)} | {render.untrusted(u.proposal_id, 63)}"
                    f" | {f'#{u.pr}' if u.pr is not None else '—'} | {decision} | "
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
           "of the measured uses kept, neither regressed nor rolled back")
    decided = {d: sum(u.decision == d for u in ev.uses) for d in DECISIONS}
    reverted = (f"; {ev.rolled_back} of them rolled back since (not kept, whatever they "
                "measured before the revert)") if ev.rolled_back else ""
    summary = (f"**{ev.n} measured use(s)**: {decided['success']} success(es), "
               f"{decided['regression']} regression(s), {decided['no_effect']} without "
               f"effect{reverted}; {_pct(ev.share_kept)} kept; mean measured effect "
               f"{_pts(ev.mean_delta)} (mean expected {_pts(ev.mean_expected)}).")
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
            "promptbot proposes demoting it once a use made with it regresses or is rolled "
            f"back and fewer than {_pct(thresholds.min_non_regressing)} of its measured uses "
            "are kept.")
    else:
        later = since_promoted(ev)
        which = ", ".join(f"{render.untrusted(u.proposal_id, 63)} on "
                          f"{render.untrusted(u.agent, 63)}"
                          + (f" (#{u.pr})" if u.pr is not None else "")
                          + (" (rolled back)" if u.rolled_back else "") for u in later)
        how = "Regressed or rolled back" if any(u.rolled_back for u in later) else "Regressed"
        head = (f"The promoted rule {render.untrusted(rule.key, 63)} stopped working: "
                f"{change.reason}. {how} since it was promoted: {which}.")
        merging = (
            "**Merging** removes the rule from `policies/promoted_rules.yaml`: the offline "
            "generator goes back to its built-in table, and estimates to the prior fix rate. "
            "The rule's record stays: promoting it again takes a better one.")
    closing = ("Closing this PR keeps things as they are; promptbot does not open it again "
               "until the rule has new measured uses.")
    return "\n\n".join([head, summary, "### Evidence", evidence_table(ev),
                        "### The rule", shown, merging, closing]) + "\n"
