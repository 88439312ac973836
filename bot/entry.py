"""The `promptbot` executable: Ctrl-C while the libraries load stops without a traceback."""

from __future__ import annotations

import sys


def main_entry() -> None:
    try:
        from bot.cli import main_entry as run
    except KeyboardInterrupt:
        print("interrupted before anything was read or written; run the command again",
              file=sys.stderr)
        sys.exit(130)
    run()
