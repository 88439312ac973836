"""Slash commands written in a PR comment: `/promptbot <command> [argument]`.

Parsing is strict and total: any text yields either a command or nothing, never an
exception. Unknown commands, missing or extra arguments become `help` with a note
saying what was wrong, so the person gets an answer instead of silence.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

PREFIX = "/promptbot"
MAX_REASON = 500

# name -> (takes an argument, argument required, one-line description)
COMMANDS: dict[str, tuple[bool, bool, str]] = {
    "help": (False, False, "show this list"),
    "explain": (False, False, "why this proposal exists: evidence, estimate, how it is judged"),
    "measure": (False, False, "measure the deployed proposal now instead of at the next cycle"),
    "regenerate": (False, False, "rebuild the proposal from the current base branch and metrics"),
    "reject": (True, True, "close the proposal and record why: `/promptbot reject <reason>`"),
    "rollback": (False, False, "open a PR that reverts this merged proposal"),
}

# Who may command: people with write access show up with one of these associations.
# COLLABORATOR also covers outside collaborators with read access on some org setups;
# docs/GITHUB.md says so and how to restrict further with branch protection.
WRITERS = frozenset({"OWNER", "MEMBER", "COLLABORATOR"})


@dataclass(frozen=True)
class Command:
    name: str
    argument: str = ""
    note: str = ""  # why a request became `help`
    extra: int = 0  # further /promptbot lines ignored in the same comment


def parse(body: object) -> Command | None:
    """The first `/promptbot` line of a comment, outside code blocks and quotes."""
    if not isinstance(body, str):
        return None
    found: list[str] = []
    fence = ""  # the open code fence (its character run), or ""
    comment = False  # inside <!-- ... -->, which GitHub does not show
    for raw in body.splitlines():
        line = raw.strip()
        if comment:
            comment = "-->" not in line
            continue
        run = re.match(r"(`{3,}|~{3,})", line)
        if run:
            if not fence:
                fence = run.group(1)
            elif run.group(1)[0] == fence[0] and len(run.group(1)) >= len(fence) \
                    and not line[len(run.group(1)):].strip():
                fence = ""
            continue
        if line.startswith("<!--"):
            comment = "-->" not in line[4:]
            continue
        # Only what a reader sees as a plain line commands: not code, quotes or indented code.
        if fence or line.startswith(">") or raw.startswith(("    ", "\t")):
            continue
        head, _, rest = line.partition(" ")
        if head.lower() == PREFIX:
            found.append(rest.strip())
    if not found:
        return None
    command = _one(found[0])
    if len(found) > 1:
        return Command(command.name, command.argument, command.note, extra=len(found) - 1)
    return command


def _one(text: str) -> Command:
    name, _, argument = text.partition(" ")
    name, argument = name.lower(), " ".join(argument.split())
    if not name:
        return Command("help", note="no command given")
    if name not in COMMANDS:
        return Command("help", note=f"unknown command `{_code(name[:40])}`")
    takes, required, _ = COMMANDS[name]
    if argument and not takes:
        return Command("help", note=f"`/promptbot {name}` takes no argument")
    if required and not argument:
        return Command("help", note=f"`/promptbot {name}` needs a reason, e.g. "
                       f"`/promptbot {name} the wording is too strict`")
    return Command(name, argument[:MAX_REASON])


def _code(text: str) -> str:
    return text.replace("`", "'")


def help_text(note: str = "") -> str:
    lines = [f"**promptbot** — {note}." if note else "**promptbot** commands:", ""]
    if note:
        lines += ["Commands:", ""]
    lines += [f"- `/promptbot {name}` — {desc}" for name, (_, _, desc) in COMMANDS.items()]
    lines += ["", "One command per comment, on its own line. Only people with write access "
              "to the repository can command promptbot."]
    return "\n".join(lines)


def may_command(association: object, user_type: object, login: object, bot_login: str) -> bool:
    """True for people with write access; bots (including promptbot itself) never."""
    return not is_bot(user_type, login, bot_login) and association in WRITERS


def is_bot(user_type: object, login: object, bot_login: str) -> bool:
    return user_type == "Bot" or not isinstance(login, str) or login == bot_login \
        or login.endswith("[bot]")


def denied_reply(actor: str) -> str:
    return (f"Thanks, @{actor}! Only people with write access to this repository can "
            "command promptbot, so nothing was done. A maintainer can run the command for "
            "you.\n\n" + help_text())
