"""Every kill point of the README's loop: promptbot killed before and after each git call.

For each step of the walkthrough (run, pr merge, the measuring run, rollback, merging the
rollback, the run after the revert) promptbot runs as a real process from the state the
uninterrupted loop had before that step, is killed (SIGKILL to its whole process group,
by default) before or after its k-th git call, and is run again. The repository must
then be exactly as after the uninterrupted step: every ref, the forge's records, the
person's index and work tree, no temporary file left (tests/faultkit.py `state`).

    .venv/bin/python benchmarks/faults.py [--jobs 2] [--signal KILL|INT|TERM]
                                          [--only "pr merge"] [--stride 1] [--full]

Prints the violations and "N kill points, M held". With --full each git call in turn
fails as git does on a full disk instead: the command must name the full disk (or
succeed), and the repeated command must again end exactly as the uninterrupted one.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import faultkit as fk

_STATE: dict[str, object] = {}


def _init(h: fk.Harness, steps: list[fk.Step], base: fk.Baseline, where: Path,
          sig: str) -> None:
    _STATE.update(h=h, steps=steps, base=base, where=where, sig=sig)


def _one(point: tuple[int, int, str]) -> tuple[tuple[int, int, str], list[str]]:
    index, k, when = point
    where = _STATE["where"]
    assert isinstance(where, Path)
    problems = fk.kill_point(_STATE["h"], _STATE["base"], _STATE["steps"],  # type: ignore[arg-type]
                             index, k, when, where / f"kp-{index}-{k}-{when}",
                             sig=str(_STATE["sig"]))
    return point, problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--signal", default="KILL", choices=["KILL", "INT", "TERM"])
    parser.add_argument("--only", action="append", help="step name (repeatable)")
    parser.add_argument("--stride", type=int, default=1, help="every n-th git call only")
    parser.add_argument("--full", action="store_true",
                        help="instead of kills: each git call in turn fails as on a full disk")
    args = parser.parse_args()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="promptbot-faults-") as tmp:
        where = Path(tmp)
        h = fk.Harness(where / "harness")
        steps = fk.walkthrough()
        base = fk.baseline(h, steps, where)
        points = [(i, k, when) for i, step in enumerate(steps)
                  if step.faults and (not args.only or step.name in args.only)
                  for k in range(1, base.calls[i] + 1, args.stride)
                  for when in (("full",) if args.full else ("before", "after"))]
        for i, step in enumerate(steps):
            if step.faults and (not args.only or step.name in args.only):
                print(f"{step.name:<22} {base.calls[i]:>3} git calls")
        held = 0
        by_step: dict[str, list[int]] = {}
        with ProcessPoolExecutor(args.jobs, initializer=_init,
                                 initargs=(h, steps, base, where, args.signal)) as pool:
            for (index, k, when), problems in pool.map(_one, points):
                counts = by_step.setdefault(steps[index].name, [0, 0])
                counts[0] += 1
                if problems:
                    print(f"VIOLATION {steps[index].name} {when} git call {k}:")
                    for line in problems[:5]:
                        print(f"    {line}")
                else:
                    held += 1
                    counts[1] += 1
    print()
    for name, (total, ok) in by_step.items():
        print(f"{name:<22} {total:>4} points, {ok:>4} held")
    what = "full-disk git failures" if args.full else f"kill points (SIG{args.signal})"
    print(f"\n{len(points)} {what}, {held} held ({time.monotonic() - started:.0f} s)")
    return 0 if held == len(points) else 1


if __name__ == "__main__":
    sys.exit(main())
