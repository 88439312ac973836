"""Calibration: the repo's own history of predicted vs measured effects corrects estimates.

Per proposal type, the ratio of measured to expected success-rate change over past
completed (or rolled back) proposals, shrunk toward 1 with few points:
factor = 1 + n / (n + SHRINK) * (ratio - 1), kept within [0.25, 2]. With no history
the factor is 1 and the estimate is the prior alone.
"""

from __future__ import annotations

from dataclasses import dataclass

SHRINK = 3.0


@dataclass(frozen=True)
class Outcome:
    proposal_type: str
    expected: float
    measured: float


@dataclass(frozen=True)
class Calibration:
    n: int
    factor: float
    borrowed: str = ""  # the type whose history stands in for a type without one

    def note(self) -> str:
        if self.n == 0:
            return "not yet calibrated: no measured proposals of this type in this repository"
        of = f"of type {self.borrowed} (none of this type yet)" if self.borrowed else \
            "of this type"
        return (f"calibrated on {self.n} past proposal(s) {of}: measured/expected "
                f"×{self.factor:.2f} after shrinkage")


def calibrate(history: list[Outcome], proposal_type: str) -> Calibration:
    points = [o for o in history if o.proposal_type == proposal_type and o.expected > 0]
    if not points:
        return Calibration(0, 1.0)
    ratio = sum(o.measured for o in points) / sum(o.expected for o in points)
    n = len(points)
    factor = 1 + n / (n + SHRINK) * (ratio - 1)
    return Calibration(n, min(max(factor, 0.25), 2.0))


def calibrate_or_borrow(history: list[Outcome], proposal_type: str,
                        nearest: str) -> Calibration:
    """The type's own calibration; without history of its own, that of `nearest` (a worked
    example for a failure mode is still a fix of that failure mode)."""
    own = calibrate(history, proposal_type)
    if own.n or nearest == proposal_type:
        return own
    other = calibrate(history, nearest)
    return Calibration(other.n, other.factor, nearest) if other.n else own
