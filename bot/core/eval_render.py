"""The eval report as Markdown (PR body or comment) and as terminal text.

Case names come from tests.yaml and reasons quote model replies: both are untrusted. Each
such text is one line, length-capped, put in a code span with its backticks replaced (so it
cannot close the span), and HTML comment delimiters broken (so it cannot forge or hide the
bot's marker); inside a code span `@name` pings nobody and `<tag>` renders as text.
"""

from __future__ import annotations

import re

from bot.core.evaluation import Arm, EvalReport

MARK = {"pass": "✅", "fail": "❌", "unavailable": "—"}
WORD = {"pass": "pass", "fail": "FAIL", "unavailable": "-"}
_UNSAFE = re.compile(r"[\x00-\x1f\x7f\u200b-\u200f\u202a-\u202e\u2066-\u2069]")
MARKDOWN_LIMIT = 20_000


def code(text: str, limit: int = 120) -> str:
    value = _UNSAFE.sub(" ", text)
    value = " ".join(value.split()).replace("`", "'").replace("|", "\\|")
    value = value.replace("<!--", "<!- -").replace("-->", "- ->")
    if len(value) > limit:
        value = value[: limit - 1] + "…"
    return f"`{value}`" if value else "` `"


def _rate(arm: Arm | None) -> str:
    if arm is None:
        return "—"
    ran = arm.count("pass") + arm.count("fail")
    if not ran:
        return "not run"
    text = f"{arm.count('pass')}/{ran} ({arm.count('pass') / ran * 100:.0f} %)"
    missing = arm.count("unavailable")
    return text + (f", {missing} unavailable" if missing else "")


def _usage(report: EvalReport) -> str:
    tokens = report.input_tokens + report.output_tokens
    replayed = report.provider.startswith("recorded") and not report.cost_usd
    cost = "$0 (recorded replies)" if replayed else f"${report.cost_usd:.4f}"
    return (f"{report.requests} request(s), {tokens:,} tokens ({report.input_tokens:,} in / "
            f"{report.output_tokens:,} out), {cost}")


def render_eval_markdown(report: EvalReport) -> str:
    """A short table: case × base/variant, pass rates, usage and the gate line."""
    base = report.base.by_case() if report.base else {}
    variant = report.variant.by_case()
    lines = [f"#### Offline eval: {code(report.agent, 64)}", "",
             "| case | base | variant |", "|---|:-:|:-:|"]
    reasons: list[str] = []
    for name in report.cases:
        b, v = base.get(name), variant.get(name)
        lines.append(f"| {code(name, 60)} | {MARK[b.status] if b else '—'} | "
                     f"{MARK[v.status] if v else '—'} |")
        for arm, outcome in (("base", b), ("variant", v)):
            if outcome is not None and outcome.reason:
                reasons.append(f"- {code(name, 60)} ({arm}): {code(outcome.reason, 160)}")
    lines += ["", f"Pass rate: base {_rate(report.base)}, variant {_rate(report.variant)}. "
              f"Provider {code(report.provider, 40)}: {_usage(report)}.",
              "", f"**Gate: {report.gate.state}** — {report.gate.description}"]
    for note in report.notes:
        lines.append(f"\n_{code(note, 200)}_")
    if reasons:
        lines += ["", "<details><summary>Why cases failed</summary>", "", *reasons, "",
                  "</details>"]
    text = "\n".join(lines) + "\n"
    if len(text) > MARKDOWN_LIMIT:
        text = text[:MARKDOWN_LIMIT].rsplit("\n", 1)[0] + "\n\n… cut; run `promptbot eval`\n"
    return text


def render_eval_text(report: EvalReport) -> str:
    """The same report for a terminal."""
    base = report.base.by_case() if report.base else {}
    variant = report.variant.by_case()
    width = max([len(n) for n in report.cases] + [9])
    head = f"{report.agent}: base {report.base.label if report.base else '(none)'}, " \
           f"variant {report.variant.label}"
    lines = [head, f"  {'case':<{width}}  base  variant"]
    for name in report.cases:
        b, v = base.get(name), variant.get(name)
        why = (v.reason if v and v.reason else b.reason if b and b.reason else "")
        side = "variant" if v and v.reason else "base"
        row = (f"  {name:<{width}}  {WORD[b.status] if b else '-':<4}  "
               f"{WORD[v.status] if v else '-':<7}" + (f"  {side}: {why}" if why else ""))
        lines.append(row.rstrip())
    lines += [f"  pass rate: base {_rate(report.base)}, variant {_rate(report.variant)}",
              f"  {report.provider}: {_usage(report)}",
              f"  gate: {report.gate.state}: {report.gate.description}"]
    lines += [f"  note: {n}" for n in report.notes]
    return "\n".join(lines)
