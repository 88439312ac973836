"""Incident days: failures that jumped for a reason outside the prompt.

An outage upstream (the model provider overloaded, a database down, a network partition)
makes an agent fail whatever its prompt says. Counted as the prompt's doing, two such days
in the month around a deploy turn a change that did nothing into a "regression" (or, before
the deploy, into a "success"). A day is an incident day for an agent when

1. one failure template's share of the day's executions is above its usual share (the
   median over the days looked at) by at least `measure.incident_share`, by at least five
   executions, and by more than four binomial standard deviations; and
2. something says the cause is outside the prompt: the error is an infrastructure error
   (rate limits, overload, 5xx, connection and DNS failures: what no prompt produces), or
   the same template jumps the same day in another agent.

A template the new version introduces and keeps producing is the prompt's doing (a
regression), not an incident, unless it looks like infrastructure; then its days pile up
and the comparison ends "inconclusive" instead of being decided on what is left.
"""

from __future__ import annotations

import math
import re
import statistics
from collections import defaultdict
from collections.abc import Iterable, Mapping
from datetime import date

from bot.core.metrics import ErrorDay
from bot.core.model import is_safe_id
from bot.core.stats import Incident

# What an upstream failure looks like in error types and messages. Timeouts are not on the
# list: a longer answer the prompt asked for times out too.
INFRASTRUCTURE = re.compile(
    r"rate.?limit|overload|throttl|\b(?:429|50[0-4]|529)\b|service.?unavailable|"
    r"bad.?gateway|gateway.?time|internal.?server.?error|connection.?(?:error|reset|refused)|"
    r"ECONN|\bDNS\b|name resolution|upstream|capacity|temporarily unavailable|"
    r"APIConnectionError|InternalServerError|ServiceUnavailable|Overloaded",
    re.IGNORECASE,
)
MIN_EXCESS = 5
MIN_Z = 4.0

Key = tuple[str, str]  # (error_type, template)


def is_infrastructure(error_type: str, message: str) -> bool:
    return bool(INFRASTRUCTURE.search(error_type) or INFRASTRUCTURE.search(message[:500]))


def find(errors: Iterable[ErrorDay], executions: Mapping[tuple[str, date], int],
         agents: Iterable[str], days: Iterable[date], min_share: float) -> list[Incident]:
    """Incident days of `agents` among `days`. `errors` and `executions` may cover more
    agents: a spike elsewhere the same day is evidence too."""
    window = set(days)
    counts: dict[str, dict[Key, dict[date, int]]] = defaultdict(
        lambda: defaultdict(lambda: defaultdict(int)))
    examples: dict[Key, str] = {}
    for e in errors:
        day = e.day.date()
        if day in window:
            key = (e.error_type, e.template)
            counts[e.agent_id][key][day] += e.count
            examples.setdefault(key, e.example)
    active: dict[str, list[date]] = defaultdict(list)
    for (a, d), n in executions.items():
        if d in window and n > 0:
            active[a].append(d)
    spikes: dict[str, dict[Key, dict[date, tuple[int, float]]]] = {}
    for agent, by_key in counts.items():
        found: dict[Key, dict[date, tuple[int, float]]] = {}
        for key, per_day in by_key.items():
            usual = statistics.median(per_day.get(d, 0) / executions[(agent, d)]
                                      for d in active[agent]) if active[agent] else 0.0
            for day, c in per_day.items():
                n = executions.get((agent, day), 0)
                if n <= 0:
                    continue
                excess = c - n * usual
                sd = math.sqrt(n * max(usual, 1.0 / n) * (1 - min(usual, 0.999)))
                if excess >= max(MIN_EXCESS, min_share * n) and excess > MIN_Z * sd:
                    found.setdefault(key, {})[day] = (c, c / n)
        spikes[agent] = found
    out: list[Incident] = []
    for agent in sorted(set(agents)):
        for key, jumps in spikes.get(agent, {}).items():
            for day, (c, share) in sorted(jumps.items()):
                elsewhere = sorted(a for a, found in spikes.items()
                                   if a != agent and day in found.get(key, {}))
                if elsewhere:
                    # Agent ids come from the export: only well-formed ones are named.
                    named = [a if is_safe_id(a) else "(an agent with an odd id)"
                             for a in elsewhere]
                    shown = ", ".join(named[:3]) + (" …" if len(named) > 3 else "")
                    why = f"the same failure jumped that day in {shown}"
                elif is_infrastructure(key[0], examples.get(key, "")):
                    why = "an infrastructure error (rate limit, overload, 5xx or connection)"
                else:
                    continue
                out.append(Incident(day, agent, key[0], key[1], c, share, why))
    out.sort(key=lambda i: (i.day, i.agent_id, -i.count))
    return out
