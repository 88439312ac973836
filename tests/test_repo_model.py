"""Agent files and policies: safe loading, line numbers, versions, `check` and `version`."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import Cli

from bot.core.agentfile import parse_agent
from bot.core.yamlparse import parse_yaml
from bot.errors import InputError

AGENT = "prompts/support-triage/agent.yaml"


def test_shipped_repository_checks_clean(cli: Cli) -> None:
    code, out, _ = cli("check")
    assert code == 0
    assert "all files valid" in out


def test_duplicate_key_is_reported_with_line(cli: Cli, repo: Path) -> None:
    path = repo / AGENT
    lines = path.read_text().splitlines()
    owner_line = next(i for i, ln in enumerate(lines) if ln.startswith("owner:"))
    lines.insert(owner_line + 1, 'owner: "@someone/else"')
    path.write_text("\n".join(lines) + "\n")
    code, out, _ = cli("check")
    assert code == 1
    assert f"{AGENT}:{owner_line + 2}: duplicate key 'owner' (first defined on line " \
        f"{owner_line + 1})" in out
    assert "fix:" in out


def test_unknown_key_points_at_its_line(cli: Cli, repo: Path) -> None:
    path = repo / AGENT
    text = path.read_text().replace("  user_template: |", "  user_templte: |", 1)
    path.write_text(text)
    line = next(i + 1 for i, ln in enumerate(text.splitlines()) if "user_templte" in ln)
    code, out, _ = cli("check", AGENT)
    assert code == 1
    assert f"{AGENT}:{line}: unknown key 'prompts.user_templte'" in out
    assert "missing required key 'prompts.user_template'" in out


def test_malformed_yaml_names_the_line(cli: Cli, repo: Path) -> None:
    (repo / AGENT).write_text("id: support-triage\nowner: [unclosed\nmodel: {}\n")
    code, out, _ = cli("check", AGENT)
    assert code == 1
    assert f"{AGENT}:" in out and "YAML syntax" in out
    assert "Traceback" not in out


def test_template_that_does_not_compile(cli: Cli, repo: Path) -> None:
    path = repo / AGENT
    path.write_text(path.read_text().replace("{{ ticket.channel }}", "{{ ticket.channel }", 1))
    code, out, _ = cli("check")
    assert code == 1
    assert "prompts.user_template does not compile" in out


def test_unbalanced_protected_markers(cli: Cli, repo: Path) -> None:
    path = repo / AGENT
    path.write_text(path.read_text().replace("    # promptbot:protected end\n", "", 1))
    code, out, _ = cli("check")
    assert code == 1
    assert "protected section 'safety' never ends" in out


def test_id_must_match_folder(cli: Cli, repo: Path) -> None:
    path = repo / AGENT
    path.write_text(path.read_text().replace("id: support-triage", "id: support", 1))
    code, out, _ = cli("check")
    assert code == 1
    assert "does not match its folder 'support-triage'" in out


def test_policy_unknown_key(cli: Cli, repo: Path) -> None:
    path = repo / "policies/promptbot.yaml"
    path.write_text(path.read_text() + "\nmax_prs: 3\n")
    code, out, _ = cli("check")
    assert code == 1
    assert "policies/promptbot.yaml:" in out and "unknown key 'max_prs'" in out


def test_unsafe_yaml_tags_are_refused() -> None:
    with pytest.raises(InputError) as info:
        parse_yaml("id: !!python/object/apply:os.system ['echo pwned']\n", "x.yaml")
    assert "x.yaml" in info.value.render()


def test_check_usage_error_exit_2(cli: Cli) -> None:
    code, _, err = cli("check", "--bogus")
    assert code == 2
    assert "error:" in err and "Traceback" not in err


def test_version_ignores_comments_and_formatting(repo: Path) -> None:
    text = (repo / AGENT).read_text()
    base = parse_agent(text, AGENT).version
    reformatted = text.replace("# Support triage agent", "# A different comment", 1)
    flow = "model: {name: claude-sonnet-4-5, temperature: 0.2, max_tokens: 1024}"
    assert flow in reformatted
    reformatted = reformatted.replace(
        flow, "model:\n  max_tokens: 1024\n  name: 'claude-sonnet-4-5'\n  temperature: 0.20")
    assert reformatted != text
    assert parse_agent(reformatted, AGENT).version == base
    owner_changed = text.replace('owner: "@acme/support-ai"', 'owner: "@acme/other"')
    assert parse_agent(owner_changed, AGENT).version == base
    prompt_changed = text.replace("first-line support", "first line support", 1)
    assert parse_agent(prompt_changed, AGENT).version != base


def test_version_command(cli: Cli, repo: Path) -> None:
    code, out, _ = cli("version", "support-triage")
    assert code == 0
    assert out.strip() == parse_agent((repo / AGENT).read_text(), AGENT).version
    code, out, _ = cli("version")
    assert code == 0 and len(out.strip().splitlines()) == 3
    code, _, err = cli("version", "no-such-agent")
    assert code == 2 and "known agents:" in err
    code, _, err = cli("version", "../../etc")
    assert code == 2 and "not a valid agent id" in err


def test_broken_agent_does_not_stop_the_others(cli: Cli, repo: Path) -> None:
    from conftest import git

    (repo / AGENT).write_text("id: support-triage\nid: again\n")
    git(repo, "commit", "-qam", "break one agent")
    code, out, err = cli("run")
    assert code == 3  # the broken file is reported ...
    assert "duplicate key 'id'" in err
    assert "sql-writer: open PR" in out  # ... and the other agents still get their proposals
    assert "support-triage: open PR" not in out


def test_pr_number_that_does_not_exist(cli: Cli) -> None:
    assert cli("run")[0] == 0
    code, _, err = cli("pr", "show", "99")
    assert code == 2
    assert "there is no pull request #99" in err and "promptbot pr list" in err
    code, _, err = cli("pr", "merge", "abc")
    assert code == 2 and "Traceback" not in err


def test_proposal_id_with_path_characters(cli: Cli, repo: Path) -> None:
    from conftest import snapshot_state

    assert cli("run")[0] == 0
    before = snapshot_state(repo)
    code, _, err = cli("rollback", "../../etc/passwd")
    assert code == 2
    assert "neither a PR number nor a proposal id" in err
    assert snapshot_state(repo) == before


def test_hostile_control_characters_are_not_echoed(cli: Cli) -> None:
    code, _, err = cli("version", "\x1b[31mred")
    assert code == 2
    assert "\x1b" not in err


def test_python_dash_m_bot(repo: Path) -> None:
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "bot", "-C", str(repo), "version"],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert "support-triage" in done.stdout


def test_template_injection_is_reported(cli: Cli, repo: Path) -> None:
    path = repo / AGENT
    hostile = "{{ ticket.__class__.__mro__[1].__subclasses__() }}"
    path.write_text(path.read_text().replace("{{ ticket.channel }}", hostile, 1))
    code, out, _ = cli("check")
    assert code == 1
    assert "private attribute '__class__'" in out
    # And the sandbox refuses it at render time too.
    from bot.core.templating import RenderError, render

    with pytest.raises(RenderError, match="unsafe"):
        render(hostile, {"ticket": {"channel": "mail"}})


def test_run_outside_a_git_repository(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from bot.cli import main

    code = main(["-C", str(tmp_path), "run"])
    err = capsys.readouterr().err
    assert code == 3
    assert "is not a git repository" in err and "fix:" in err


def test_billion_laughs_and_self_reference_are_refused_quickly(tmp_path: Path) -> None:
    import time

    levels = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 12):
        refs = ", ".join([f"*a{i - 1}"] * 10)
        levels.append(f"a{i}: &a{i} [{refs}]")
    start = time.perf_counter()
    with pytest.raises(InputError) as info:
        parse_yaml("\n".join(levels) + "\n", "evil.yaml")
    assert time.perf_counter() - start < 2.0
    assert "anchors and aliases" in info.value.render()
    with pytest.raises(InputError) as info:
        parse_yaml("a: &a [*a]\n", "loop.yaml")
    assert "loop.yaml:1" in info.value.render()
    with pytest.raises(InputError) as info:
        parse_yaml("[" * 5000 + "]" * 5000 + "\n", "deep.yaml")
    assert "deep.yaml" in info.value.render()


def test_template_tricks_that_build_names_at_render_time(cli: Cli, repo: Path) -> None:
    path = repo / AGENT
    tricks = '{{ ticket|attr("__class__") }}{{ ticket["__cl" ~ "ass__"] }}'
    path.write_text(path.read_text().replace("{{ ticket.channel }}", tricks, 1))
    code, out, _ = cli("check")
    assert code == 1
    assert "'__class__'" in out and "'__cl'" in out


def test_templates_render_with_the_tests_inputs(cli: Cli, repo: Path) -> None:
    path = repo / AGENT
    # Iterating over a number fails at render time only, with the case's inputs.
    path.write_text(path.read_text().replace(
        "{{ ticket.channel }}", "{% for c in ticket.channel %}{{ c }}{% endfor %}{{ 1 / 0 }}", 1))
    code, out, _ = cli("check")
    assert code == 1
    assert "fails on tests case" in out
