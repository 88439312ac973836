"""The example service of docs/RUNTIME.md: its spans are attributed to the versions it served."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml
from conftest import PROJECT, Cli

from bot import runtime
from bot.core import rollout as assign
from bot.core.version import fields_from_yaml, version_of

SERVE = PROJECT / "examples" / "service" / "serve.py"
REQUESTS = PROJECT / "examples" / "service" / "requests.jsonl"


def serve(root: Path, requests: Path, spans: Path) -> subprocess.CompletedProcess[str]:
    # Offline: the autouse fixture removed ANTHROPIC_API_KEY from the environment.
    return subprocess.run([sys.executable, str(SERVE), "--prompts", str(root),
                           "--requests", str(requests), "--spans", str(spans)],
                          cwd=root, capture_output=True, text=True, timeout=120)


def versions_seen(cli: Cli, spans: Path) -> dict[str, dict[str, dict[str, Any]]]:
    report = cli.json("analyze", "--metrics", str(spans), "--json")
    assert isinstance(report, dict)
    return {agent: {v["prompt_version"]: v for v in data["versions"]}
            for agent, data in report["agents"].items()}


def test_the_example_service_stamps_the_versions_on_main(repo: Path, cli: Cli,
                                                         tmp_path: Path) -> None:
    spans = tmp_path / "spans.json"
    done = serve(repo, REQUESTS, spans)
    assert done.returncode == 0, done.stderr
    seen = versions_seen(cli, spans)
    for agent_id in ("support-triage", "sql-writer"):
        expected = runtime.load_agent(repo, agent_id).version
        assert set(seen[agent_id]) == {expected}
        assert seen[agent_id][expected]["executions"] == 5
        assert seen[agent_id][expected]["successes"] == 5
    assert seen["meeting-summarizer"] == {}


def test_a_failed_render_is_an_error_span_of_that_version(repo: Path, cli: Cli,
                                                          tmp_path: Path) -> None:
    first = json.loads(REQUESTS.read_text().splitlines()[0])
    broken = {**first, "key": "ticket-broken", "inputs": {"ticket": {"channel": "email"}}}
    requests = tmp_path / "requests.jsonl"
    requests.write_text(json.dumps(first) + "\n" + json.dumps(broken) + "\n")
    spans = tmp_path / "spans.json"
    done = serve(repo, requests, spans)
    assert done.returncode == 1 and "requests.jsonl:2: RenderError" in done.stderr
    version = runtime.load_agent(repo, "support-triage").version
    row = versions_seen(cli, spans)["support-triage"][version]
    assert (row["executions"], row["successes"], row["errors"]) == (2, 1, 1)
    assert row["top_errors"][0]["error_type"] == "RenderError"


def test_a_canary_is_measured_as_two_versions_served_side_by_side(repo: Path, cli: Cli,
                                                                  tmp_path: Path) -> None:
    folder = repo / "prompts" / "support-triage"
    baseline_text = (folder / "agent.yaml").read_text()
    candidate_text = baseline_text.replace(
        "The reply draft should be friendly, short",
        "The reply draft should be friendly, at most four sentences")
    assert candidate_text != baseline_text
    (folder / "agent.yaml").write_text(candidate_text)
    baseline = fields_from_yaml(yaml.safe_load(baseline_text))
    candidate = version_of(fields_from_yaml(yaml.safe_load(candidate_text)))
    rollout_id = "support-triage-canary-1"
    (folder / "rollout.yaml").write_text(yaml.safe_dump(assign.rollout_document(
        rollout_id, baseline, candidate, 25, [25, 50])))

    first = json.loads(REQUESTS.read_text().splitlines()[0])
    keys = [f"customer-{i}" for i in range(400)]
    requests = tmp_path / "requests.jsonl"
    requests.write_text("".join(json.dumps({**first, "key": k}) + "\n" for k in keys))
    spans = tmp_path / "spans.json"
    done = serve(repo, requests, spans)
    assert done.returncode == 0, done.stderr

    expected = sum(assign.variant(rollout_id, k, 25) == "candidate" for k in keys)
    seen = versions_seen(cli, spans)["support-triage"]
    assert set(seen) == {version_of(baseline), candidate}
    assert seen[candidate]["executions"] == expected
    assert seen[version_of(baseline)]["executions"] == 400 - expected
    assert 70 < expected < 130  # about a quarter
