"""Canary rollouts, the bot's side: which stage plan applies, the rollout file a proposal
merged as a canary adds, and the next step of a running canary.

The runtime side (which request gets which variant) is bot/core/rollout.py and
bot/runtime.py; the comparison of the two variants over the same hours is
bot/core/results.py (`concurrent`). A canary moves only through pull requests a person
merges: advance to the next stage, promote (the rollout file goes, agent.yaml already holds
the candidate), or end (agent.yaml back to the baseline, the rollout file goes).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Literal

import yaml

from bot.core.model import MeasurePolicy
from bot.core.portable import core_value
from bot.core.proposals import Proposal
from bot.core.results import CANARY_GRACE
from bot.core.rollout import RolloutPlan, rollout_document

Action = Literal["wait", "advance", "promote", "end"]

HEADER = (
    "# A canary in progress, written by promptbot (docs/RUNTIME.md). agent.yaml holds the\n"
    "# candidate; request keys below `share` percent get it, every other key the baseline\n"
    "# below. promptbot opens a PR for each stage and, at the decision, a promote PR\n"
    "# (deletes this file) or an end-canary PR (agent.yaml back to the baseline).\n"
)


def rollout_path(agent_id: str) -> str:
    return f"prompts/{agent_id}/rollout.yaml"


def stages_for(policy: MeasurePolicy, agent_id: str) -> tuple[float, ...]:
    """The agent's stage plan in percent (two decimals); empty: no canary."""
    plan = policy.canary_agents.get(agent_id, policy.canary_stages)
    return tuple(round(share * 100, 2) for share in plan)


class _Dumper(yaml.SafeDumper):
    pass


class _Value(str):
    """A string value (not a key) of the rollout file."""


def _text(dumper: yaml.SafeDumper, value: _Value) -> yaml.ScalarNode:
    # Prompts as block scalars: the PR's diff reads like the agent file. Every other value
    # double-quoted: a YAML 1.2 parser (another language's runtime) would read an unquoted
    # `1234e5678901` (a version) as a number.
    style = "|" if "\n" in value else '"'
    return dumper.represent_scalar("tag:yaml.org,2002:str", str(value), style=style)


_Dumper.add_representer(_Value, _text)


class _Key(str):
    """A mapping key that some YAML reader would not read as this text."""


def _quoted_key(dumper: yaml.SafeDumper, value: _Key) -> yaml.ScalarNode:
    return dumper.represent_scalar("tag:yaml.org,2002:str", str(value), style='"')


_Dumper.add_representer(_Key, _quoted_key)


def _key(key: Any) -> Any:
    # A tool parameter named `1e3` or `on` is text in the agent file (quoted there): keep
    # it text for YAML 1.1 and 1.2 readers alike.
    if not isinstance(key, str):
        return key
    try:
        plain = isinstance(yaml.safe_load(key), str) and isinstance(core_value(key), str)
    except yaml.YAMLError:
        plain = False
    return key if plain else _Key(key)


def _values(data: Any) -> Any:
    if isinstance(data, dict):
        return {_key(k): _values(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_values(v) for v in data]
    return _Value(data) if isinstance(data, str) else data


def rollout_text(rollout_id: str, baseline: dict[str, Any], candidate_version: str,
                 share: float, stages: tuple[float, ...]) -> str:
    document = rollout_document(rollout_id, baseline, candidate_version, _number(share),
                                [_number(s) for s in stages])
    return HEADER + yaml.dump(_values(document), Dumper=_Dumper, sort_keys=False,
                              allow_unicode=True, width=100)


def _number(share: float) -> float | int:
    return int(share) if float(share).is_integer() else share


def as_canary(p: Proposal, baseline: dict[str, Any], stages: tuple[float, ...]) -> Proposal:
    """The proposal merged as a canary: its PR also adds the rollout file at the first
    stage, and its plan and rollback say how the canary moves."""
    first = stages[0]
    plan_text = " → ".join(f"{_number(s)} %" for s in (*stages, 100))
    files = {**p.files, rollout_path(p.agent_id): rollout_text(p.id, baseline, p.new_version,
                                                               first, stages)}
    plan = (
        p.plan[0],
        f"Merged as a canary: request keys are split by `prompts/{p.agent_id}/rollout.yaml` "
        f"({plan_text}); the runtime serves {p.new_version} to {_number(first)} % of them "
        f"and {p.base_version} to the rest, and logs which one served each execution.",
        "promptbot compares the two over the same hours at each stage and opens a PR for "
        "the next stage while no harm is shown; at the decision it opens a promote PR "
        "(success) or an end-canary PR (regression or no effect).",
    )
    rollback = (f"Merge the end-canary PR promptbot opens on a regression, or run `promptbot "
                f"rollback {p.id}`: agent.yaml returns to {p.base_version} and the rollout "
                "file goes, so every request gets the baseline again.")
    return replace(p, files=files, plan=plan, rollback_plan=rollback, canary=stages)


@dataclass(frozen=True)
class Step:
    action: Action
    reason: str
    share: float | None = None  # the next stage's share (percent), for "advance"


def next_step(plan: RolloutPlan, decision: str, comparison_reason: str,
              caution: str | None, stage_since: datetime | None,
              data_through: datetime | None, policy: MeasurePolicy,
              delta: float = 0.0) -> Step:
    """What a running canary needs now, from the comparison at its current stage.

    The next stage only when the stage's own comparison ran (enough hours with both
    versions and executions on each side) and shows no harm; a split the rollout file does
    not explain holds the canary for a person, whatever the numbers say."""
    if caution is not None and decision not in ("success", "regression", "no_effect"):
        return Step("wait", f"{caution}; the canary holds until the split is explained")
    if decision == "regression":
        return Step("end", f"the candidate is worse: {comparison_reason}")
    if decision == "no_effect":
        return Step("end", "no measurable effect: the baseline stays (promote it by hand "
                    "if the change is wanted anyway)")
    if decision == "success":
        return Step("promote", f"the candidate is better: {comparison_reason}")
    if decision == "inconclusive":
        return Step("wait", f"inconclusive ({comparison_reason}): a person decides; merge "
                    "a promote or end the canary by hand")
    later = [s for s in plan.stages if s > plan.share]
    if not later:
        return Step("wait", f"last stage ({_number(plan.share)} %): measuring until a "
                    "decision")
    if decision != "keep_measuring":
        # No comparison yet (the stage's first hours, or too few executions at this
        # share): no harm can have been shown, so there is nothing to advance on.
        return Step("wait", f"stage {_number(plan.share)} %: {comparison_reason}; a stage "
                    "advances only once its comparison runs and shows no harm (merge the "
                    "next stage by hand to go faster, or lower "
                    "measure.min_executions_per_arm)")
    if delta < -policy.rollback_threshold:
        # Not shown worse yet, but looking worse than a rollback would tolerate: more
        # traffic to it would be a bet a reviewer regrets. The stage keeps measuring.
        return Step("wait", f"stage {_number(plan.share)} %: the candidate looks "
                    f"{delta * 100:+.1f} pts worse so far (not shown yet): holding until the "
                    "comparison decides")
    if stage_since is None or data_through is None:
        return Step("wait", "the stage's start or the data's end is unknown")
    # Replicas reload after a merge: a stage's hours count as its comparison's do.
    ran = data_through - (stage_since + CANARY_GRACE)
    need = timedelta(hours=policy.canary_stage_hours)
    if ran < need:
        hours = ran.total_seconds() / 3600
        return Step("wait", f"stage {_number(plan.share)} % has {max(hours, 0):.0f} of "
                    f"{policy.canary_stage_hours} hours of data (counted from "
                    f"{CANARY_GRACE.seconds // 3600} hours after its merge)")
    return Step("advance", f"stage {_number(plan.share)} % ran {policy.canary_stage_hours} "
                "hours and its comparison shows no harm", later[0])
