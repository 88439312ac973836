"""Impact estimates beside the success rate: cost, latency and quality of a change, each
with an interval, a confidence and a sentence on how it was made.

- Cost per execution: the change in prompt tokens is exact (counted with the tokenizer);
  the change in answer length is a prior by kind of change (`ANSWER_LENGTH`), so the
  interval is about the answer side only. Both are priced with the policy's prices.
- Latency: a least-squares fit of latency on input and output tokens over the version's
  own executions (`Moments`, from the token sums ingest keeps per daily latency bin),
  applied to the same token changes. Slopes
  are floored at 0: more tokens never make an answer faster, and a negative slope is noise
  or a confounder (longer inputs at quieter hours).
- Quality: the offline eval's pass rate over the tests.yaml cases both versions ran, as a
  paired difference (discordant cases), when the agent has tests and the eval ran.

Pure: numbers in, numbers out.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bot.core.metrics import Moments, VersionStats

Z95 = 1.959964  # two-sided 95 % normal quantile


@dataclass(frozen=True)
class Estimate:
    """A relative change (0.012 = +1.2 %) or, for quality, a change in pass rate."""

    value: float | None
    low: float | None
    high: float | None
    confidence: str  # "medium" | "low" | "none" (not estimated)
    method: str

    @property
    def known(self) -> bool:
        return self.value is not None


def estimate_json(e: Estimate, scale: float = 1.0, digits: int = 4) -> dict[str, Any]:
    """An estimate as JSON-ready data, its numbers times `scale` (100: percent or points)."""
    if e.value is None or e.low is None or e.high is None:
        return {"estimated": False, "why": e.method}
    return {"change": round(e.value * scale, digits),
            "interval": [round(e.low * scale, digits), round(e.high * scale, digits)],
            "confidence": e.confidence, "method": e.method}


def unknown(why: str) -> Estimate:
    return Estimate(None, None, None, "none", why)


# Relative change of the mean answer length (output tokens) a change is expected to cause:
# (low, point, high). A prompt edit that does not ask for a different length moves it
# little either way; a brevity rule shortens answers by up to a third; a max_tokens cap at
# four times the mean only cuts the longest answers.
ANSWER_LENGTH: dict[str, tuple[float, float, float]] = {
    "edit": (-0.05, 0.0, 0.05),
    "brevity": (-0.30, -0.15, 0.0),
    "cap": (-0.10, -0.02, 0.0),
}
ANSWER_LABEL = {"edit": "a prompt edit", "brevity": "a brevity rule", "cap": "a max_tokens cap"}


@dataclass(frozen=True)
class TokenChange:
    input_tokens: int  # exact: prompt tokens added (negative: removed) per execution
    answer: str  # a key of ANSWER_LENGTH


def cost_estimate(change: TokenChange, stats: VersionStats, input_per_mtok: float,
                  output_per_mtok: float) -> Estimate:
    """Change of the cost per execution, relative to the version's measured mean."""
    if not stats.cost_per_execution or stats.cost_per_execution <= 0:
        return unknown("no cost per execution in the export")
    lo, mid, hi = ANSWER_LENGTH[change.answer]
    out = stats.output_tokens_mean or 0.0
    fixed = change.input_tokens * input_per_mtok / 1e6
    base = stats.cost_per_execution
    how = (f"{change.input_tokens:+d} prompt tokens × ${input_per_mtok:g}/Mtok (exact), over "
           f"${base:.5f} per execution")
    if not out:
        # The answer side is unknown: only the prompt side, and said so.
        return Estimate(fixed / base, fixed / base, fixed / base, "low",
                        how + "; answer length not estimated (no output tokens in the export)")
    per_out = out * output_per_mtok / 1e6
    values = [(fixed + f * per_out) / base for f in (lo, mid, hi)]
    confidence = "medium"
    # Tokens at the policy's prices should come near the export's own cost; far from it,
    # the prices (or the export's unit) are off and so is every percentage here.
    modelled = (stats.input_tokens_mean or 0.0) * input_per_mtok / 1e6 + per_out
    note = ""
    if modelled > 0 and not 0.5 <= modelled / base <= 2.0:
        confidence = "low"
        note = (f"; tokens at the policy's prices cost ${modelled:.5f} per execution, "
                f"×{modelled / base:.2g} the export's: check `pricing` in the policy")
    return Estimate(
        values[1], min(values), max(values), confidence,
        f"{how}; answers {_pct(lo)} … {_pct(hi)} as long (prior for "
        f"{ANSWER_LABEL[change.answer]}) × {out:.0f} output tokens × "
        f"${output_per_mtok:g}/Mtok{note}")


@dataclass(frozen=True)
class LatencyFit:
    """latency_ms ≈ a + b_in · input tokens + b_out · output tokens, with standard errors."""

    n: int
    mean_ms: float
    mean_output: float
    b_in: float
    b_out: float
    se_in: float
    se_out: float


MIN_FIT_ROWS = 30


def latency_fit(m: Moments | None) -> LatencyFit | None:
    """Ordinary least squares from sums; None with too few rows or no spread in tokens."""
    if m is None or m.n < MIN_FIT_ROWS:
        return None
    n = m.n
    s11 = m.x1x1 - m.x1 * m.x1 / n
    s22 = m.x2x2 - m.x2 * m.x2 / n
    s12 = m.x1x2 - m.x1 * m.x2 / n
    s1y = m.x1y - m.x1 * m.y / n
    s2y = m.x2y - m.x2 * m.y / n
    syy = m.yy - m.y * m.y / n
    det = s11 * s22 - s12 * s12
    # Relative to the spread of each predictor: below this the two move together (or one
    # does not move at all) and their effects cannot be told apart.
    if s11 <= 0 or s22 <= 0 or det <= 1e-9 * s11 * s22:
        return None
    b1 = (s22 * s1y - s12 * s2y) / det
    b2 = (s11 * s2y - s12 * s1y) / det
    resid = max(syy - b1 * s1y - b2 * s2y, 0.0) / max(n - 3, 1)
    return LatencyFit(n, m.y / n, m.x2 / n, b1, b2, math.sqrt(resid * s22 / det),
                      math.sqrt(resid * s11 / det))


def latency_estimate(change: TokenChange, stats: VersionStats) -> Estimate:
    """Change of the mean latency, relative to the version's mean, from the fit."""
    fit = latency_fit(stats.moments)
    if fit is None:
        m = stats.moments
        if m is None or m.n < MIN_FIT_ROWS:
            return unknown("no latency fit: the export lacks per-execution latency and token "
                           f"counts for this version (or has fewer than {MIN_FIT_ROWS} rows)")
        return unknown("no latency fit: input and output token counts do not vary enough, "
                       "or move together, so their effects cannot be told apart")
    if fit.mean_ms <= 0:
        return unknown("mean latency is zero")
    lo, mid, hi = ANSWER_LENGTH[change.answer]
    d_in = float(change.input_tokens)
    b_in = (max(fit.b_in - Z95 * fit.se_in, 0.0), max(fit.b_in, 0.0), max(fit.b_in + Z95 *
                                                                          fit.se_in, 0.0))
    b_out = (max(fit.b_out - Z95 * fit.se_out, 0.0), max(fit.b_out, 0.0),
             max(fit.b_out + Z95 * fit.se_out, 0.0))
    in_terms = [d_in * b for b in b_in]
    out_terms = [f * fit.mean_output * b for f in (lo, hi) for b in (b_out[0], b_out[2])]
    point = (d_in * b_in[1] + mid * fit.mean_output * b_out[1]) / fit.mean_ms
    low = (min(in_terms) + min(out_terms)) / fit.mean_ms
    high = (max(in_terms) + max(out_terms)) / fit.mean_ms
    confidence = "medium" if fit.n >= 1000 and high - low < 0.05 else "low"
    return Estimate(
        point, min(low, point), max(high, point), confidence,
        f"least-squares fit over {fit.n:,} executions of this version: "
        f"{fit.b_in:+.3f} ms per input token, {fit.b_out:+.2f} ms per output token "
        f"(mean {fit.mean_ms:.0f} ms); {change.input_tokens:+d} prompt tokens and answers "
        f"{_pct(lo)} … {_pct(hi)} as long")


def paired_quality(pairs: Sequence[tuple[bool, bool]], label: str) -> Estimate:
    """Change in pass rate over cases both versions ran ((base passed, variant passed) per
    case): the difference of paired proportions with its Wald interval, which only the
    discordant cases move."""
    n = len(pairs)
    if n == 0:
        return unknown("no offline-eval case both versions could run")
    gained = sum(1 for b, v in pairs if v and not b)
    lost = sum(1 for b, v in pairs if b and not v)
    diff = (gained - lost) / n
    var = max((gained + lost) - (gained - lost) ** 2 / n, 0.0) / (n * n)
    half = Z95 * math.sqrt(var)
    # When every discordant case goes one way (or there is none) the Wald interval shrinks
    # toward a point; the rule of three (95 % bound 3/n on a rate never observed) keeps it
    # honest.
    if gained == 0 or lost == 0:
        half = max(half, 3 / n)
    return Estimate(
        diff, max(diff - half, -1.0), min(diff + half, 1.0),
        "medium" if n >= 30 else "low",
        f"offline eval ({label}): {n} tests.yaml case(s) both versions ran, {gained} newly "
        f"passing, {lost} newly failing")


def _pct(f: float) -> str:
    return f"{f * 100:+.0f} %"
