"""The GitHub forge through PyGithub; branches pushed with git.

Few calls: one paginated list of pull requests per run carries bodies, labels
and merge state; comments are listed only for a PR whose results changed; the bot's
issues (dashboard, alerts) are one paginated list by label.
"""

from __future__ import annotations

from datetime import UTC
from typing import Any, Literal

import requests
from github import Auth, Github, GithubException, GithubRetry
from github.Issue import Issue as GHIssue
from github.PullRequest import PullRequest as GHPull
from github.Repository import Repository

from bot.core import markers
from bot.core.render import cap_comment
from bot.edges.forge import CommentOutcome, Issue, IssueState, PullRequest, StatusState
from bot.edges.git import Git
from bot.errors import ForgeError

BRANCH_PREFIX = "promptbot/"
_IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "PATCH"})
DUPLICATE = "duplicate"  # the marker kind of a duplicate comment the bot retired


class _BoundedRetry(GithubRetry):
    """GithubRetry whose `Retry-After` sleeps are capped like its reset waits, and which
    never repeats a POST whose answer was lost or was a 5xx: GitHub may have done it, and a
    second POST makes a second comment or PR (the forge looks it up instead). A POST refused
    by a rate limit was not done, so that one is retried."""

    def increment(self, method: str | None = None, url: str | None = None,
                  *args: Any, **kwargs: Any) -> Any:
        error = kwargs.get("error") if "error" in kwargs else (args[1] if len(args) > 1
                                                                 else None)
        if (method or "").upper() == "POST" and error is not None \
                and not self._is_connection_error(error):
            # Sent, and the answer lost (urllib3 would retry an SSL error while reading
            # it whatever the method): the caller looks the result up instead.
            raise error
        return super().increment(method, url, *args, **kwargs)

    def is_retry(self, method: str, status_code: int, has_retry_after: bool = False) -> bool:
        if method.upper() == "POST":
            return status_code in (403, 429) and bool(
                super().is_retry("GET", status_code, has_retry_after))
        return bool(super().is_retry(method, status_code, has_retry_after))

    def get_retry_after(self, response: Any) -> float | None:
        after: float | None = super().get_retry_after(response)
        if after is not None and self.max_rate_limit_wait is not None:
            return min(after, self.max_rate_limit_wait)
        return after


class _Unknown(ForgeError):
    """The request may or may not have been carried out: its answer was lost or a 5xx."""


def _refusal(what: str, exc: GithubException) -> ForgeError:
    message = str((exc.data.get("message") if isinstance(exc.data, dict) else "") or "")[:200]
    status = exc.status
    if status in (403, 429) and "rate limit" in message.lower():
        return ForgeError(f"GitHub's rate limit stopped the run while trying to {what}",
                          fix="nothing is half-written; the next run continues. Fewer "
                          "writes per run: lower forge.max_writes_per_run")
    if status >= 500:
        return _Unknown(f"GitHub had a server error (HTTP {status}) while trying to {what}",
                        fix="a problem on GitHub's side, not a setting: the next run checks "
                        "what was done and finishes the rest")
    if status == 401:
        return ForgeError(f"GitHub did not accept the token (HTTP 401) while trying to {what}",
                          fix="GITHUB_TOKEN is missing, expired or revoked: pass a valid one "
                          "(in Actions: secrets.GITHUB_TOKEN)")
    if status == 404:
        return ForgeError(f"GitHub answered 404 (not found) while trying to {what}",
                          fix="check GITHUB_REPOSITORY (owner/name) and that the token can see "
                          "that repository: GitHub answers 404, not 403, to a token without "
                          "access")
    if status == 403:
        return ForgeError(f"GitHub refused to {what}: HTTP 403 {message}",
                          fix="check GITHUB_TOKEN's permissions (contents: write, "
                          "pull-requests: write, issues: write, statuses: write)")
    return ForgeError(f"GitHub refused to {what}: HTTP {status} {message}",
                      fix="the message above says what GitHub did not accept; if it names "
                      "promptbot's request, report it as a bug")


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
        timeout: int = 15,
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
        # Reads and idempotent writes (PATCH, PUT, DELETE) are retried on 5xx and lost
        # answers; POSTs only on rate limits (see _BoundedRetry).
        retry = _BoundedRetry(total=5, backoff_factor=0 if fast else 1.0,
                              status_forcelist=[429, 500, 502, 503, 504],
                              allowed_methods=_IDEMPOTENT, raise_on_status=False,
                              secondary_rate_wait=1 if fast else 60,
                              max_rate_limit_wait=max_wait_s)
        self.client = Github(auth=Auth.Token(token), base_url=base_url, per_page=100, lazy=True,
                             retry=retry, timeout=timeout, **extra)
        # Lazy: no GET of the repository itself; the first request is the PR list.
        self.repo: Repository = self.client.get_repo(repository)
        self.git = git
        self.repository = repository
        self.bot_login = bot_login
        self._pulls: dict[int, GHPull] = {}
        # A cap on writes per run, so a bug or a flood of events cannot spam a repository.
        self.max_writes = max_writes
        self.writes = 0

    def _write(self, what: str, fn: Any, *args: Any, done: Any = None, **kwargs: Any) -> Any:
        """One write. When its answer is lost (dropped connection, timeout, 5xx) GitHub may
        or may not have done it: `done()` looks for the result (a PR, a comment by its
        marker) and returns it, else None, and only then is the write sent again, once."""
        self._count(what)
        try:
            return self._call(what, fn, *args, **kwargs)
        except _Unknown:
            if done is None:
                raise
            found = self._call(f"check whether GitHub did {what}", done)
            if found is not None:
                return found
            self._count(what)
            return self._call(what, fn, *args, **kwargs)

    def _count(self, what: str) -> None:
        if self.writes >= self.max_writes:
            raise ForgeError(f"stopped before trying to {what}: this run already made "
                             f"{self.writes} writes to GitHub (forge.max_writes_per_run)",
                             fix="the next run continues; raise forge.max_writes_per_run in "
                             "policies/promptbot.yaml if this repository needs more")
        self.writes += 1

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except requests.RequestException as exc:  # retries used up, connection refused, ...
            raise _Unknown(f"could not reach GitHub to {what}: {type(exc).__name__}",
                           fix="the next run checks what was done and finishes the rest") \
                from None
        except GithubException as exc:
            raise _refusal(what, exc) from None

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
            opened_at=pull.created_at.astimezone(UTC).replace(tzinfo=None)
            if pull.created_at else None,
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
        def opened() -> GHPull | None:
            owner = self.repository.split("/")[0]
            for found in self.repo.get_pulls(state="open", head=f"{owner}:{branch}", base=base):
                if found.head.ref == branch and found.user.login == self.bot_login:
                    return found
            return None

        pull: GHPull = self._write(
            "open a pull request", self.repo.create_pull, base=base, head=branch, title=title,
            body=body, done=opened,
        )
        self._pulls[pull.number] = pull
        # Adding labels twice adds nothing: sent again when its answer is lost.
        self._write("label the pull request", pull.add_to_labels, *labels,
                    done=lambda: None)
        return PullRequest(pull.number, "open", branch, base, title, body, tuple(labels),
                           url=pull.html_url or "")

    def _pull(self, number: int) -> GHPull:
        pull = self._pulls.get(number)
        if pull is None:
            pull = self._call("read a pull request", self.repo.get_pull, number)
            self._pulls[number] = pull
        return pull

    def _issue(self, number: int) -> GHIssue:
        # Lazy: PATCHing labels through the issue needs no GET first.
        return GHIssue(self.repo._requester, url=f"{self.repo.url}/issues/{number}")

    def update_pr(self, number: int, *, title: str, body: str) -> None:
        self._write("edit a pull request", self._pull(number).edit, title=title, body=body)

    def set_state(self, number: int, state: Literal["open", "closed"]) -> None:
        self._write(f"set a pull request {state}", self._pull(number).edit, state=state)

    def set_labels(self, number: int, labels: list[str]) -> None:
        self._write("set labels", self._issue(number).edit, labels=labels)

    def upsert_comment(self, number: int, key: str, body: str) -> CommentOutcome:
        body = cap_comment(body)
        issue = self._issue(number)

        def mine() -> list[Any]:
            return [c for c in issue.get_comments()
                    if c.user.login == self.bot_login
                    and (markers.parse(c.body) or {}).get("kind") == key]

        found = self._call("read comments", mine)
        for extra in found[1:]:
            # A comment made twice (an earlier run's answer was lost): the first one stays,
            # the others are emptied and marked, so no reader sees two results.
            self._write("retire a duplicate comment", extra.edit, markers.attach(
                "_(duplicate of an earlier promptbot comment on this pull request)_",
                {"kind": DUPLICATE}))
        existing = found[0] if found else None
        if existing is None:
            def made() -> Any:
                again = mine()
                return again[0] if again else None

            self._write("comment", issue.create_comment, body, done=made)
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
        # The newest status of a context is the one that counts: a repeat changes nothing.
        self._write("set a commit status", requester.requestJsonAndCheck, "POST",
                    f"{self.repo.url}/statuses/{sha}",
                    input={"state": state, "description": description[:140], "context": context},
                    done=lambda: None)

    # ------------------------------------------------------------ issues

    def _bot_issues(self, labels: list[str]) -> list[Issue]:
        """Issues (not PRs) the bot opened, carrying every one of `labels`, in both states:
        one paginated `GET /repos/{o}/{r}/issues?state=all&labels=...&per_page=100`."""
        out: list[Issue] = []
        listed = (self.repo.get_issues(state="all", labels=labels) if labels
                  else self.repo.get_issues(state="all"))
        for item in listed:
            # The listed JSON as sent: an attribute GitHub left out of it (`pull_request` on
            # an issue) would make PyGithub GET the whole issue to look for it.
            data: dict[str, Any] = item._rawData
            if "pull_request" in data:  # GitHub lists pull requests as issues too
                continue
            # Anyone can put a label on an issue or paste a marker: a person's issue is never
            # the bot's.
            if (data.get("user") or {}).get("login") != self.bot_login:
                continue
            out.append(self._to_issue(data))
        return out

    @staticmethod
    def _to_issue(data: dict[str, Any]) -> Issue:
        return Issue(
            number=int(data["number"]),
            state="closed" if data.get("state") == "closed" else "open",
            title=str(data.get("title") or ""),
            # A body a person saved in GitHub's editor comes back with CRLF line endings.
            body=str(data.get("body") or "").replace("\r\n", "\n"),
            labels=tuple(str(label["name"]) if isinstance(label, dict) else str(label)
                         for label in data.get("labels") or ()),
            url=str(data.get("html_url") or ""),
        )

    def list_issues(self, label: str) -> list[Issue]:
        result: list[Issue] = self._call("list issues", self._bot_issues, [label])
        return result

    def open_issue(self, *, title: str, body: str, labels: list[str]) -> Issue:
        body = cap_comment(body)
        key = markers.parse(body)

        def opened() -> Issue | None:
            # The issue a lost POST made: the newest bot issue with these labels whose marker
            # (kind, keys and the visible body's hash) is the one sent; no marker: same text.
            same = [i for i in self._bot_issues(labels)
                    if (markers.parse(i.body) == key if key is not None
                        else (i.title, i.body) == (title, body))]
            return max(same, key=lambda i: i.number) if same else None

        def post() -> Issue:
            # Labels go in the POST itself: one request, no separate labelling write.
            made = self.repo.create_issue(title=title, body=body, labels=labels)
            return self._to_issue(made._rawData)  # the answer: labels as GitHub spells them

        issue: Issue = self._write("open an issue", post, done=opened)
        return issue

    def edit_issue(self, number: int, *, body: str | None = None,
                   state: IssueState | None = None) -> None:
        fields: dict[str, str] = {}
        if body is not None:
            fields["body"] = cap_comment(body)
        if state is not None:
            fields["state"] = state
        if not fields:
            return
        # One PATCH through the lazy issue (no GET first); PATCH is safe to send again.
        self._write(f"edit issue #{number}", self._issue(number).edit, **fields)
