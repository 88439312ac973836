"""The offline-eval merge gate on GitHub: the bot's own proposals and a person's PR get the
table and a `promptbot/eval` commit status; a regression beyond the threshold fails it.

Real parts throughout: PyGithub against the GitHub stand-in, the anthropic SDK against the
Anthropic stand-in (a deterministic "model" played by a function of the request), real git
repositories with a bare origin.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import PROJECT, git, proposal_prs
from conftest import github_context as context
from github import Auth, Github
from standin.anthropic_server import AnthropicStandIn
from standin.github_server import GitHubStandIn
from standin.triage_model import FENCE_RULE, triage_model

from bot.app import run
from bot.cli import main
from bot.core.events import classify
from bot.core.markers import parse as parse_marker
from bot.edges.eval_providers import AnthropicEvalProvider
from bot.events import handle

pytestmark = pytest.mark.filterwarnings("ignore:The model 'claude-sonnet-4-5' is deprecated")

METRICS = [str(PROJECT / "examples" / "metrics" / "*.csv")]
KEY = "sk-ant-gate-test-SECRET"
TRIAGE = "prompts/support-triage/agent.yaml"
FENCE = FENCE_RULE


# Good JSON replies, fenced (and so failing two cases) when the system prompt holds the
# given text: a variant that makes the agent worse.
model = triage_model


@pytest.fixture
def claude() -> Iterator[AnthropicStandIn]:
    with AnthropicStandIn(reply_fn=model("")) as server:
        yield server


def live(claude: AnthropicStandIn) -> AnthropicEvalProvider:
    return AnthropicEvalProvider(api_key=KEY, base_url=claude.base_url)


def triage_pr(standin: GitHubStandIn) -> dict[str, Any] | None:
    return proposal_prs(standin).get("support-triage")


def test_bot_proposal_that_regresses_offline_is_never_opened(
    clone: Path, standin: GitHubStandIn, claude: AnthropicStandIn, origin: Path
) -> None:
    claude.reply_fn = model("Reliability rules")  # every offline rule variant breaks JSON
    report = run(context(clone, standin, live(claude)), METRICS)
    skips = [s for s in report.skipped
             if s.startswith("support-triage:") and "offline eval regressed" in s]
    assert all("exceeds the 10 pts allowed" in s for s in skips)
    # Each candidate was judged: the rule alone and the rule on the prompt without filler.
    assert any("offline rule `invalid_json`:" in s for s in skips)
    assert any("offline rule `invalid_json` + filler removed:" in s for s in skips)
    # What opened instead (if anything) is a proposal that does not regress: the filler
    # removal, never one of the rule variants the eval rejected.
    pr = triage_pr(standin)
    if pr is not None:
        text = git(origin, "show", f"{pr['head']['ref']}:{TRIAGE}")
        assert "Reliability rules" not in text
        assert standin.statuses(pr["head"]["sha"])[0]["state"] == "success"
    # Agents without tests.yaml are not gated: meeting-summarizer still gets its PR.
    assert any("meeting-summarizer: open PR" in a for a in report.actions)


def test_bot_proposal_that_holds_up_gets_the_table_and_a_passing_status(
    clone: Path, standin: GitHubStandIn, claude: AnthropicStandIn, origin: Path
) -> None:
    report = run(context(clone, standin, live(claude)), METRICS)
    assert report.errors == []
    pr = triage_pr(standin)
    assert pr is not None
    body = str(pr["body"])
    assert "### Offline eval" in body and "lost-parcel-is-order-status" in body
    head = pr["head"]["sha"]
    [status] = standin.statuses(head)
    assert status["context"] == "promptbot/eval" and status["state"] == "success"
    assert "variant 5/5 vs base 5/5" in status["description"]
    # The variant's replies are committed with the proposal, so the PR check replays them.
    branch = pr["head"]["ref"]
    recorded = git(origin, "show", f"{branch}:prompts/support-triage/eval-recordings.jsonl")
    assert recorded.count('"key"') >= 10
    # Both versions ran every case: the quality estimate is the paired pass-rate change,
    # in the PR and pre-registered in the proposal file.
    assert "Quality estimate (pass rate): **+0.0 pts**, interval -60.0 … +60.0 pts" in body
    record = yaml.safe_load(git(origin, "show", f"{branch}:prompts/support-triage/proposals/"
                                                f"{parse_marker(body)['proposal_id']}.yaml"))
    quality = record["expected_effect"]["quality"]
    assert (quality["change"], quality["interval"]) == (0.0, [-0.6, 0.6])
    assert quality["method"].startswith("offline eval (anthropic")
    # The next cycle neither re-asks the model nor rewrites the PR.
    asked = len(claude.message_requests)
    standin.reset_log()
    run(context(clone, standin, live(claude)), METRICS)
    assert standin.writes() == [] and len(claude.message_requests) == asked


def person_pr(clone: Path, standin: GitHubStandIn, edit: str, claude: AnthropicStandIn,
              monkeypatch: pytest.MonkeyPatch, branch: str,
              also: Callable[[Path], None] | None = None) -> dict[str, Any]:
    """A person edits the triage prompt on a branch (`edit` "" leaves it), records replies
    with their key (the stand-in plays the model), pushes and opens a PR; returns the
    event payload."""
    git(clone, "checkout", "-q", "-b", branch, "main")
    path = clone / TRIAGE
    anchor = "    # promptbot:protected begin safety"
    if edit:
        path.write_text(path.read_text().replace(anchor, f"    {edit}\n\n{anchor}", 1))
        monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
        monkeypatch.setenv("ANTHROPIC_BASE_URL", claude.base_url)
        assert main(["-C", str(clone), "eval", "support-triage", "--record"]) in (0, 1)
        monkeypatch.delenv("ANTHROPIC_API_KEY")
    if also is not None:
        also(clone)
    edit = edit or "docs only"
    git(clone, "add", "-A")
    git(clone, "-c", "user.name=Ana", "-c", "user.email=ana@example.com", "commit", "-qm", edit)
    git(clone, "push", "-q", "origin", branch)
    repo = Github(auth=Auth.Token("test-token"), base_url=standin.base_url).get_repo("acme/prompts")
    number = repo.create_pull(base="main", head=branch, title=edit[:60]).number
    pr = standin.pull(number)
    return {"action": "opened", "number": number, "pull_request": pr,
            "repository": pr["base"]["repo"], "sender": pr["user"]}


@pytest.mark.parametrize(("edit", "state"), [
    (FENCE, "failure"),
    ("Keep the internal_summary under 25 words.", "success"),
])
def test_a_persons_prompt_pr_gets_the_same_gate(
    clone: Path, standin: GitHubStandIn, claude: AnthropicStandIn,
    monkeypatch: pytest.MonkeyPatch, edit: str, state: str,
) -> None:
    claude.reply_fn = model(FENCE)
    payload = person_pr(clone, standin, edit, claude, monkeypatch, "ana/tweak")
    asked = len(claude.message_requests)
    plan = classify("pull_request", json.loads(json.dumps(payload)), base_branch="main",
                    bot_login=standin.actor)
    outcome = handle(context(clone, standin, None), plan)  # no key in the PR job: replays
    assert len(claude.message_requests) == asked
    assert outcome.failed is (state == "failure")
    head = payload["pull_request"]["head"]["sha"]
    [status] = standin.statuses(head)
    assert (status["context"], status["state"]) == ("promptbot/eval", state)
    comments = [c["body"] for c in standin.comments(payload["number"])]
    [table] = [c for c in comments if (parse_marker(c) or {}).get("kind") == "eval"]
    assert "reply-is-bare-json" in table and "support-triage" in table
    # Re-delivered: the same comment, no second one.
    handle(context(clone, standin, None), plan)
    assert len(standin.comments(payload["number"])) == len(comments)


def test_fork_pr_gets_no_writes_only_the_exit_code(
    clone: Path, standin: GitHubStandIn, claude: AnthropicStandIn, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    claude.reply_fn = model(FENCE)
    payload = person_pr(clone, standin, FENCE, claude, monkeypatch, "fork/tweak")
    payload["pull_request"]["head"]["repo"] = {
        **payload["pull_request"]["head"]["repo"], "full_name": "mallory/prompts"}
    event = clone.parent / "event.json"
    event.write_text(json.dumps(payload))
    monkeypatch.setenv("GITHUB_TOKEN", "test-token")
    monkeypatch.setenv("GITHUB_REPOSITORY", "acme/prompts")
    monkeypatch.setenv("GITHUB_API_URL", standin.base_url)
    monkeypatch.setenv("PROMPTBOT_BOT_LOGIN", standin.actor)
    standin.reset_log()
    capsys.readouterr()
    code = main(["-C", str(clone), "event", "--forge", "github", "--name", "pull_request",
                 "--payload", str(event), "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 1 and out["failed"] is True and out["fork"] is True
    assert standin.writes() == []


def test_candidates_are_ranked_by_the_offline_eval(
    clone: Path, standin: GitHubStandIn, claude: AnthropicStandIn, origin: Path
) -> None:
    """The offline generator prefers the smallest change (the rule alone); when the eval
    shows the rule on the prompt without filler passes more cases, that one is proposed."""
    plain = model("")

    def reply(body: dict[str, Any]) -> str:
        system = str(body.get("system") or "")
        user = str(body["messages"][-1]["content"])
        if "Please make sure" in system and "Nordkap" in user:
            return "Sure! " + plain(body)  # filler in the prompt, chatter in the reply
        return plain(body)

    claude.reply_fn = reply
    run(context(clone, standin, live(claude)), METRICS)
    pr = triage_pr(standin)
    assert pr is not None
    text = git(origin, "show", f"{pr['head']['ref']}:{TRIAGE}")
    assert "Reliability rules" in text and "Please make sure" not in text
    body = str(pr["body"])
    ranked = body.split("Candidates ranked by this eval")[1].split("</details>")[0]
    rows = [line for line in ranked.splitlines() if line.startswith("- ")]
    assert "+ filler removed" in rows[0] and rows[0].endswith("5/5 passed")
    assert "+ filler removed" not in rows[1] and rows[1].endswith("4/5 passed")
    [status] = standin.statuses(pr["head"]["sha"])
    assert status["state"] == "success" and "variant 5/5 vs base 4/5" in status["description"]


def test_a_worked_example_from_a_successful_case_is_a_candidate(
    clone: Path, standin: GitHubStandIn, claude: AnthropicStandIn, origin: Path,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    """Real recorded replies that pass their case become worked-example candidates for an
    output-format failure mode; the offline eval decides between them and the rules."""
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
    monkeypatch.setenv("ANTHROPIC_BASE_URL", claude.base_url)
    recordings = clone / "prompts/support-triage/eval-recordings.jsonl"
    recordings.unlink()  # the illustrative ones never become examples
    assert main(["-C", str(clone), "eval", "support-triage", "--record"]) == 0
    monkeypatch.delenv("ANTHROPIC_API_KEY")
    git(clone, "add", "-A")
    git(clone, "commit", "-qm", "record real eval replies")
    git(clone, "push", "-q", "origin", "main")
    capsys.readouterr()

    assert main(["-C", str(clone), "propose", "--dry-run", "--json", "--agent",
                 "support-triage", "--goal", "error_handling"]) == 0
    [plan] = json.loads(capsys.readouterr().out)
    assert any(a.startswith("worked example from tests.yaml case `lost-parcel-is-order-status`")
               for a in plan["alternatives"])

    # A model that needs the extra example to keep one case bare JSON: the rules regress on
    # it and are dropped, the worked example passes everything and is proposed.
    plain = model("")

    def reply(body: dict[str, Any]) -> str:
        shots = sum(1 for m in body["messages"] if m["role"] == "assistant")
        if shots < 4 and "Nordkap" in str(body["messages"][-1]["content"]):
            return "```json\n" + plain(body) + "\n```"
        return plain(body)

    claude.reply_fn = reply
    report = run(context(clone, standin, live(claude)), METRICS)
    pr = triage_pr(standin)
    assert pr is not None, report.skipped
    assert "with a worked example" in str(pr["title"])
    text = git(origin, "show", f"{pr['head']['ref']}:{TRIAGE}")
    before = (clone / TRIAGE).read_text()
    assert text.startswith(before)  # only lines appended: the new item of `examples`
    assert "Parcel not arrived after 12 days" in text[len(before):]
    assert standin.statuses(pr["head"]["sha"])[0]["state"] == "success"
    assert any("offline eval regressed" in s for s in report.skipped)


def deliver_pr(clone: Path, standin: GitHubStandIn, payload: dict[str, Any]) -> Any:
    plan = classify("pull_request", json.loads(json.dumps(payload)), base_branch="main",
                    bot_login=standin.actor)
    return handle(context(clone, standin, None), plan)


def test_a_pr_cannot_relax_the_gate_that_judges_it(
    clone: Path, standin: GitHubStandIn, claude: AnthropicStandIn, monkeypatch: pytest.MonkeyPatch,
) -> None:
    claude.reply_fn = model(FENCE)

    def relax(repo: Path) -> None:
        policy = repo / "policies/promptbot.yaml"
        policy.write_text(policy.read_text().replace("max_regression: 0.10",
                                                     "max_regression: 1.0", 1))
        tests = repo / "prompts/support-triage/tests.yaml"
        tests.write_text(tests.read_text().replace("- regex: '^\\s*\\{'", "- contains: '{'"))

    payload = person_pr(clone, standin, FENCE, claude, monkeypatch, "ana/relax", also=relax)
    outcome = deliver_pr(clone, standin, payload)
    assert outcome.failed
    [status] = standin.statuses(payload["pull_request"]["head"]["sha"])
    assert status["state"] == "failure" and "exceeds the 10 pts allowed" in status["description"]
    assert any("judged by the base's policy" in a for a in outcome.actions)


def test_every_pr_gets_a_status_even_without_prompt_changes(
    clone: Path, standin: GitHubStandIn, claude: AnthropicStandIn, monkeypatch: pytest.MonkeyPatch,
) -> None:
    def docs(repo: Path) -> None:
        (repo / "NOTES.md").write_text("how we review prompts\n")

    payload = person_pr(clone, standin, "", claude, monkeypatch, "ana/docs", also=docs)
    outcome = deliver_pr(clone, standin, payload)
    assert not outcome.failed
    [status] = standin.statuses(payload["pull_request"]["head"]["sha"])
    assert (status["state"], status["description"]) == ("success", "no prompt or policy change")


def test_the_status_is_set_even_when_the_comment_is_refused(
    clone: Path, standin: GitHubStandIn, claude: AnthropicStandIn, monkeypatch: pytest.MonkeyPatch,
) -> None:
    claude.reply_fn = model(FENCE)
    payload = person_pr(clone, standin, FENCE, claude, monkeypatch, "ana/tight-token")
    standin.fail_next("POST", 403, "Resource not accessible by integration", path="/comments")
    outcome = deliver_pr(clone, standin, payload)
    [status] = standin.statuses(payload["pull_request"]["head"]["sha"])
    assert status["state"] == "failure" and outcome.failed and outcome.errors == []
    assert any("eval table not posted" in a for a in outcome.actions)
