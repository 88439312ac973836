"""The offline clarity rewrite: hedged instructions made direct, nothing else touched."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bot.core import protected, templating
from bot.core.agentfile import parse_agent
from bot.core.variants import CLARITY, clarify

PROJECT = Path(__file__).resolve().parents[1]
AGENTS = sorted((PROJECT / "prompts").glob("*/agent.yaml"))


def _words(text: str) -> list[str]:
    return text.lower().split()


def _only_deletes_words(old: str, new: str) -> bool:
    """True when `new`'s words (case aside) are `old`'s with some left out, in order."""
    remaining = iter(_words(old))
    return all(any(word == candidate for candidate in remaining) for word in _words(new))


@pytest.mark.parametrize(("before", "after"), [
    # try to
    ("Try to keep answers short.", "Keep answers short."),
    ("Answer in English. Try to keep answers short.", "Answer in English. Keep answers short."),
    ("Tip: try to keep it short.", "Tip: keep it short."),
    ("Be polite and try to keep answers short.", "Be polite and keep answers short."),
    ("Please try to cite the source.", "Please cite the source."),
    ("Always try to cite the source.", "Always cite the source."),
    ("You should try to cite the source.", "You should cite the source."),
    ("If the order is late, try to apologise.", "If the order is late, apologise."),
    ("If possible, try to include a link.", "If possible, include a link."),
    # should probably
    ("You should probably check the schema first.", "You should check the schema first."),
    ("If the query fails, you should probably retry once.",
     "If the query fails, you should retry once."),
    # do your best / make an effort / attempt
    ("Do your best to answer in one sentence.", "Answer in one sentence."),
    ("Please do your best to answer in one sentence.", "Please answer in one sentence."),
    ("Make an effort to cite the source.", "Cite the source."),
    ("Attempt to parse the date; if that fails, ask for it.",
     "Parse the date; if that fails, ask for it."),
    # might / may want to
    ("You might want to apologise first.", "Apologise first."),
    ("You may want to offer a coupon.", "Offer a coupon."),
    ("When the customer is angry, you might want to apologise.",
     "When the customer is angry, apologise."),
    # it would be ... if you could
    ("It would be great if you could reply in German.", "Reply in German."),
    ("It would be good if you could reply in German.", "Reply in German."),
    ("It would be helpful if you could list the steps.", "List the steps."),
    ("It would be nice if you could greet the user.", "Greet the user."),
    # list items, indentation, several hedges, hedges on hedges
    ("- try to keep it short\n- Try to keep it short", "- keep it short\n- Keep it short"),
    ("1. Try to be brief.\n2) You may want to be kind.", "1. Be brief.\n2) Be kind."),
    ("    Try to be brief.", "    Be brief."),
    ("Try to be brief. Do your best to be kind, and try to be exact.",
     "Be brief. Be kind, and be exact."),
    ("Try to try to keep it.", "Keep it."),
    ("You should probably try to check the schema.", "You should check the schema."),
    # a sentence wrapped over lines: its second line starts no sentence, "and" still leads
    ("Answer in English.\nTry to keep it short\nand try to be polite.",
     "Answer in English.\nKeep it short\nand be polite."),
    # an unpaired quote mark holds back the rest of its paragraph only
    ('Phones have 5" screens. Try to be brief.\nTry to be kind.\n\nTry to be brief.',
     'Phones have 5" screens. Try to be brief.\nTry to be kind.\n\nBe brief.'),
    # Jinja next to the hedge, not around it
    ("Hello {{ name }}. Try to keep it short.", "Hello {{ name }}. Keep it short."),
])
def test_hedge_is_removed_and_the_instruction_kept(before: str, after: str) -> None:
    variant = clarify(before)
    assert variant is not None
    assert variant.system == after
    assert variant.category == CLARITY
    changed = tuple(new for old, new in zip(before.split("\n"), after.split("\n"), strict=True)
                    if old != new)
    assert variant.added_lines == changed and variant.removed == ()
    assert clarify(variant.system) is None  # idempotent


@pytest.mark.parametrize("text", [
    # "try to" that forbids or describes an attempt instead of softening an instruction
    "Do not try to guess the order number.",
    "Never try to guess the order number.",
    "Don't try to guess the order number.",
    "Users who try to cancel get a refund.",
    "If the customer tries to cancel, offer a refund.",
    "The model will try to answer anyway.",
    # a negation earlier in the sentence may reach the hedged verb
    "Do not copy, paste, or try to edit the text.",
    "Never guess and try to ask.",
    "If the order is not late, try to upsell.",
    "Do not\ntry to guess the order number.",
    # wording the rewrite would have to change, not drop
    "Try to not guess.",
    "Try not to guess.",
    "Try to the best of your ability.",
    # conditions and exceptions that are meant
    "If possible, include the tracking link.",
    "Ideally, answer in one line.",
    "Generally speaking, answer in English.",
    "The total should probably match the invoice.",
    # quoted or code text is said word for word
    'Reply with "Sorry. Try to restart the app." and nothing else.',
    "Reply with “Sorry. Try to restart the app.” and nothing else.",
    'Say "Sorry about that.\nTry to restart the app." to the customer.',
    'Say "Sorry about that.\nTry to restart the app.\nTry to log in again." to them.',
    "Use `Try to restart` as the title.",
    # headings
    "## Try to be brief",
    "# Try to be brief.",
    # code fences of either kind, closed only by their own kind
    "```\nTry to be brief.\n```",
    "~~~text\nTry to be brief.\n```\nTry to be brief.\n~~~",
    # Jinja, also over lines
    "{{ 'Sorry. Try to restart.' }}",
    "{% set hint = 'Sorry. Try to restart.' %}",
    "{# Note. Try to keep this. #}",
    "{{ greet(\n'Sorry. Try to restart.'\n) }}",
    # nothing hedged at all
    "Answer in one sentence.",
    "",
])
def test_nothing_to_clarify(text: str) -> None:
    assert clarify(text) is None


def test_only_text_outside_fences_and_protected_sections_changes() -> None:
    system = (
        "You answer support tickets.\n"
        "Try to be brief.\n"
        "```\n"
        "Try to be brief.\n"
        "```\n"
        "# promptbot:protected begin safety\n"
        "Try to be brief.\n"
        "# promptbot:protected end\n"
        "~~~\n"
        "Try to be brief.\n"
        "~~~\n"
        "Try to be brief.\n"
    )
    variant = clarify(system)
    assert variant is not None
    lines = variant.system.split("\n")
    assert [i for i, line in enumerate(lines) if line == "Be brief."] == [1, 11]
    assert lines.count("Try to be brief.") == 3
    assert variant.added_lines == ("Be brief.", "Be brief.")
    assert protected.sections_of(variant.system) == protected.sections_of(system)


def test_a_prompt_whose_protected_markers_do_not_pair_is_left_alone() -> None:
    # The end marker is missing: whatever it was meant to protect is unclear.
    system = "# promptbot:protected begin safety\nTry to be brief.\nTry to be kind.\n"
    assert protected.scan(system)[1]
    assert clarify(system) is None
    assert clarify(system + "# promptbot:protected end\n") is None  # all of it protected
    assert clarify("Try to be brief.\n# promptbot:protected begin safety\n") is None


def _hedged(text: str) -> str:
    """Every line that ends with "." or ":" gets a hedged sentence after it; every Jinja
    expression gets a hedged string in it. Protected sections get them too, as input."""
    text = re.sub(r"([.:])$", r"\1 Try to stay calm.", text, flags=re.MULTILINE)
    return text.replace("{{ ", "{{ 'Sorry. Try to stay calm.' ~ ")


_JINJA = re.compile(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}", re.DOTALL)


@pytest.mark.parametrize("path", AGENTS, ids=lambda p: p.parent.name)
@pytest.mark.parametrize("field", ["system", "user_template"])
def test_shipped_prompts_keep_protected_sections_and_template_variables(
    path: Path, field: str
) -> None:
    agent = parse_agent(path.read_text(), path.name, folder_id=path.parent.name).agent
    original = getattr(agent.prompts, field)
    text = _hedged(original)
    assert text != original
    variant = clarify(text)
    assert variant is not None
    assert protected.sections_of(variant.system) == protected.sections_of(text)
    assert templating.compile_error(variant.system) is None
    assert templating.variables(variant.system) == templating.variables(original)
    assert _JINJA.findall(variant.system) == _JINJA.findall(text)
    old_lines, new_lines = text.split("\n"), variant.system.split("\n")
    assert len(old_lines) == len(new_lines)
    changed = [(a, b) for a, b in zip(old_lines, new_lines, strict=True) if a != b]
    assert [b for _, b in changed] == list(variant.added_lines)
    assert all(_only_deletes_words(a, b) and "Stay calm." in b for a, b in changed)
    assert clarify(variant.system) is None
