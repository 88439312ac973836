"""The embedded forge: pull requests as records in the working copy, branches in git.

Records live in `.promptbot/forge.json` (git-ignored). Every change rewrites
the file atomically under a lock, so two commands at once cannot lose a record.
A person acts as the reviewer with `promptbot pr list|show|merge|close|comment`.
An issue's body is a Markdown file, `.promptbot/issues/<number>.md` (issues are numbered
apart from PRs), that a person may edit (tick a dashboard box) or delete (the issue is
gone); its state and labels are records like a PR's.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from bot.core import markers
from bot.core.render import cap_comment
from bot.edges.forge import CommentOutcome, Issue, IssueState, PullRequest, StatusState
from bot.edges.git import Git
from bot.edges.signals import deferred_signals
from bot.errors import ForgeError, UsageError

STATE_DIR = ".promptbot"
BOT_USER = "promptbot"


class LocalForge:
    name = "local"

    def __init__(self, git: Git, now: Callable[[], datetime]) -> None:
        self.git = git
        self.now = now  # only for the records' created_at
        self.dir = git.root / STATE_DIR
        self.path = self.dir / "forge.json"
        self._on_disk = ""  # the records as last read or written, to write only a change

    # ------------------------------------------------------------ storage
    def _load(self) -> dict[str, Any]:
        data = self._read()
        self._settle_all(data)
        return data

    def _settle_all(self, data: dict[str, Any]) -> None:
        for record in data["prs"]:
            if "merging" in record:
                self._settle(record)

    def _read(self) -> dict[str, Any]:
        try:
            data: dict[str, Any] = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {"next_number": 1, "prs": []}
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise ForgeError(
                f"{self.path} is damaged",
                fix="move it away; the bot finds its branches again on the next run",
            ) from None
        return data

    def _settle(self, record: dict[str, Any]) -> None:
        """A merge a killed `pr merge` left unrecorded: merged if its commit is on the base
        branch, else never happened (the next `pr merge` makes it)."""
        merge = str(record.pop("merging"))
        base = self.git.sha(f"refs/heads/{record['base']}")
        if base is not None and self.git.sha(merge) is not None and \
                self.git.is_ancestor(merge, base):
            record.update(state="merged", merge_sha=merge,
                          merged_at=self.git.commit_time(merge).isoformat(timespec="seconds"))

    def _save(self, data: dict[str, Any]) -> None:
        fd, tmp = tempfile.mkstemp(dir=self.dir, prefix=".forge-", suffix=".json")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(data, handle, indent=2, sort_keys=True)
                handle.write("\n")
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self.path)
            self._on_disk = json.dumps(data, sort_keys=True)
        except BaseException:
            # A full disk or a kill: the old records stand, no temp file is left.
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    @contextmanager
    def _locked(self) -> Iterator[dict[str, Any]]:
        self.dir.mkdir(exist_ok=True)
        ignore = self.dir / ".gitignore"
        if not ignore.exists():
            ignore.write_text("# local forge records: never committed\n*\n", encoding="utf-8")
        with (self.dir / "lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            data = self._read()
            self._on_disk = json.dumps(data, sort_keys=True)
            self._settle_all(data)  # a settled merge is saved by this write
            yield data
            if json.dumps(data, sort_keys=True) != self._on_disk:
                self._save(data)

    @staticmethod
    def _find(data: dict[str, Any], number: int) -> dict[str, Any]:
        for record in data["prs"]:
            if record["number"] == number:
                return record  # type: ignore[no-any-return]
        known = ", ".join(str(r["number"]) for r in data["prs"]) or "none yet"
        raise UsageError(
            f"there is no pull request #{number}",
            fix=f"see `promptbot pr list` (numbers: {known})",
        )

    @staticmethod
    def _to_pr(record: dict[str, Any]) -> PullRequest:
        merged = record.get("merged_at")
        return PullRequest(
            number=record["number"],
            state=record["state"],
            branch=record["branch"],
            base=record["base"],
            title=record["title"],
            body=record["body"],
            labels=tuple(record["labels"]),
            merge_sha=record.get("merge_sha"),
            merged_at=datetime.fromisoformat(merged) if merged else None,
            url=f"local:{record['number']}",
            close_reason=record.get("close_reason"),
            comments=tuple(c["body"] for c in record.get("comments", [])),
            opened_at=datetime.fromisoformat(record["created_at"])
            if record.get("created_at") else None,
        )

    # ------------------------------------------------------------ Forge
    def list_prs(self) -> list[PullRequest]:
        return [self._to_pr(r) for r in self._load()["prs"]]

    def get(self, number: int) -> PullRequest:
        return self._to_pr(self._find(self._load(), number))

    def raw(self, number: int) -> dict[str, Any]:
        return self._find(self._load(), number)

    def open_pr(
        self, *, branch: str, base: str, title: str, body: str, labels: list[str]
    ) -> PullRequest:
        with self._locked() as data:
            for record in data["prs"]:
                if record["branch"] == branch and record["state"] == "open":
                    raise ForgeError(f"a pull request for {branch} is already open")
            record = {
                "number": data["next_number"], "state": "open", "branch": branch, "base": base,
                "title": title, "body": body, "labels": labels, "comments": [],
                "created_at": self.now().isoformat(timespec="seconds"),
            }
            data["next_number"] += 1
            data["prs"].append(record)
        return self._to_pr(record)

    def update_pr(self, number: int, *, title: str, body: str) -> None:
        with self._locked() as data:
            record = self._find(data, number)
            record["title"], record["body"] = title, body

    def set_labels(self, number: int, labels: list[str]) -> None:
        with self._locked() as data:
            self._find(data, number)["labels"] = list(labels)

    def upsert_comment(self, number: int, key: str, body: str) -> CommentOutcome:
        body = cap_comment(body)
        with self._locked() as data:
            comments = self._find(data, number).setdefault("comments", [])
            for comment in comments:
                marker = markers.parse(comment["body"])
                if comment["author"] == BOT_USER and marker and marker.get("kind") == key:
                    if comment["body"] == body:
                        return "unchanged"
                    comment["body"] = body
                    return "updated"
            comments.append({"id": len(comments) + 1, "author": BOT_USER, "body": body})
            return "created"

    def set_state(self, number: int, state: Literal["open", "closed"]) -> None:
        with self._locked() as data:
            record = self._find(data, number)
            if record["state"] != "merged":
                record["state"] = state

    def publish(self, branch: str, *, force: bool = False) -> None:
        """Branches already live in this repository."""

    def set_status(self, sha: str, state: StatusState, description: str, context: str) -> None:
        with self._locked() as data:
            statuses = data.setdefault("statuses", {}).setdefault(sha, {})
            statuses[context] = {"state": state, "description": description[:140]}

    def can_write(self, login: str) -> bool:
        """Whoever runs promptbot on a local repository owns it."""
        return True

    def statuses(self, sha: str) -> dict[str, dict[str, str]]:
        found: dict[str, dict[str, str]] = self._load().get("statuses", {}).get(sha, {})
        return found

    # ------------------------------------------------------------ issues
    def issue_path(self, number: int) -> Path:
        return self.dir / "issues" / f"{number}.md"

    def list_issues(self, label: str) -> list[Issue]:
        out = []
        for record in self._load().get("issues", []):
            if label not in record["labels"]:
                continue
            try:
                body = self.issue_path(record["number"]).read_text(encoding="utf-8")
                body = body.replace("\r\n", "\n")  # saved by an editor on Windows
            except FileNotFoundError:
                continue  # a person deleted it: gone, as on GitHub
            out.append(Issue(record["number"], record["state"], record["title"], body,
                             tuple(record["labels"]), str(self.issue_path(record["number"]))))
        return out

    def open_issue(self, *, title: str, body: str, labels: list[str]) -> Issue:
        with self._locked() as data:
            # Numbered apart from the PRs (GitHub shares one sequence): the PR numbers a
            # person or a script knows from `pr list` do not shift when an alert opens.
            number = int(data.get("next_issue", 1))
            # The body first: a kill before the record is saved leaves a file the next
            # issue (same number) overwrites, never a record without its body.
            self._write_body(number, body)
            data["next_issue"] = number + 1
            data.setdefault("issues", []).append(
                {"number": number, "state": "open", "title": title, "labels": list(labels),
                 "created_at": self.now().isoformat(timespec="seconds")})
        return Issue(number, "open", title, body, tuple(labels), str(self.issue_path(number)))

    def edit_issue(self, number: int, *, body: str | None = None,
                   state: IssueState | None = None) -> None:
        with self._locked() as data:
            records = [r for r in data.get("issues", []) if r["number"] == number]
            if not records:
                raise ForgeError(f"there is no issue #{number}",
                                 fix="the next run opens it again")
            if body is not None:
                self._write_body(number, body)
            if state is not None:
                records[0]["state"] = state

    def _write_body(self, number: int, body: str) -> None:
        path = self.issue_path(number)
        path.parent.mkdir(exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".issue-", suffix=".md")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(cap_comment(body))
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    # ------------------------------------------------------------ reviewer actions
    def comment(self, number: int, text: str, author: str) -> None:
        with self._locked() as data:
            comments = self._find(data, number).setdefault("comments", [])
            comments.append({"id": len(comments) + 1, "author": author, "body": text})

    def close(self, number: int, reason: str | None) -> PullRequest:
        with self._locked() as data:
            record = self._find(data, number)
            if record["state"] != "open":
                raise UsageError(f"pull request #{number} is already {record['state']}",
                                 fix="only open pull requests can be closed")
            record["state"] = "closed"
            record["close_reason"] = reason
            if reason:
                comments = record.setdefault("comments", [])
                comments.append({"id": len(comments) + 1, "author": "reviewer",
                                 "body": f"Closed: {reason}"})
        return self._to_pr(record)

    def merge(self, number: int) -> PullRequest:
        """Merge with a merge commit into the base branch, as GitHub's merge button does."""
        with self._locked() as data:
            record = self._find(data, number)
            if record["state"] == "merged":
                return self._to_pr(record)  # merging twice changes nothing
            if record["state"] != "open":
                raise UsageError(f"pull request #{number} is closed",
                                 fix="only open pull requests can be merged")
            base_sha = self.git.sha(f"refs/heads/{record['base']}")
            head_sha = self.git.sha(f"refs/heads/{record['branch']}")
            if base_sha is None or head_sha is None:
                missing = record["base"] if base_sha is None else record["branch"]
                raise ForgeError(f"branch {missing} no longer exists",
                                 fix="close this pull request; the bot proposes again")
            message = f"Merge pull request #{number} from {record['branch']}\n\n{record['title']}"
            merge = self.git.merge_commit(base_sha, head_sha, message, as_person=True)
            with deferred_signals():
                # The intent is on disk before main moves: a kill after the move is then
                # recorded as the merge it was, never merged a second time.
                record["merging"] = merge
                self._save(data)
                try:
                    self.git.move_branch(record["base"], merge, base_sha)
                except BaseException:
                    # Settled, not dropped: if main did move before the failure, the
                    # record must say merged, or a second `pr merge` would merge again.
                    self._settle(record)
                    with contextlib.suppress(OSError):
                        self._save(data)
                    raise
                intent = dict(record)
                self._settle(record)
                settled = dict(record)
                try:
                    self._save(data)
                except OSError:
                    # A full disk now: the intent saved before the move already records
                    # this merge (every read settles it), so the merge stands as done.
                    record.clear()
                    record.update(intent)
        return self._to_pr(settled)
