"""`promptbot event`: every reference payload planned, the real handlers run against the
GitHub stand-in through PyGithub, and the slash commands with their permission checks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import PROJECT, git, make_repo, proposal_prs, pull_count, snapshot_state
from conftest import github_context as context
from standin.github_server import GitHubStandIn

from bot.app import run
from bot.cli import main
from bot.core.commands import parse
from bot.core.events import CHECK, CLOSED, COMMAND, DENY, DEPLOY, IGNORE, classify
from bot.core.markers import parse as parse_marker
from bot.errors import ForgeError
from bot.events import handle

WEBHOOKS = PROJECT / "tests" / "reference" / "webhooks"
METRICS = [str(PROJECT / "examples" / "metrics" / "*.csv")]
BOT = "github-actions[bot]"


# ---------------------------------------------------------------- the pure parts


@pytest.mark.parametrize("payload", sorted(WEBHOOKS.glob("*.json")), ids=lambda p: p.name)
def test_every_reference_payload_is_planned_without_writing(
    payload: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = make_repo(tmp_path / "repo")
    before = snapshot_state(repo)
    name = payload.name.split(".")[0]
    code = main(["-C", str(repo), "event", "--name", name, "--payload", str(payload),
                 "--dry-run", "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    plan = json.loads(captured.out)
    assert plan["dry_run"] is True and plan["handler"] in (
        "cycle", "deploy", "closed", "check", "command", "deny", "ignore")
    assert plan["reason"]  # acted on or ignored, always with a reason
    assert snapshot_state(repo) == before


def test_reference_payloads_get_the_expected_handlers() -> None:
    def plan(file: str, base: str = "main") -> Any:
        data = json.loads((WEBHOOKS / file).read_text())
        return classify(file.split(".")[0], data, base_branch=base, bot_login=BOT)

    assert plan("pull_request.closed.merged.json").handler == DEPLOY
    assert plan("pull_request.closed.merged.json").after == \
        json.loads((WEBHOOKS / "pull_request.closed.merged.json").read_text())[
            "pull_request"]["merge_commit_sha"]
    assert plan("pull_request.closed.json", "master").handler == IGNORE  # a person's PR
    assert plan("pull_request.opened.null-body.json", "master").handler == CHECK
    assert plan("pull_request.synchronize.actions-event.json").handler == CHECK
    assert plan("issue_comment.created.json").reason.startswith("comment on an issue")
    assert plan("issue_comment.edited.json").handler == IGNORE
    assert plan("push.json").reason.endswith("is not a branch")
    assert plan("push.new-branch.json", "master").handler == DEPLOY
    assert plan("push.new-branch.json", "main").handler == IGNORE
    assert plan("schedule.actions-event.json").handler == "cycle"


def test_missing_and_null_fields_never_crash() -> None:
    base = json.loads((WEBHOOKS / "issue_comment.created.on-pull-request.json").read_text())
    odd: list[object] = [
        [], None, {}, {"action": None}, {"action": "created", "comment": None, "issue": None},
        {**base, "comment": {"body": "/promptbot help"}},  # trimmed: no user, no association
        {**base, "comment": {**base["comment"], "user": None, "body": "/promptbot rollback"}},
        {**base, "issue": {**base["issue"], "number": "7"}},
    ]
    for payload in odd:
        for name in ("issue_comment", "pull_request", "push", "status", "made_up"):
            p = classify(name, payload, base_branch="main", bot_login=BOT)
            assert p.handler in (IGNORE, DENY), (name, payload)
            assert p.reason
    fork = json.loads((WEBHOOKS / "pull_request.opened.json").read_text())
    fork["pull_request"]["head"]["repo"] = None  # the fork was deleted
    assert classify("pull_request", fork, base_branch="master", bot_login=BOT).fork


def test_event_with_unreadable_payload_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = make_repo(tmp_path / "repo")
    bad = tmp_path / "event.json"
    bad.write_text('{"action": "created",\n  oops}', encoding="utf-8")
    code = main(["-C", str(repo), "event", "--name", "issue_comment", "--payload", str(bad)])
    err = capsys.readouterr().err
    assert code == 2 and f"{bad}:2:" in err and "Traceback" not in err
    code = main(["-C", str(repo), "event"])
    assert code == 2 and "GITHUB_EVENT_NAME" in capsys.readouterr().err


@pytest.mark.parametrize(("body", "name", "argument", "note"), [
    ("/promptbot help", "help", "", ""),
    ("LGTM\n\n/promptbot   explain  ", "explain", "", ""),
    ("/PROMPTBOT Measure", "measure", "", ""),
    ("/promptbot reject   the tone is   too stiff", "reject", "the tone is too stiff", ""),
    ("/promptbot reject", "help", "", "needs a reason"),
    ("/promptbot rollback now please", "help", "", "takes no argument"),
    ("/promptbot deploy", "help", "", "unknown command `deploy`"),
    ("/promptbot `rm -rf`", "help", "", "unknown command `'rm`"),
    ("/promptbot", "help", "", "no command given"),
])
def test_slash_command_parsing_is_strict_and_total(
    body: str, name: str, argument: str, note: str
) -> None:
    command = parse(body)
    assert command is not None
    assert (command.name, command.argument) == (name, argument)
    assert note in command.note and (note or not command.note)


@pytest.mark.parametrize("body", [
    None, 42, "", "please /promptbot help", "> /promptbot rollback",
    "```\n/promptbot rollback\n```", "/promptbotrollback", "~~~\n/promptbot measure\n~~~",
    "```\ncode\n~~~\n/promptbot reject hidden\n```",  # a ~~~ line does not close ```
    "    /promptbot reject indented code", "<!--\n/promptbot reject hidden\n-->",
    "<!-- /promptbot rollback -->",
])
def test_text_without_a_command_line_is_no_command(body: object) -> None:
    assert parse(body) is None


def test_only_the_first_of_several_commands_counts() -> None:
    command = parse("/promptbot explain\n/promptbot rollback")
    assert command is not None and command.name == "explain" and command.extra == 1


# ---------------------------------------------------------------- against the stand-in


def proposal_numbers(standin: GitHubStandIn) -> dict[str, int]:
    return {agent: int(pr["number"]) for agent, pr in proposal_prs(standin).items()}


def pr_event(standin: GitHubStandIn, number: int, action: str) -> dict[str, Any]:
    """The payload GitHub would deliver, built from the stand-in's own PR object."""
    pr = standin.pull(number)
    return {"action": action, "number": number, "pull_request": pr,
            "repository": pr["base"]["repo"], "sender": pr["user"]}


def comment_event(standin: GitHubStandIn, number: int, body: str, *, user: str = "reviewer",
                  association: str = "MEMBER") -> dict[str, Any]:
    cid = standin.add_comment(number, body, user=user, association=association)
    comment = next(c for c in standin.comments(number) if c["id"] == cid)
    return {"action": "created", "issue": standin.issue(number), "comment": comment,
            "repository": standin.pull(number)["base"]["repo"], "sender": comment["user"]}


def deliver(clone: Path, standin: GitHubStandIn, name: str, payload: dict[str, Any],
            **forge: Any) -> Any:
    plan = classify(name, json.loads(json.dumps(payload)), base_branch="main",
                    bot_login=standin.actor)
    return handle(context(clone, standin, **forge), plan, METRICS)


def bot_replies(standin: GitHubStandIn, number: int, kind: str) -> list[str]:
    return [str(c["body"]) for c in standin.comments(number)
            if c["user"]["login"] == standin.actor
            and (parse_marker(str(c["body"])) or {}).get("kind") == kind]


def test_merged_pr_event_records_the_deploy_once(clone: Path, standin: GitHubStandIn) -> None:
    run(context(clone, standin), METRICS)
    number = proposal_numbers(standin)["support-triage"]
    standin.merge(number)
    standin.reset_log()
    outcome = deliver(clone, standin, "pull_request", pr_event(standin, number, "closed"))
    assert outcome.plan.handler == DEPLOY and outcome.errors == []
    writes = [(w.method, w.path) for w in standin.writes()]
    assert ("POST", f"/repos/acme/prompts/issues/{number}/comments") in writes
    assert "promptbot:measuring" in standin.labels(number)
    deployed = bot_replies(standin, number, "deployed")
    assert len(deployed) == 1 and "Deployed: merged into `main`" in deployed[0]
    # Git was brought up to date with the merge (deploy time = merge time).
    assert git(clone, "rev-parse", "main") == git(clone, "rev-parse", "origin/main")

    standin.reset_log()  # GitHub re-delivers, or the push event follows: nothing new
    deliver(clone, standin, "pull_request", pr_event(standin, number, "closed"))
    push = {"ref": "refs/heads/main", "before": git(clone, "rev-parse", "main~1"),
            "after": git(clone, "rev-parse", "main"), "commits": []}
    outcome = deliver(clone, standin, "push", push)
    assert standin.writes() == []
    assert any(line.startswith("support-triage: deployed version") for line in outcome.actions)


def test_closed_pr_event_records_the_rejection(clone: Path, standin: GitHubStandIn) -> None:
    run(context(clone, standin), METRICS)
    number = proposal_numbers(standin)["sql-writer"]
    standin.close(number)
    standin.reset_log()
    outcome = deliver(clone, standin, "pull_request", pr_event(standin, number, "closed"))
    assert outcome.plan.handler == CLOSED
    assert "promptbot:rejected" in standin.labels(number)
    assert [w.method for w in standin.writes()] == ["PATCH"]  # the labels, nothing else
    standin.reset_log()
    deliver(clone, standin, "pull_request", pr_event(standin, number, "closed"))
    assert standin.writes() == []


def test_slash_commands_answer_in_one_comment_each(clone: Path, standin: GitHubStandIn) -> None:
    run(context(clone, standin), METRICS)
    number = proposal_numbers(standin)["support-triage"]
    outcome = deliver(clone, standin, "issue_comment",
                      comment_event(standin, number, "/promptbot explain"))
    assert outcome.plan.handler == COMMAND and outcome.errors == []
    [reply] = bot_replies(standin, number, "command-explain")
    assert "Why `p-" in reply and "Evidence:" in reply and "Rollback:" in reply
    assert reply.startswith("@reviewer ")

    standin.reset_log()  # the same command again: the same answer, no new comment
    deliver(clone, standin, "issue_comment", comment_event(standin, number, "/promptbot explain"))
    assert standin.writes() == []
    assert len(bot_replies(standin, number, "command-explain")) == 1

    deliver(clone, standin, "issue_comment", comment_event(standin, number, "/promptbot dance"))
    [helped] = bot_replies(standin, number, "command-help")
    assert "unknown command `dance`" in helped and "/promptbot rollback" in helped

    deliver(clone, standin, "issue_comment",
            comment_event(standin, number, "/promptbot reject the tone is too stiff"))
    assert standin.pull(number)["state"] == "closed"
    assert "promptbot:rejected" in standin.labels(number)
    [rejected] = bot_replies(standin, number, "command-reject")
    assert "the tone is too stiff" in rejected
    # The next cycle does not reopen the rejected proposal.
    report = run(context(clone, standin), METRICS)
    assert any("not reopened" in line for line in report.skipped)
    # Unless a person asks for it.
    deliver(clone, standin, "issue_comment",
            comment_event(standin, number, "/promptbot regenerate"))
    assert standin.pull(number)["state"] == "open"
    assert "promptbot:proposed" in standin.labels(number)
    [again] = bot_replies(standin, number, "command-regenerate")
    assert again.startswith("@reviewer reopened this proposal")
    standin.reset_log()
    report = run(context(clone, standin), METRICS)
    # The reopened proposal is left as it is; only the dashboard shows it open again.
    [board] = standin.plain_issues()
    assert [(w.method, w.path) for w in standin.writes()] == [
        ("PATCH", f"/repos/acme/prompts/issues/{board['number']}")], report.actions
    assert f"#{number} open for review" in board["body"]


def test_unauthorized_commenter_and_bots_cannot_trigger_a_write(
    clone: Path, standin: GitHubStandIn, origin: Path
) -> None:
    run(context(clone, standin), METRICS)
    number = proposal_numbers(standin)["support-triage"]
    standin.merge(number)
    refs = git(origin, "for-each-ref")
    standin.reset_log()
    for association in ("NONE", "CONTRIBUTOR", "FIRST_TIME_CONTRIBUTOR"):
        outcome = deliver(clone, standin, "issue_comment", comment_event(
            standin, number, "/promptbot rollback", user="drive-by", association=association))
        assert outcome.plan.handler == DENY
    # One polite reply, never repeated; nothing else written anywhere.
    assert [(w.method, w.path) for w in standin.writes()] == [
        ("POST", f"/repos/acme/prompts/issues/{number}/comments")]
    [reply] = bot_replies(standin, number, "command-denied")
    assert "@drive-by" in reply and "write access" in reply
    assert git(origin, "for-each-ref") == refs  # no rollback branch pushed

    standin.reset_log()
    outcome = deliver(clone, standin, "issue_comment", comment_event(
        standin, number, "/promptbot rollback", user="renovate[bot]", association="NONE"))
    assert outcome.plan.handler == IGNORE and "bots" in outcome.plan.reason
    assert standin.writes() == []


def test_rollback_command_by_a_writer_opens_the_revert_pr(
    clone: Path, standin: GitHubStandIn
) -> None:
    run(context(clone, standin), METRICS)
    number = proposal_numbers(standin)["support-triage"]
    standin.merge(number)
    outcome = deliver(clone, standin, "issue_comment",
                      comment_event(standin, number, "/promptbot rollback", user="lead",
                                    association="OWNER"))
    assert outcome.errors == []
    [reply] = bot_replies(standin, number, "command-rollback")
    assert "reverts this merge" in reply
    revert = standin.pull(int(reply.split("#")[1].split()[0]))
    assert revert["head"]["ref"].startswith("promptbot/support-triage/rollback-")


def test_regenerate_never_overwrites_a_person_push(
    clone: Path, standin: GitHubStandIn, origin: Path, tmp_path: Path
) -> None:
    run(context(clone, standin), METRICS)
    number = proposal_numbers(standin)["support-triage"]
    branch = standin.pull(number)["head"]["ref"]

    # Untouched: regenerating from the same base and metrics changes nothing.
    tip = git(origin, "rev-parse", branch)
    deliver(clone, standin, "issue_comment",
            comment_event(standin, number, "/promptbot regenerate"))
    [reply] = bot_replies(standin, number, "command-regenerate")
    assert "identical" in reply and git(origin, "rev-parse", branch) == tip

    # A reviewer pushes a commit to the bot's branch.
    person = tmp_path / "person"
    git(tmp_path, "clone", "-q", str(origin), str(person))
    git(person, "checkout", "-q", branch)
    agent = person / "prompts" / "support-triage" / "agent.yaml"
    agent.write_text(agent.read_text() + "# reviewed\n")
    git(person, "-c", "user.name=Rev", "-c", "user.email=rev@example.com", "commit", "-qam",
        "tweak")
    git(person, "push", "-q", "origin", branch)
    pushed = git(origin, "rev-parse", branch)

    outcome = deliver(clone, standin, "issue_comment",
                      comment_event(standin, number, "/promptbot regenerate"))
    assert outcome.errors == []
    assert git(origin, "rev-parse", branch) == pushed
    [reply] = bot_replies(standin, number, "command-regenerate")
    assert "someone pushed to this branch" in reply


def test_secondary_rate_limit_is_waited_out(clone: Path, standin: GitHubStandIn) -> None:
    standin.fail_next("GET", 403, "You have exceeded a secondary rate limit. Please wait.",
                      headers={"Retry-After": "1"})
    report = run(context(clone, standin), METRICS)
    assert report.errors == []
    assert len(proposal_numbers(standin)) == 3
    gets = [r for r in standin.requests if r.method == "GET" and r.path.endswith("/pulls")]
    assert len(gets) == 2  # refused once, retried once


def test_rate_limit_beyond_the_wait_budget_stops_the_run_cleanly(
    clone: Path, standin: GitHubStandIn
) -> None:
    standin.fail_next("GET", 403, "API rate limit exceeded for installation ID 1.",
                      headers={"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "4102444800"})
    with pytest.raises(ForgeError) as info:
        run(context(clone, standin, max_wait_s=5), METRICS)
    assert "rate limit" in info.value.message or "HTTP 403" in info.value.message
    assert standin.writes() == []


def test_writes_per_run_are_capped(clone: Path, standin: GitHubStandIn) -> None:
    report = run(context(clone, standin, max_writes=3), METRICS)
    assert len(standin.writes()) == 3
    assert any("max_writes_per_run" in e for e in report.errors)


def test_long_comments_are_cut_with_the_marker_kept(clone: Path, standin: GitHubStandIn) -> None:
    run(context(clone, standin), METRICS)
    ctx = context(clone, standin)
    from bot.core import markers

    body = markers.attach("x" * 40 + "\n" + ("line of text\n" * 8000), {"kind": "results"})
    assert len(body) > 65_536
    ctx.forge.upsert_comment(1, "results", body)
    [stored] = [c["body"] for c in standin.comments(1)]
    assert len(stored) <= 65_536 and "cut to fit GitHub's limit" in stored
    assert (parse_marker(stored) or {}).get("kind") == "results"
    assert ctx.forge.upsert_comment(1, "results", body) == "unchanged"


def test_regenerate_refuses_when_the_branch_cannot_be_read(
    clone: Path, standin: GitHubStandIn, origin: Path, tmp_path: Path
) -> None:
    run(context(clone, standin), METRICS)
    number = proposal_numbers(standin)["support-triage"]
    branch = standin.pull(number)["head"]["ref"]
    tip = git(origin, "rev-parse", branch)
    git(clone, "remote", "set-url", "origin", str(tmp_path / "unreachable.git"))
    outcome = deliver(clone, standin, "issue_comment",
                      comment_event(standin, number, "/promptbot regenerate"))
    git(clone, "remote", "set-url", "origin", str(origin))
    assert outcome.errors and "fetching" in outcome.errors[0]
    [reply] = bot_replies(standin, number, "command-regenerate")
    assert "did not run" in reply
    assert git(origin, "rev-parse", branch) == tip  # nothing was force-pushed


def test_a_failed_write_is_looked_up_before_it_is_sent_again(
        clone: Path, standin: GitHubStandIn) -> None:
    """A 5xx on a POST may or may not mean it was done: the bot looks for the PR first and
    opens it again only when it is missing."""
    standin.fail_next("POST", 502, "Bad Gateway", path="/pulls")  # not done
    report = run(context(clone, standin), METRICS)
    assert report.errors == []
    posts = [r for r in standin.requests if r.method == "POST" and r.path.endswith("/pulls")]
    lookups = [r for r in standin.requests if r.method == "GET" and r.path.endswith("/pulls")
               and r.query.get("head")]
    assert len(lookups) == 1
    assert len(posts) == 4  # the failed one, sent once more after the lookup
    assert pull_count(standin) == 3


def test_a_write_done_but_answered_5xx_is_not_made_twice(
        clone: Path, standin: GitHubStandIn) -> None:
    standin.after_processing("POST", "/pulls", "error", status=502)  # done, then 502
    report = run(context(clone, standin), METRICS)
    assert report.errors == []
    posts = [r for r in standin.requests if r.method == "POST" and r.path.endswith("/pulls")]
    assert len(posts) == 3 and pull_count(standin) == 3


def test_events_that_need_no_model_run_without_a_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = make_repo(tmp_path / "repo")
    policy = repo / "policies/promptbot.yaml"
    policy.write_text(policy.read_text().replace("kind: auto", "kind: anthropic", 1))
    git(repo, "commit", "-qam", "the generator is a model")
    push = tmp_path / "push.json"
    head = git(repo, "rev-parse", "HEAD")
    push.write_text(json.dumps({"ref": "refs/heads/main", "before": git(repo, "rev-parse",
                                                                        "HEAD~1"),
                                "after": head}))
    code = main(["-C", str(repo), "event", "--name", "push", "--payload", str(push),
                 "--forge", "local", "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert json.loads(captured.out)["handler"] == "deploy"
    # The cycle does need the model: a clear error, not a traceback.
    cycle = tmp_path / "schedule.json"
    cycle.write_text("{}")
    code = main(["-C", str(repo), "event", "--name", "schedule", "--payload", str(cycle),
                 "--forge", "local"])
    assert code == 2 and "ANTHROPIC_API_KEY" in capsys.readouterr().err


def test_push_alone_records_the_deploy_of_the_merged_proposal(
    clone: Path, standin: GitHubStandIn
) -> None:
    """Without the pull_request event (e.g. the PR workflow did not run), the push to main
    that the merge made records the deploy by itself."""
    run(context(clone, standin), METRICS)
    number = proposal_numbers(standin)["sql-writer"]
    before = git(clone, "rev-parse", "main")
    merge = standin.merge(number)
    standin.reset_log()
    outcome = deliver(clone, standin, "push",
                      {"ref": "refs/heads/main", "before": before, "after": merge,
                       "commits": [{"id": merge}]})
    assert outcome.plan.handler == DEPLOY and outcome.errors == []
    assert ("POST", f"/repos/acme/prompts/issues/{number}/comments") in [
        (w.method, w.path) for w in standin.writes()]
    assert "promptbot:measuring" in standin.labels(number)
    [deployed] = bot_replies(standin, number, "deployed")
    assert merge[:12] in deployed
    assert any(a.startswith("sql-writer: deployed version") for a in outcome.actions)


def test_an_org_member_with_read_access_cannot_command(
    clone: Path, standin: GitHubStandIn, origin: Path
) -> None:
    """MEMBER is any member of the owning organisation: the permission level decides."""
    run(context(clone, standin), METRICS)
    number = proposal_numbers(standin)["support-triage"]
    standin.set_permission("intern", "read")
    refs = git(origin, "for-each-ref")
    standin.reset_log()
    outcome = deliver(clone, standin, "issue_comment", comment_event(
        standin, number, "/promptbot reject not needed", user="intern", association="MEMBER"))
    assert outcome.plan.handler == COMMAND  # the association let it through ...
    assert standin.pull(number)["state"] == "open"  # ... the permission did not
    assert [(w.method, w.path) for w in standin.writes()] == [
        ("POST", f"/repos/acme/prompts/issues/{number}/comments")]
    assert [r.path for r in standin.requests if "permission" in r.path] == [
        "/repos/acme/prompts/collaborators/intern/permission"]
    [reply] = bot_replies(standin, number, "command-denied")
    assert "@intern" in reply and "write access" in reply
    assert git(origin, "for-each-ref") == refs
