"""Markdown for PR bodies, results comments and reports, rendered in Jinja2's sandbox.

Text from metrics exports is untrusted: it is only ever placed inside code
spans or fences long enough that it cannot close them, and HTML comment
delimiters are broken so it cannot forge or hide the bot's marker.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

from jinja2 import PackageLoader, StrictUndefined
from jinja2.sandbox import ImmutableSandboxedEnvironment

from bot.core.impact import Estimate

GITHUB_BODY_LIMIT = 65_536


def untrusted(text: object, limit: int = 300) -> str:
    """Inline code span that `text` cannot break out of."""
    value = str(text).replace("\r", " ").replace("\n", " ").replace("|", "\\|")
    value = value.replace("<!--", "<!- -").replace("-->", "- ->")
    if len(value) > limit:
        value = value[: limit - 1] + "…"
    longest = max((len(m) for m in re.findall(r"`+", value)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if value.startswith("`") or value.endswith("`") or not value else ""
    return f"{fence}{pad}{value}{pad}{fence}"


def fenced(text: str, lang: str = "") -> str:
    longest = max((len(m) for m in re.findall(r"`{3,}", text)), default=2)
    fence = "`" * (longest + 1)
    return f"{fence}{lang}\n{text.rstrip()}\n{fence}"


def pct(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None else f"{value * 100:.{digits}f} %"


def share(percent: float) -> str:
    """A canary share in percent, as a person writes it: 5 %, 12.5 %."""
    return f"{percent:g} %"


def signed_pts(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 100:+.1f} pts"


def estimate_line(name: str, e: Estimate, unit: str) -> str:
    """One impact estimate as a Markdown line: value, interval, confidence and how."""
    if e.value is None or e.low is None or e.high is None:
        return f"{name}: not estimated — {e.method}"
    return (f"{name}: **{e.value * 100:+.1f} {unit}**, interval {e.low * 100:+.1f} … "
            f"{e.high * 100:+.1f} {unit}, confidence: {e.confidence} — {e.method}")


@lru_cache(maxsize=1)
def environment() -> ImmutableSandboxedEnvironment:
    env = ImmutableSandboxedEnvironment(
        loader=PackageLoader("bot", "templates"),
        undefined=StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(untrusted=untrusted, fenced=fenced, pct=pct, pts=signed_pts,
                       share=share)
    env.globals.update(estimate_line=estimate_line)
    return env


def render(template: str, **context: Any) -> str:
    text = environment().get_template(template).render(**context)
    return re.sub(r"\n{3,}", "\n\n", text).strip() + "\n"


def cap(body: str, pointer: str, limit: int = GITHUB_BODY_LIMIT - 2_000) -> str:
    """Keep a body under GitHub's size limit, pointing at the file with the rest."""
    if len(body) <= limit:
        return body
    return body[:limit].rsplit("\n", 1)[0] + f"\n\n… cut to fit GitHub's limit; see {pointer}\n"


def cap_comment(body: str, pointer: str = "the run's reports",
                limit: int = GITHUB_BODY_LIMIT - 1_000) -> str:
    """`cap` for a comment that ends in a hidden marker: the marker survives the cut."""
    if len(body) <= limit:
        return body
    visible, sep, marker = body.rpartition("\n\n<!-- promptbot:")
    if not sep:
        return cap(body, pointer, limit)
    tail = sep + marker
    return cap(visible, pointer, limit - len(tail)).rstrip("\n") + tail
