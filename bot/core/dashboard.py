"""The dashboard issue: what the bot is doing and what needs a person, as Markdown.

Pure: the shell (bot/dashboard.py) gathers a `View` and writes the body only when it
differs from the issue's. The bot owns the text between its two section comments; what a
person writes above or below is kept. Checkboxes are commands: a ticked box carries a
hidden `promptbot-command` comment naming what to do; they are read back on the next run
(`commands`), done, and the body is rendered again with every box clear. State the
dashboard keeps itself (snoozes set from a box) is one strict JSON comment in the section.
"""

from __future__ import annotations

import json
import re
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from datetime import date

from bot.core import markers
from bot.core.ids import is_safe_id

START = "<!-- promptbot:dashboard:start -->"
END = "<!-- promptbot:dashboard:end -->"
KIND = "dashboard"
TITLE = "promptbot dashboard"
SNOOZE_DAYS = 14
# open now / snooze 14 days / snooze off (an agent) / measure again (a proposal)
VERBS = ("open", "snooze", "wake", "remeasure")
_COMMAND = re.compile(
    r"^[ \t]*[-*] \[[xX]\] [^\n]*<!-- promptbot-command: (" + "|".join(VERBS) + ") "
    r"([a-z0-9-]{1,64}) -->[ \t]*$", re.MULTILINE)
_STATE = re.compile(r"<!-- promptbot-state: (\{[^\n]{0,20000}\}) -->")
HEALTHY = ("excellent", "good")
COLLAPSE_AFTER = 20


@dataclass(frozen=True)
class AgentLine:
    agent: str
    health: str
    success_rate: float | None
    executions: int
    version: str | None
    live_since: str | None  # the day the current version's first row shows
    # The change in flight, Markdown with the PR references live ("#4 open: …"); the shell
    # made its titles plain.
    change: str = ""
    notes: tuple[str, ...] = ()  # why nothing (more) is proposed
    triggers: tuple[str, ...] = ()
    waits: bool = False  # a proposal waits on a per-run or per-repository limit


@dataclass(frozen=True)
class ResultLine:
    number: int
    agent: str
    title: str
    state: str  # completed | rolled_back | measuring
    decision: str
    delta: float
    low: float
    high: float
    expected: float
    through: str
    simulated: bool = False
    decide_by: str = ""  # measuring: the day a decision is likely
    proposal_id: str = ""


@dataclass(frozen=True)
class AlertLine:
    title: str
    number: int
    url: str = ""


@dataclass(frozen=True)
class View:
    headline: str
    agents: tuple[AgentLine, ...]
    results: tuple[ResultLine, ...]  # newest first
    calibration: tuple[tuple[str, int, float], ...]  # (type, measured n, factor)
    guardrails: tuple[str, ...]
    alerts: tuple[AlertLine, ...] = ()
    snoozed: dict[str, str] = field(default_factory=dict)  # agent -> last snoozed day
    hours_budget: float = 0.0
    hours_each: float = 2.0
    done: tuple[str, ...] = ()  # the commands this run carried out
    # The learning loop: its open PRs and the promoted rules (Markdown; titles made plain).
    learning: tuple[str, ...] = ()


@dataclass(frozen=True)
class Command:
    verb: str  # open | snooze | wake | remeasure
    agent: str  # the agent, or the proposal id for remeasure


# ---------------------------------------------------------------- reading a body back


def bot_section(body: str) -> tuple[str, str, str] | None:
    """(text before, the bot's section, text after) of a dashboard body, the marker
    dropped; None when the section comments are gone (a person removed them)."""
    visible = without_marker(body)
    start, end = visible.find(START), visible.rfind(END)
    if start < 0 or end < start:
        return None
    return visible[:start], visible[start:end + len(END)], visible[end + len(END):]


def without_marker(body: str) -> str:
    """The body without the bot's hidden marker, in LF line endings (GitHub stores a body
    a person saved in its editor with CRLF); text a person typed after the marker stays."""
    body = body.replace("\r\n", "\n")
    at = body.rfind("<!-- promptbot: {")
    end = body.find("-->", at) + 3 if at >= 0 else -1
    if at < 0 or end < 3 or markers.parse(body[at:end]) is None:
        return body
    head, rest = body[:at].rstrip("\n"), body[end:].strip("\n")
    return f"{head}\n\n{rest}" if rest else head


def commands(body: str) -> list[Command]:
    """The ticked boxes of the bot's section, in order, each once."""
    parts = bot_section(body)
    if parts is None:
        return []
    out: list[Command] = []
    for match in _COMMAND.finditer(parts[1]):
        command = Command(match.group(1), match.group(2))
        if is_safe_id(command.agent) and command not in out:
            out.append(command)
    return out


def _state(body: str) -> dict[str, object]:
    parts = bot_section(body)
    found = _STATE.search(parts[1]) if parts else None
    if found is None:
        return {}
    try:
        data = json.loads(found.group(1))
    except json.JSONDecodeError:
        return {}
    return data if isinstance(data, dict) else {}


STATE_MARK = "<!-- promptbot-state: "


def snoozes(body: str) -> dict[str, date]:
    """The snoozes the dashboard recorded (agent -> last snoozed day); anything malformed
    is ignored, the policy's `guardrails.snooze` still holds."""
    raw = _state(body).get("snoozed")
    out: dict[str, date] = {}
    for agent, day in (raw.items() if isinstance(raw, dict) else ()):
        try:
            if is_safe_id(str(agent)) and isinstance(day, str):
                out[str(agent)] = date.fromisoformat(day)
        except ValueError:
            continue
    return out


def last_done(body: str) -> list[str]:
    """What the last ticked boxes did: shown until the next box is ticked, so the run
    after a command does not rewrite the body only to drop that note."""
    raw = _state(body).get("done")
    return [str(d)[:300] for d in raw[:20]] if isinstance(raw, list) else []


def apply(cmds: list[Command], snoozed: dict[str, date], today: date,
          agents: AbstractSet[str], decided: AbstractSet[str] = frozenset()
          ) -> tuple[dict[str, date], set[str], list[str], set[str]]:
    """(snoozes after the commands, agents to open now, what was done, for the body, the
    decided proposals to measure again)."""
    after = {a: d for a, d in snoozed.items() if d >= today}
    now: set[str] = set()
    again: set[str] = set()
    done: list[str] = []
    for c in cmds:
        if c.verb == "remeasure":
            if c.agent in decided:
                again.add(c.agent)
                done.append(f"measuring `{c.agent}` again on all the data since its merge")
            else:
                done.append(f"ignored a box for `{c.agent}`: not a completed result")
        elif c.agent not in agents:
            done.append(f"ignored a box for `{c.agent}`: no such agent on the base branch")
        elif c.verb == "snooze":
            after[c.agent] = date.fromordinal(today.toordinal() + SNOOZE_DAYS)
            done.append(f"snoozed `{c.agent}` until {after[c.agent].isoformat()}")
        elif c.verb == "wake":
            if after.pop(c.agent, None) is not None:
                done.append(f"woke `{c.agent}`: proposals again")
        else:
            now.add(c.agent)
            done.append(f"`{c.agent}`: max_prs_per_run and max_open_proposals did not hold "
                        "it back this run")
    return after, now, done, again


# ---------------------------------------------------------------- writing it


def plain(text: object, limit: int = 300) -> str:
    """Text from elsewhere (a reason quoting an error, a PR title) made inert: one line,
    no HTML comment (a forged command or marker), no @mention, no table break."""
    value = " ".join(str(text).split())
    value = value if len(value) <= limit else value[:limit - 1] + "…"
    # HTML (a comment, </details>, <img>) shown as text; no link, code span or table cell
    # break; no @mention and no #123 back-reference posted into another issue.
    for raw, safe in (("&", "&amp;"), ("<", "&lt;"), (">", "&gt;"), ("[", "\\["),
                      ("]", "\\]"), ("`", "\\`"), ("|", "\\|"), ("@", "@\u200b"),
                      ("#", "#\u200b")):
        value = value.replace(raw, safe)
    return value


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value * 100:.1f} %"


def _pts(value: float) -> str:
    return f"{value * 100:+.1f}"


def _box(label: str, verb: str, agent: str) -> str:
    return f"- [ ] {label} <!-- promptbot-command: {verb} {agent} -->"


def section(view: View, max_chars: int) -> str:
    """The bot's section, under `max_chars`: healthy agents collapse first, then the
    longest lists are cut (the run's reports hold everything). The state comment (snoozes)
    and the end comment always survive the cut."""
    state = {"snoozed": dict(sorted(view.snoozed.items())), "done": list(view.done)}
    tail = f"{STATE_MARK}{json.dumps(state, sort_keys=True)} -->\n{END}"
    room = max(max_chars - len(tail) - 1, 1000)
    for level in range(5):
        text = _section(view, level)
        if len(text) <= room:
            return text + "\n" + tail
    cut = text[:room - 40].rsplit("\n", 1)[0] + "\n\n… cut to fit; see the run's reports"
    return cut + "\n" + tail


def _section(view: View, level: int) -> str:
    """level 0 = everything (healthy agents as names past COLLAPSE_AFTER); 1 = healthy
    agents as names only; 2 = lists cut to 20;
    3 = cut to 5; 4 = only what needs a person."""
    cut = {0: 10**9, 1: 10**9, 2: 20, 3: 5, 4: 0}[level]
    out = [START, f"## {TITLE}", "", plain(view.headline, 500), ""]
    if view.done:
        out += ["**Done from the last ticked boxes:**"]
        out += [*(f"- {d}" for d in view.done), ""]
    out += _attention(view, cut)
    out += _agents(view, level, cut)
    out += _roadmap(view, cut)
    out += _not_proposed(view, cut)
    out += _results(view, cut)
    out += _calibration(view)
    if view.learning:
        out += ["### Learning", "", *(f"- {line}" for line in view.learning[:max(cut, 5)]),
                ""]
    out += ["### Guardrails", "", *(f"- {g}" for g in view.guardrails), ""]
    return "\n".join(out)


def _attention(view: View, cut: int) -> list[str]:
    lines = [f"- Alert: [{plain(a.title)}]({a.url})" if a.url else
             f"- Alert #{a.number}: {plain(a.title)}" for a in view.alerts]
    for a in view.agents:
        lines += [f"- `{a.agent}`: {plain(t)}" for t in a.triggers]
    if len(lines) > max(cut, 20):
        lines = [*lines[:max(cut, 20)], f"- … and {len(lines) - max(cut, 20)} more in the "
                 "run's report"]
    if not lines:
        return ["Nothing needs a person now.", ""]
    return ["### Needs a person", "", *lines, ""]


def _agent_row(a: AgentLine, snoozed: dict[str, str]) -> str:
    since = f" (since {a.live_since})" if a.live_since else ""
    version = f"`{a.version}`{since}" if a.version else "–"
    change = a.change or "–"
    if a.agent in snoozed:
        change += f" · snoozed until {snoozed[a.agent]}"
    return (f"| `{a.agent}` | {a.health} | {_pct(a.success_rate)} | {a.executions:,} | "
            f"{version} | {change} |")


def _agents(view: View, level: int, cut: int) -> list[str]:
    # Past a screenful of agents the healthy ones with nothing in flight are names only.
    collapse = level > 0 or len(view.agents) > COLLAPSE_AFTER
    shown = [a for a in view.agents if not collapse or a.health not in HEALTHY
             or a.change or a.agent in view.snoozed]
    quiet = [a for a in view.agents if a not in shown]
    out = [f"### Agents ({len(view.agents)})", ""]
    if shown:
        out += ["| agent | health | success | executions | version on main | change |",
                "|---|---|---:|---:|---|---|"]
        out += [_agent_row(a, view.snoozed) for a in shown[:max(cut, 20)]]
        if len(shown) > max(cut, 20):
            out.append(f"\n… and {len(shown) - max(cut, 20)} more in the run's reports")
        out.append("")
    if quiet:
        names = ", ".join(f"`{a.agent}`" for a in quiet)
        out += [f"<details><summary>{len(quiet)} healthy agent(s), nothing in flight"
                f"</summary>\n\n{names}\n</details>", ""]
    return out


def _roadmap(view: View, cut: int) -> list[str]:
    """In flight, then what waits on a guardrail, against the hours budget, with the boxes
    that act on them."""
    flight = [a for a in view.agents if a.change]
    waiting = [a for a in view.agents if a.waits and not a.change]
    out = [f"### Roadmap (hours budget {view.hours_budget:g} h, about "
           f"{view.hours_each:g} h per proposal)", ""]
    if not flight and not waiting and not view.snoozed:
        return [*out, "Nothing in flight and nothing waiting.", ""]
    used = 0.0
    for a in flight[:cut]:
        used += view.hours_each
        out.append(f"- `{a.agent}`: {a.change}")
        if a.agent not in view.snoozed:
            out.append("  " + _box(f"snooze `{a.agent}` for {SNOOZE_DAYS} days (no new "
                                   "proposal after this one)", "snooze", a.agent))
    for a in waiting[:cut]:
        used += view.hours_each
        budget = " · beyond the hours budget" if used > view.hours_budget else ""
        reasons = "; ".join(plain(n, 200) for n in a.notes if n.startswith("waits")) or \
            "waits on a guardrail"
        out.append(f"- `{a.agent}` {reasons}{budget}")
        out.append("  " + _box(f"open `{a.agent}`'s proposal now", "open", a.agent))
        if a.agent not in view.snoozed:
            out.append("  " + _box(f"snooze `{a.agent}` for {SNOOZE_DAYS} days", "snooze",
                                   a.agent))
    left = max(len(flight) - cut, 0) + max(len(waiting) - cut, 0)
    if left:
        out.append(f"- … and {left} more in the run's report")
    for agent, day in sorted(view.snoozed.items()):
        out.append(_box(f"wake `{agent}` (snoozed until {day})", "wake", agent))
    return [*out, ""]


# The run's skip line for an agent with a change in flight (bot/app.py says it), which the
# roadmap's in-flight line says already.
BUSY_NOTE = "a change is open or being measured"


def _not_proposed(view: View, cut: int) -> list[str]:
    # Only for agents with nothing in flight: while a change is open the run stops at "a
    # change is open" before weighing the agent's other problems, so their reasons would
    # come and go between runs (and rewrite the body each time).
    rows = [(a, [n for n in a.notes if n != BUSY_NOTE and not n.startswith("waits")])
            for a in view.agents if not a.change]
    rows = [(a, notes) for a, notes in rows if notes]
    if not rows:
        return []
    lines = [f"- `{a.agent}`: " + "; ".join(plain(n, 200) for n in notes[:3])
             + (f" (+{len(notes) - 3} more)" if len(notes) > 3 else "")
             for a, notes in rows[:cut]]
    if len(rows) > cut:
        lines.append(f"- … and {len(rows) - cut} more agents in the run's report")
    return ["### Not proposed, and why", "", f"<details><summary>{len(rows)} agent(s)"
            "</summary>", "", *lines, "</details>", ""]


def _results(view: View, cut: int) -> list[str]:
    if not view.results:
        return []
    out = ["### Recent results", "", "| PR | agent | result | measured (pts) | interval | "
           "expected | data through |", "|---|---|---|---:|---|---:|---|"]
    for r in view.results[:min(cut, 10)]:
        state = {"completed": r.decision.replace("_", " "), "rolled_back": "rolled back"
                 }.get(r.state, f"measuring (decision ~{r.decide_by})" if r.decide_by
                       else "measuring")
        if r.simulated:
            state += " (simulated data)"
        out.append(f"| #{r.number} | `{r.agent}` | {state} | {_pts(r.delta)} | "
                   f"{_pts(r.low)} … {_pts(r.high)} | {_pts(r.expected)} | {r.through} |")
    boxes = [_box(f"measure #{r.number} (`{r.agent}`, {r.decision.replace('_', ' ')}) again "
                  "on all the data since its merge", "remeasure", r.proposal_id)
             for r in view.results[:min(cut, 10)] if r.state == "completed" and r.proposal_id]
    return [*out, "", *boxes, ""] if boxes else [*out, ""]


def _calibration(view: View) -> list[str]:
    if not view.calibration:
        return ["### Calibration", "", "Not yet calibrated: no measured proposals in this "
                "repository.", ""]
    lines = [f"- {t}: measured/expected ×{f:.2f} over {n} measured proposal(s)"
             for t, n, f in view.calibration]
    return ["### Calibration", "", *lines, ""]


def body(view: View, existing: str | None, max_chars: int) -> str:
    """The whole issue body: the person's text around the bot's section kept."""
    before, after = "", ""
    if existing:
        parts = bot_section(existing)
        if parts is not None:
            before, _, after = parts
        else:
            before = without_marker(existing).rstrip() + "\n\n"
    # The marker (under 100 characters) comes on top; a person's long text leaves the
    # section less room, never none.
    text = before + section(view, max_chars - len(before) - len(after) - 120) + after
    if existing and without_marker(existing) == text:
        return existing  # a person's edit outside the section is no reason to write
    return markers.attach(text, {"kind": KIND})
