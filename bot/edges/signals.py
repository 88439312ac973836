"""Ctrl-C and SIGTERM wait while a few steps that must happen together run.

A person pressing Ctrl-C (or a runner sending SIGTERM) between moving a branch and
recording that it moved would leave the two disagreeing; held, the signal takes effect
right after the section, where stopping is safe. Only SIGKILL (or power loss) can still
cut a section; the intent files those sections write let the next command finish it.

Python-level handlers, not a blocked signal mask: a mask is inherited by every git (and
hook) started inside the section, which then could not be stopped at all. A git child
that the signal does reach fails, and the section handles that failure like any other.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextmanager
def deferred_signals() -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []

    def hold(signum: int, frame: FrameType | None) -> None:
        received.append(signum)

    previous = {s: signal.signal(s, hold) for s in _SIGNALS}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        if received:
            signal.raise_signal(received[0])  # now, under the handler it was meant for


def terminate_as_interrupt() -> None:
    """SIGTERM stops the command like Ctrl-C: cleanup runs and no traceback is printed."""

    def _raise(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _raise)
