"""Decision quality by simulation: the bot's always-valid rule beside naive ones.

Every simulated experiment is a deploy measured once a day: each day both arms (the
new version since the deploy, and the same length of base traffic before it) grow
by `per_day` executions. The bot's rule is `bot.core.stats.compare` exactly as a run
calls it; "seeds" is the rule of the source documents (decide once the arms hold
200 executions and the success rates differ by more than 2 points); "daily z" is a
fixed-horizon two-proportion test at 5 % repeated every day.

    python benchmarks/decisions.py [--sims 2000] [--seed 1]

Prints figures; asserts nothing. Targets (SPEC §15): A/A false alarms <= 5 % with
30 daily looks; power >= 80 % for +3 points at 2,000 executions/day within 14 days;
median <= 3 days to catch a -5 point regression.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import numpy as np

from bot.core.model import MeasurePolicy
from bot.core.stats import Arm, compare, two_proportion

BASE_RATE = 0.90


def first_alarm(rule: str, a: np.ndarray, b: np.ndarray, n: np.ndarray,
                expected: float, policy: MeasurePolicy) -> tuple[int | None, str]:
    """(first day, 1-based, on which the rule decides, and which way) for one experiment."""
    for day in range(len(n)):
        base, new = Arm(int(n[day]), int(a[day])), Arm(int(n[day]), int(b[day]))
        if rule == "bot":
            decision = compare(base, new, expected, policy).decision
            if decision in ("success", "regression"):
                return day + 1, "up" if decision == "success" else "down"
        elif rule == "seeds":
            delta = new.rate - base.rate
            if base.executions + new.executions >= 200 and abs(delta) > 0.02:
                return day + 1, "up" if delta > 0 else "down"
        else:
            delta, _, _, p = two_proportion(base, new, 0.05)
            if p < 0.05:
                return day + 1, "up" if delta > 0 else "down"
    return None, ""


def experiments(rng: np.random.Generator, sims: int, days: int, per_day: int,
                effect: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    a = rng.binomial(per_day, BASE_RATE, size=(sims, days)).cumsum(axis=1)
    b = rng.binomial(per_day, BASE_RATE + effect, size=(sims, days)).cumsum(axis=1)
    n = per_day * np.arange(1, days + 1)
    return a, b, n


def scenario(rng: np.random.Generator, sims: int, days: int, per_day: int, effect: float,
             expected: float) -> dict[str, list[tuple[int | None, str]]]:
    policy = MeasurePolicy()
    a, b, n = experiments(rng, sims, days, per_day, effect)
    return {
        rule: [first_alarm(rule, a[i], b[i], n, expected, policy) for i in range(sims)]
        for rule in ("bot", "seeds", "daily z")
    }


def share(outcomes: list[tuple[int | None, str]], direction: str | None = None) -> float:
    hits = [d for d, way in outcomes if d is not None and (direction is None or way == direction)]
    return len(hits) / len(outcomes)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sims", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    start = time.perf_counter()
    print(f"base success rate {BASE_RATE:.0%}, {args.sims} simulated experiments per row\n")
    print("A/A: no true effect, checked daily for 30 days -> share of experiments that ever "
          "decide")
    print(f"  {'executions/day':<16}{'bot':>8}{'seeds':>8}{'daily z':>9}")
    for per_day in (50, 500, 2000):
        res = scenario(rng, args.sims, 30, per_day, 0.0, 0.03)
        print(f"  {per_day:<16}{share(res['bot']):>8.1%}{share(res['seeds']):>8.1%}"
              f"{share(res['daily z']):>9.1%}")
    print("\npower: true +3 points at 2,000 executions/day -> share that calls it a success")
    res = scenario(rng, max(args.sims // 4, 200), 14, 2000, 0.03, 0.03)
    days = [d for d, way in res["bot"] if d is not None and way == "up"]
    print(f"  within 14 days: bot {share(res['bot'], 'up'):.1%} "
          f"(median day {statistics.median(days) if days else math.nan}), "
          f"seeds {share(res['seeds'], 'up'):.1%}, daily z {share(res['daily z'], 'up'):.1%}")
    print("\nregression: true -5 points -> days until the rule calls it")
    for per_day in (200, 2000):
        res = scenario(rng, max(args.sims // 4, 200), 30, per_day, -0.05, 0.03)
        caught = [d for d, way in res["bot"] if d is not None and way == "down"]
        wrong = share(res["bot"], "up")
        print(f"  {per_day:>5}/day: bot caught {len(caught) / len(res['bot']):.1%}, "
              f"median {statistics.median(caught) if caught else math.nan} days, "
              f"wrong way {wrong:.1%}; seeds caught {share(res['seeds'], 'down'):.1%} "
              f"(wrong way {share(res['seeds'], 'up'):.1%})")
    print(f"\n({time.perf_counter() - start:.1f} s)")


if __name__ == "__main__":
    main()
