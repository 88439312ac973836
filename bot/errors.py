"""One error tree. Every error a user can see says what went wrong, where, and what to do."""

from __future__ import annotations

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
    """Base of every error promptbot reports to a user (never shown as a traceback)."""

    exit_code = 1

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
    """The command line asks for something that cannot be done (exit 2)."""

    exit_code = 2


class InputError(PromptbotError):
    """A file in the repository (agent, policy, tests) is not valid."""


class MetricsError(PromptbotError):
    """A metrics export cannot be read: missing file, wrong columns, bad types."""


class GitError(PromptbotError):
    """The git repository is not in a state the command can work with."""


class ForgeError(PromptbotError):
    """The forge (local records or GitHub) refused or failed a request."""
