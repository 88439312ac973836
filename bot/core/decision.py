"""The decision after a before/after deploy, from day-level evidence (bot/core/daily.py).

Each daily run asks again, so every interval is an always-valid confidence sequence
(bot/core/sequential.py) over the day-level model's estimate and variance; the mixing
variance is tuned from the base history alone (the planned variance after
`measure.horizon_days` days), never from the data being tested.

What may not decide, and what happens instead:
- The same comparison run on the base version's own history, as if the deploy had come
  `L` days earlier (a placebo, L = the days measured so far), must show nothing. When it
  does, the base itself moves in ways the model does not capture: the outcome is
  "inconclusive — base unstable", never a success, regression or rollback.
- Unchanged agents in the repository are a negative control: when they moved the same
  way over the same days, a shock every agent took may be at work, and a claim must hold
  against them too (the agent minus them, day by day) or it waits.
- Incident days (bot/core/incidents.py) are left out of every series before this point.
- "No measurable effect" only when the interval lies within +-`min_detectable_effect`:
  no effect worth having fits in it any more.
- A base history too short to ever narrow the interval, or `measure.max_days` without a
  decision, ends as "inconclusive" with the reason, so the agent is free for new proposals.

Decisions: success | regression | no_effect | inconclusive | keep_measuring |
insufficient_data. The first four are final.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

from bot.core.daily import Day, Estimate, Model, estimate, fit, planned
from bot.core.model import MeasurePolicy
from bot.core.sequential import half_width, mixing_variance, sequence
from bot.core.stats import (
    JUDGED_BY,
    Arm,
    Comparison,
    Guardrail,
    Incident,
    SegmentMix,
    View,
    verdict,
)

FINAL = ("success", "regression", "no_effect", "inconclusive")
# The placebo needs at least this many base days left before its pretend deploy (and this
# many more when the main model carries a trend, which the placebo must carry too).
MIN_PLACEBO_BASE = 7
MIN_PLACEBO_TREND = 10
# A base history shorter than this is "not enough base traffic" when it bounds the interval.
SHORT_HISTORY_DAYS = 14


@dataclass(frozen=True)
class Series:
    """One metric of the agent, day by day, on each side of the deploy."""

    metric: str  # "success rate", "latency", "cost", "quality" (the last three: logs)
    pre: tuple[Day, ...]
    post: tuple[Day, ...]
    prior_s2: float  # between-day variance assumed when the base is too short to tell


@dataclass(frozen=True)
class Evidence:
    success: Series  # the agent alone (re-weighted to the base's segment mix if it has one)
    peers: Series | None  # the unchanged agents' mean departure from their own base level
    controls: tuple[str, ...]
    guardrails: tuple[Series, ...]
    base: Arm  # totals of the days used, for the gates and the table
    new: Arm
    first_post_day: date | None  # the day after the deploy day (None: no complete day yet)
    calendar_days: int  # complete days since the deploy day, used or not, served or not
    incidents: tuple[Incident, ...] = ()
    segments: tuple[SegmentMix, ...] = ()
    stopped: str | None = None  # the new version no longer serves: how we know
    notes: tuple[str, ...] = ()  # cautions from gathering (segments left out, ...)


def _tau2(model: Model, first: date, policy: MeasurePolicy) -> float:
    return mixing_variance(max(planned(model, first, policy.horizon_days).variance, 1e-12),
                           policy.alpha)


def _view(name: str, series: Series, policy: MeasurePolicy, first: date | None,
          trend: bool | None = None) -> tuple[View, Model] | None:
    """`first`: the day after the deploy day, where the planned horizon starts (fixed
    across looks, whatever days the data leaves out: the mixing must not move with it).
    `trend`: force the base model's trend choice (None: the data decides)."""
    model = fit(series.pre, series.prior_s2, trend=trend)
    if model is None or not series.post or first is None:
        return None
    est = estimate(model, series.post)
    if est is None:
        return None
    tau2 = _tau2(model, first, policy)
    s = sequence(est.estimate, est.variance, tau2, policy.alpha)
    return View(name, s.estimate, s.low, s.high, s.p_value, est.days, model.days,
                model.day_sd, model.s2_estimated, math.sqrt(model.mean_v),
                model.slope if model.trend else None,
                est.var_post, est.var_base, half_width(est.var_base, tau2, policy.alpha)), model


def _placebo(series: Series, model: Model, days: int, policy: MeasurePolicy) -> str | None:
    """The comparison on the base's own history, `days` before the deploy: None when it
    shows nothing (or cannot be run), else what it showed."""
    length = min(days, len(series.pre) // 2)
    head, tail = series.pre[:-length], series.pre[-length:]
    if length < 1 or len(head) < MIN_PLACEBO_BASE:
        return None
    if model.trend and len(head) < MIN_PLACEBO_TREND:
        return None  # too few days before the pretend deploy to carry a trend from
    fake = fit(head, series.prior_s2, trend=model.trend)
    est: Estimate | None = estimate(fake, tail) if fake else None
    if fake is None or est is None:
        return None
    s = sequence(est.estimate, est.variance, _tau2(fake, tail[0].day, policy), policy.alpha)
    if not s.excludes_zero:
        return None
    scale = 100 if series.metric == "success rate" else 1
    unit = " pts" if series.metric == "success rate" else " (log)"
    return (f"the same comparison on the base version's own last {length} day(s) before the "
            f"deploy (against the {len(head)} before them) shows {s.estimate * scale:+.1f}"
            f"{unit} (always-valid interval {s.low * scale:+.1f} … {s.high * scale:+.1f}): "
            "the base moved by itself as much as a change would")


def _rail(series: Series, policy: MeasurePolicy,
          first: date | None) -> tuple[Guardrail, Model] | None:
    made = _view(series.metric, series, policy, first)
    if made is None:
        return None
    v, model = made
    if series.metric == "quality":
        floor = math.log1p(-min(policy.quality_margin, 0.999))
        shortfall = "ok" if v.low >= floor else "worse" if v.high < floor else "unclear"
        return Guardrail("quality", math.exp(v.estimate), math.exp(v.low), math.exp(v.high),
                         policy.quality_margin, shortfall, higher_is_better=True), model
    margin = policy.latency_margin if series.metric == "latency" else policy.cost_margin
    return Guardrail(series.metric, math.exp(v.estimate), math.exp(v.low), math.exp(v.high),
                     margin, verdict(v.low, v.high, margin)), model


# rule: (guardrail metric, word, where its interval must lie)
GAINS = {
    "cheaper": ("cost", "cheaper", "below"),
    "faster": ("latency", "faster", "below"),
    "better_quality": ("quality", "better", "above"),
}


def _claim(v: View, rails: Sequence[Guardrail], rule: str,
           policy: MeasurePolicy) -> tuple[str, str] | None:
    """(decision, reason) the rule makes of one view and the guardrails, or None."""
    worse = [g for g in rails if g.verdict == "worse"]
    mde = policy.min_detectable_effect
    threshold = policy.rollback_threshold * 100
    non_inferior = f"the success rate not worse than {threshold:.0f} points (non-inferiority)"
    if not worse and v.low > -policy.rollback_threshold:
        if rule in GAINS:
            metric, word, side = GAINS[rule]
            shown = [g for g in rails if g.metric.startswith(metric)
                     and (g.high < 1.0 if side == "below" else g.low > 1.0)]
            if shown:
                return "success", (f"{word} ({metric} ×{shown[0].ratio:.3f}, interval {side} "
                                   f"1) and {non_inferior}")
        elif rule == "not_worse":
            return "success", (f"success rate shown not worse than {threshold:.0f} points "
                               "(non-inferiority)")
    if v.low > 0 and not worse:
        return "success", "success rate improved (the always-valid interval excludes 0)"
    if v.high < 0:
        return "regression", "success rate dropped (the always-valid interval excludes 0)"
    if worse:
        names = " and ".join(f"{g.metric} ×{g.ratio:.2f}" for g in worse)
        return "regression", f"guardrail breached: {names} beyond the allowed margin"
    if v.low > -mde and v.high < mde:
        gain = GAINS.get(rule)
        if gain is not None:
            # ... and no gain worth the margin on the rule's own metric either.
            rail = next((g for g in rails if g.metric.startswith(gain[0])), None)
            if rail is None or not 1 / (1 + rail.margin) < rail.low <= rail.high < 1 + \
                    rail.margin:
                return None
        return "no_effect", (f"the interval lies within ±{mde * 100:.0f} points "
                             "(measure.min_detectable_effect): no effect worth having")
    return None


def _days_needed(model: Model, first: date, target: float, policy: MeasurePolicy,
                 now: int) -> int | None:
    """Calendar days until the interval's half-width is likely to reach `target` (`now`:
    days used so far); None: not within `measure.max_days`, or never (the base bounds it)."""
    tau2 = _tau2(model, first, policy)
    per_week = len(model.weekdays)  # only days on the base's weekdays count
    for days in range(max(now + 1, 1), policy.max_days + 1):
        if half_width(planned(model, first, days).variance, tau2, policy.alpha) <= target:
            return math.ceil((days - now) * 7 / per_week)
    return None


def _result(ev: Evidence, primary: View | None, decision: str, reason: str,
            rails: Sequence[Guardrail], views: Sequence[View], more_days: int | None,
            per_day: float, caution: str | None = None) -> Comparison:
    more = math.ceil(more_days * per_day) if more_days else 0
    if decision == "insufficient_data":
        more = max(more, 1)
    return Comparison(
        base=ev.base, new=ev.new,
        delta=primary.estimate if primary else (ev.new.rate - ev.base.rate
                                                if ev.base.executions and ev.new.executions
                                                else 0.0),
        ci_low=primary.low if primary else 0.0, ci_high=primary.high if primary else 0.0,
        p_value=primary.p_value if primary else None,
        decision=decision, more_executions_needed=more if decision not in FINAL else 0,
        reason=reason, guardrails=tuple(rails), drift=caution, views=tuple(views),
        incidents=ev.incidents, segments=ev.segments,
        more_days=more_days if decision not in FINAL else None,
    )


def decide(ev: Evidence, expected: float, policy: MeasurePolicy,
           judged_by: str = "improvement") -> Comparison:
    """The decision, by the rule the proposal pre-registered (`stats.JUDGED_BY`)."""
    if judged_by not in JUDGED_BY:
        raise ValueError(f"unknown rule {judged_by!r}")
    per_day = ev.new.executions / max(len(ev.success.post), 1)
    incidents = _incident_note(ev.incidents)
    notes = list(ev.notes)
    now = ev.calendar_days
    # Failures matter for the base only: a fix that leaves no failures at all must still
    # be decidable (the day-level variance comes from the base).
    enough_new = ev.new.executions >= policy.min_executions_per_arm
    made = _view("alone", ev.success, policy, ev.first_post_day)
    if made is None or not enough_new:
        if not ev.success.pre:
            why = "no complete day of the base version before the deploy day"
        elif not ev.success.post:
            why = "no complete day of the new version since the deploy day yet"
        elif made is None:
            why = ("the new version's days so far fall on weekdays the base's short history "
                   "does not have (days are compared with the same weekday)")
        else:
            why = (f"{ev.new.executions} executions of the new version so far; a decision "
                   f"needs {policy.min_executions_per_arm}")
        over = ev.stopped or (f"{now} days since the deploy (measure.max_days)"
                              if now >= policy.max_days else None)
        if over is not None or (not ev.success.pre and enough_new):
            return _result(ev, made[0] if made else None, "inconclusive",
                           f"inconclusive — not enough traffic to compare: {why}"
                           + (f"; {over}" if over else "") + incidents,
                           (), [made[0]] if made else [], None, per_day, _join(notes))
        need = max(policy.min_executions_per_arm - ev.new.executions, 1)
        days = math.ceil(need / per_day) if ev.new.executions and per_day > 0 else None
        return _result(ev, made[0] if made else None, "insufficient_data", why + incidents,
                       (), [made[0]] if made else [], days, per_day, _join(notes))
    alone, model = made
    views = [alone]
    primary = alone
    moved = None
    if ev.peers is not None:
        # The same model as the agent's: a trend fitted to the peers alone (their mean is
        # less noisy, so it is chosen more often) would absorb the very step that moved
        # them both, and hide it.
        peer = _view("the unchanged agents themselves", ev.peers, policy, ev.first_post_day,
                     trend=model.trend)
        if peer is not None:
            views.append(peer[0])
            moved = peer[0]
    rails_made = [r for r in (_rail(s, policy, ev.first_post_day) for s in ev.guardrails)
                  if r is not None]
    rails = [g for g, _ in rails_made]
    short_base = ev.base.executions < policy.min_executions_per_arm or \
        ev.base.failures < policy.min_failures_per_arm
    claim = _claim(alone, rails, judged_by, policy)
    shock = None
    if claim is not None and moved is not None and _moved_with(moved, claim[0]):
        # Something may have moved every agent: the claim must hold against them too.
        against = _view("against the unchanged agents", _versus(ev.success, ev.peers),
                        policy, ev.first_post_day, trend=model.trend) \
            if ev.peers is not None else None
        held = _claim(against[0], rails, judged_by, policy) if against else None
        if against is not None and held is not None and held[0] == claim[0]:
            # The estimate net of what moved every agent is the one to report and act on
            # (a rollback judged on the agent alone would count the shock as its own).
            primary = against[0]
            views.insert(0, primary)
            claim = (held[0], f"{held[1]}, measured against the unchanged agents "
                     f"({', '.join(ev.controls)}), which moved {moved.estimate * 100:+.1f} pts "
                     "too")
        else:
            if against is not None:
                views.insert(1, against[0])
            shock = moved.estimate
            notes.append(
                f"the unchanged agents ({', '.join(ev.controls)}) moved "
                f"{shock * 100:+.1f} pts over the same days: something that moved every "
                "agent may be at work, and against them this one moved "
                + (f"{against[0].estimate * 100:+.1f} pts (interval "
                   f"{against[0].low * 100:+.1f} … {against[0].high * 100:+.1f})"
                   if against else "by an amount that cannot be told yet")
                + f": the {claim[0].replace('_', ' ')} does not hold against them; no "
                "decision while it lasts")
            claim = None
    caution = _join(notes)
    if claim is not None:
        unstable = [("alone", p)] if (p := _placebo(ev.success, model, alone.days,
                                                     policy)) is not None else []
        unstable += [(g.metric, p) for (g, m), s in zip(rails_made, _rail_series(ev, rails),
                                                         strict=True)
                     if _drives(g, claim[0], judged_by)
                     and (p := _placebo(s, m, alone.days, policy)) is not None]
        if unstable:
            what, text = unstable[0]
            return _result(ev, primary, "inconclusive",
                           f"inconclusive — base unstable ({what}): {text}; the "
                           f"{claim[0].replace('_', ' ')} it would have recorded "
                           f"({primary.estimate * 100:+.1f} pts) is not trusted" + incidents,
                           rails, views, None, per_day, caution)
        return _result(ev, primary, claim[0], claim[1] + incidents, rails, views, None,
                       per_day, caution)
    # No claim yet: measure on, or stop with the reason when waiting cannot help.
    base_bound = alone.base_half_width
    # The base history caps how narrow the interval can get. Once the new version's days
    # are a third of the doubt or less, more of them narrow it by a fifth at most.
    if (base_bound > policy.min_detectable_effect or short_base) and (
            primary.var_post <= primary.var_base / 2 or now >= policy.max_days
            or ev.stopped):
        seen = ("the unchanged agents moved too (see the caution)" if shock is not None
                else "no change that large was seen")
        bound = (f"bound the interval to ±{base_bound * 100:.1f} pts however long the new "
                 f"version runs, and {seen}")
        trend = (f", its trend ({alone.trend * 100:+.2f} pts/day) carried forward,"
                 if alone.trend is not None else "")
        if short_base or alone.base_days < SHORT_HISTORY_DAYS or \
                alone.day_sd <= alone.noise_sd:
            # The base's own counts are the main doubt: more base traffic would have helped.
            why = (f"not enough base traffic: the base version's {ev.base.executions} "
                   f"executions ({ev.base.failures} failures) over {alone.base_days} day(s) "
                   f"before the deploy{trend} {bound}")
        else:
            why = (f"base unstable: the base version's day-to-day variation (sd "
                   f"{alone.day_sd * 100:.1f} pts over {alone.base_days} days, beyond the "
                   f"{alone.noise_sd * 100:.1f} its counts explain){trend} {bound}")
        return _result(ev, primary, "inconclusive", f"inconclusive — {why}" + incidents, rails,
                       views, None, per_day, caution)
    interval = (f"the interval {primary.low * 100:+.1f} … {primary.high * 100:+.1f} pts still "
                f"holds effects worth having (±{policy.min_detectable_effect * 100:.0f})")
    calendar = max(now, 1)
    if ev.incidents and now >= 7 and len({i.day for i in ev.incidents
                                          if ev.first_post_day and i.day >= ev.first_post_day}
                                         ) * 2 > calendar:
        return _result(ev, primary, "inconclusive",
                       "inconclusive — confounded by incidents: more than half of the days "
                       f"since the deploy were left out; {interval}" + incidents, rails, views,
                       None, per_day, caution)
    if ev.stopped:
        return _result(ev, primary, "inconclusive",
                       f"inconclusive — {ev.stopped} before a decision: {caution or interval}"
                       + incidents, rails, views, None, per_day, caution)
    if now >= policy.max_days:
        return _result(ev, primary, "inconclusive",
                       f"inconclusive — no decision after {now} days (measure.max_days): "
                       + (caution or interval) + incidents, rails, views, None, per_day,
                       caution)
    target = abs(expected) or policy.min_detectable_effect
    first = ev.first_post_day or date.min
    more = _days_needed(model, first, target, policy, primary.days)
    return _result(ev, primary, "keep_measuring", "no significant change yet" + incidents,
                   rails, views, more, per_day, caution)


# The unchanged agents "moved" when their estimate lies beyond this many of its standard
# errors (liberal on purpose: it guards a claim, it makes none; by chance one look in six
# for a success or regression, one in three for "no effect"). Then the claim must also hold
# against them (difference in differences). Always asking that doubles the variance when
# the agents are independent, and blocked a clear +4-point success at 400 a day; never
# asking let shared shocks through (12 % false claims at 500 a day with a shared 2-point
# step, benchmarks/decisions.py).
SHOCK_Z = 1.0


def _moved_with(moved: View, decision: str) -> bool:
    """Whether the unchanged agents moved in a way that could explain `decision`: up for a
    success (whatever the agent's own estimate: a non-inferiority success may come with a
    small drop), down for a regression, either way for "no effect" (the agent may have
    cancelled a shock every agent took)."""
    se = math.sqrt(moved.var_post + moved.var_base)
    if se <= 0 or abs(moved.estimate) <= SHOCK_Z * se:
        return False
    if decision == "success":
        return moved.estimate > 0
    if decision == "regression":
        return moved.estimate < 0
    return True


def _versus(own: Series, peers: Series) -> Series:
    """The agent minus the unchanged agents, day by day (days both have)."""
    def diff(a: tuple[Day, ...], b: tuple[Day, ...]) -> tuple[Day, ...]:
        other = {d.day: d for d in b}
        return tuple(Day(d.day, d.y - other[d.day].y, d.v + other[d.day].v, d.n)
                     for d in a if d.day in other)
    return Series(own.metric, diff(own.pre, peers.pre), diff(own.post, peers.post),
                  own.prior_s2 + peers.prior_s2)


def _join(notes: Sequence[str]) -> str | None:
    return "; ".join(notes) if notes else None


def _rail_series(ev: Evidence, rails: Sequence[Guardrail]) -> list[Series]:
    by_metric = {s.metric: s for s in ev.guardrails}
    return [by_metric[g.metric] for g in rails]


def _drives(g: Guardrail, decision: str, rule: str) -> bool:
    """Whether this guardrail's interval is what the decision rests on."""
    if decision == "regression":
        return g.verdict == "worse"
    gain = GAINS.get(rule)
    return decision == "success" and gain is not None and g.metric.startswith(gain[0])


def _incident_note(incidents: Sequence[Incident]) -> str:
    if not incidents:
        return ""
    days = sorted({i.day for i in incidents})
    shown = ", ".join(d.strftime("%m-%d") for d in days[:5])
    more = f" and {len(days) - 5} more" if len(days) > 5 else ""
    return f"; incident day(s) {shown}{more} left out (failures from outside the prompt)"
