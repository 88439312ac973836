"""Ctrl-C and SIGTERM wait while a few steps that must happen together run.

A person pressing Ctrl-C (or a runner sending SIGTERM) between moving a branch and
recording that it moved would leave the two disagreeing; blocked, the signal is delivered
right after the section, where stopping is safe. Only SIGKILL (or power loss) can still
cut a section; the intent files those sections write let the next command finish it.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_SIGNALS = {signal.SIGINT, signal.SIGTERM}


@contextmanager
def deferred_signals() -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def terminate_as_interrupt() -> None:
    """SIGTERM stops the command like Ctrl-C: cleanup runs and no traceback is printed."""

    def _raise(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _raise)
