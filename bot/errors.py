"""One error tree. Every error a user can see says what went wrong, where, and what to do."""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Finding:
    """One problem in one file, printed as `path:line: message` (+ the fix)."""

    path: str
    line: int | None
    message: str
    fix: str = ""

    def render(self) -> str:
        where = f"{self.path}:{self.line}" if self.line else self.path
        text = f"{where}: {self.message}"
        return f"{text}\n  fix: {self.fix}" if self.fix else text


class PromptbotError(Exception):
    """Base of every error promptbot reports to a user (never shown as a traceback). Exit
    codes are chosen in bot/cli.py, from the class."""

    def __init__(self, message: str, *, fix: str = "", findings: tuple[Finding, ...] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.fix = fix
        self.findings = findings

    def render(self) -> str:
        lines = [f"error: {self.message}"]
        lines += [f.render() for f in self.findings]
        if self.fix:
            lines.append(f"  fix: {self.fix}")
        return "\n".join(lines)


class UsageError(PromptbotError):
    """The command line asks for something that cannot be done."""


class InputError(PromptbotError):
    """A file in the repository (agent, policy, tests) is not valid."""


class MetricsError(PromptbotError):
    """A metrics export cannot be read: missing file, wrong columns, bad types."""


class GitError(PromptbotError):
    """The git repository is not in a state the command can work with."""


class ForgeError(PromptbotError):
    """The forge (local records or GitHub) refused or failed a request."""


class MachineError(PromptbotError):
    """The machine failed, not an input: a full disk, a read-only path. Stops the whole
    command (another agent would only fail the same way, in a different order)."""


_DISK_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
_NOT_WRITABLE = (errno.EROFS, errno.EACCES, errno.EPERM)


def explain(exc: BaseException) -> PromptbotError | None:
    """A failure of the machine rather than of promptbot (a full disk, a read-only path),
    as an error that says which and what to do; None for anything else (a bug)."""
    if isinstance(exc, OSError) and exc.errno is not None:
        where = f" ({exc.filename})" if exc.filename else ""
        if exc.errno in _DISK_FULL:
            return MachineError(f"the disk is full{where}",
                                fix="free some space and run the command again; what was "
                                "half-written has been undone or is finished by the next run")
        if exc.errno in _NOT_WRITABLE:
            return MachineError(f"cannot write{where}: {exc.strerror or 'not writable'}",
                                fix="make that path writable for this user (or run promptbot "
                                "as a user who may write there) and run the command again")
    stderr = str(getattr(exc, "stderr", "") or "")
    if type(exc).__name__ == "GitCommandError":
        text = stderr.lower()
        if any(s in text for s in ("no space left on device", "out of diskspace",
                                   "disk quota exceeded")):
            return MachineError("git could not write: the disk is full",
                                fix="free some space and run the command again")
        # Not "Permission denied (publickey)" or a remote's 403: those are access, not disk.
        local_denied = "permission denied" in text and "publickey" not in text and any(
            verb in text for verb in ("unable to", "could not", "cannot"))
        if "read-only file system" in text or "insufficient permission" in text or \
                local_denied:
            return MachineError(f"git could not write to the repository (read-only or not "
                                f"permitted): {_first(stderr)}",
                                fix="make the repository (its files and .git) writable for "
                                "this user and run the command again")
        if any(s in text for s in ("unable to write", "unable to create", "write error")):
            return MachineError(f"git could not write ({_first(stderr)}): the disk is full "
                                "or the path is not writable",
                                fix="free some space (df -h .) or make the path writable, and "
                                "run the command again")
    return None


def raise_if_machine(exc: BaseException) -> None:
    """A failure that says the machine failed is raised as such (see `explain`), never read
    as an answer ("no such branch", "does not merge")."""
    known = explain(exc)
    if known is not None:
        raise known from None


def first_line(text: str) -> str:
    """The first non-empty line of a tool's message, GITHUB_TOKEN masked, at most 200
    characters: enough to say what failed, never a secret."""
    token = os.environ.get("GITHUB_TOKEN")
    if token:
        text = text.replace(token, "***")
    return next((x.strip() for x in text.splitlines() if x.strip()), "")[:200]


def _first(stderr: str) -> str:
    return first_line(stderr).strip("'\" ")
