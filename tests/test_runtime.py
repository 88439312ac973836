"""The runtime loader (bot/runtime.py): what a production service serves and stamps."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import anthropic
import pytest
import yaml
from conftest import PROJECT, Cli
from standin.anthropic_server import AnthropicStandIn

from bot import runtime
from bot.core import rollout as assign
from bot.core.agentfile import parse_agent
from bot.core.canary import rollout_text
from bot.core.evaluation import case_request
from bot.core.model import TestsFile as Suite
from bot.core.version import fields_from_yaml, prompt_version, version_of
from bot.errors import InputError

SHIPPED = sorted(p.parent.name for p in (PROJECT / "prompts").glob("*/agent.yaml"))


@pytest.fixture(autouse=True)
def _fresh_cache() -> None:
    runtime._cache.clear()


def agent_text(**changes: str) -> str:
    """A small agent file; `changes` replace whole top-level blocks (YAML text)."""
    blocks = {
        "head": "id: demo\nowner: '@team'\ndescription: a demo agent\n",
        "model": "model: {name: claude-sonnet-4-5, temperature: 0.2, max_tokens: 300}\n",
        "prompts": ("prompts:\n  system: |\n    You answer briefly.\n"
                    "  user_template: 'Q: {{ question }}'\n"),
        "tools": "", "examples": "",
    }
    blocks.update(changes)
    return "".join(blocks.values())


def write_agent(root: Path, text: str, agent_id: str = "demo") -> Path:
    path = root / "prompts" / agent_id / "agent.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def rewrite(path: Path, text: str) -> None:
    """Change a file so the loader sees it (size or mtime differ even within one tick)."""
    before = path.stat().st_mtime_ns
    path.write_text(text)
    os.utime(path, ns=(before + 1_000_000, before + 1_000_000))


# ------------------------------------------------------------------ versions


@pytest.mark.parametrize("agent_id", SHIPPED)
def test_version_is_the_one_promptbot_version_prints(cli: Cli, agent_id: str) -> None:
    code, out, err = cli("version", agent_id)
    assert code == 0, err
    assert runtime.load_agent(PROJECT, agent_id).version == out.strip().split()[-1]


VARIATIONS = {
    "as written": {},
    "integer temperature": {"model": "model: {name: m, temperature: 1, max_tokens: 300}\n"},
    "defaults": {"model": "model: {name: m}\n"},
    "block scalar and comments": {"prompts": (
        "prompts:\n  # why\n  system: >-\n    You answer\n    briefly.\n"
        "  user_template: \"Q: {{ question }}\"\n")},
    "empty tools and examples": {"tools": "tools: []\n", "examples": "examples: []\n"},
    "tools": {"tools": textwrap.dedent("""\
        tools:
          - name: lookup
            description: finds an order
            parameters:
              type: object
              properties: {order_id: {type: string, pattern: "^[0-9]+$"}, n: {type: integer}}
              required: [order_id]
          - {name: ping, description: no arguments}
        """)},
    "examples, text and structured": {"examples": textwrap.dedent("""\
        examples:
          - {input: "Q: capital of France?", output: Paris}
          - input: {question: "Größe?", nested: {a: [1, 2.5, null, true]}}
            output: "Gut."
        """)},
    "unicode": {"prompts": "prompts:\n  system: \"Réponds — 简短\"\n  user_template: '{{ q }}'\n"},
}


@pytest.mark.parametrize("changes", VARIATIONS.values(), ids=VARIATIONS.keys())
def test_runtime_fields_equal_the_validated_model(changes: dict[str, str]) -> None:
    text = agent_text(**changes)
    validated = parse_agent(text, "prompts/demo/agent.yaml", "demo")
    fields = fields_from_yaml(yaml.safe_load(text))
    assert fields == validated.agent.model_dump(mode="json", by_alias=True,
                                                include={"model", "prompts", "tools",
                                                         "examples"})
    assert version_of(fields) == validated.version == prompt_version(validated.agent)


def test_what_the_model_does_not_see_does_not_change_the_version(tmp_path: Path) -> None:
    first = version_of(fields_from_yaml(yaml.safe_load(agent_text())))
    other = agent_text(head="# moved\nid: demo\nowner: '@other'\ndescription: changed\n",
                       model="model:\n  max_tokens: 300\n  temperature: 0.20\n"
                             "  name: claude-sonnet-4-5\n")
    assert version_of(fields_from_yaml(yaml.safe_load(other))) == first
    changed = agent_text(model="model: {name: claude-sonnet-4-5, temperature: 0.3, "
                               "max_tokens: 300}\n")
    assert version_of(fields_from_yaml(yaml.safe_load(changed))) != first


REFUSED = {
    "temperature as text": ({"model": "model: {name: m, temperature: '0.2'}\n"},
                            "model.temperature"),
    "temperature true": ({"model": "model: {name: m, temperature: true}\n"},
                         "model.temperature"),
    "fractional max_tokens": ({"model": "model: {name: m, max_tokens: 10.5}\n"},
                              "model.max_tokens"),
    "a date in tool parameters": ({"tools": (
        "tools:\n  - name: t\n    description: d\n    parameters: {type: object, "
        "default: 2024-01-31}\n")}, "tools[0].parameters"),
    "a date in an example input": ({"examples": (
        "examples:\n  - input: {question: 2024-01-31}\n    output: x\n")},
        "examples[0].input"),
    "an unknown model key": ({"model": "model: {name: m, top_p: 0.9}\n"}, "model.top_p"),
    "an empty example output": ({"examples": "examples:\n  - {input: hi, output: ''}\n"},
                                "examples[0].output"),
    "a blank example input": ({"examples": "examples:\n  - {input: '  ', output: x}\n"},
                              "examples[0].input"),
}


@pytest.mark.parametrize(("changes", "field"), REFUSED.values(), ids=REFUSED.keys())
def test_check_and_runtime_refuse_the_same_files(tmp_path: Path, changes: dict[str, str],
                                                  field: str) -> None:
    """A value with two readings (a YAML date, "0.2") would hash differently in two runtimes:
    check refuses it before it reaches main, and the runtime names the field."""
    text = agent_text(**changes)
    with pytest.raises(InputError):
        parse_agent(text, "prompts/demo/agent.yaml", "demo")
    write_agent(tmp_path, text)
    with pytest.raises(runtime.LoadError) as caught:
        runtime.load_agent(tmp_path, "demo")
    assert field in str(caught.value)
    assert "agent.yaml" in str(caught.value)


def test_vectors_in_the_docs_are_what_the_code_computes() -> None:
    """docs/runtime-vectors.json is the contract other languages check against."""
    vectors = json.loads((PROJECT / "docs" / "runtime-vectors.json").read_text())
    assert len(vectors["versions"]) >= 8 and len(vectors["assignments"]) >= 20
    for case in vectors["versions"]:
        fields = fields_from_yaml(yaml.safe_load(case["yaml"]))
        assert json.dumps(fields, sort_keys=True, separators=(",", ":"),
                          ensure_ascii=False) == case["canonical_json"], case["name"]
        assert version_of(fields) == case["version"], case["name"]
    for case in vectors["assignments"]:
        assert assign.bucket(case["rollout"], case["key"]) == case["bucket"]
        assert assign.variant(case["rollout"], case["key"], case["share"]) == case["variant"]
    variants = {c["variant"] for c in vectors["assignments"]}
    assert variants == {"baseline", "candidate"}
    shipped = {c["name"]: c["version"] for c in vectors["versions"]}
    for agent_id in SHIPPED:
        assert shipped[agent_id] == runtime.load_agent(PROJECT, agent_id).version
    check = subprocess.run([sys.executable, "scripts/gen_vectors.py", "--check"], cwd=PROJECT,
                           capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr


# ------------------------------------------------------------------ rendering


@pytest.mark.parametrize("agent_id", ["sql-writer", "support-triage"])
def test_requests_equal_the_offline_evals(agent_id: str) -> None:
    """What production sends is what `promptbot eval` measured, case for case."""
    loaded = parse_agent((PROJECT / "prompts" / agent_id / "agent.yaml").read_text(),
                         f"prompts/{agent_id}/agent.yaml", agent_id)
    cases = Suite.model_validate(
        yaml.safe_load((PROJECT / "prompts" / agent_id / "tests.yaml").read_text())).cases
    prompt = runtime.load_agent(PROJECT, agent_id).choose()
    assert cases
    for case in cases:
        expected = case_request(loaded.agent, case)
        assert not isinstance(expected, str), expected
        request = prompt.render(**case.inputs)
        assert request.system == expected.system
        assert [(m["role"], m["content"]) for m in request.messages] == list(expected.messages)
        assert (request.model, request.temperature, request.max_tokens) == (
            expected.model, expected.temperature, expected.max_tokens)


def test_examples_are_turns_and_structured_inputs_render_with_the_template(
        tmp_path: Path) -> None:
    write_agent(tmp_path, agent_text(examples=VARIATIONS["examples, text and structured"]
                                     ["examples"]))
    request = runtime.load_agent(tmp_path, "demo").render(question="Why?")
    assert request.messages == (
        {"role": "user", "content": "Q: capital of France?"},
        {"role": "assistant", "content": "Paris"},
        {"role": "user", "content": "Q: Größe?"},
        {"role": "assistant", "content": "Gut."},
        {"role": "user", "content": "Q: Why?"},
    )


def test_the_template_renders_in_the_sandbox(tmp_path: Path) -> None:
    write_agent(tmp_path, agent_text(prompts=(
        "prompts:\n  system: s\n  user_template: '{{ q.__class__.__mro__ }}'\n")))
    agent = runtime.load_agent(tmp_path, "demo")
    with pytest.raises(runtime.RenderError):
        agent.render(q="text")
    # Inputs are data: template syntax inside a value is not evaluated.
    write_agent(tmp_path, agent_text())
    rewrite(tmp_path / "prompts/demo/agent.yaml", agent_text() + "\n")
    request = runtime.load_agent(tmp_path, "demo").render(question="{{ 7 * 7 }}")
    assert request.messages[-1]["content"] == "Q: {{ 7 * 7 }}"


def test_the_anthropic_request_is_accepted_by_the_real_client(tmp_path: Path) -> None:
    write_agent(tmp_path, agent_text(tools=VARIATIONS["tools"]["tools"],
                                     examples=VARIATIONS["examples, text and structured"]
                                     ["examples"]))
    request = runtime.load_agent(tmp_path, "demo").render(question="Where is 42?")
    with AnthropicStandIn(reply_fn=lambda body: "ok") as server:
        client = anthropic.Anthropic(api_key="sk-test", base_url=server.base_url,
                                     max_retries=0)
        reply = client.messages.create(**request.anthropic())
        sent = server.message_requests[0].json
    assert reply.content[0].type == "text"
    assert sent["model"] == "claude-sonnet-4-5" and sent["max_tokens"] == 300
    assert sent["system"] == "You answer briefly.\n"
    assert sent["messages"][-1] == {"role": "user", "content": "Q: Where is 42?"}
    assert [t["name"] for t in sent["tools"]] == ["lookup", "ping"]
    assert sent["tools"][0]["input_schema"]["required"] == ["order_id"]
    assert sent["tools"][1]["input_schema"] == {"type": "object"}
    assert "temperature" not in sent
    assert request.temperature == 0.2  # for an older SDK, which takes it


def test_the_openai_shape(tmp_path: Path) -> None:
    write_agent(tmp_path, agent_text(tools=VARIATIONS["tools"]["tools"]))
    kwargs = runtime.load_agent(tmp_path, "demo").render(question="x").openai()
    assert kwargs["messages"][0] == {"role": "system", "content": "You answer briefly.\n"}
    assert kwargs["messages"][1:] == [{"role": "user", "content": "Q: x"}]
    assert kwargs["max_completion_tokens"] == 300 and kwargs["temperature"] == 0.2
    assert kwargs["tools"][0]["type"] == "function"
    assert kwargs["tools"][0]["function"]["parameters"]["required"] == ["order_id"]


def test_attributes_name_the_agent_and_the_version(tmp_path: Path) -> None:
    write_agent(tmp_path, agent_text())
    agent = runtime.load_agent(tmp_path, "demo")
    assert agent.attributes() == {
        "gen_ai.agent.name": "demo", "gen_ai.request.model": "claude-sonnet-4-5",
        "gen_ai.request.temperature": 0.2, "gen_ai.request.max_tokens": 300,
        "prompt.version": agent.version}


# -------------------------------------------------------------- imports, cache


def test_import_and_load_need_no_heavy_library() -> None:
    """A service imports the loader at start-up: no pydantic, DuckDB, numpy, scipy,
    anthropic, git or jsonschema, and Jinja2 only with the first render."""
    code = textwrap.dedent(f"""
        import sys
        from bot.runtime import load_agent
        agent = load_agent({str(PROJECT)!r}, "support-triage")
        heavy = ("pydantic", "duckdb", "numpy", "scipy", "anthropic", "git", "jsonschema",
                 "ruamel", "tiktoken", "github", "rich", "jinja2")
        print(sorted(m for m in heavy if m in sys.modules))
        agent.render(ticket={{"channel": "email", "subject": "s", "body": "b", "customer": {{}}}})
        print(sorted(m for m in heavy if m in sys.modules))
    """)
    out = subprocess.run([sys.executable, "-c", code], cwd=PROJECT, capture_output=True,
                         text=True, check=True).stdout.splitlines()
    assert out == ["[]", "['jinja2']"]


def test_loads_once_and_reloads_when_a_file_changes(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_agent(tmp_path, agent_text())
    reads: list[str] = []
    real = runtime._read_yaml

    def counted(path: str, **kw: Any) -> Any:
        if path.endswith("agent.yaml"):
            reads.append(path)
        return real(path, **kw)

    monkeypatch.setattr(runtime, "_read_yaml", counted)
    first = runtime.load_agent(tmp_path, "demo")
    assert runtime.load_agent(tmp_path, "demo") is first
    assert runtime.load_agent(tmp_path / "prompts", "demo") is first  # same files
    assert len(reads) == 1
    rewrite(path, agent_text(model="model: {name: claude-sonnet-4-5, temperature: 0.7}\n"))
    second = runtime.load_agent(tmp_path, "demo")
    assert second.version != first.version and second.model["temperature"] == 0.7
    assert len(reads) == 2


def test_a_symlink_swap_deploy_is_seen_without_growing_the_cache(tmp_path: Path) -> None:
    """git-sync and similar deploys check out each revision anew and swap a symlink."""
    write_agent(tmp_path / "rev1", agent_text())
    write_agent(tmp_path / "rev2", agent_text(model="model: {name: claude-opus-4-1}\n"))
    current = tmp_path / "current"
    current.symlink_to(tmp_path / "rev1")
    assert runtime.load_agent(current, "demo").model["name"] == "claude-sonnet-4-5"
    (tmp_path / "next").symlink_to(tmp_path / "rev2")
    os.replace(tmp_path / "next", current)  # atomic, as git-sync does it
    assert runtime.load_agent(current, "demo").model["name"] == "claude-opus-4-1"
    assert len(runtime._cache) == 1


def test_a_broken_edit_keeps_serving_the_last_good_version(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    path = write_agent(tmp_path, agent_text())
    good = runtime.load_agent(tmp_path, "demo")
    rewrite(path, "id: demo\nmodel: [unclosed\n")
    with caplog.at_level(logging.ERROR, logger="promptbot.runtime"):
        assert runtime.load_agent(tmp_path, "demo") is good
        assert runtime.load_agent(tmp_path, "demo") is good  # within the retry pause
    assert len(caplog.records) == 1
    message = caplog.records[0].getMessage()
    assert good.version in message and "agent.yaml:3: not valid YAML" in message
    monkeypatch.setattr(runtime, "RETRY_SECONDS", 0.0)
    rewrite(path, agent_text(model="model: {name: other-model}\n"))
    assert runtime.load_agent(tmp_path, "demo").model["name"] == "other-model"


def test_a_first_load_error_names_file_line_and_fix(tmp_path: Path) -> None:
    write_agent(tmp_path, "id: demo\nmodel: {name: m\nprompts: {}\n")
    with pytest.raises(runtime.LoadError) as caught:
        runtime.load_agent(tmp_path, "demo")
    text = str(caught.value)
    assert f"{tmp_path}/prompts/demo/agent.yaml:" in text and "promptbot check" in text
    with pytest.raises(runtime.LoadError, match="no such agent file"):
        runtime.load_agent(tmp_path, "missing")
    write_agent(tmp_path, agent_text(), agent_id="other")
    with pytest.raises(runtime.LoadError, match="not the folder name 'other'"):
        runtime.load_agent(tmp_path, "other")
    write_agent(tmp_path, b"\xff\xfe".decode("latin-1"), agent_id="bytes")
    (tmp_path / "prompts/bytes/agent.yaml").write_bytes(b"id: bytes\n\xff\n")
    with pytest.raises(runtime.LoadError, match="not UTF-8"):
        runtime.load_agent(tmp_path, "bytes")


@pytest.mark.parametrize("agent_id", ["../demo", "demo/../demo", "/etc", "Demo", "", ".."])
def test_ids_that_are_not_a_folder_name_are_refused(tmp_path: Path, agent_id: str) -> None:
    write_agent(tmp_path, agent_text())
    with pytest.raises(runtime.LoadError, match="folder name under prompts/"):
        runtime.load_agent(tmp_path, agent_id)


# ------------------------------------------------------------------ canaries


def canary(tmp_path: Path, share: float = 25, **override: Any) -> tuple[str, str]:
    """agent.yaml holds the candidate; rollout.yaml the baseline. Returns both versions."""
    baseline_text = agent_text()
    candidate_text = agent_text(prompts=(
        "prompts:\n  system: |\n    You answer briefly, in one sentence.\n"
        "  user_template: 'Q: {{ question }}'\n"))
    write_agent(tmp_path, candidate_text)
    baseline = fields_from_yaml(yaml.safe_load(baseline_text))
    candidate = version_of(fields_from_yaml(yaml.safe_load(candidate_text)))
    document = {**assign.rollout_document("demo-canary-1", baseline, candidate, share,
                                          [5, 25, 50]), **override}
    (tmp_path / "prompts/demo/rollout.yaml").write_text(yaml.safe_dump(document))
    return version_of(baseline), candidate


def test_a_canary_splits_requests_by_key(tmp_path: Path) -> None:
    baseline, candidate = canary(tmp_path, share=25)
    agent = runtime.load_agent(tmp_path, "demo")
    assert agent.version == candidate and agent.rollout is not None
    assert agent.rollout.stages == (5.0, 25.0, 50.0)
    served = [agent.choose(f"user-{i}") for i in range(20_000)]
    share = sum(p.version == candidate for p in served) / len(served)
    assert 0.24 < share < 0.26
    assert {p.version for p in served} == {baseline, candidate}
    assert all(agent.choose(f"user-{i}").version == served[i].version for i in range(500))
    base = next(p for p in served if p.variant == "baseline")
    assert base.render(question="x").system == "You answer briefly.\n"
    assert base.attributes()["prompt.version"] == baseline
    assert base.attributes()["promptbot.variant"] == "baseline"
    assert agent.attributes()["promptbot.rollout"] == "demo-canary-1"


def test_raising_the_share_only_moves_keys_to_the_candidate() -> None:
    keys = [f"k{i}" for i in range(5000)]
    before = {k for k in keys if assign.variant("r1", k, 5) == "candidate"}
    after = {k for k in keys if assign.variant("r1", k, 25) == "candidate"}
    other = {k for k in keys if assign.variant("r2", k, 25) == "candidate"}
    assert before < after
    assert 0.22 < len(after) / len(keys) < 0.28
    assert len(after & other) < len(after) * 0.4  # rollouts split independently
    assert all(assign.variant("r1", k, 100) == "candidate" for k in keys[:200])


BAD_ROLLOUTS = {
    "candidate is not agent.yaml": ({"candidate": "0123456789ab"}, "agent.yaml changed"),
    "baseline edited by hand": ({"baseline": {"version": "0123456789ab", "model": {"name": "m"},
                                              "prompts": {"system": "s",
                                                          "user_template": "u"}}},
                                "edited by hand"),
    "share above 100": ({"share": 150}, "at most 100"),
    "share with 3 decimals": ({"share": 2.125}, "two decimals"),
    "share as text": ({"share": "5%"}, "number of percent"),
    "rollout id with a path": ({"rollout": "../x"}, "canary's id"),
    "stages not a list": ({"stages": "5,25"}, "list of percents"),
}


@pytest.mark.parametrize(("override", "message"), BAD_ROLLOUTS.values(), ids=BAD_ROLLOUTS.keys())
def test_a_bad_rollout_file_is_refused(tmp_path: Path, override: dict[str, Any],
                                       message: str) -> None:
    canary(tmp_path, **override)
    with pytest.raises(runtime.LoadError) as caught:
        runtime.load_agent(tmp_path, "demo")
    assert message in str(caught.value) and "rollout.yaml" in str(caught.value)


def test_promote_and_end_are_file_changes_the_runtime_follows(tmp_path: Path) -> None:
    baseline, candidate = canary(tmp_path)
    assert runtime.load_agent(tmp_path, "demo").rollout is not None
    # Promote: the rollout file goes, agent.yaml (the candidate) stays.
    (tmp_path / "prompts/demo/rollout.yaml").unlink()
    promoted = runtime.load_agent(tmp_path, "demo")
    assert promoted.rollout is None and promoted.choose("k").version == candidate
    # End canary: agent.yaml back to the baseline; every key served it.
    canary(tmp_path)
    shutil.copy(tmp_path / "prompts/demo/agent.yaml", tmp_path / "candidate.yaml")
    rewrite(tmp_path / "prompts/demo/agent.yaml", agent_text())
    (tmp_path / "prompts/demo/rollout.yaml").unlink()
    ended = runtime.load_agent(tmp_path, "demo")
    assert ended.rollout is None and ended.choose("k").version == baseline


def test_check_refuses_a_rollout_file_the_runtime_would_refuse(repo: Path, cli: Cli) -> None:
    folder = repo / "prompts" / "support-triage"
    fields = fields_from_yaml(yaml.safe_load((folder / "agent.yaml").read_text()))
    good = assign.rollout_document("triage-canary-1", fields, version_of(fields), 5, [5, 25])
    (folder / "rollout.yaml").write_text(yaml.safe_dump(good))
    code, out, err = cli("check")
    assert code == 0, out + err
    (folder / "rollout.yaml").write_text(yaml.safe_dump({**good, "candidate": "0123456789ab"}))
    code, out, err = cli("check")
    assert code != 0
    assert "prompts/support-triage/rollout.yaml:1" in out + err  # `candidate:` sorts first
    assert "agent.yaml changed during the canary" in out + err
    assert "end the canary" in out + err


def test_an_unreadable_file_on_reload_keeps_the_last_good_version(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch
                                                                   ) -> None:
    path = write_agent(tmp_path, agent_text())
    good = runtime.load_agent(tmp_path, "demo")
    path.unlink()
    path.mkdir()  # reading it is an OSError (IsADirectoryError), not a missing file
    assert runtime.load_agent(tmp_path, "demo") is good
    runtime._cache.clear()
    with pytest.raises(runtime.LoadError, match="cannot be read"):
        runtime.load_agent(tmp_path, "demo")


def test_a_copied_prompts_folder_may_hold_an_agent_called_prompts(tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    for agent_id in ("prompts", "demo"):
        path = copy / agent_id / "agent.yaml"
        path.parent.mkdir(parents=True)
        path.write_text(agent_text(head=f"id: {agent_id}\nowner: '@t'\ndescription: d\n"))
    assert runtime.load_agent(copy, "demo").agent_id == "demo"
    assert runtime.load_agent(copy, "prompts").agent_id == "prompts"


def test_an_unquoted_all_digit_version_is_named_as_such(tmp_path: Path) -> None:
    canary(tmp_path, candidate=948377789131)
    with pytest.raises(runtime.LoadError, match="must be text: quote it"):
        runtime.load_agent(tmp_path, "demo")
    # The bot writes every version quoted, whatever it looks like.
    text = rollout_text("r-1", fields_from_yaml(yaml.safe_load(agent_text())), "948377789131",
                        5, (5, 25))
    assert 'candidate: "948377789131"' in text
    assert assign.parse_rollout(yaml.safe_load(text), "948377789131").share == 5


def test_check_renders_structured_examples_and_checks_the_canary_with_its_agent(
        repo: Path, cli: Cli) -> None:
    path = repo / "prompts" / "support-triage" / "agent.yaml"
    text = path.read_text()
    fields = fields_from_yaml(yaml.safe_load(text))
    (path.parent / "rollout.yaml").write_text(rollout_text(
        "triage-canary-1", fields, version_of(fields), 5, (5, 25)))
    # A PR that edits agent.yaml alone (what the PR check runs) must see the canary.
    path.write_text(text.replace("friendly, short", "friendly, brief"))
    code, out, err = cli("check", "prompts/support-triage/agent.yaml")
    assert code == 1 and "rollout.yaml" in out + err and "changed during the canary" in out + err
    (path.parent / "rollout.yaml").unlink()
    bad = text.replace("examples:\n", "examples:\n  - input: {tiket: {subject: x}}\n"
                       "    output: '{}'\n", 1)
    assert bad != text
    path.write_text(bad)
    code, out, err = cli("check", "prompts/support-triage/agent.yaml")
    assert code == 1 and "examples[0].input does not render" in out + err


def test_check_refuses_a_hand_written_rollout_file_yaml_1_2_reads_otherwise(
        repo: Path, cli: Cli) -> None:
    folder = repo / "prompts" / "support-triage"
    fields = fields_from_yaml(yaml.safe_load((folder / "agent.yaml").read_text()))
    text = rollout_text("triage-canary-1", fields, version_of(fields), 5, (5, 25))
    (folder / "rollout.yaml").write_text(text.replace("max_tokens: 1024", "max_tokens: 01024"))
    code, out, err = cli("check")
    assert code == 1 and "rollout.yaml" in out + err
    assert "`01024` at baseline.model.max_tokens reads as integer 532" in out + err
