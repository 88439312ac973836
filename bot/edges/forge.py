"""The forge interface: where pull requests live (GitHub, or local records)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, Protocol

PRState = Literal["open", "merged", "closed"]
CommentOutcome = Literal["created", "updated", "unchanged"]
StatusState = Literal["success", "failure", "pending", "error"]
IssueState = Literal["open", "closed"]


@dataclass(frozen=True)
class PullRequest:
    number: int
    state: PRState
    branch: str
    base: str
    title: str
    body: str
    labels: tuple[str, ...]
    merge_sha: str | None = None
    merged_at: datetime | None = None
    url: str = ""
    close_reason: str | None = None
    comments: tuple[str, ...] = field(default=(), compare=False)
    opened_at: datetime | None = None  # UTC, naive


@dataclass(frozen=True)
class Issue:
    """One of the bot's issues: the dashboard or an alert (found again by its marker)."""

    number: int
    state: IssueState
    title: str
    body: str
    labels: tuple[str, ...]
    url: str = ""


class Forge(Protocol):
    """Small on purpose: everything else is built from these calls."""

    name: str

    def list_prs(self) -> list[PullRequest]:
        """The bot's pull requests (branches under promptbot/), in every state."""
        ...

    def open_pr(
        self, *, branch: str, base: str, title: str, body: str, labels: list[str]
    ) -> PullRequest: ...

    def update_pr(self, number: int, *, title: str, body: str) -> None: ...

    def set_labels(self, number: int, labels: list[str]) -> None: ...

    def set_state(self, number: int, state: Literal["open", "closed"]) -> None:
        """Close a PR, or reopen one (only `/promptbot regenerate` reopens)."""
        ...

    def upsert_comment(self, number: int, key: str, body: str) -> CommentOutcome:
        """Create the bot's comment marked `key`, or edit it in place if its text changed."""
        ...

    def publish(self, branch: str, *, force: bool = False) -> None:
        """Make a local branch visible to the forge (push it; `force` for bot-owned ones)."""
        ...

    def set_status(self, sha: str, state: StatusState, description: str, context: str) -> None:
        """A commit status, e.g. the offline-eval gate that branch protection can require."""
        ...

    def can_write(self, login: str) -> bool:
        """Whether `login` may push to the repository (gates slash commands)."""
        ...

    def list_issues(self, label: str) -> list[Issue]:
        """The bot's issues carrying `label`, open and closed (one request on GitHub)."""
        ...

    def open_issue(self, *, title: str, body: str, labels: list[str]) -> Issue:
        """Open an issue; after a lost answer, the issue GitHub did make is returned."""
        ...

    def edit_issue(self, number: int, *, body: str | None = None,
                   state: IssueState | None = None) -> None:
        """Edit the body, close or reopen; a field left None is not sent."""
        ...
