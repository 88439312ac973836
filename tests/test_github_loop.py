"""The same loop on GitHub: real PyGithub against the stand-in on 127.0.0.1, a bare origin."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import PROJECT, git
from conftest import github_context as context
from conftest import proposal_prs as bot_prs
from standin.github_server import GitHubStandIn

from bot.app import run
from bot.cli import main
from bot.core.markers import parse
from bot.edges.git import Git
from bot.load.simulate import simulate

METRICS = [str(PROJECT / "examples" / "metrics" / "*.csv")]


def results_comments(standin: GitHubStandIn, number: int) -> list[str]:
    return [str(c["body"]) for c in standin.comments(number)
            if (parse(str(c["body"])) or {}).get("kind") == "results"]


def test_first_run_opens_labelled_prs_and_second_run_writes_nothing(
    clone: Path, standin: GitHubStandIn, origin: Path
) -> None:
    report = run(context(clone, standin), METRICS)
    assert report.errors == []
    prs = bot_prs(standin)
    assert set(prs) == {"support-triage", "sql-writer", "meeting-summarizer"}
    for agent, pr in prs.items():
        assert pr["state"] == "open"
        assert standin.labels(int(str(pr["number"]))) == ["promptbot", "promptbot:proposed"]
        head = pr["head"]
        assert isinstance(head, dict)
        branch = str(head["ref"])
        assert branch.startswith(f"promptbot/{agent}/p-")
        # The branch really is on origin, with the edited agent file.
        text = git(origin, "show", f"{branch}:prompts/{agent}/agent.yaml")
        assert "Reliability rules" in text
    assert all(w.method in ("POST", "PATCH") for w in standin.writes())

    standin.reset_log()
    report = run(context(clone, standin), METRICS)
    assert report.actions == []
    assert standin.writes() == []
    # No-change run with three open proposal PRs: a handful of requests at most.
    assert len(standin.requests) <= 5, [(r.method, r.path) for r in standin.requests]
    assert len(bot_prs(standin)) == 3


def test_merge_on_github_gets_exactly_one_results_comment(
    clone: Path, standin: GitHubStandIn, origin: Path
) -> None:
    run(context(clone, standin), METRICS)
    pr = bot_prs(standin)["support-triage"]
    number = int(str(pr["number"]))
    merge_sha = standin.merge(number)
    # Actions checks out the new main; here the clone pulls it.
    git(clone, "pull", "-q", "--ff-only", "origin", "main")
    assert git(clone, "rev-parse", "HEAD") == merge_sha
    sim = clone.parent / "sim"
    simulate(Git(clone), sim, days=14, seed=5, per_day=400, effect=0.04, effects_file=None,
             version_column=True)
    metrics = [str(sim / "*.csv")]

    standin.reset_log()
    report = run(context(clone, standin), metrics)
    assert report.errors == []
    comments = results_comments(standin, number)
    assert len(comments) == 1 and "promptbot results: success" in comments[0]
    assert "promptbot:completed" in standin.labels(number)
    # Results reached origin's main as a commit on top of the merge.
    marker = parse(str(pr["body"])) or {}
    result_path = f"prompts/support-triage/results/{marker['proposal_id']}.json"
    result = json.loads(git(origin, "show", f"main:{result_path}"))
    assert result["state"] == "completed"
    assert git(origin, "rev-parse", "main~1") == merge_sha

    standin.reset_log()
    report = run(context(clone, standin), metrics)
    assert standin.writes() == [], report.actions
    assert len(results_comments(standin, number)) == 1

    # A person reverts on main; the next run records the rollback in the same comment.
    git(clone, "revert", "-m", "1", "--no-edit", merge_sha)
    git(clone, "push", "-q", "origin", "main")
    run(context(clone, standin), metrics)
    comments = results_comments(standin, number)
    assert len(comments) == 1 and "rolled back" in comments[0]
    assert "promptbot:rolled-back" in standin.labels(number)
    assert "promptbot:completed" not in standin.labels(number)


def test_closed_unmerged_is_rejected_and_never_reopened(
    clone: Path, standin: GitHubStandIn
) -> None:
    run(context(clone, standin), METRICS)
    pr = bot_prs(standin)["meeting-summarizer"]
    number = int(str(pr["number"]))
    standin.close(number)
    standin.reset_log()
    report = run(context(clone, standin), METRICS)
    assert "promptbot:rejected" in standin.labels(number)
    rejected_id = (parse(str(pr["body"])) or {})["proposal_id"]
    opened = [w for w in standin.writes() if w.method == "POST" and w.path.endswith("/pulls")]
    # The next failure mode of the agent may get its own proposal; the rejected one never.
    assert all(rejected_id not in str(w.body) for w in opened)
    assert any("not reopened" in s for s in report.skipped)
    standin.reset_log()
    run(context(clone, standin), METRICS)
    assert standin.writes() == []


def test_cli_github_forge_needs_token(clone: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["-C", str(clone), "run", "--forge", "github"])
    assert code == 2
    assert "GITHUB_TOKEN" in capsys.readouterr().err


def test_cli_reports_refused_token_without_traceback(
    clone: Path, standin: GitHubStandIn, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("GITHUB_TOKEN", "wrong-token")
    monkeypatch.setenv("GITHUB_REPOSITORY", "acme/prompts")
    monkeypatch.setenv("GITHUB_API_URL", standin.base_url)
    code = main(["-C", str(clone), "run", "--forge", "github", "--dry-run"])
    err = capsys.readouterr().err
    assert code == 3
    assert "HTTP 401" in err and "Traceback" not in err
    assert "wrong-token" not in err


def test_standin_pull_objects_have_the_shape_of_real_webhook_payloads(
    clone: Path, standin: GitHubStandIn
) -> None:
    run(context(clone, standin), METRICS)
    ours = standin.pull(1)
    reference = PROJECT / "tests" / "reference" / "webhooks"
    for name in ("pull_request.opened.json", "pull_request.closed.merged.json"):
        real = json.loads((reference / name).read_text())["pull_request"]
        # Every field a real pull request carries is there, with a value of the same kind.
        missing = sorted(set(real) - set(ours))
        assert missing == [], (name, missing)
        for key, value in real.items():
            if value is not None and ours[key] is not None:
                assert type(ours[key]) is type(value), (name, key)


def test_spoofed_prs_and_comments_are_not_the_bots(
    clone: Path, standin: GitHubStandIn
) -> None:
    import github

    # Mallory pushes a branch under promptbot/ and opens a PR with a forged marker.
    git(clone, "checkout", "-q", "-b", "promptbot/sql-writer/p-fake")
    (clone / "prompts" / "sql-writer" / "note.txt").write_text("hi\n")
    git(clone, "add", "-A")
    git(clone, "commit", "-qm", "fake")
    git(clone, "push", "-q", "origin", "promptbot/sql-writer/p-fake")
    git(clone, "checkout", "-q", "main")
    gh = github.Github(auth=github.Auth.Token("test-token"), base_url=standin.base_url,
                       seconds_between_requests=0, seconds_between_writes=0)
    forged = ('<!-- promptbot: {"agent":"sql-writer","base_version":"x","kind":"proposal",'
              '"new_version":"y","proposal_id":"p-fake"} -->')
    fake = gh.get_repo("acme/prompts").create_pull(
        base="main", head="promptbot/sql-writer/p-fake", title="totally the bot", body=forged)
    standin.set_author(fake.number, "mallory")

    run(context(clone, standin), METRICS)
    assert standin.labels(fake.number) == []  # not labelled, not treated as the bot's
    real = bot_prs(standin)["sql-writer"]
    assert real["number"] != fake.number  # sql-writer was not "busy" because of the fake

    # Mallory comments a forged results marker on the real PR before it is merged.
    number = int(str(real["number"]))
    standin.add_comment(number, '<!-- promptbot: {"kind":"results"} -->', user="mallory")
    standin.merge(number)
    git(clone, "pull", "-q", "--ff-only", "origin", "main")
    sim = clone.parent / "sim"
    simulate(Git(clone), sim, days=14, seed=5, per_day=400, effect=0.04, effects_file=None,
             version_column=True)
    run(context(clone, standin), [str(sim / "*.csv")])
    bodies = [str(c["body"]) for c in standin.comments(number)]
    assert bodies[0] == '<!-- promptbot: {"kind":"results"} -->'  # left alone
    assert any("promptbot results" in b for b in bodies[1:])


def test_stale_proposal_is_closed_on_github(clone: Path, standin: GitHubStandIn) -> None:
    run(context(clone, standin), METRICS)
    pr = bot_prs(standin)["meeting-summarizer"]
    number = int(str(pr["number"]))
    path = clone / "prompts/meeting-summarizer/agent.yaml"
    path.write_text(path.read_text().replace("temperature: 0.3", "temperature: 0.25", 1))
    git(clone, "commit", "-qam", "a person tunes the summarizer")
    git(clone, "push", "-q", "origin", "main")
    standin.reset_log()
    report = run(context(clone, standin), METRICS)
    assert any("superseded" in a for a in report.actions)
    assert standin.pull(number)["state"] == "closed"
    assert "promptbot:superseded" in standin.labels(number)
    comments = [str(c["body"]) for c in standin.comments(number)]
    assert len(comments) == 1 and comments[0].startswith("Superseded")
    standin.reset_log()
    run(context(clone, standin), METRICS)
    assert standin.writes() == []


def test_a_canary_on_github_ends_by_a_pr_opened_once(
    clone: Path, standin: GitHubStandIn, origin: Path, tmp_path: Path
) -> None:
    policy = clone / "policies" / "promptbot.yaml"
    policy.write_text(policy.read_text().replace("  canary_stages: []",
                                                 "  canary_stages: [0.25, 0.5]"))
    git(clone, "commit", "-qam", "policy: canaries")
    git(clone, "push", "-q", "origin", "main")
    run(context(clone, standin), METRICS)
    pr = bot_prs(standin)["support-triage"]
    branch = str(pr["head"]["ref"])  # type: ignore[index]
    assert "share: 25" in git(origin, "show", f"{branch}:prompts/support-triage/rollout.yaml")
    baseline = (clone / "prompts/support-triage/agent.yaml").read_text()
    standin.merge(int(str(pr["number"])))
    git(clone, "pull", "-q", "--ff-only", "origin", "main")
    effects = tmp_path / "effects.yaml"
    effects.write_text("agents:\n  support-triage: {effect: -0.06}\n")
    sim = clone.parent / "sim"
    simulate(Git(clone), sim, days=14, seed=5, per_day=400, effect=None,
             effects_file=str(effects), version_column=True)
    metrics = [str(sim / "*.csv")]

    report = run(context(clone, standin), metrics)
    assert report.errors == []
    ends = [p for p in all_pulls(standin) if "end canary" in str(p["title"])]
    assert len(ends) == 1
    end_branch = str(ends[0]["head"]["ref"])  # type: ignore[index]
    assert git(origin, "show", f"{end_branch}:prompts/support-triage/agent.yaml") == \
        baseline.rstrip("\n")
    standin.reset_log()
    run(context(clone, standin), metrics)
    assert standin.writes() == []  # found again by its branch: not opened twice

    standin.merge(int(str(ends[0]["number"])))
    git(clone, "pull", "-q", "--ff-only", "origin", "main")
    assert not (clone / "prompts/support-triage/rollout.yaml").exists()
    run(context(clone, standin), metrics)
    assert "promptbot:rolled-back" in standin.labels(int(str(pr["number"])))


def all_pulls(standin: GitHubStandIn) -> list[dict[str, object]]:
    return list(standin.pulls())
