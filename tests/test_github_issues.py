"""The bot's issues on GitHub (dashboard, alerts): real PyGithub against the stand-in."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from standin.github_server import GitHubStandIn

from bot.core import markers
from bot.core.render import GITHUB_BODY_LIMIT
from bot.edges.forge import Issue
from bot.edges.git import Git
from bot.edges.github_forge import GitHubForge
from bot.errors import ForgeError

ISSUES = "/repos/acme/prompts/issues"
DASHBOARD = "promptbot:dashboard"


@pytest.fixture
def hub() -> Iterator[GitHubStandIn]:
    """A stand-in without a bare repository: branches are made up, so PRs are cheap."""
    with GitHubStandIn() as server:
        yield server
        assert server.validation_errors == []


def forge_for(origin: Path, hub: GitHubStandIn, **kwargs: object) -> GitHubForge:
    return GitHubForge(Git(origin), token="test-token", repository="acme/prompts",
                       base_url=hub.base_url, bot_login=hub.actor, fast=True,
                       **kwargs)  # type: ignore[arg-type]


@pytest.fixture
def forge(origin: Path, hub: GitHubStandIn) -> GitHubForge:
    return forge_for(origin, hub)


def seed(forge: GitHubForge, title: str, labels: list[str], body: str | None = "text") -> int:
    """An issue made outside the forge's write count (as an earlier run would have)."""
    if body is None:
        return int(forge.repo.create_issue(title=title, labels=labels).number)
    return int(forge.repo.create_issue(title=title, body=body, labels=labels).number)


def alert_body(text: str, alert: str = "latency") -> str:
    return markers.attach(text, {"kind": "alert", "agent": "support-triage", "alert": alert})


def calls(hub: GitHubStandIn) -> list[tuple[str, str]]:
    return [(r.method, r.path) for r in hub.requests]


def test_list_keeps_only_the_bots_labelled_issues_in_both_states_in_one_request(
    forge: GitHubForge, hub: GitHubStandIn
) -> None:
    opened = seed(forge, "Dashboard", [DASHBOARD, "promptbot"], body="dash")
    closed = seed(forge, "Old dashboard", [DASHBOARD], body="old")
    hub.close(closed)
    bodiless = seed(forge, "No body", [DASHBOARD], body=None)
    seed(forge, "Other label", ["promptbot:alert"])
    persons = seed(forge, "A person's issue", [DASHBOARD])
    hub.set_author(persons, "octocat")
    pr = forge.open_pr(branch="promptbot/a/p-1", base="main", title="A proposal",
                       body="proposal", labels=[DASHBOARD])
    assert DASHBOARD in hub.labels(pr.number)  # a bot PR carrying the label: not an issue

    hub.reset_log()
    writes = forge.writes
    found = {i.number: i for i in forge.list_issues(DASHBOARD)}

    assert set(found) == {opened, closed, bodiless}
    assert found[opened] == Issue(opened, "open", "Dashboard", "dash",
                                  (DASHBOARD, "promptbot"),
                                  url=f"{hub.base_url.removesuffix('/api/v3')}"
                                  f"/acme/prompts/issues/{opened}")
    assert found[closed].state == "closed" and found[closed].body == "old"
    assert found[bodiless].body == ""
    # One request, the label filter done by GitHub, no GET of the label or of each issue.
    assert calls(hub) == [("GET", ISSUES)]
    assert hub.requests[0].query == {"state": "all", "labels": DASHBOARD, "per_page": "100"}
    assert forge.writes == writes


def test_list_follows_pages_past_a_hundred(forge: GitHubForge, hub: GitHubStandIn) -> None:
    numbers = {seed(forge, f"Alert {n}", [DASHBOARD]) for n in range(100)}
    seed(forge, "Unlabelled", ["promptbot"])
    hub.reset_log()
    assert {i.number for i in forge.list_issues(DASHBOARD)} == numbers
    assert calls(hub) == [("GET", ISSUES)]  # exactly 100: still one page

    numbers |= {seed(forge, f"Alert {n}", [DASHBOARD]) for n in range(100, 130)}
    hub.reset_log()
    assert {i.number for i in forge.list_issues(DASHBOARD)} == numbers
    assert len(numbers) == 130
    assert calls(hub) == [("GET", ISSUES), ("GET", ISSUES)]
    assert hub.requests[1].query.get("page") == "2"


def test_open_issue_is_one_post_carrying_the_labels(
    forge: GitHubForge, hub: GitHubStandIn
) -> None:
    body = alert_body("p95 latency over the SLA")
    issue = forge.open_issue(title="Alert: latency", body=body,
                             labels=["promptbot", "promptbot:alert"])

    assert calls(hub) == [("POST", ISSUES)]
    assert hub.requests[0].body == {"title": "Alert: latency", "body": body,
                                    "labels": ["promptbot", "promptbot:alert"]}
    assert forge.writes == 1
    stored = hub.issue(issue.number)
    assert stored["body"] == body and stored["state"] == "open"
    assert hub.labels(issue.number) == ["promptbot", "promptbot:alert"]
    assert issue.labels == ("promptbot", "promptbot:alert") and issue.state == "open"
    assert forge.list_issues("promptbot:alert") == [issue]


@pytest.mark.parametrize("what", ["drop", "error", "delay"])
def test_a_lost_answer_on_open_issue_leaves_one_issue_found_by_its_marker(
    origin: Path, hub: GitHubStandIn, what: str
) -> None:
    forge = forge_for(origin, hub, timeout=1)
    body = alert_body("p95 latency over the SLA")
    # Lookalikes the lookup must pass over: the same alert key with another text (closed),
    # the very same alert from before (closed), another alert, and a person's issue with
    # the very same body and label.
    hub.close(seed(forge, "Alert: latency", ["promptbot:alert"],
                   alert_body("an older latency alert")))
    earlier = seed(forge, "Alert: latency", ["promptbot:alert"], body)
    hub.close(earlier)
    seed(forge, "Alert: errors", ["promptbot:alert"], alert_body("errors", alert="errors"))
    hub.set_author(seed(forge, "Alert: latency", ["promptbot:alert"], body), "octocat")
    before = len(forge.list_issues("promptbot:alert"))

    hub.reset_log()
    hub.after_processing("POST", ISSUES, what, delay=2.5)
    issue = forge.open_issue(title="Alert: latency", body=body, labels=["promptbot:alert"])

    mine = [i for i in forge.list_issues("promptbot:alert")
            if markers.parse(i.body) == markers.parse(body)]
    # Made once, and the new one returned (not the closed one from before).
    assert sorted(i.number for i in mine) == [earlier, issue.number]
    assert issue.number > earlier and issue.state == "open"
    assert len(forge.list_issues("promptbot:alert")) == before + 1
    assert hub.issue(issue.number)["user"]["login"] == hub.actor
    posts = [r for r in hub.requests if r.method == "POST"]
    assert len(posts) == 1  # never sent blindly again
    assert forge.writes == 1


def test_a_post_refused_before_it_was_done_is_sent_once_more(
    forge: GitHubForge, hub: GitHubStandIn
) -> None:
    other = seed(forge, "Alert: errors", ["promptbot:alert"], alert_body("errors", "errors"))
    hub.reset_log()
    hub.fail_next("POST", 502, "Server Error", path=ISSUES)  # answered 502, nothing made
    body = alert_body("p95 latency over the SLA")
    issue = forge.open_issue(title="Alert: latency", body=body, labels=["promptbot:alert"])
    # The lookup finds no issue with this marker (the other alert is not it): sent again.
    assert calls(hub) == [("POST", ISSUES), ("GET", ISSUES), ("POST", ISSUES)]
    assert issue.number != other and hub.issue(issue.number)["body"] == body
    assert sorted(i.number for i in forge.list_issues("promptbot:alert")) == [other,
                                                                              issue.number]
    assert forge.writes == 2


def test_edit_issue_is_one_patch_of_the_given_fields_without_a_get(
    forge: GitHubForge, hub: GitHubStandIn
) -> None:
    number = forge.open_issue(title="Dashboard", body="v1", labels=[DASHBOARD]).number
    path = f"{ISSUES}/{number}"

    hub.reset_log()
    forge.edit_issue(number, body="v2")
    assert calls(hub) == [("PATCH", path)]
    assert hub.requests[0].body == {"body": "v2"}
    assert hub.issue(number)["body"] == "v2" and hub.issue(number)["state"] == "open"

    hub.reset_log()
    forge.edit_issue(number, state="closed")
    assert calls(hub) == [("PATCH", path)]
    assert hub.requests[0].body == {"state": "closed"}
    assert hub.issue(number)["state"] == "closed" and hub.issue(number)["body"] == "v2"

    hub.reset_log()
    forge.edit_issue(number, body="v3", state="open")
    assert calls(hub) == [("PATCH", path)]
    assert forge.list_issues(DASHBOARD)[0] == Issue(number, "open", "Dashboard", "v3",
                                                    (DASHBOARD,), url=hub.issue(number)["html_url"])

    hub.reset_log()
    forge.edit_issue(number)  # nothing to change: nothing sent
    assert hub.requests == []
    assert forge.writes == 4  # the POST and three PATCHes


def test_a_lost_answer_on_edit_issue_is_sent_again_and_lands_once(
    forge: GitHubForge, hub: GitHubStandIn
) -> None:
    number = forge.open_issue(title="Dashboard", body="v1", labels=[DASHBOARD]).number
    hub.reset_log()
    hub.after_processing("PATCH", f"{ISSUES}/{number}", "drop")
    forge.edit_issue(number, body="v2", state="closed")
    assert calls(hub) == [("PATCH", f"{ISSUES}/{number}")] * 2  # PATCH is idempotent
    assert hub.issue(number)["body"] == "v2" and hub.issue(number)["state"] == "closed"
    assert forge.writes == 2


def test_long_bodies_are_capped_keeping_the_marker(
    forge: GitHubForge, hub: GitHubStandIn
) -> None:
    body = alert_body("row\n" * 20_000)
    assert len(body) > GITHUB_BODY_LIMIT
    issue = forge.open_issue(title="Alert", body=body, labels=["promptbot:alert"])
    sent = hub.issue(issue.number)["body"]
    assert len(sent) <= GITHUB_BODY_LIMIT
    assert markers.parse(sent) == markers.parse(body)

    forge.edit_issue(issue.number, body=alert_body("line\n" * 20_000))
    edited = hub.issue(issue.number)["body"]
    assert len(edited) <= GITHUB_BODY_LIMIT and edited.startswith("line\n")
    assert markers.parse(edited) == markers.parse(alert_body("line\n" * 20_000))


def test_a_refused_list_says_what_it_was_doing(forge: GitHubForge, hub: GitHubStandIn) -> None:
    hub.fail_next("GET", 404, "Not Found", path=ISSUES)
    with pytest.raises(ForgeError) as info:
        forge.list_issues(DASHBOARD)
    assert "list issues" in str(info.value.render())
    assert "GitHub answered 404" in info.value.render()
