"""Start-up cost: the heavy libraries load only in the commands that use them.

The anthropic SDK (~1-2 s to import), DuckDB, numpy and the tokenizer are imported where
they are called (bot/edges/anthropic_generator.py, eval_providers.py, tokens.py,
bot/load/metrics.py, bot/core/results.py's measurement), so `promptbot version`, `check`
and `event` for a comment or a closed pull request start without them. Each check runs in a
fresh interpreter (`python -c`): this test process has imported everything already.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from conftest import PROJECT, git

WEBHOOKS = PROJECT / "tests" / "reference" / "webhooks"
# Never needed by these commands; scipy, statsmodels and pandas never by promptbot at all.
HEAVY = ("anthropic", "httpx", "duckdb", "numpy", "tiktoken", "scipy", "statsmodels",
         "pandas", "pyarrow")

PROBE = """
import contextlib, io, json, sys
HEAVY = {heavy!r}
def loaded():
    return sorted(h for h in HEAVY if h in sys.modules)
seen = {{}}
import bot.cli
seen["import bot.cli"] = loaded()
from bot.cli import main
for label, argv in {commands!r}:
    with contextlib.redirect_stdout(io.StringIO()) as out, \\
            contextlib.redirect_stderr(io.StringIO()) as err:
        try:
            code = main(argv)
        except SystemExit as exc:  # --version
            code = exc.code
    seen[label] = loaded()
    seen[label + " :exit"] = [code, out.getvalue()[-300:], err.getvalue()[-300:]]
print(json.dumps(seen))
"""


def _probe(root: Path, commands: dict[str, list[str]]) -> dict[str, list[object]]:
    """{label: modules of HEAVY loaded after it, label + " :exit": [code, stdout, stderr]},
    the commands run one after another in one fresh interpreter."""
    argv = [(label, ["-C", str(root), *c]) for label, c in commands.items()]
    code = PROBE.format(heavy=HEAVY, commands=argv)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300, cwd=root, env={**os.environ, "CI": "true"}, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    result: dict[str, list[object]] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _payload(tmp: Path, name: str, edit: dict[str, object], pr_edit: dict[str, object],
             key: str) -> str:
    data = json.loads((WEBHOOKS / name).read_text(encoding="utf-8"))
    data.update(edit)
    data[key].update(pr_edit)
    path = tmp / f"{name}.edited.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    return str(path)


def test_cli_version_and_check_load_no_heavy_library(repo: Path) -> None:
    seen = _probe(repo, {c: [c] for c in ("--version", "version", "check")})
    assert seen["import bot.cli"] == []
    for command in ("--version", "version", "check"):
        assert seen[f"{command} :exit"][0] == 0, seen[f"{command} :exit"]
        assert seen[command] == [], f"`promptbot {command}` imported {seen[command]}"


def test_event_handling_of_a_comment_and_a_closed_pr_loads_no_heavy_library(
        repo: Path, tmp_path: Path) -> None:
    # Real proposal PRs on the local forge first (in its own process: `run` needs them all).
    subprocess.run([sys.executable, "-m", "bot", "-C", str(repo), "run"], check=True,
                   capture_output=True, timeout=300, env={**os.environ, "CI": "true"})
    listed = subprocess.run([sys.executable, "-m", "bot", "-C", str(repo), "pr", "list",
                             "--json"], check=True, capture_output=True, text=True)
    first = json.loads(listed.stdout)[0]
    number, branch = first["number"], first["branch"]
    base_sha = git(repo, "rev-parse", "main")
    # GitHub's own payloads (tests/reference/webhooks), pointed at that PR.
    comment = _payload(tmp_path, "issue_comment.created.on-pull-request.json", {},
                       {"number": number}, "issue")
    data = json.loads(Path(comment).read_text())
    data["comment"]["body"] = "/promptbot help"
    data["comment"]["author_association"] = "OWNER"
    Path(comment).write_text(json.dumps(data))
    pull = json.loads((WEBHOOKS / "pull_request.closed.json").read_text(encoding="utf-8"))
    pull["number"] = number
    pull["pull_request"].update(number=number, merged=False)
    pull["pull_request"]["head"]["ref"] = branch
    pull["pull_request"]["base"].update(ref="main", sha=base_sha)
    closed = tmp_path / "closed.json"
    closed.write_text(json.dumps(pull))
    merged = _payload(tmp_path, "pull_request.closed.merged.json", {"number": number},
                      {"number": number}, "pull_request")
    data = json.loads(Path(merged).read_text())
    data["pull_request"]["base"].update(ref="main", sha=base_sha)
    Path(merged).write_text(json.dumps(data))

    events = {
        "comment": ["event", "--name", "issue_comment", "--payload", comment],
        "closed --dry-run": ["event", "--name", "pull_request", "--payload", str(closed),
                             "--dry-run"],
        "closed": ["event", "--name", "pull_request", "--payload", str(closed)],
        "merged": ["event", "--name", "pull_request", "--payload", merged],
    }
    # The control last: the probe sees a heavy import when one happens.
    seen = _probe(repo, {**events, "analyze": ["analyze"]})
    for label in events:
        exit_code, out, err = seen[f"{label} :exit"]
        assert exit_code == 0, (label, out, err)
        assert seen[label] == [], f"`promptbot event` ({label}) imported {seen[label]}"
    # The handlers really ran (not an early "ignore").
    assert "/promptbot help answered" in str(seen["comment :exit"][1])
    assert "closed unmerged: rejected" in str(seen["closed :exit"][1])
    assert "rejected" in str(seen["closed :exit"][1]).split("—", 1)[1]
    assert "merged: merge time is deploy time" in str(seen["merged :exit"][1])
    assert {"duckdb", "numpy"} <= set(seen["analyze"])


def test_counting_tokens_and_generating_load_their_libraries_on_first_use() -> None:
    code = (
        "import sys\n"
        "from bot.edges.anthropic_generator import AnthropicGenerator\n"
        "from bot.edges.eval_providers import AnthropicEvalProvider\n"
        "from bot.edges.tokens import count_tokens\n"
        "gen = AnthropicGenerator(api_key='k', base_url='http://127.0.0.1:9')\n"
        "live = AnthropicEvalProvider(api_key='k', base_url='http://127.0.0.1:9')\n"
        "before = sorted(m for m in ('anthropic', 'tiktoken') if m in sys.modules)\n"
        "count_tokens('hello'); gen._client; live._client\n"
        "after = sorted(m for m in ('anthropic', 'tiktoken') if m in sys.modules)\n"
        "print(before, after)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[] ['anthropic', 'tiktoken']"


def test_promptbot_itself_never_imports_scipy_statsmodels_or_pandas() -> None:
    """They are test references and benchmark baselines (the dev and bench extras), not
    runtime dependencies: no module under bot/ may name them."""
    import ast

    offenders = []
    for path in sorted((PROJECT / "bot").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            offenders += [f"{path.name}: {n}" for n in names
                          if n.split(".")[0] in ("scipy", "statsmodels", "pandas", "pyarrow")]
    assert offenders == []
