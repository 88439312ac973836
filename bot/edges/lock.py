"""One writing promptbot command at a time per repository.

An advisory `flock` on a file in the git directory: the kernel releases it when the
holder exits, however it exits, so a killed run never leaves a stale lock behind. The
file says who holds it, for the message the second command prints.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from bot.errors import PromptbotError

LOCK_NAME = "promptbot.lock"


class LockedError(PromptbotError):
    """Another promptbot command is writing to this repository."""


@contextmanager
def repo_lock(git_dir: Path, command: str) -> Iterator[None]:
    # A read-only .git fails here with an OSError that bot.errors.explain names.
    fd = os.open(git_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise LockedError(
                f"another promptbot command is writing to this repository ({_holder(fd)})",
                fix="wait for it to finish and run the command again; the lock is released "
                "when that process ends, however it ends",
            ) from None
        stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        held = json.dumps({"pid": os.getpid(), "command": command, "started": stamp})
        os.ftruncate(fd, 0)
        os.pwrite(fd, held.encode("utf-8"), 0)
        yield
    finally:
        os.close(fd)


def _holder(fd: int) -> str:
    try:
        data = json.loads(os.pread(fd, 4096, 0).decode("utf-8"))
        return (f"held by pid {int(data['pid'])}, `promptbot {str(data['command'])[:60]}`, "
                f"started {str(data['started'])[:30]}")
    except (ValueError, KeyError, TypeError, UnicodeDecodeError, OSError):
        return "held by another process"
