"""Incident days: failures that jumped for a reason outside the prompt.

An outage upstream (the model provider overloaded, a database down, a network partition)
makes an agent fail whatever its prompt says. Counted as the prompt's doing, two such days
in the month around a deploy turn a change that did nothing into a "regression" (or, before
the deploy, into a "success"). A day is an incident day for an agent when

1. one failure template's share of the day's executions is above its usual share (the
   median over the base version's days) by at least `measure.incident_share`, by at least
   five executions, and by more than four binomial standard deviations;
2. something says the cause is outside the prompt: the error type, template or message
   is an infrastructure error (rate limits, overload, 5xx, connection and DNS failures:
   what no prompt produces), or the same template jumps the same day in another agent that
   did not change (a "witness"); and
3. the jump does not last: a template that jumps on four or more days and on most days
   since the deploy is what the new version does (a regression, even when it reads like
   a rate limit), never an incident.
"""

from __future__ import annotations

import math
import re
import statistics
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from datetime import date

from bot.core.metrics import ErrorDay
from bot.core.model import is_safe_id
from bot.core.stats import Incident

# What an upstream failure looks like. Words are looked for in the error type, the masked
# template and the example message; status codes only where they are status codes
# ("Error code: 529", "HTTP 503", "status 429"), so "char 502" or "order 429" in a message
# cannot match. Timeouts are not on the list: a longer answer the prompt asked for times
# out too.
INFRASTRUCTURE = re.compile(
    r"\brate[ _-]?limit|\boverloaded|\bthrottl|service[ _-]?unavailable|bad[ _-]?gateway|"
    r"gateway[ _-]?time[ _-]?out|internal[ _-]?server[ _-]?error|"
    r"connection[ _-]?(?:error|reset|refused|aborted)|ECONNRESET|ECONNREFUSED|\bDNS\b|"
    r"name resolution|upstream connect|over capacity|temporarily unavailable|"
    r"APIConnectionError|APITimeoutError|InternalServerError|ServiceUnavailable|"
    r"(?:error code|status(?: code)?|HTTP(?:/\d(?:\.\d)?)?)[ :=]+(?:429|50[0-4]|529)\b",
    re.IGNORECASE,
)
MIN_EXCESS = 5
MIN_Z = 4.0
LASTING_DAYS = 4  # a jump on this many days, and on most days since the deploy, lasts

Key = tuple[str, str]  # (error_type, template)


def is_infrastructure(error_type: str, template: str, example: str = "") -> bool:
    return any(INFRASTRUCTURE.search(text[:500]) for text in (error_type, template, example))


def _spikes(counts: Mapping[Key, Mapping[date, int]], executions: Mapping[date, int],
            usual_days: Sequence[date], min_share: float
            ) -> dict[Key, dict[date, tuple[int, float]]]:
    found: dict[Key, dict[date, tuple[int, float]]] = {}
    for key, per_day in counts.items():
        usual = statistics.median(per_day.get(d, 0) / executions[d]
                                  for d in usual_days) if usual_days else 0.0
        for day, c in per_day.items():
            n = executions.get(day, 0)
            if n <= 0:
                continue
            excess = c - n * usual
            sd = math.sqrt(n * max(usual, 1.0 / n) * (1 - min(usual, 0.999)))
            if excess >= max(MIN_EXCESS, min_share * n) and excess > MIN_Z * sd:
                found.setdefault(key, {})[day] = (c, c / n)
    return found


def find(errors: Iterable[ErrorDay], executions: Mapping[tuple[str, date], int],
         agents: Iterable[str], base_days: Iterable[date], post_days: Iterable[date],
         witnesses: Iterable[str], min_share: float) -> list[Incident]:
    """Incident days of `agents` among `base_days` and `post_days` (the usual share of a
    template is its median over the base days). A jump the same day in one of the
    `witnesses` (agents that did not change in the window) is evidence too."""
    before, after = sorted(set(base_days)), sorted(set(post_days))
    window = set(before) | set(after)
    watch = set(agents)
    named = set(witnesses) - watch
    counts: dict[str, dict[Key, dict[date, int]]] = defaultdict(
        lambda: defaultdict(lambda: defaultdict(int)))
    examples: dict[Key, str] = {}
    for e in errors:
        day = e.day.date()
        if day in window and e.agent_id in watch | named:
            counts[e.agent_id][(e.error_type, e.template)][day] += e.count
            examples.setdefault((e.error_type, e.template), e.example)
    per_agent: dict[str, dict[date, int]] = defaultdict(dict)
    for (a, d), n in executions.items():
        if d in window and n > 0 and a in watch | named:
            per_agent[a][d] = n
    spikes = {a: _spikes(by_key, per_agent[a], [d for d in before if d in per_agent[a]],
                         min_share)
              for a, by_key in counts.items()}
    out: list[Incident] = []
    for agent in sorted(watch):
        for key, jumps in spikes.get(agent, {}).items():
            lasting = [d for d in jumps if d in set(after)]
            if len(lasting) >= LASTING_DAYS and 2 * len(lasting) > len(after):
                continue  # what the new version does, not an incident
            for day, (c, share) in sorted(jumps.items()):
                elsewhere = sorted(a for a in named if day in spikes.get(a, {}).get(key, {}))
                if elsewhere:
                    # Agent ids come from the export: only well-formed ones are named.
                    shown = [a if is_safe_id(a) else "(an agent with an odd id)"
                             for a in elsewhere]
                    why = (f"the same failure jumped that day in {', '.join(shown[:3])}"
                           + (" …" if len(shown) > 3 else ""))
                elif is_infrastructure(*key, examples.get(key, "")):
                    why = "an infrastructure error (rate limit, overload, 5xx or connection)"
                else:
                    continue
                out.append(Incident(day, agent, key[0], key[1], c, share, why))
    out.sort(key=lambda i: (i.day, i.agent_id, -i.count))
    return out
