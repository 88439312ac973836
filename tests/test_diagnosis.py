"""Diagnosis: a failure's category from real error shapes, the agent's format, and rules
whose premise holds (never a JSON rule for an agent that answers in SQL)."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import PROJECT, Cli, git

from bot.core import diagnosis
from bot.core.agentfile import parse_agent
from bot.core.analysis import Problem
from bot.core.metrics import ErrorDay, ErrorGroup, VersionStats
from bot.core.model import Policy
from bot.core.proposals import Skipped, rules_that_hold

CORPUS = Path(__file__).parent / "data" / "error_shapes.yaml"


def _corpus() -> list[dict[str, Any]]:
    data = yaml.safe_load(CORPUS.read_text(encoding="utf-8"))
    assert isinstance(data, list)
    return data


def test_the_corpus_is_well_formed_and_covers_every_category() -> None:
    entries = _corpus()
    assert len(entries) >= 150
    for e in entries:
        assert set(e) == {"error_type", "error_message", "category", "source"}, e
        assert e["category"] in diagnosis.CATEGORIES and e["source"].strip(), e
    counts = Counter(e["category"] for e in entries)
    assert set(counts) >= set(diagnosis.CATEGORIES) - {"unknown"}, counts


def test_category_accuracy_on_the_corpus_is_at_least_95_percent() -> None:
    entries = _corpus()
    # As in a run: the agent's tools are known (a schema error naming one is a tool call).
    tools = ("lookup_order", "lookupOrder")
    wrong = [(e["category"], diagnosis.classify(e["error_type"], e["error_message"], tools),
              e["error_type"], e["error_message"][:100]) for e in entries
             if diagnosis.classify(e["error_type"], e["error_message"], tools) != e["category"]]
    accuracy = 1 - len(wrong) / len(entries)
    assert accuracy >= 0.95, f"{accuracy:.3f}: " + "\n".join(map(str, wrong))
    # As a run sees a failure mode: its template (quoted values masked) and one real message.
    from bot.core.templates import mask

    seen = [e for e in entries if diagnosis.of_failure(
        e["error_type"], mask(e["error_message"]), e["error_message"], tools) != e["category"]]
    assert 1 - len(seen) / len(entries) >= 0.95, seen


@pytest.mark.parametrize(("error_type", "message", "category"), [
    # The two wrong diagnoses, and their neighbours.
    ("ParserException", 'Parser Error: syntax error at or near "GROUP"', "sql_syntax"),
    ("", 'ParserException: Parser Error: syntax error at or near "GROUP"', "sql_syntax"),
    ("Timeout", "Query exceeded statement timeout of 30000 ms", "sql_timeout"),
    ("Timeout", "Request timed out after 30s", "timeout"),
    ("OutputParserException",
     "Could not parse LLM output: Expecting ',' delimiter: line 3 column 5 (char 44)",
     "invalid_json"),
    ("ValidationError", "1 validation error for Summary: owner Field required",
     "missing_field"),
    ("ToolCallError", "lookup_order failed: order 'ORD-1' not found", "not_found"),
    ("RateLimitError", "Error code: 429 - rate_limit_error", "rate_limit"),
    ("MaxTokensExceeded", "Response truncated: stop_reason=max_tokens", "truncated"),
    ("", "Something nobody has seen", "unknown"),
])
def test_classify_names_the_failure_not_the_first_keyword(
    error_type: str, message: str, category: str
) -> None:
    assert diagnosis.classify(error_type, message) == category


def _loaded(agent: str, text: str | None = None) -> Any:
    path = f"prompts/{agent}/agent.yaml"
    return parse_agent(text if text is not None else (PROJECT / path).read_text(), path,
                       folder_id=agent)


def test_the_format_is_declared_or_inferred_from_examples_then_the_prompt() -> None:
    from bot.core.proposals import agent_format

    sql = agent_format(_loaded("sql-writer").agent)
    assert (sql.name, sql.source) == ("sql", "examples")
    triage = _loaded("support-triage").agent
    assert agent_format(triage) == diagnosis.Format("json", "examples")
    # Without examples the prompt says it ("Your answer should be a JSON object").
    assert diagnosis.output_format("auto", triage.prompts.system, ()) == \
        diagnosis.Format("json", "prompt")
    text = (PROJECT / "prompts/support-triage/agent.yaml").read_text()
    declared = agent_format(_loaded("support-triage", text.replace(
        "\nmodel:", "\noutput_format: markdown\nmodel:", 1)).agent)
    assert (declared.name, declared.source) == ("markdown", "declared")
    assert diagnosis.output_format("auto", "Be helpful.", ()).known is False


def _problem(agent: str, error_type: str, template: str) -> Problem:
    when = datetime(2026, 11, 1)
    group = ErrorGroup(error_type, template, 300, when, when, template, "f-1")
    stats = VersionStats(agent, "v1", 2000, 1700, 0, 1800.0, 3200.0, 0.009, 18.0, 1500.0,
                         300.0, when - timedelta(days=28), when, None, (group,))
    return Problem("failure_mode", agent, "v1", f"failure_mode|{agent}|x", group, stats)


def test_a_json_rule_is_never_proposed_for_an_agent_that_answers_in_sql() -> None:
    loaded = _loaded("sql-writer")
    json_failure = _problem("sql-writer", "JSONDecodeError",
                            "Expecting value: line <*> column <*> (char <*>)")
    skipped = rules_that_hold(loaded, json_failure)
    assert isinstance(skipped, Skipped)
    assert "presupposes a JSON answer" in skipped.reason and "SQL" in skipped.reason
    parser = _problem("sql-writer", "ParserException",
                      'Parser Error: syntax error at or near "<*>"')
    held = rules_that_hold(loaded, parser)
    assert not isinstance(held, Skipped) and [r.key for r in held] == ["sql_syntax"]
    # Infrastructure: no rule, and the report says whose problem it is.
    limited = rules_that_hold(loaded, _problem("sql-writer", "RateLimitError",
                                               "Error code: <*> - rate_limit_error"))
    assert isinstance(limited, Skipped) and "quota" in limited.reason


def test_a_rule_the_prompt_already_states_in_its_own_words_is_not_added() -> None:
    text = (PROJECT / "prompts/support-triage/agent.yaml").read_text()
    said = text.replace(
        "    Your answer should be a JSON object with the fields category, priority, needs_human,",
        "    Answer with one JSON object only: no Markdown code fences and no text before or\n"
        "    after it. Your answer should be a JSON object with the fields category, priority,"
        " needs_human,", 1)
    assert said != text
    problem = _problem("support-triage", "OutputParserException",
                       "Could not parse LLM output: Expecting '<*>' delimiter")
    skipped = rules_that_hold(_loaded("support-triage", said), problem)
    assert isinstance(skipped, Skipped) and "already says" in skipped.reason
    held = rules_that_hold(_loaded("support-triage"), problem)
    assert not isinstance(held, Skipped) and held[0].key == "invalid_json"


def test_every_rule_the_shipped_agents_can_get_fits_their_format() -> None:
    """0 proposals that contradict an agent's format, over the shipped agents x the corpus."""
    policy = Policy()
    seen = 0
    for agent in ("sql-writer", "support-triage", "meeting-summarizer"):
        loaded = _loaded(agent)
        from bot.core.proposals import agent_format
        fmt = agent_format(loaded.agent)
        for e in _corpus():
            held = rules_that_hold(loaded, _problem(agent, e["error_type"], e["error_message"]))
            if isinstance(held, Skipped):
                continue
            for rule in held:
                seen += 1
                wants = diagnosis.RULE_FORMATS.get(rule.key)
                assert wants is None or fmt.name in wants, (agent, rule.key, e)
    assert seen > 0 and policy.propose.healthy_success_rate == 0.95


def test_sql_writer_fed_parser_failures_gets_a_sql_syntax_proposal(
    cli: Cli, repo: Path
) -> None:
    import csv

    rows = list(csv.DictReader((repo / "examples/metrics/executions.csv").open()))
    for row in rows:
        if row["agent_id"] == "sql-writer" and row["error_type"] == "BinderException":
            row["error_type"] = "ParserException"
            row["error_message"] = 'Parser Error: syntax error at or near "GROUP"'
    out = repo / "parser.csv"
    with out.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    git(repo, "status")
    data = cli.json("propose", "--dry-run", "--json", "--agent", "sql-writer",
                    "--metrics", str(out))
    assert isinstance(data, list) and data, data
    first = data[0]
    assert first["title"] == "sql-writer: fix SQL syntax errors"
    assert "balanced\n" in first["diff"] or "balanced" in first["diff"]
    assert "JSON" not in "".join(line for line in first["diff"].splitlines()
                                 if line.startswith("+"))


@pytest.mark.parametrize(("error_type", "message", "category"), [
    # LangChain's ReAct parser: the answer is not in the Thought/Action format, not JSON.
    ("OutputParserException", "Could not parse LLM output: `I now know the final answer: 42`",
     "unknown"),
    ("", "Search query exceeded maximum length of 256 characters", "unknown"),
    ("", "Query exceeded the statement timeout (30 s)", "sql_timeout"),
    # A request the service built wrong is configuration, not the model's output.
    ("BadRequestError", "Error code: 400 - {'type': 'error', 'error': {'type': "
     "'invalid_request_error', 'message': 'max_tokens: Field required'}}", "config"),
    ("BadRequestError", "Invalid parameter: 'response_format' of type 'json_object' is not "
     "supported with this model.", "config"),
])
def test_shapes_a_keyword_matcher_gets_wrong(error_type: str, message: str,
                                             category: str) -> None:
    assert diagnosis.classify(error_type, message) == category


def test_the_format_reads_negations_and_sql_inside_json() -> None:
    prose = diagnosis.output_format("auto", "Reply in plain sentences, never as JSON.", ())
    assert not prose.known
    wrapped = diagnosis.output_format("auto", "x", ('{"sql": "SELECT 1", "why": "one"}',))
    assert (wrapped.name, wrapped.also) == ("json", frozenset({"sql"}))
    # An SQL engine's error proves the agent writes SQL, even inside a JSON answer.
    assert diagnosis.contradiction("sql_syntax", wrapped, False) is None
    assert diagnosis.contradiction("sql_syntax", diagnosis.Format("json", "examples"),
                                   False) is not None


def test_a_promoted_rule_never_fixes_what_is_not_the_prompts() -> None:
    from bot.core.variants import Category

    loaded = _loaded("support-triage")
    promoted = (Category("filter-early", ("timeout", "timed out"),
                         "Filter on the date column first.", "slow queries"),)
    network = _problem("support-triage", "ReadTimeout", "The read operation timed out")
    held = rules_that_hold(loaded, network, promoted)
    assert isinstance(held, Skipped) and "(timeout)" in held.reason
    # A promoted SQL-timeout rule shares the built-in rule's premise: not for a JSON agent.
    sql_timeout = _problem("support-triage", "QueryCanceled",
                           "canceling statement due to statement timeout")
    refused = rules_that_hold(loaded, sql_timeout, promoted)
    assert isinstance(refused, Skipped) and "presupposes a SQL answer" in refused.reason
    writer = rules_that_hold(_loaded("sql-writer"), sql_timeout, promoted)
    assert not isinstance(writer, Skipped) and writer[0].key == "filter-early"


def test_the_signature_follows_the_diagnosis_not_the_template() -> None:
    """A template can change when the export does; the proposal id must not."""
    from bot.core.analysis import failure_problems

    policy = Policy().propose
    one = _problem("sql-writer", "BinderException",
                   'Binder Error: Referenced column "revenue" not found in FROM clause!')
    two = _problem("sql-writer", "BinderException",
                   'Binder Error: Referenced column "<*>" not found in FROM clause!')
    [a] = failure_problems(one.stats, "sql-writer", "v1", policy)
    [b] = failure_problems(two.stats, "sql-writer", "v1", policy)
    assert a.signature == b.signature == "failure_mode|sql-writer|BinderException|sql_schema"


def test_templates_are_learned_per_agent_and_error_type() -> None:
    from bot.load.metrics import templated

    day = datetime(2026, 11, 1)

    def e(agent: str, message: str) -> ErrorDay:
        return ErrorDay(agent, "v1", day, "error", "ToolError", message, 10, day, day, message)

    mine = [e("sql-writer", f"no such column: {c}") for c in ("revenue", "region", "qty")]
    alone = {x.template for x in templated(mine)}
    # A fourth word from another agent does not make this agent's words a variable.
    crowded = {x.template for x in templated([*mine, e("support-triage", "no such column: a")])
               if x.agent_id == "sql-writer"}
    assert alone == crowded and len(alone) == 3
    merged = templated([*mine, e("sql-writer", "no such column: foo")])
    assert {x.template for x in merged} == {"no such column: <*>"}
    assert sum(x.count for x in merged) == 40 and len(merged) == 1


def test_the_model_generator_is_told_the_diagnosis() -> None:
    from bot.core.generation import GenerationRequest, build_messages

    req = GenerationRequest("sql-writer", "id: sql-writer\n", "You write SQL.",
                            ("error_handling",), (("ParserException", "syntax error", 9),), 2,
                            "sql syntax (`sql_syntax`); the agent answers in SQL")
    _, messages = build_messages(req)
    text = messages[0]["content"][0]["text"]
    assert "Diagnosis: sql syntax (`sql_syntax`); the agent answers in SQL" in text
