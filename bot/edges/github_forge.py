"""The GitHub forge through PyGithub; branches pushed with git.

Few calls: one paginated list of pull requests per run carries bodies, labels
and merge state; comments are listed only for a PR whose results changed.
"""

from __future__ import annotations

from datetime import UTC
from typing import Any, Literal

import requests
from github import Auth, Github, GithubException, GithubRetry
from github.Issue import Issue
from github.PullRequest import PullRequest as GHPull
from github.Repository import Repository

from bot.core import markers
from bot.core.render import cap_comment
from bot.edges.forge import CommentOutcome, PullRequest, StatusState
from bot.edges.git import Git
from bot.errors import ForgeError

BRANCH_PREFIX = "promptbot/"


class _BoundedRetry(GithubRetry):
    """GithubRetry whose `Retry-After` sleeps are capped like its reset waits."""

    def get_retry_after(self, response: Any) -> float | None:
        after: float | None = super().get_retry_after(response)
        if after is not None and self.max_rate_limit_wait is not None:
            return min(after, self.max_rate_limit_wait)
        return after


class GitHubForge:
    name = "github"

    def __init__(
        self,
        git: Git,
        *,
        token: str,
        repository: str,
        base_url: str = "https://api.github.com",
        bot_login: str = "github-actions[bot]",
        fast: bool = False,
        max_writes: int = 60,
        max_wait_s: float = 300.0,
    ) -> None:
        if "/" not in repository:
            raise ForgeError(f"GITHUB_REPOSITORY '{repository}' is not owner/name",
                             fix="set GITHUB_REPOSITORY=owner/repo")
        extra: dict[str, Any] = {}
        if fast:  # tests: no politeness delays between requests
            extra = {"seconds_between_requests": 0, "seconds_between_writes": 0}
        # Rate limits: PyGithub's retry sleeps on 403/429 with retry-after (secondary
        # limits) and until x-ratelimit-reset (primary), but by default without a bound;
        # the job has a time budget, so waiting longer than `max_wait_s` fails the run
        # instead (the next scheduled run picks up where this one stopped).
        # Only rate limits are retried (403/429): a write that failed with 5xx may have been
        # done, and repeating it would duplicate a PR or a comment.
        retry = _BoundedRetry(total=5, backoff_factor=0 if fast else 1.0, status_forcelist=[429],
                              secondary_rate_wait=1 if fast else 60,
                              max_rate_limit_wait=max_wait_s)
        self.client = Github(auth=Auth.Token(token), base_url=base_url, per_page=100, lazy=True,
                             retry=retry, **extra)
        # Lazy: no GET of the repository itself; the first request is the PR list.
        self.repo: Repository = self.client.get_repo(repository)
        self.git = git
        self.bot_login = bot_login
        self._pulls: dict[int, GHPull] = {}
        # A cap on writes per run, so a bug or a flood of events cannot spam a repository.
        self.max_writes = max_writes
        self.writes = 0

    def _write(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        if self.writes >= self.max_writes:
            raise ForgeError(f"stopped before trying to {what}: this run already made "
                             f"{self.writes} writes to GitHub (forge.max_writes_per_run)",
                             fix="the next run continues; raise forge.max_writes_per_run in "
                             "policies/promptbot.yaml if this repository needs more")
        self.writes += 1
        return self._call(what, fn, *args, **kwargs)

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except requests.RequestException as exc:  # retries used up, connection refused, ...
            raise ForgeError(f"could not reach GitHub to {what}: {type(exc).__name__}",
                             fix="nothing is half-written; the next run tries again") from None
        except GithubException as exc:
            message = exc.data.get("message") if isinstance(exc.data, dict) else None
            if exc.status in (403, 429) and "rate limit" in str(message or "").lower():
                raise ForgeError(f"GitHub's rate limit stopped the run while trying to {what}",
                                 fix="nothing is half-written; the next run continues. Fewer "
                                 "writes per run: lower forge.max_writes_per_run") from None
            raise ForgeError(
                f"GitHub refused to {what}: HTTP {exc.status} {str(message or '')[:200]}",
                fix="check GITHUB_TOKEN's permissions (contents: write, pull-requests: write) "
                "and GITHUB_REPOSITORY",
            ) from None

    def _to_pr(self, pull: GHPull) -> PullRequest:
        merged_at = pull.merged_at
        state = "merged" if merged_at is not None else pull.state
        return PullRequest(
            number=pull.number,
            state=state,  # type: ignore[arg-type]
            branch=pull.head.ref,
            base=pull.base.ref,
            title=pull.title or "",
            body=pull.body or "",
            labels=tuple(label.name for label in pull.labels),
            merge_sha=pull.merge_commit_sha if merged_at is not None else None,
            merged_at=merged_at.astimezone(UTC).replace(tzinfo=None) if merged_at else None,
            url=pull.html_url or "",
        )

    def list_prs(self) -> list[PullRequest]:
        def fetch() -> list[PullRequest]:
            out = []
            for pull in self.repo.get_pulls(state="all", sort="created", direction="asc"):
                # Anyone can name a branch promptbot/... or paste a marker: only PRs the bot
                # opened, from this repository (not a fork), are the bot's.
                if not pull.head.ref.startswith(BRANCH_PREFIX) or pull.user.login != self.bot_login:
                    continue
                if pull.head.repo is None or pull.head.repo.full_name != pull.base.repo.full_name:
                    continue
                self._pulls[pull.number] = pull
                out.append(self._to_pr(pull))
            return out

        result: list[PullRequest] = self._call("list pull requests", fetch)
        return result

    def open_pr(
        self, *, branch: str, base: str, title: str, body: str, labels: list[str]
    ) -> PullRequest:
        pull: GHPull = self._write(
            "open a pull request", self.repo.create_pull, base=base, head=branch, title=title,
            body=body,
        )
        self._pulls[pull.number] = pull
        self._write("label the pull request", pull.add_to_labels, *labels)
        return PullRequest(pull.number, "open", branch, base, title, body, tuple(labels),
                           url=pull.html_url or "")

    def _pull(self, number: int) -> GHPull:
        pull = self._pulls.get(number)
        if pull is None:
            pull = self._call("read a pull request", self.repo.get_pull, number)
            self._pulls[number] = pull
        return pull

    def _issue(self, number: int) -> Issue:
        # Lazy: PATCHing labels through the issue needs no GET first.
        return Issue(self.repo._requester, url=f"{self.repo.url}/issues/{number}")

    def update_pr(self, number: int, *, title: str, body: str) -> None:
        self._write("edit a pull request", self._pull(number).edit, title=title, body=body)

    def set_state(self, number: int, state: Literal["open", "closed"]) -> None:
        self._write(f"set a pull request {state}", self._pull(number).edit, state=state)

    def set_labels(self, number: int, labels: list[str]) -> None:
        self._write("set labels", self._issue(number).edit, labels=labels)

    def upsert_comment(self, number: int, key: str, body: str) -> CommentOutcome:
        body = cap_comment(body)
        issue = self._issue(number)

        def find() -> Any:
            for comment in issue.get_comments():
                marker = markers.parse(comment.body)
                if comment.user.login == self.bot_login and marker and marker.get("kind") == key:
                    return comment
            return None

        existing = self._call("read comments", find)
        if existing is None:
            self._write("comment", issue.create_comment, body)
            return "created"
        if existing.body == body:
            return "unchanged"
        self._write("edit a comment", existing.edit, body)
        return "updated"

    def publish(self, branch: str, *, force: bool = False) -> None:
        self.git.push(branch, force=force)

    def can_write(self, login: str) -> bool:
        # author_association says MEMBER for any org member, read-only ones included; the
        # permission level says what they may really do ("maintain" reads as "write").
        try:
            level = self._call("read a collaborator's permission",
                               self.repo.get_collaborator_permission, login)
        except ForgeError:
            return False
        return level in ("admin", "write")

    def set_status(self, sha: str, state: StatusState, description: str, context: str) -> None:
        requester = self.repo._requester
        self._write("set a commit status", requester.requestJsonAndCheck, "POST",
                    f"{self.repo.url}/statuses/{sha}",
                    input={"state": state, "description": description[:140], "context": context})
