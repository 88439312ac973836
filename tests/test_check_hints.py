"""`promptbot check` on real files: an unknown key or a misspelt value names what was meant."""

from __future__ import annotations

from pathlib import Path

from conftest import Cli

from bot.core.model import DAILY_COLUMNS, METRIC_COLUMNS
from bot.load.check import check_paths
from bot.load.repo import POLICY_FILE, WorkingTree, load_policy

TESTS = "prompts/support-triage/tests.yaml"
AGENT = "prompts/support-triage/agent.yaml"


def _line_of(path: Path, text: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if text in line)


def test_assertions_instead_of_assert(cli: Cli, repo: Path) -> None:
    path = repo / TESTS
    path.write_text(path.read_text().replace("    assert:\n", "    assertions:\n", 1))
    line = _line_of(path, "    assertions:")
    code, out, _ = cli("check", TESTS)
    assert code == 1
    assert f"{TESTS}:{line}: unknown key 'cases.0.assertions' (did you mean `assert`?)" in out
    assert "fix: rename it to `assert`; the keys allowed here: name, inputs, assert" in out


def test_a_misspelt_nested_key_and_a_key_in_the_wrong_section(cli: Cli, repo: Path) -> None:
    path = repo / AGENT
    text = path.read_text().replace("temperature: 0.2", "temprature: 0.2")
    path.write_text(text.replace("owner:", "max_tokens: 900\nowner:", 1))
    code, out, _ = cli("check", AGENT)
    assert code == 1
    model_line = _line_of(path, "temprature")
    assert (f"{AGENT}:{model_line}: unknown key 'model.temprature' (did you mean "
            "`temperature`?)") in out
    assert (f"{AGENT}:{_line_of(path, 'max_tokens: 900')}: unknown key 'max_tokens' (it "
            "belongs under `model:`)") in out
    assert "fix: move it into the `model` section" in out


def test_policy_keys_and_values_name_what_was_meant(repo: Path) -> None:
    path = repo / POLICY_FILE
    text = path.read_text()
    text = text.replace("  kind: auto\n", "  kind: ofline\n")
    text = text.replace("  columns: {}\n", "  columns: {tokens: output_token}\n")
    text = text.replace("  status_values: {}\n", "  status_values: {ok: sucess}\n")
    assert "output_token}" in text and "sucess}" in text
    path.write_text(text + "max_prs: 2\nwindow_days: 7\nzzz: 1\n")
    findings = {f.message: f for f in check_paths(repo, [Path(POLICY_FILE)])}
    by_start = {m.split(" (")[0].split(":")[0]: f for m, f in findings.items()}

    kind = by_start["field 'generator.kind'"]
    assert kind.line == _line_of(path, "kind: ofline")
    assert kind.message.endswith("(did you mean `offline`?)") and kind.fix == "write `offline`"

    column = by_start["field 'metrics.columns.tokens'"]
    assert column.message == ("field 'metrics.columns.tokens': 'output_token' is not one of "
                              f"the {len(METRIC_COLUMNS) + len(DAILY_COLUMNS)} allowed values "
                              "(did you mean `output_tokens`?)")
    assert column.fix.startswith("write `output_tokens`; use one of: timestamp, agent_id")

    status = by_start["field 'metrics.status_values.ok'"]
    assert status.line == _line_of(path, "status_values")
    assert status.message.endswith("(did you mean `success`?)")

    assert by_start["unknown key 'max_prs'"].message.endswith(
        "(did you mean `guardrails.max_prs_per_run`?)")
    assert by_start["unknown key 'window_days'"].message.endswith(
        "(it belongs under `metrics:`)")
    nothing_close = by_start["unknown key 'zzz'"]
    assert nothing_close.message == "unknown key 'zzz'"
    assert nothing_close.line == _line_of(path, "zzz: 1")
    assert nothing_close.fix.startswith("remove it or check its spelling; the keys allowed "
                                        "here: metrics, propose, guardrails")
    assert len(findings) == 6


def test_loading_the_policy_carries_the_same_hint(repo: Path) -> None:
    from bot.errors import InputError

    path = repo / POLICY_FILE
    path.write_text(path.read_text() + "reprots_dir: out\n")
    try:
        load_policy(WorkingTree(repo))
    except InputError as exc:
        rendered = exc.render()
    else:
        raise AssertionError("an unknown key loaded")
    line = len(path.read_text().splitlines())
    assert f"{POLICY_FILE}:{line}: unknown key 'reprots_dir' (did you mean `reports_dir`?)" \
        in rendered


def test_an_unknown_assertion_kind_names_the_kind_meant(cli: Cli, repo: Path) -> None:
    path = repo / TESTS
    path.write_text(path.read_text().replace('      - contains: "Lena"', '      - contain: "Lena"'))
    code, out, _ = cli("check", TESTS)
    assert code == 1
    assert f"{TESTS}:{_line_of(path, 'contain: ')}: case 'lost-parcel-is-order-status', " \
        "assertion #2: unknown kind 'contain' (did you mean `contains`?)" in out


def test_the_shipped_files_still_check_clean(cli: Cli) -> None:
    code, out, _ = cli("check")
    assert (code, out.strip()) == (0, "all files valid")
