"""Protected sections: lines of prompt text no variant may change.

Written inside the prompt text as
    # promptbot:protected begin NAME
    ...
    # promptbot:protected end
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_BEGIN = re.compile(r"^\s*#\s*promptbot:protected\s+begin\s+([A-Za-z0-9_.-]+)\s*$")
_END = re.compile(r"^\s*#\s*promptbot:protected\s+end\s*$")
_ANY = re.compile(r"promptbot:protected")


@dataclass(frozen=True)
class Section:
    name: str
    first_line: int  # 0-based index of the begin marker within the text
    last_line: int  # 0-based index of the end marker
    text: str  # the whole section, markers included


@dataclass(frozen=True)
class MarkerProblem:
    line: int  # 0-based line within the text
    message: str


def scan(text: str) -> tuple[list[Section], list[MarkerProblem]]:
    lines = text.splitlines()
    sections: list[Section] = []
    problems: list[MarkerProblem] = []
    open_at: tuple[str, int] | None = None
    names: set[str] = set()
    for index, line in enumerate(lines):
        begin, end = _BEGIN.match(line), _END.match(line)
        if begin:
            if open_at is not None:
                problems.append(
                    MarkerProblem(index, f"protected section '{open_at[0]}' is not closed "
                                  f"before the next one begins")
                )
            name = begin.group(1)
            if name in names:
                problems.append(MarkerProblem(index, f"protected section '{name}' appears twice"))
            names.add(name)
            open_at = (name, index)
        elif end:
            if open_at is None:
                problems.append(MarkerProblem(index, "'protected end' without a matching begin"))
                continue
            name, start = open_at
            sections.append(Section(name, start, index, "\n".join(lines[start : index + 1])))
            open_at = None
        elif _ANY.search(line):
            problems.append(
                MarkerProblem(index, "malformed marker; write '# promptbot:protected begin NAME' "
                              "or '# promptbot:protected end'")
            )
    if open_at is not None:
        problems.append(MarkerProblem(open_at[1], f"protected section '{open_at[0]}' never ends"))
    return sections, problems


def is_marker(line: str) -> bool:
    """A begin or end marker line (not a line that only mentions the markers)."""
    return bool(_BEGIN.match(line) or _END.match(line))


def sections_of(text: str) -> dict[str, str]:
    return {s.name: s.text for s in scan(text)[0]}
