"""The learning loop: rules that kept working across agents are promoted by PR, a promoted
rule that regresses is proposed for demotion, and estimates use a promoted rule's record."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from datetime import UTC, datetime
from itertools import count, pairwise
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import PROJECT, Cli, git, github_context, snapshot_state
from standin.github_server import GitHubStandIn

from bot.app import run
from bot.context import Context, base_tree, tracked_prs
from bot.core import learning, markers, variants
from bot.core.agentfile import parse_agent
from bot.core.analysis import Problem
from bot.core.calibration import SHRINK, Outcome, calibrate
from bot.core.learning import Thresholds, Use
from bot.core.metrics import ErrorGroup, VersionStats
from bot.core.model import Policy, PromotedRule, PromotedRules
from bot.core.proposals import Proposal, build_all, promoted_categories, proposal_record
from bot.core.yamledit import RoundTripError
from bot.edges.git import Git
from bot.edges.local_forge import LocalForge
from bot.edges.tokens import count_tokens
from bot.learning import learned_categories, measured_uses
from bot.measuring import Recorded
from bot.measuring import _outcome as measuring_outcome

JSON = variants.BUILTIN["invalid_json"]
SQL = variants.BUILTIN["sql_schema"]
RULES_FILE = PROJECT / "policies" / "promoted_rules.yaml"
_ids = count(1)


def use(agent: str, decision: str = "success", rule: str = "invalid_json",
        simulated: bool = False, delta: float = 0.03, expected: float = 0.02,
        state: str = "completed") -> Use:
    return Use(agent, f"p-{next(_ids):010d}", decision, delta, delta - 0.02, delta + 0.02,
               expected, simulated=simulated, rule=rule, state=state)


def twin(*rules: variants.Category) -> tuple[variants.Category, ...]:
    """Built-in rules as the learning loop promotes them, read back as promoted rules."""
    return promoted_categories(PromotedRules(rules=[learning.entry(r) for r in rules]))


def promoted_keys(uses: list[Use], promoted: tuple[variants.Category, ...] = (),
                  **bar: Any) -> list[str]:
    return [c.rule_id for c in learning.promotions(uses, promoted, thresholds=Thresholds(**bar))]


# ----------------------------------------------------------------- thresholds (pure)


def test_three_successes_promote_two_do_not() -> None:
    two = [use("a"), use("b")]
    assert promoted_keys(two) == []
    assert promoted_keys([*two, use("c")]) == ["invalid-json"]
    # No effect is not a regression, and not a success either.
    assert promoted_keys([*two, use("c", "no_effect")]) == []
    assert promoted_keys([*two, use("c", "no_effect"), use("c")]) == ["invalid-json"]
    # The bar is a parameter: four successes asked, three are not enough.
    assert promoted_keys([*two, use("c")], min_successes=4) == []


def test_successes_on_one_agent_are_not_across_agents() -> None:
    assert promoted_keys([use("a"), use("a"), use("a")]) == []
    assert promoted_keys([use("a"), use("a"), use("b")]) == ["invalid-json"]
    assert promoted_keys([use("a"), use("a"), use("b")], min_agents=3) == []


@pytest.mark.parametrize(("regressions", "promoted"), [(10, True), (11, False)])
def test_ninety_percent_not_regressing_is_the_bar(regressions: int, promoted: bool) -> None:
    # 100 measured uses: 90 not regressing is exactly 90 % (promoted), 89 is not.
    uses = [use(f"agent-{i % 5}") for i in range(100 - regressions)]
    uses += [use("agent-9", "regression", delta=-0.03) for _ in range(regressions)]
    ev = learning.evidence(JSON, uses)
    assert ev.n == 100 and ev.regressions == regressions
    assert (promoted_keys(uses) == ["invalid-json"]) is promoted


def test_nine_of_ten_promote_eight_of_nine_do_not() -> None:
    nine = [use(f"agent-{i % 3}") for i in range(9)]
    bad = use("agent-9", "regression", delta=-0.02)
    assert promoted_keys([*nine, bad]) == ["invalid-json"]  # 90 %
    assert promoted_keys([*nine[:8], bad]) == []  # 88.9 %


def test_an_already_promoted_rule_is_not_promoted_again() -> None:
    uses = [use("a"), use("b"), use("c")]
    assert promoted_keys(uses, twin(JSON)) == []
    # Also when a person promoted the same instruction under another name.
    renamed = promoted_categories(PromotedRules(rules=[PromotedRule(
        id="json-only", keywords=["json"], instruction=JSON.instruction, summary="json")]))
    assert promoted_keys(uses, renamed) == []
    # Another rule's promotion does not hide this one.
    assert promoted_keys(uses, twin(SQL)) == ["invalid-json"]


def test_simulated_results_never_promote_and_are_said_to() -> None:
    sims = [use("a", simulated=True), use("b", simulated=True), use("c", simulated=True)]
    assert promoted_keys(sims) == []
    assert promoted_keys([use("a"), use("b"), sims[2]]) == []
    [held] = learning.held_back(sims, ())
    assert (held.rule.key, held.simulated, held.n) == ("invalid_json", 3, 0)
    # Counted apart, never as evidence, even next to real uses that suffice on their own.
    real = [use("a"), use("b"), use("c")]
    assert learning.held_back([*real, *sims], ()) == []
    assert learning.evidence(JSON, [*real, *sims]).simulated == 3


def test_a_rolled_back_use_is_never_a_success() -> None:
    kept = [use("a"), use("b")]
    reverted = use("c", state="rolled_back")  # measured a success, then a person reverted it
    ev = learning.evidence(JSON, [*kept, reverted])
    assert (ev.n, ev.successes, ev.agents, ev.failures) == (3, 2, ("a", "b"), 1)
    assert promoted_keys([*kept, reverted]) == []  # two kept successes, on two agents
    assert promoted_keys([*kept, use("c")]) == ["invalid-json"]
    # Not kept counts against the share like a regression: 9 of 10 kept promotes, 8 of 10 not.
    nine = [use(f"agent-{i % 3}") for i in range(9)]
    assert promoted_keys([*nine, use("x", state="rolled_back")]) == ["invalid-json"]
    assert promoted_keys([*nine[:8], use("x", state="rolled_back"),
                          use("y", state="rolled_back")]) == []
    # A use rolled back since the last run is new evidence for a PR a person closed.
    assert ev.digest() != learning.evidence(JSON, [*kept, replace(reverted,
                                                                  state="completed")]).digest()
    # The PR shows it, as what it measured and that it was rolled back.
    [change] = learning.promotions([*nine, replace(reverted, agent="x")], ())
    body = learning.body(change, Thresholds())
    assert f"| `x` | `{reverted.proposal_id}` | — | success, rolled back |" in body
    assert "1 of them rolled back since (not kept" in body and "90 % kept" in body


def test_a_promoted_rule_rolled_back_is_proposed_for_demotion() -> None:
    promoted = twin(JSON)
    earlier = [use("a"), use("b"), use("c")]
    reverted = use("d", rule="invalid-json", state="rolled_back")  # a success, reverted
    [change] = learning.demotions([*earlier, reverted], promoted)
    assert change.evidence.successes == 3 and change.evidence.regressions == 0
    assert learning.title(change) == ("promptbot: demote rule invalid-json (1 of 4 measured "
                                      "uses regressed or were rolled back)")
    assert (f"Regressed or rolled back since it was promoted: `{reverted.proposal_id}` on `d` "
            "(rolled back)") in learning.body(change, Thresholds())
    # Rolled back before the promotion (the built-in key): old news, as a regression is.
    assert learning.demotions([*earlier, replace(reverted, rule="invalid_json")],
                              promoted) == []


@pytest.mark.parametrize(("mark", "simulated"), [
    ({}, False), ({"simulated": False}, False), ({"simulated": True}, True),
    ({"simulated": "false"}, True), ({"simulated": None}, True), ({"simulated": 0}, True),
    ({"simulated": "no"}, True)])
def test_anything_but_false_or_absent_is_simulated_for_learning_and_calibration(
        mark: dict[str, Any], simulated: bool) -> None:
    data = _result(**mark)
    if not mark:
        del data["simulated"]
    found = learning.parse_result(data)
    assert found is not None and found.simulated is simulated
    # Calibration asks the same question of the same file: it is evidence there or not.
    assert (measuring_outcome(json.dumps(data)) is None) is simulated
    three = [replace(found, agent=a, proposal_id=f"p-{a}", rule="invalid_json") for a in "abc"]
    assert promoted_keys(three) == ([] if simulated else ["invalid-json"])


def test_uses_pool_across_the_built_in_key_and_the_promoted_id() -> None:
    # One use recorded under the promoted id (made while promoted) counts for the rule.
    uses = [use("a"), use("b"), use("c", rule="invalid-json"), use("d", rule="sql_schema")]
    ev = learning.evidence(JSON, uses)
    assert sorted(u.agent for u in ev.uses) == ["a", "b", "c"]


def test_a_promoted_rule_is_demoted_only_after_it_regressed_as_promoted() -> None:
    promoted = twin(JSON)
    earlier = [use("a"), use("b"), use("c")]
    # A regression from before the promotion (the built-in key) is old news.
    old = use("d", "regression", delta=-0.04)
    assert learning.demotions([*earlier, old], promoted) == []
    later = use("d", "regression", rule="invalid-json", delta=-0.04)
    [change] = learning.demotions([*earlier, later], promoted)
    assert change.rule_id == "invalid-json" and change.evidence.regressions == 1
    assert "1 of 4 measured uses regressed" in change.reason
    # With a long record, one regression keeps it at 90 %: still kept.
    nine = [use(f"agent-{i % 3}") for i in range(9)]
    assert learning.demotions([*nine, later], promoted) == []
    second = use("e", "regression", rule="invalid-json", delta=-0.01)
    assert [c.rule_id for c in learning.demotions([*nine, later, second], promoted)] == [
        "invalid-json"]
    # A promoted rule nobody used is left alone.
    assert learning.demotions([], promoted) == []


def test_the_rule_a_record_names_or_carries() -> None:
    rules = (*variants.CATEGORIES, *twin(SQL))
    system = parse_agent((PROJECT / "prompts/support-triage/agent.yaml").read_text(),
                         "x").agent.prompts.system
    added = variants.add_rule(system, JSON)
    assert added is not None and len(added.added_lines) >= 3  # wrapped over lines
    older = {"change": {"added_lines": list(added.added_lines), "generator": "offline rules"}}
    assert learning.rule_of(older, rules) == "invalid_json"
    assert learning.rule_of({"change": {**older["change"], "rule": "sql-schema"}},
                            rules) == "sql-schema"
    # A model's rewrite is not the rule, even where it quotes it; junk is nothing.
    model = {"change": {**older["change"], "generator": "anthropic (claude-x)"}}
    assert learning.rule_of(model, rules) is None
    assert learning.rule_of({"change": {"rule": "../../etc"}}, rules) is None
    assert learning.rule_of({"change": {"added_lines": ["- Be brief."]}}, rules) is None
    assert learning.rule_of("not a record", rules) is None
    # A record that says it added no table rule is taken at its word: its added lines are
    # searched only when the key is absent (a record from before the field).
    assert learning.rule_of({"change": {**older["change"], "rule": None}}, rules) is None


def test_older_records_say_their_uncalibrated_expectation_or_nothing() -> None:
    def effect(**fields: Any) -> dict[str, Any]:
        return {"expected_effect": {"success_rate_delta": 0.012, **fields}}

    assert learning.uncalibrated(effect(uncalibrated_delta=0.024), 0.012) == 0.024
    assert learning.uncalibrated(effect(calibration_factor=0.5), 0.012) == pytest.approx(0.024)
    not_yet = "...; not yet calibrated: no measured proposals of this type in this repository"
    assert learning.uncalibrated(effect(method=not_yet), 0.012) == 0.012
    # A calibrated estimate whose factor the record does not keep: no guess.
    calibrated = "...; calibrated on 4 past proposal(s) of this type: measured/expected ×0.50"
    assert learning.uncalibrated(effect(method=calibrated), 0.012) is None
    assert learning.uncalibrated(effect(calibration_factor=0), 0.012) is None
    assert learning.uncalibrated(effect(uncalibrated_delta="0.02"), 0.012) is None
    assert learning.uncalibrated("not a record", 0.012) is None
    # Such a use still counts for promotion, not for the rule's own estimate.
    known, unknown = use("a"), use("b")
    known = replace(known, rule="invalid-json", uncalibrated=0.01)
    unknown = replace(unknown, rule="invalid-json")
    assert learning.rule_evidence([known, unknown], twin(JSON)) == {
        "invalid-json": ((0.01, known.delta),)}
    assert learning.evidence(JSON, [known, unknown]).n == 2


def _result(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "agent_id": "support-a", "proposal_id": "p-0000000001", "state": "completed",
        "comparison": {"decision": "success", "delta": 0.03, "ci_low": 0.01, "ci_high": 0.05},
        "expected_delta": 0.02, "simulated": False, "merge_sha": "a" * 40}
    data.update(changes)
    return data


def test_only_final_decided_results_are_uses() -> None:
    found = learning.parse_result(_result())
    assert found is not None and (found.decision, found.delta, found.low) == ("success", 0.03,
                                                                             0.01)
    assert learning.parse_result(_result(state="measuring")) is None
    assert learning.parse_result(_result(comparison={
        "decision": "inconclusive", "delta": 0.0, "ci_low": -1, "ci_high": 1})) is None
    assert learning.parse_result(_result(agent_id="../x")) is None
    assert learning.parse_result(_result(comparison={
        "decision": "success", "delta": float("nan"), "ci_low": 0, "ci_high": 1})) is None
    rolled = learning.parse_result(_result(state="rolled_back", simulated=True))
    assert rolled is not None and rolled.simulated
    assert learning.merge_sha(_result()) == "a" * 40
    assert learning.merge_sha(_result(merge_sha="--output=/tmp/x")) is None


# ----------------------------------------------------------------- the file (pure)


def test_promotion_edits_the_rules_file_minimally_and_demotion_undoes_it() -> None:
    shipped = RULES_FILE.read_text()
    added = learning.with_rule(shipped, learning.entry(JSON))
    old_lines, new_lines = shipped.splitlines(), added.splitlines()
    # Every comment stays; only `rules: []` became `rules:` and the rule's lines follow.
    assert new_lines[:len(old_lines) - 1] == old_lines[:-1]
    assert old_lines[-1] == "rules: []" and new_lines[len(old_lines) - 1] == "rules:"
    [rule] = PromotedRules.model_validate(yaml.safe_load(added)).rules
    assert (rule.id, rule.instruction, rule.summary) == ("invalid-json", JSON.instruction,
                                                         JSON.summary)
    both = learning.with_rule(added, learning.entry(SQL))
    assert both.startswith(added)  # appended after the first rule, nothing else moved
    assert learning.without_rule(both, "sql-schema") == added
    assert learning.without_rule(added, "invalid-json") == shipped  # byte for byte
    with pytest.raises(RoundTripError):
        learning.without_rule(shipped, "invalid-json")


def test_a_missing_or_odd_rules_file() -> None:
    made = learning.with_rule(None, learning.entry(SQL))
    assert [r.id for r in PromotedRules.model_validate(yaml.safe_load(made)).rules] == [
        "sql-schema"]
    assert made.startswith("# Promoted rules")
    comments_only = "# nothing promoted yet\n"
    made = learning.with_rule(comments_only, learning.entry(SQL))
    assert made.startswith(comments_only) and "  - id: sql-schema" in made


FIRST = ('keywords: ["x"]', 'instruction: "Do the first thing exactly."', "summary: first")
LAYOUTS = {
    "indentless": "rules:\n- id: first-rule\n" + "".join(f"  {ln}\n" for ln in FIRST),
    "four spaces": "rules:\n    -   id: first-rule\n" + "".join(f"        {ln}\n"
                                                            for ln in FIRST),
    "a flow item": "rules:\n  - {id: first-rule, " + ", ".join(FIRST) + "}\n",
    "a comment after the last rule": (
        "rules:\n  - id: first-rule  # promoted by hand\n    keywords: [x]\n"
        "    instruction: >\n      Do the first\n      thing exactly.\n    summary: first\n"
        "\n# New rules go above this line.\n"),
    "comments around an empty list": "# none yet\nrules: []  # empty\n# the end\n",
}


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_the_rule_is_added_and_removed_in_the_file_s_own_layout(layout: str) -> None:
    text = LAYOUTS[layout]
    added = learning.with_rule(text, learning.entry(SQL))
    old, new = text.splitlines(), added.splitlines()
    at = next(i for i, ln in enumerate(new) if "id: sql-schema" in ln)
    block = new[at:at + 4]
    # Every other line as it was (an empty list's `[]` aside), the rule after the last one:
    # a comment below the rules stays below them.
    if "[]" in text:
        old = [ln.replace("rules: []", "rules:") for ln in old]
    assert new[:at] + new[at + 4:] == old
    assert all(not ln.strip() or ln.startswith("#") for ln in new[at + 4:])
    # Written as the file writes its rules.
    items = [ln for ln in old if ln.lstrip().startswith("- ")] or ["  - "]

    def dash(line: str) -> str:
        return line[:len(line) - len(line.lstrip(" -"))]

    assert dash(block[0]) == dash(items[0]) and dash(block[0]).strip() == "-"
    indent = len(block[0]) - len(block[0].lstrip("- "))
    assert all(len(ln) - len(ln.lstrip()) == indent for ln in block[1:])
    rules = PromotedRules.model_validate(yaml.safe_load(added)).rules
    assert rules[-1] == learning.entry(SQL) and len(rules) == len(yaml.safe_load(text)["rules"]
                                                                 or []) + 1
    assert learning.without_rule(added, "sql-schema") == text  # byte for byte


@pytest.mark.parametrize(("text", "cause"), [
    ("rules: []\r\n", "CRLF"), ("\ufeffrules: []\n", "byte order mark"),
    ("---\nrules: []\n", "`---`"), ("rules: []", "does not end with a newline"),
    ("rules:\n\t- id: x\n", "does not parse"),
    ('rules: [{id: a-rule, keywords: [x], instruction: "Do this one thing.", summary: abc}]\n',
     "flow style")])
def test_a_rules_file_that_cannot_be_edited_line_by_line_says_why(text: str,
                                                                  cause: str) -> None:
    messages = []
    with pytest.raises(RoundTripError) as caught:
        learning.with_rule(text, learning.entry(SQL))
    messages.append(str(caught.value))
    with pytest.raises(RoundTripError) as caught:
        learning.without_rule(text, "a-rule")
    messages.append(str(caught.value))
    for message in messages:
        assert message.startswith("policies/promoted_rules.yaml ") and cause in message
        assert "(fix: " in message


def test_the_pr_body_lists_the_evidence_and_quotes_file_text() -> None:
    hostile = promoted_categories(PromotedRules(rules=[PromotedRule(
        id="odd-rule", keywords=["x"], instruction="Be exact. <!-- promptbot: {} --> `x`",
        summary="a|b `c`")]))
    uses = [use("a", rule="odd-rule"), use("b", rule="odd-rule"),
            use("c", "regression", rule="odd-rule", delta=-0.05)]
    [change] = learning.demotions(uses, hostile)
    body = learning.body(change, Thresholds())
    assert "<!--" not in body  # the marker cannot be forged from the rules file
    rows = [ln for ln in body.splitlines() if ln.startswith("| `")]
    assert len(rows) == 3 and "| regression | -5.0 pts (-7.0 … -3.0) | +2.0 pts |" in rows[2]
    assert f"Regressed since it was promoted: `{uses[2].proposal_id}` on `c`" in body
    assert learning.title(change) == ("promptbot: demote rule odd-rule (1 of 3 measured uses "
                                      "regressed)")


# ----------------------------------------------------------------- the generator (pure)


WHEN = datetime(2026, 11, 1)


def _problem(error_type: str, template: str, version: str, example: str) -> Problem:
    group = ErrorGroup(error_type, template, 150, WHEN, WHEN, example)
    stats = VersionStats("support-triage", version, 2500, 2250, 10, 1800.0, 3700.0, 0.009, 22.5,
                         1400.0, 320.0, WHEN, WHEN, None, (group,))
    return Problem("failure_mode", "support-triage", version, f"sig|{template}", group, stats)


def _triage_proposal(promoted: tuple[variants.Category, ...] = (),
                     history: list[Outcome] | None = None) -> Proposal:
    """The first offline proposal for support-triage's invalid-JSON failure."""
    loaded = parse_agent((PROJECT / "prompts/support-triage/agent.yaml").read_text(),
                         "prompts/support-triage/agent.yaml", folder_id="support-triage")
    problem = _problem("OutputParserException",
                       "Could not parse LLM output: Expecting '<*>' delimiter: line <*>",
                       loaded.version, "Could not parse LLM output: Expecting ',' delimiter: "
                       "line 3")
    made = build_all(loaded, problem, Policy(), lambda t: len(t.split()), history, promoted)
    assert isinstance(made, list)
    return made[0]


def _record(p: Proposal) -> dict[str, Any]:
    data = yaml.safe_load(p.files[f"prompts/{p.agent_id}/proposals/{p.id}.yaml"])
    assert isinstance(data, dict)
    return data


def _measured(p: Proposal, delta: float, agent: str) -> Use:
    """The use `p` becomes once merged and measured at `delta`, read as bot/learning.py
    reads it (the results file's expected_delta is the record's)."""
    record = _record(p)
    expected = record["expected_effect"]["success_rate_delta"]
    found = learning.parse_result(_result(agent_id=agent, proposal_id=f"p-{next(_ids):010d}",
                                          expected_delta=expected, comparison={
                                              "decision": "success", "delta": delta,
                                              "ci_low": 0.0, "ci_high": 2 * delta}))
    rule = learning.rule_of(record, (*variants.CATEGORIES, *twin(JSON)))
    assert found is not None and rule is not None
    return replace(found, rule=rule, uncalibrated=learning.uncalibrated(record, expected))


def _learned(uses: list[Use]) -> tuple[variants.Category, ...]:
    """The promoted invalid-JSON rule with its measured uses, as bot/learning.py gives it."""
    rules = PromotedRules(rules=[learning.entry(JSON)])
    return promoted_categories(rules, learning.rule_evidence(uses, promoted_categories(rules)))


def test_a_promoted_rule_is_estimated_from_its_own_record() -> None:
    prior = _triage_proposal()
    assert prior.rule == "invalid_json"
    # Measured twice what was expected, three times: ×(1 + 3/6 × 1) = ×1.5 after shrinkage.
    measured = {"invalid-json": ((0.02, 0.04),) * 3}
    learned = _triage_proposal(promoted_categories(PromotedRules(rules=[learning.entry(JSON)]),
                                                   measured))
    assert learned.rule == "invalid-json" and learned.new_text == prior.new_text
    assert learned.expected.success_rate_delta == pytest.approx(
        prior.expected.success_rate_delta * 1.5)
    assert "promoted rule `invalid-json`'s own 3 measured use(s): measured/expected ×1.50" \
        in learned.expected.method
    record = _record(learned)
    assert record["change"]["rule"] == "invalid-json"
    # The record keeps the estimate before the factor, and the factor, for the next one.
    effect = record["expected_effect"]
    assert effect["uncalibrated_delta"] == pytest.approx(prior.expected.success_rate_delta)
    assert effect["calibration_factor"] == pytest.approx(1.5)
    # Without a record of its own, the promoted copy is estimated like the built-in rule.
    bare = _triage_proposal(twin(JSON))
    assert bare.expected == prior.expected and bare.rule == "invalid-json"
    # A proposal that adds no table rule says so: its added lines are not searched.
    none = yaml.safe_load(proposal_record(replace(prior, rule="")))
    assert none["change"]["rule"] is None and JSON.instruction.split()[0] in " ".join(
        none["change"]["added_lines"])
    assert learning.rule_of(none, variants.CATEGORIES) is None


def test_a_promoted_rule_s_estimate_converges_on_its_measured_effect() -> None:
    raw = _triage_proposal().expected.success_rate_delta  # no history: the prior alone
    true = 0.6 * raw
    uses: list[Use] = []
    misses = []
    # Each round, proposals estimated from the record so far, each measuring the true effect.
    for batch in (3, 3, 6, 12, 24):
        made = _triage_proposal(_learned(uses))
        misses.append(abs(made.expected.success_rate_delta - true))
        uses += [_measured(made, true, f"agent-{len(uses) + i}") for i in range(batch)]
    assert misses == sorted(misses, reverse=True) and misses[-1] < misses[0] / 5
    # 48 uses that measured ×0.6 of the prior: ×0.6, shrunk toward 1 only for their number,
    # whichever estimate was in force when each was proposed.
    n = len(uses)
    final = _triage_proposal(_learned(uses)).expected.success_rate_delta
    assert final == pytest.approx(raw * (1 + n / (n + SHRINK) * (0.6 - 1)), rel=1e-3)


def test_a_type_calibration_in_force_is_not_credited_to_the_rule() -> None:
    # Nine past fixes measured a third of what they expected: their type's factor is ×0.5.
    history = [Outcome("error_handling", 0.03, 0.01)] * 9
    assert calibrate(history, "error_handling").factor == pytest.approx(0.5)
    raw = _triage_proposal().expected.success_rate_delta
    calibrated = _triage_proposal((), history)
    assert calibrated.expected.success_rate_delta == pytest.approx(raw * 0.5, rel=1e-3)
    # Thirty uses of the rule measured exactly what that calibrated estimate said: the rule
    # does half what the prior says, as its type does, not ×1.0.
    said = calibrated.expected.success_rate_delta
    uses = [_measured(calibrated, said, f"agent-{i}") for i in range(30)]
    learned = _triage_proposal(_learned(uses), history).expected
    assert "promoted rule `invalid-json`'s own 30 measured use(s)" in learned.method
    assert learned.success_rate_delta == pytest.approx(raw * (1 + 30 / 33 * (0.5 - 1)),
                                                       rel=1e-3)


def test_a_promoted_copy_of_a_built_in_rule_stays_in_its_category() -> None:
    # "outputparser" is one of invalid_json's keywords, but this failure is a missing field.
    group = ErrorGroup("OutputParserValidationError", "1 validation error for Summary: owner "
                       "Field required", 30, WHEN, WHEN, "x")
    assert [c.key for c in variants.categories(group, twin(JSON))] == ["missing_field"]
    json_failure = ErrorGroup("JSONDecodeError", "Expecting value: line 1", 30, WHEN, WHEN, "x")
    assert [c.key for c in variants.categories(json_failure, twin(JSON))] == ["invalid-json"]
    # The promoted copy keeps the built-in rule's claims: a prompt saying it in its own
    # words gets neither.
    assert twin(JSON)[0].claims == JSON.claims


# ----------------------------------------------------------------- through git and the forge


def _support_repo(tmp_path: Path) -> Path:
    """Three support agents with the same prompt (so the same failures and the same rule),
    the shipped policy with room for a PR per agent."""
    repo = tmp_path / "prompts-repo"
    (repo / "prompts").mkdir(parents=True)
    shutil.copytree(PROJECT / "policies", repo / "policies")
    shutil.copy(PROJECT / ".gitignore", repo / ".gitignore")
    _set_max_prs(repo, 10)
    for agent in ("support-a", "support-b", "support-c"):
        _add_agent(repo, agent)
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "three support agents")
    return repo


def _set_max_prs(repo: Path, n: int) -> None:
    policy = repo / "policies" / "promptbot.yaml"
    text = policy.read_text()
    assert text.count("  max_prs_per_run: 3\n") == 1
    policy.write_text(text.replace("  max_prs_per_run: 3\n", f"  max_prs_per_run: {n}\n"))


def _add_agent(repo: Path, agent: str) -> None:
    text = (PROJECT / "prompts/support-triage/agent.yaml").read_text()
    assert "\nid: support-triage\n" in text
    (repo / "prompts" / agent).mkdir()
    (repo / "prompts" / agent / "agent.yaml").write_text(
        text.replace("\nid: support-triage\n", f"\nid: {agent}\n"))


def _prs(cli: Cli) -> list[dict[str, Any]]:
    data = cli.json("pr", "list", "--json")
    assert isinstance(data, list)
    return data


def _learning_prs(cli: Cli) -> list[dict[str, Any]]:
    return [p for p in _prs(cli) if p["agent"] == "learning"]


def _body(repo: Path, number: int) -> str:
    data = json.loads((repo / ".promptbot" / "forge.json").read_text())
    return str(next(p for p in data["prs"] if p["number"] == number)["body"])


def _cycle(cli: Cli, repo: Path, real: bool = True) -> str:
    """Traffic that follows main, then a run. `real`: the export without the mark
    `promptbot simulate` leaves, as if it came from production (simulated results never
    promote a rule). 1,200 executions per agent and day: with the default 400 one agent of
    three sometimes (depending on the hour the test runs, which places the simulated days)
    had no decision yet after 14 days."""
    code, _, err = cli("simulate", "--out", str(repo / "sim"), "--days", "14", "--seed", "3",
                       "--per-day", "1200")
    assert code == 0, err
    if real:
        (repo / "sim" / ".promptbot-simulated").unlink()
    code, out, err = cli("run", "--metrics", str(repo / "sim" / "*.csv"))
    assert code == 0, err
    return out


def test_measured_successes_on_three_agents_open_one_promotion_pr(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    repo = _support_repo(tmp_path)
    cli = Cli(repo, capsys)
    _cycle(cli, repo, real=False)
    proposals = [p for p in _prs(cli) if p["state"] == "open"]
    assert sorted(p["agent"] for p in proposals) == ["support-a", "support-b", "support-c"]
    for p in proposals:
        record = yaml.safe_load(git(repo, "show", f"{p['branch']}:prompts/{p['agent']}/"
                                    f"proposals/{p['proposal_id']}.yaml"))
        assert record["change"]["rule"] == "invalid_json"  # the record says which rule
        assert cli("pr", "merge", str(p["number"]))[0] == 0

    out = _cycle(cli, repo)
    for p in proposals:
        result = json.loads((repo / "prompts" / p["agent"] / "results" /
                             f"{p['proposal_id']}.json").read_text())
        assert (result["state"], result["comparison"]["decision"], result["simulated"]) == (
            "completed", "success", False)
    [promotion] = _learning_prs(cli)
    assert promotion["state"] == "open" and "learning: open PR" in out
    assert promotion["branch"] == "promptbot/learning/promote-invalid-json"
    assert promotion["title"] == ("promptbot: promote rule invalid-json (invalid JSON output; "
                                  "3 successes on 3 agents)")
    assert "promptbot:learning" in promotion["labels"]
    # The branch changes only the rules file, by the rule's lines (comments kept).
    assert git(repo, "diff", "--name-only", "main", promotion["branch"]) == \
        "policies/promoted_rules.yaml"
    diff = git(repo, "diff", "-U0", "main", promotion["branch"])
    assert [ln for ln in diff.splitlines() if ln.startswith("-") and ln[:3] != "---"] == [
        "-rules: []"]
    rules = yaml.safe_load(git(repo, "show", f"{promotion['branch']}:policies/"
                                             "promoted_rules.yaml"))["rules"]
    assert rules == [{"id": "invalid-json", "keywords": list(JSON.keywords),
                      "instruction": JSON.instruction, "summary": JSON.summary}]
    body = _body(repo, promotion["number"])
    for p in proposals:
        assert f"| `{p['agent']}` | `{p['proposal_id']}` | #{p['number']} | success |" in body
    assert "3 success(es), 0 regression(s)" in body

    before = snapshot_state(repo)
    assert cli("run", "--metrics", str(repo / "sim" / "*.csv"))[0] == 0
    assert snapshot_state(repo) == before  # found again: nothing written

    # Merged: the rule is promoted, and a new agent's matching failure gets it.
    assert cli("pr", "merge", str(promotion["number"]))[0] == 0
    _add_agent(repo, "support-d")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "a fourth support agent")
    _cycle(cli, repo, real=False)
    [fourth] = [p for p in _prs(cli) if p["agent"] == "support-d"]
    assert fourth["title"] == "support-d: fix invalid JSON output"
    record = yaml.safe_load(git(repo, "show", f"{fourth['branch']}:prompts/support-d/"
                                f"proposals/{fourth['proposal_id']}.yaml"))
    assert record["change"]["rule"] == "invalid-json"
    assert not [p for p in _learning_prs(cli) if p["state"] == "open"]  # promoted already
    # Its record is what the proposal adding it was estimated from.
    g = Git(repo)
    ctx = Context(root=repo, git=g, forge=LocalForge(g, lambda: datetime.now(UTC)),
                  count_tokens=count_tokens)
    _, sha, state = base_tree(ctx)
    [learned] = learned_categories(ctx, sha, state, tracked_prs(ctx), {})
    assert learned.key == "invalid-json" and len(learned.evidence) == 3
    assert all(m > e > 0 for e, m in learned.evidence)
    own = calibrate([Outcome("error_handling", e, m) for e, m in learned.evidence],
                    "error_handling")
    effect = record["expected_effect"]
    assert own.n == 3 and own.factor > 1  # measured more than expected
    assert "promoted rule `invalid-json`'s own 3 measured use(s): measured/expected " \
        f"×{own.factor:.2f}" in effect["method"]
    assert effect["calibration_factor"] == pytest.approx(own.factor, abs=1e-4)
    assert effect["success_rate_delta"] == pytest.approx(
        effect["uncalibrated_delta"] * own.factor, abs=1e-4)


# Records and results committed as the bot writes them (fast: no traffic to simulate).


def _commit_uses(repo: Path, uses: list[tuple[str, str, str, str]],
                 simulated: bool = False, named: bool = True) -> list[str]:
    """(agent, decision, rule, proposal id) per use: the proposal record, then its final
    result naming the commit that merged the record. `named`: the record says its rule
    (else, as an older record, only its added lines do)."""
    for agent, _, rule, pid in uses:
        folder = repo / "prompts" / agent / "proposals"
        folder.mkdir(parents=True, exist_ok=True)
        category = variants.BUILTIN.get(rule) or variants.BUILTIN[rule.replace("-", "_")]
        added = ["Reliability rules (added from production failures):",
                 f"- {category.instruction}"]
        change: dict[str, Any] = {"field": "prompts.system", "added_lines": added,
                                  "generator": "offline rules"}
        effect: dict[str, Any] = {"success_rate_delta": 0.02, "method": "...; not yet "
                                  "calibrated: no measured proposals of this type"}
        if named:
            change["rule"] = rule
            effect.update(uncalibrated_delta=0.02, calibration_factor=1.0)
        (folder / f"{pid}.yaml").write_text(yaml.safe_dump(
            {"id": pid, "agent": agent, "type": "error_handling", "change": change,
             "expected_effect": effect}))
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "merged proposals")
    sha = git(repo, "rev-parse", "HEAD")
    for agent, decision, _, pid in uses:
        delta = {"success": 0.035, "regression": -0.04}.get(decision, 0.0)
        result = {"agent_id": agent, "proposal_id": pid, "state": "completed",
                  "comparison": {"decision": decision, "delta": delta, "ci_low": delta - 0.02,
                                 "ci_high": delta + 0.02, "reason": "test"},
                  "expected_delta": 0.02, "expected_interval": [0.005, 0.035],
                  "proposal_type": "error_handling", "merge_sha": sha,
                  "simulated": simulated, "headline": decision}
        folder = repo / "prompts" / agent / "results"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{pid}.json").write_text(json.dumps(result, indent=2) + "\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "promptbot: record measured results")
    return [u[3] for u in uses]


def _quiet_repo(tmp_path: Path) -> Path:
    """The shipped example with proposing off: only the learning loop opens PRs."""
    repo = tmp_path / "prompts-repo"
    repo.mkdir()
    for name in ("prompts", "policies", "examples"):
        shutil.copytree(PROJECT / name, repo / name)
    shutil.copy(PROJECT / ".gitignore", repo / ".gitignore")
    _set_max_prs(repo, 0)
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "initial prompts")
    return repo


def _run(cli: Cli, *args: str) -> str:
    code, out, err = cli("run", *args)
    assert code == 0, err + out
    return out


def test_close_merge_and_demote_through_the_local_forge(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    repo = _quiet_repo(tmp_path)
    cli = Cli(repo, capsys)
    # Simulated evidence alone: no PR, and the run says why.
    _commit_uses(repo, [(f"support-{r}", "success", "invalid_json", f"p-sim000000{i}")
                        for i, r in enumerate("xyz")], simulated=True)
    out = _run(cli)
    assert "simulated results are never evidence" in out and not _learning_prs(cli)

    pids = _commit_uses(repo, [(f"support-{r}", "success", "invalid_json", f"p-json00000{i}")
                               for i, r in enumerate("abc")])
    _commit_uses(repo, [(f"sql-{r}", "success", "sql_schema", f"p-sql000000{i}")
                        for i, r in enumerate("abc")], named=False)  # older records
    before = snapshot_state(repo)
    out = _run(cli, "--dry-run")
    assert out.count("learning: open PR") == 2 and snapshot_state(repo) == before

    _run(cli)
    by_rule = {p["branch"].rsplit("/", 1)[1]: p for p in _learning_prs(cli)}
    assert sorted(by_rule) == ["promote-invalid-json", "promote-sql-schema"]
    json_pr, sql_pr = by_rule["promote-invalid-json"], by_rule["promote-sql-schema"]
    assert all(f"`{pid}`" in _body(repo, json_pr["number"]) for pid in pids)
    before = snapshot_state(repo)
    _run(cli)
    assert snapshot_state(repo) == before

    # One merges: the other's branch is built again on the new rules file, so it merges.
    assert cli("pr", "merge", str(json_pr["number"]))[0] == 0
    out = _run(cli)
    assert f"#{sql_pr['number']} learning: rule sql-schema: branch built again" in out
    git(repo, "merge-tree", "--write-tree", "main", sql_pr["branch"])  # no conflict
    shown = yaml.safe_load(git(repo, "show", f"{sql_pr['branch']}:policies/promoted_rules.yaml"))
    assert [r["id"] for r in shown["rules"]] == ["invalid-json", "sql-schema"]
    marker = markers.parse(_body(repo, sql_pr["number"]))
    assert marker is not None and marker["kind"] == "promotion" and marker["rule"] == "sql-schema"

    # A person closes it: not opened again for the same evidence ...
    assert cli("pr", "close", str(sql_pr["number"]), "--reason", "not yet")[0] == 0
    before = snapshot_state(repo)
    out = _run(cli)
    assert f"the promotion PR #{sql_pr['number']} was closed with this same evidence" in out
    assert snapshot_state(repo) == before
    # ... but a new measured use is new evidence.
    _commit_uses(repo, [("sql-d", "success", "sql_schema", "p-sql0000009")])
    _run(cli)
    sql_prs = [p for p in _learning_prs(cli) if p["branch"].endswith("promote-sql-schema")]
    assert [p["state"] for p in sql_prs] == ["closed", "open"]
    assert "`p-sql0000009`" in _body(repo, sql_prs[1]["number"])

    # The promoted JSON rule regresses once promoted: a demotion PR removes it again.
    regressed = _commit_uses(repo, [("support-d", "regression", "invalid-json", "p-json00009")])
    out = _run(cli)
    [demotion] = [p for p in _learning_prs(cli) if p["branch"].endswith("demote-invalid-json")]
    assert demotion["title"] == ("promptbot: demote rule invalid-json (1 of 4 measured uses "
                                 "regressed)")
    body = _body(repo, demotion["number"])
    assert f"Regressed since it was promoted: `{regressed[0]}` on `support-d`" in body
    assert cli("pr", "merge", str(demotion["number"]))[0] == 0
    assert (repo / "policies/promoted_rules.yaml").read_text() == RULES_FILE.read_text()
    _run(cli)
    # Demoted: its record (3 of 4) no longer promotes it; the open SQL promotion is built
    # again on the file without it.
    assert [p["branch"] for p in _learning_prs(cli) if p["state"] == "open"] == [
        "promptbot/learning/promote-sql-schema"]
    shown = yaml.safe_load(git(repo, "show", f"{sql_prs[1]['branch']}:policies/"
                                             "promoted_rules.yaml"))
    assert [r["id"] for r in shown["rules"]] == ["sql-schema"]


def _branch_on_main(repo: Path, branch: str) -> None:
    """The PR's branch is one commit on main as it is now: merging it changes main."""
    assert git(repo, "rev-parse", f"{branch}^") == git(repo, "rev-parse", "main")
    assert git(repo, "diff", "--name-only", "main", branch) == "policies/promoted_rules.yaml"


def _rule_ids(repo: Path) -> list[str]:
    return [r["id"] for r in yaml.safe_load(
        (repo / "policies/promoted_rules.yaml").read_text())["rules"]]


def test_a_demoted_rule_is_promoted_and_demoted_again(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    repo = _quiet_repo(tmp_path)
    cli = Cli(repo, capsys)

    def merge_the_open_one(kind: str) -> None:
        [pr] = [p for p in _learning_prs(cli) if p["state"] == "open"]
        assert pr["branch"] == f"promptbot/learning/{kind}-invalid-json"
        _branch_on_main(repo, pr["branch"])
        assert cli("pr", "merge", str(pr["number"]))[0] == 0

    _commit_uses(repo, [(f"support-{r}", "success", "invalid_json", f"p-json00000{i}")
                        for i, r in enumerate("abc")])
    _run(cli)
    merge_the_open_one("promote")
    assert _rule_ids(repo) == ["invalid-json"]
    _commit_uses(repo, [("support-d", "regression", "invalid-json", "p-json0000010")])
    _run(cli)
    merge_the_open_one("demote")
    assert _rule_ids(repo) == []
    # Six more successes made with the built-in rule: 9 of 10 kept, promoted again, by a
    # new commit on main (the first promotion's tip holds the same file, but is merged).
    _commit_uses(repo, [(f"support-{r}", "success", "invalid_json", f"p-json00002{i}")
                        for i, r in enumerate("efghij")])
    out = _run(cli)
    assert "learning: open PR 'promptbot: promote rule invalid-json" in out
    merge_the_open_one("promote")
    assert _rule_ids(repo) == ["invalid-json"]
    out = _run(cli)
    assert "learning" not in out and not [p for p in _learning_prs(cli)
                                          if p["state"] == "open"]
    # A person reverts that merge: the merged PR, same evidence and all, does not stand in
    # the way of proposing it again (only a closed one would).
    git(repo, "revert", "-m", "1", "--no-edit", "HEAD")
    assert _rule_ids(repo) == []
    out = _run(cli)
    assert "learning: open PR 'promptbot: promote rule invalid-json" in out
    merge_the_open_one("promote")
    assert _rule_ids(repo) == ["invalid-json"]
    # And it regresses again once promoted: a second demotion, on a new commit too.
    _commit_uses(repo, [("support-k", "regression", "invalid-json", "p-json0000030")])
    _run(cli)
    merge_the_open_one("demote")
    assert _rule_ids(repo) == []
    assert [p["state"] for p in _learning_prs(cli)] == ["merged"] * 5
    before = snapshot_state(repo)
    _run(cli)
    assert snapshot_state(repo) == before


def test_a_person_s_push_to_a_learning_branch_is_never_overwritten(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    repo = _quiet_repo(tmp_path)
    cli = Cli(repo, capsys)
    _commit_uses(repo, [(f"support-{r}", "success", "invalid_json", f"p-json00000{i}")
                        for i, r in enumerate("abc")]
                 + [(f"sql-{r}", "success", "sql_schema", f"p-sql000000{i}")
                    for i, r in enumerate("abc")])
    _run(cli)
    by_rule = {p["branch"].rsplit("/", 1)[1]: p for p in _learning_prs(cli)}
    json_pr, sql_pr = by_rule["promote-invalid-json"], by_rule["promote-sql-schema"]
    # A reviewer words the SQL rule's summary their way, on the PR's branch.
    git(repo, "checkout", "-q", sql_pr["branch"])
    path = repo / "policies/promoted_rules.yaml"
    path.write_text(path.read_text().replace(f'summary: "{SQL.summary}"', 'summary: "SQL"'))
    git(repo, "commit", "-qam", "reviewer: shorter summary")
    tip = git(repo, "rev-parse", "HEAD")
    git(repo, "checkout", "-q", "main")

    # The rules file moves on main: the branch is not built again over their commit.
    assert cli("pr", "merge", str(json_pr["number"]))[0] == 0
    out = _run(cli)
    assert (f"#{sql_pr['number']} learning: rule sql-schema: policies/promoted_rules.yaml "
            "changed on main; a person pushed to the PR") in out
    # Its evidence fails: it is not closed either.
    _commit_uses(repo, [("sql-d", "regression", "sql_schema", "p-sql0000008")])
    out = _run(cli)
    assert f"#{sql_pr['number']} learning: no longer applies" in out
    assert "a person pushed to it, so it stays open" in out
    assert git(repo, "rev-parse", sql_pr["branch"]) == tip

    # They close it; new evidence would promote the rule again, but their branch stays
    # until they delete it.
    assert cli("pr", "close", str(sql_pr["number"]))[0] == 0
    _commit_uses(repo, [(f"sql-{r}", "success", "sql_schema", f"p-sql000002{i}")
                        for i, r in enumerate("efghij")])
    out = _run(cli)
    assert ("learning: rule sql-schema: a person pushed to "
            "promptbot/learning/promote-sql-schema (of a closed PR)") in out
    assert git(repo, "rev-parse", sql_pr["branch"]) == tip
    assert [p["state"] for p in _learning_prs(cli)] == ["merged", "closed"]
    git(repo, "branch", "-qD", sql_pr["branch"])
    _run(cli)
    [again] = [p for p in _learning_prs(cli) if p["state"] == "open"]
    assert again["branch"] == sql_pr["branch"]
    _branch_on_main(repo, again["branch"])


def test_the_uses_are_read_once_per_run(tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    repo = _quiet_repo(tmp_path)
    (repo / "policies/promoted_rules.yaml").write_text(
        learning.with_rule(RULES_FILE.read_text(), learning.entry(JSON)))
    _commit_uses(repo, [(f"support-{r}", "success", "invalid-json", f"p-json00000{i}")
                        for i, r in enumerate("abc")])
    g = Git(repo)
    ctx = Context(root=repo, git=g, forge=LocalForge(g, lambda: datetime.now(UTC)),
                  count_tokens=count_tokens)
    _, sha, state = base_tree(ctx)
    prs = tracked_prs(ctx)
    reads: list[str] = []
    read, ls = Git.read, Git.ls

    def counted_read(self: Git, ref: str, path: str) -> str | None:
        reads.append(path)
        return read(self, ref, path)

    def counted_ls(self: Git, ref: str, prefix: str) -> list[str]:
        reads.append(prefix)
        return ls(self, ref, prefix)

    monkeypatch.setattr(Git, "read", counted_read)
    monkeypatch.setattr(Git, "ls", counted_ls)
    results: dict[str, Recorded] = {}
    uses = measured_uses(ctx, sha, state, prs, results)  # as promote_all reads them
    assert len(uses) == 3 and reads
    reads.clear()
    # As propose_all does, with the uses promote_all returned: no second read.
    [learned] = learned_categories(ctx, sha, state, prs, results, uses)
    assert reads == [] and len(learned.evidence) == 3
    # The next run's results are read again.
    assert len(measured_uses(ctx, sha, state, prs, {})) == 3 and reads


def test_an_open_promotion_is_closed_when_its_evidence_fails(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    repo = _quiet_repo(tmp_path)
    cli = Cli(repo, capsys)
    _commit_uses(repo, [(f"support-{r}", "success", "invalid_json", f"p-json00000{i}")
                        for i, r in enumerate("abc")])
    _run(cli)
    [pr] = _learning_prs(cli)
    _commit_uses(repo, [("support-d", "regression", "invalid_json", "p-json00008")])
    out = _run(cli)  # 3 of 4 not regressing: below 90 %
    assert f"#{pr['number']} learning: closed: the rule's measured uses no longer clear" in out
    [closed] = _learning_prs(cli)
    assert closed["state"] == "closed"
    before = snapshot_state(repo)
    _run(cli)
    assert snapshot_state(repo) == before


def test_the_promotion_pr_on_github_is_opened_once(
        clone: Path, standin: GitHubStandIn, origin: Path) -> None:
    _set_max_prs(clone, 0)
    git(clone, "commit", "-qam", "policy: no proposals")
    _commit_uses(clone, [(f"support-{r}", "success", "invalid_json", f"p-json00000{i}")
                         for i, r in enumerate("abc")])
    git(clone, "push", "-q", "origin", "main")
    metrics = [str(PROJECT / "examples" / "metrics" / "*.csv")]
    report = run(github_context(clone, standin), metrics)
    assert report.errors == []
    [pr] = [p for p in standin.pulls()
            if (markers.parse(str(p["body"])) or {}).get("kind") == "promotion"]
    head = pr["head"]
    assert isinstance(head, dict) and head["ref"] == "promptbot/learning/promote-invalid-json"
    assert standin.labels(int(str(pr["number"]))) == ["promptbot", "promptbot:learning"]
    # The branch reached origin, with the rule added to the file on origin's main.
    shown = yaml.safe_load(git(origin, "show", f"{head['ref']}:policies/promoted_rules.yaml"))
    assert [r["id"] for r in shown["rules"]] == ["invalid-json"]

    standin.reset_log()
    report = run(github_context(clone, standin), metrics)
    assert report.errors == [] and standin.writes() == []


def test_the_type_calibration_compares_measured_with_the_estimate_before_calibration() -> None:
    """Each proposal's estimate is prior × the factor in force; judged against that, the
    next factor would be measured/(prior × old factor) and swing. Against the prior it
    settles on what the proposals really do."""
    from bot.core.calibration import Outcome, calibrate

    kept = _result(expected_delta=0.02, expected_uncalibrated=0.04)
    old = _result(expected_delta=0.02)
    assert measuring_outcome(json.dumps(kept)) == Outcome("error_handling", 0.04,
                                                          kept["comparison"]["delta"])
    assert measuring_outcome(json.dumps(old)).expected == 0.02  # type: ignore[union-attr]
    prior, true_ratio = 0.04, 0.5  # the proposals deliver half of what the prior says
    history: list[Outcome] = []
    factors = []
    for _ in range(12):
        factor = calibrate(history, "error_handling").factor
        factors.append(factor)
        history.append(Outcome("error_handling", prior, prior * true_ratio))
    assert all(b <= a for a, b in pairwise(factors))  # no swing
    assert abs(factors[-1] - true_ratio) < 0.15
