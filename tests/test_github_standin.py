"""Self-tests for the GitHub REST stand-in, driven only through the real PyGithub client."""

from __future__ import annotations

import copy
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import github
import pytest
from standin.github_server import GitHubStandIn, load_spec

GIT_ENV = {
    **os.environ,
    "GIT_AUTHOR_NAME": "Dev",
    "GIT_AUTHOR_EMAIL": "dev@example.com",
    "GIT_COMMITTER_NAME": "Dev",
    "GIT_COMMITTER_EMAIL": "dev@example.com",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_CONFIG_NOSYSTEM": "1",
}

PULLS = "/repos/acme/prompts/pulls"


def git(cwd: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", *args], cwd=cwd, env=GIT_ENV, check=True, capture_output=True, text=True
    )
    return done.stdout.strip()


@pytest.fixture
def work(tmp_path: Path) -> Path:
    """Work clone with `main` (one commit) and `feature` (one more commit), pushed to a bare repo
    at tmp_path/origin.git."""
    bare = tmp_path / "origin.git"
    git(tmp_path, "init", "--bare", "-q", "-b", "main", str(bare))
    work = tmp_path / "work"
    git(tmp_path, "init", "-q", "-b", "main", str(work))
    (work / "prompts").mkdir()
    (work / "prompts" / "triage.md").write_text("You are a triage agent.\n")
    git(work, "add", ".")
    git(work, "commit", "-q", "-m", "initial")
    git(work, "remote", "add", "origin", str(bare))
    git(work, "push", "-q", "origin", "main")
    make_branch(work, "feature")
    return work


def make_branch(work: Path, name: str, base: str = "main") -> str:
    """One new commit on `name` (starting from `base`), pushed to origin; returns its sha."""
    git(work, "checkout", "-q", "-B", name, base)
    parent = git(work, "rev-parse", "HEAD")
    (work / "prompts" / f"{name}.md").write_text(f"Prompt for {name}.\nAfter {parent}.\n")
    git(work, "add", ".")
    git(work, "commit", "-q", "-m", f"change on {name}")
    git(work, "push", "-q", "origin", name)
    git(work, "checkout", "-q", "main")
    return git(work, "rev-parse", name)


@pytest.fixture
def bare(work: Path) -> Path:
    return work.parent / "origin.git"


@pytest.fixture
def standin(bare: Path) -> Iterator[GitHubStandIn]:
    with GitHubStandIn(bare_repo=bare) as server:
        yield server
        assert server.validation_errors == []


def client(standin: GitHubStandIn, token: str = "test-token") -> github.Github:
    return github.Github(
        auth=github.Auth.Token(token),
        base_url=standin.base_url,
        seconds_between_requests=0,
        seconds_between_writes=0,
        per_page=2,
    )


@pytest.fixture
def gh(standin: GitHubStandIn) -> Iterator[github.Github]:
    g = client(standin)
    yield g
    g.close()


@pytest.fixture
def repo(gh: github.Github) -> github.Repository.Repository:
    return gh.get_repo("acme/prompts")


@pytest.fixture
def open_pr(
    repo: github.Repository.Repository,
) -> Callable[..., github.PullRequest.PullRequest]:
    def create(
        head: str = "feature", title: str = "Tune triage prompt"
    ) -> github.PullRequest.PullRequest:
        return repo.create_pull(base="main", head=head, title=title, body=f"Body of {title}")

    return create


def test_repo_and_rate_limit(gh: github.Github, standin: GitHubStandIn) -> None:
    repo = gh.get_repo("acme/prompts")
    assert repo.full_name == "acme/prompts"
    assert repo.default_branch == "main"
    assert repo.owner.login == "acme"
    assert repo.owner.type == "Organization"
    remaining_after_repo, limit = gh.rate_limiting
    assert limit == 5000
    core = gh.get_rate_limit().resources.core
    assert core.limit == 5000
    assert core.remaining == remaining_after_repo  # /rate_limit itself is free, as on GitHub
    gh.get_repo("acme/prompts")
    assert gh.rate_limiting[0] == remaining_after_repo - 1
    with pytest.raises(github.UnknownObjectException):
        gh.get_repo("acme/other")


def test_create_pull_round_trips(
    repo: github.Repository.Repository, standin: GitHubStandIn, work: Path
) -> None:
    pr = repo.create_pull(base="main", head="feature", title="Tune triage", body="Why: evals")
    assert pr.number == 1
    assert (pr.title, pr.body, pr.state) == ("Tune triage", "Why: evals", "open")
    assert pr.head.ref == "feature"
    assert pr.head.sha == git(work, "rev-parse", "feature")
    assert pr.base.ref == "main"
    assert pr.base.sha == git(work, "rev-parse", "main")
    assert pr.head.repo.full_name == "acme/prompts"
    assert pr.user.login == "github-actions[bot]"
    assert pr.merged is False
    assert (pr.commits, pr.additions, pr.changed_files) == (1, 2, 1)
    assert pr.mergeable is True

    again = repo.get_pull(1)
    assert (again.title, again.body, again.head.sha) == (pr.title, pr.body, pr.head.sha)
    assert standin.pull(1)["head"]["sha"] == pr.head.sha

    [write] = standin.writes()
    assert (write.method, write.path) == ("POST", PULLS)
    assert write.body["head"] == "feature"

    pr.edit(title="Tune triage v2", body="new body")
    assert repo.get_pull(1).title == "Tune triage v2"
    assert standin.pull(1)["body"] == "new body"

    # the head branch moves when someone pushes to it
    new_sha = make_branch(work, "feature", base="feature")
    assert repo.get_pull(1).head.sha == new_sha


def test_create_pull_validation_errors(
    repo: github.Repository.Repository, open_pr: Callable[..., github.PullRequest.PullRequest]
) -> None:
    with pytest.raises(github.GithubException) as unknown:
        repo.create_pull(base="main", head="no-such-branch", title="x", body="y")
    assert unknown.value.status == 422
    assert unknown.value.data["errors"][0]["field"] == "head"

    open_pr()
    with pytest.raises(github.GithubException) as duplicate:
        open_pr(title="again")
    assert duplicate.value.status == 422
    assert duplicate.value.data["errors"][0]["message"] == (
        "A pull request already exists for acme:feature."
    )

    with pytest.raises(github.GithubException) as empty:
        repo.create_pull(base="main", head="main", title="x", body="y")
    assert empty.value.status == 422


def test_wrong_token_is_401(standin: GitHubStandIn) -> None:
    with pytest.raises(github.BadCredentialsException) as exc:
        client(standin, token="wrong").get_repo("acme/prompts")
    assert exc.value.status == 401
    assert exc.value.data["message"] == "Bad credentials"


def test_list_pulls_follows_pagination(
    repo: github.Repository.Repository,
    standin: GitHubStandIn,
    work: Path,
    open_pr: Callable[..., github.PullRequest.PullRequest],
) -> None:
    open_pr()
    for i in range(2, 6):
        make_branch(work, f"b{i}")
        open_pr(head=f"b{i}", title=f"PR {i}")
    standin.close(5)
    standin.reset_log()

    numbers = [p.number for p in repo.get_pulls(state="all")]
    assert numbers == [5, 4, 3, 2, 1]  # newest first, as GitHub sorts by default
    pages = [r for r in standin.requests if r.method == "GET" and r.path == PULLS]
    assert len(pages) == 3
    assert [r.query.get("page") for r in pages] == [None, "2", "3"]

    assert [p.number for p in repo.get_pulls()] == [4, 3, 2, 1]  # default state=open
    assert [p.number for p in repo.get_pulls(state="closed")] == [5]
    assert [p.number for p in repo.get_pulls(state="all", head="acme:b3")] == [3]
    assert len(list(repo.get_pulls(state="all", head="b3"))) == 5  # no "owner:": ignored
    assert [p.number for p in repo.get_pulls(sort="created", direction="asc")] == [1, 2, 3, 4]
    assert repo.get_pulls(state="all").totalCount == 5
    # list items are pull-request-simple; PyGithub completes them lazily for `merged`
    first = repo.get_pulls(state="all", head="acme:b2")[0]
    assert first.merged is False


def test_labels(
    repo: github.Repository.Repository,
    standin: GitHubStandIn,
    open_pr: Callable[..., github.PullRequest.PullRequest],
) -> None:
    pr = open_pr()
    pr.as_issue().edit(labels=["prompt-change", "bug"])
    assert standin.labels(1) == ["prompt-change", "bug"]

    pr.add_to_labels("needs-review")
    assert standin.labels(1) == ["prompt-change", "bug", "needs-review"]

    labels = {label.name: label for label in repo.get_pull(1).labels}
    assert set(labels) == {"prompt-change", "bug", "needs-review"}
    assert (labels["bug"].color, labels["bug"].description) == ("d73a4a", "Something isn't working")
    assert labels["prompt-change"].color == "ededed"  # created on first use, like GitHub

    pr.as_issue().edit(labels=["bug"])  # edit replaces the set
    assert standin.labels(1) == ["bug"]
    assert [label.name for label in pr.as_issue().labels] == ["bug"]


def test_issues_share_numbers_and_list_includes_pulls(
    repo: github.Repository.Repository,
    standin: GitHubStandIn,
    open_pr: Callable[..., github.PullRequest.PullRequest],
) -> None:
    open_pr()
    issue = repo.create_issue(title="Regression in triage", body="details", labels=["bug"])
    assert issue.number == 2
    assert [label.name for label in issue.labels] == ["bug"]
    assert issue.pull_request is None

    listed = list(repo.get_issues())
    assert [i.number for i in listed] == [2, 1]
    assert listed[1].pull_request is not None
    assert listed[1].pull_request.html_url.endswith("/acme/prompts/pull/1")
    assert [i.number for i in repo.get_issues(labels=["bug"])] == [2]
    assert [i.number for i in repo.get_issues(creator="github-actions[bot]")] == [2, 1]

    issue.edit(state="closed")
    assert issue.state == "closed"
    assert [i.number for i in repo.get_issues(state="closed")] == [2]

    repo.get_pull(1).as_issue().edit(state="closed")  # PRs are issues: this closes the PR
    assert repo.get_pull(1).state == "closed"
    assert standin.pull(1)["closed_at"] is not None


def test_comments(
    repo: github.Repository.Repository,
    standin: GitHubStandIn,
    open_pr: Callable[..., github.PullRequest.PullRequest],
) -> None:
    pr = open_pr()
    mine = pr.create_issue_comment("promptbot: eval summary")
    assert mine.user.login == "github-actions[bot]"
    mine.edit("promptbot: eval summary (updated)")
    assert mine.body == "promptbot: eval summary (updated)"
    human = standin.add_comment(1, "/promptbot rerun", user="alice", association="MEMBER")
    pr.create_issue_comment("third")

    comments = list(repo.get_pull(1).get_issue_comments())  # 3 comments, 2 per page
    assert [c.body for c in comments] == [
        "promptbot: eval summary (updated)",
        "/promptbot rerun",
        "third",
    ]
    assert comments[1].id == human
    assert comments[1].user.login == "alice"
    assert comments[1].author_association == "MEMBER"
    assert [c["body"] for c in standin.comments(1)] == [c.body for c in comments]
    assert repo.get_pull(1).comments == 3

    assert list(pr.get_reviews()) == []
    standin.add_review(1, "APPROVED", user="alice")
    [review] = list(pr.get_reviews())
    assert (review.state, review.user.login) == ("APPROVED", "alice")


def test_merge_creates_real_merge_commit(
    gh: github.Github,
    repo: github.Repository.Repository,
    standin: GitHubStandIn,
    work: Path,
    bare: Path,
    open_pr: Callable[..., github.PullRequest.PullRequest],
) -> None:
    pr = open_pr()
    main_before = git(bare, "rev-parse", "main")
    feature_head = git(bare, "rev-parse", "feature")

    sha = standin.merge(pr.number, by="octocat")

    assert git(bare, "rev-parse", "main") == sha
    assert git(bare, "rev-parse", f"{sha}^1") == main_before
    assert git(bare, "rev-parse", f"{sha}^2") == feature_head
    assert git(bare, "log", "-1", "--format=%s", sha) == "Merge pull request #1 from acme/feature"
    assert git(bare, "log", "-1", "--format=%an|%cn", sha) == "octocat|GitHub"
    assert git(bare, "cat-file", "-e", f"{sha}:prompts/feature.md") == ""

    merged = repo.get_pull(1)
    assert merged.merged is True
    assert merged.merge_commit_sha == sha
    assert merged.state == "closed"
    assert merged.merged_by.login == "octocat"
    assert merged.merged_at is not None
    assert [p.number for p in repo.get_pulls(state="closed")] == [1]

    # the bot deletes the merged branch: DELETE /git/refs/heads/feature
    status, _, _ = gh.requester.requestJson("DELETE", f"{repo.url}/git/refs/heads/feature")
    assert status == 204
    assert "feature" not in git(bare, "branch", "--list")
    with pytest.raises(github.GithubException) as gone:
        gh.requester.requestJsonAndCheck("DELETE", f"{repo.url}/git/refs/heads/feature")
    assert gone.value.status == 422


def test_close_without_merge(
    repo: github.Repository.Repository,
    standin: GitHubStandIn,
    open_pr: Callable[..., github.PullRequest.PullRequest],
) -> None:
    open_pr()
    standin.close(1)
    closed = repo.get_pull(1)
    assert (closed.state, closed.merged, closed.merge_commit_sha) == ("closed", False, None)
    with pytest.raises(ValueError):
        standin.merge(1)


def completed_commit(repo: github.Repository.Repository, ref: str) -> github.Commit.Commit:
    """A Commit PyGithub will not try to complete. `repo.get_commit(ref)` GETs
    /repos/{o}/{r}/commits/{ref} (at once, or lazily when `create_status` reads `.sha`), which is
    not an operation of the subset; statuses only need the ref and the commit URL."""
    attributes = {"sha": ref, "url": f"{repo.url}/commits/{ref}"}
    return github.Commit.Commit(repo.requester, {}, attributes, completed=True)


def test_statuses_and_check_runs(
    repo: github.Repository.Repository,
    work: Path,
    open_pr: Callable[..., github.PullRequest.PullRequest],
) -> None:
    pr = open_pr()
    commit = completed_commit(repo, pr.head.sha)
    commit.create_status(state="pending", context="promptbot/eval", description="running")
    status = commit.create_status(
        state="success",
        context="promptbot/eval",
        description="passed",
        target_url="https://ci.example.com/1",
    )
    assert (status.state, status.context, status.creator.login) == (
        "success",
        "promptbot/eval",
        "github-actions[bot]",
    )
    combined = completed_commit(repo, "feature").get_combined_status()
    assert combined.state == "success"
    assert combined.sha == pr.head.sha
    assert [s.description for s in combined.statuses] == ["passed"]
    assert (
        completed_commit(repo, "main").get_combined_status().state == "pending"
    )  # nothing reported

    run = repo.create_check_run(
        name="promptbot",
        head_sha=pr.head.sha,
        status="completed",
        conclusion="success",
        output={"title": "Eval", "summary": "all good"},
    )
    assert (run.name, run.status, run.conclusion) == ("promptbot", "completed", "success")
    assert [p.number for p in run.pull_requests] == [1]
    assert run.output.summary == "all good"

    with pytest.raises(github.GithubException) as missing:
        completed_commit(repo, "0" * 40).create_status(state="success")
    assert missing.value.status == 422


def test_validator_reports_wrong_shapes(
    gh: github.Github,
    repo: github.Repository.Repository,
    standin: GitHubStandIn,
    open_pr: Callable[..., github.PullRequest.PullRequest],
) -> None:
    spec = load_spec()
    open_pr()
    good = standin.pull(1)
    get_pull = ("GET", "/repos/{owner}/{repo}/pulls/{pull_number}")
    assert spec.response_errors(*get_pull, 200, good) == []

    broken = copy.deepcopy(good)
    del broken["head"]
    broken["number"] = "1"
    broken["labels"] = [{"name": "bug"}]  # labels need id/node_id/url/color/default/description
    errors = spec.response_errors(*get_pull, 200, broken)
    assert any("'head' is a required property" in e for e in errors)
    assert any(e.startswith("number:") for e in errors)
    assert any(e.startswith("labels/0:") for e in errors)

    broken_time = copy.deepcopy(good)
    broken_time["created_at"] = "yesterday"  # format: date-time is checked
    assert spec.response_errors(*get_pull, 200, broken_time)
    assert spec.component_errors("label", {"name": "bug"})
    assert spec.request_errors("POST", "/repos/{owner}/{repo}/pulls", {"title": "no head/base"})

    # A request body the schema rejects is answered 422 and recorded ...
    with pytest.raises(github.GithubException) as bad:
        gh.requester.requestJsonAndCheck("POST", f"{repo.url}/pulls", input={"title": "x"})
    assert bad.value.status == 422
    assert standin.validation_errors == [
        "request body POST /repos/{owner}/{repo}/pulls: <root>: 'head' is a required property",
        "request body POST /repos/{owner}/{repo}/pulls: <root>: 'base' is a required property",
    ]
    standin.validation_errors.clear()
    # ... a query parameter outside its declared enum is recorded ...
    assert list(repo.get_pulls(state="merged")) == []
    assert standin.validation_errors == [
        "request GET /repos/{owner}/{repo}/pulls: query state='merged': <root>: "
        "'merged' is not one of ['open', 'closed', 'all']"
    ]
    standin.validation_errors.clear()
    # ... and so is an operation outside the subset (404 like an unknown route): merging is the
    # human's job, and PyGithub's lazy `get_commit(sha).create_status()` GETs the commit first.
    with pytest.raises(github.UnknownObjectException):
        repo.get_pull(1).merge()
    with pytest.raises(github.UnknownObjectException):
        repo.get_commit(standin.pull(1)["head"]["sha"]).create_status(state="success")
    assert [e.split(":")[0] for e in standin.validation_errors] == [
        "PUT /api/v3/repos/acme/prompts/pulls/1/merge",
        f"GET /api/v3/repos/acme/prompts/commits/{standin.pull(1)['head']['sha']}",
    ]
    standin.validation_errors.clear()  # expected here; the fixture asserts none are left


def test_without_bare_repo() -> None:
    with GitHubStandIn(owner="octo", repo="demo") as standin:
        g = client(standin)
        repo = g.get_repo("octo/demo")
        pr = repo.create_pull(base="main", head="topic", title="t", body="b")
        sha = standin.merge(pr.number)
        assert repo.get_pull(pr.number).merge_commit_sha == sha
        g.close()
        assert standin.validation_errors == []
