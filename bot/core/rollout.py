"""Which variant of a canary rollout serves a request: a pure function of the request key.

The same key always gets the same variant within a rollout, and raising the share only
moves keys from baseline to candidate, never back: a key's bucket does not depend on the
share, and the candidate serves buckets below it. The rollout id salts the hash, so two
rollouts (or two agents) split the same keys independently.

Part of the file contract a runtime in any language follows (docs/RUNTIME.md, test
vectors in docs/runtime-vectors.json):

    bucket = first 8 bytes of SHA-256(rollout id + "\\n" + request key), as a big-endian
             unsigned integer, modulo 10,000
    candidate  if  bucket < round(share * 100)    (share in percent, 0.01 % steps)
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any, Literal, NamedTuple

from bot.core.ids import is_safe_id
from bot.core.version import FieldError, fields_from_yaml, version_of

BUCKETS = 10_000
Variant = Literal["baseline", "candidate"]


def bucket(rollout_id: str, request_key: str) -> int:
    digest = hashlib.sha256(f"{rollout_id}\n{request_key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % BUCKETS


def threshold(share_percent: float) -> int:
    """Buckets served the candidate at this share (0 to 10,000)."""
    return max(0, min(BUCKETS, round(share_percent * BUCKETS / 100)))


def variant(rollout_id: str, request_key: str, share_percent: float) -> Variant:
    if bucket(rollout_id, request_key) < threshold(share_percent):
        return "candidate"
    return "baseline"


def rollout_document(rollout_id: str, baseline: Mapping[str, Any], candidate_version: str,
                     share_percent: float, stages: Sequence[float] = ()) -> dict[str, Any]:
    """The content of `prompts/<agent>/rollout.yaml` for a canary: the baseline's canonical
    fields (bot/core/version.py) with their version, so the runtime serves the baseline
    without git, and the version of the candidate, which agent.yaml holds meanwhile."""
    return {"rollout": rollout_id, "candidate": candidate_version, "share": share_percent,
            "stages": list(stages),
            "baseline": {"version": version_of(baseline), **baseline}}


class RolloutPlan(NamedTuple):
    """A validated `rollout.yaml`."""

    rollout_id: str
    candidate: str
    share: float
    stages: tuple[float, ...]
    baseline: dict[str, Any]  # canonical fields (bot/core/version.py)
    baseline_version: str


def _share(value: Any, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise FieldError(field, "must be a number of percent (e.g. 5)")
    share = float(value)
    # Two decimals at most: the bucket threshold is then the same in every language.
    if not 0.01 <= share <= 100 or abs(share * 100 - round(share * 100)) > 1e-6:
        raise FieldError(field, f"{value!r} must be above 0 and at most 100, with at most "
                                "two decimals")
    return share


def parse_rollout(data: Any, candidate_version: str) -> RolloutPlan:
    """Validate a parsed `rollout.yaml` against the version agent.yaml has now.
    Raises FieldError naming the field and the fix."""
    if not isinstance(data, Mapping):
        raise FieldError("rollout.yaml", "must be a mapping (rollout, candidate, share, "
                                         "stages, baseline)")
    unknown = sorted(set(data) - {"rollout", "candidate", "share", "stages", "baseline"})
    if unknown:
        raise FieldError(str(unknown[0]), "unknown key (allowed: rollout, candidate, share, "
                                          "stages, baseline)")
    rollout_id = data.get("rollout")
    if not isinstance(rollout_id, str) or not is_safe_id(rollout_id):
        raise FieldError("rollout", "must be the canary's id (lowercase letters, digits, -)")
    for key, value in (("candidate", data.get("candidate")),
                       ("baseline.version", (data.get("baseline") or {}).get("version")
                        if isinstance(data.get("baseline"), Mapping) else None)):
        if value is not None and not isinstance(value, str):
            # An all-digit hash written unquoted reads as a number: never equal to a version.
            raise FieldError(key, f"{value!r} must be text: quote it (\"{value}\")")
    if data.get("candidate") != candidate_version:
        raise FieldError("candidate", f"{data.get('candidate')!r} is not the version of "
                         f"agent.yaml ({candidate_version}): agent.yaml changed during the "
                         "canary; end the canary or restore agent.yaml")
    base = data.get("baseline")
    if not isinstance(base, Mapping):
        raise FieldError("baseline", "must hold the baseline's version and prompt fields")
    try:
        fields = fields_from_yaml({k: v for k, v in base.items() if k != "version"})
    except FieldError as exc:
        raise FieldError(f"baseline.{exc.path}", exc.message) from None
    if version_of(fields) != base.get("version"):
        raise FieldError("baseline.version", f"{base.get('version')!r} does not match the "
                         f"baseline's fields (which hash to {version_of(fields)}): the file "
                         "was edited by hand; restore it from the canary PR")
    stages = data.get("stages", [])
    if not isinstance(stages, list):
        raise FieldError("stages", "must be a list of percents, e.g. [5, 25, 50]")
    return RolloutPlan(rollout_id, candidate_version, _share(data.get("share"), "share"),
                       tuple(_share(s, f"stages[{i}]") for i, s in enumerate(stages)),
                       fields, version_of(fields))
