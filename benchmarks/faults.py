"""Every kill point of the README's loop: promptbot killed before and after each git call.

For each step of the walkthrough (run, pr merge, the measuring run, rollback, merging the
rollback, the run after the revert) promptbot runs as a real process from the state the
uninterrupted loop had before that step, is killed (SIGKILL to its whole process group,
by default) before or after its k-th git call, and is run again. The repository must
then be exactly as after the uninterrupted step: every ref, the forge's records, the
person's index and work tree, no temporary file left (tests/faultkit.py `state`).

    .venv/bin/python benchmarks/faults.py [--jobs 2] [--signal KILL|INT|TERM]
                                          [--only "pr merge"] [--stride 1] [--full]
                                          [--disk PAGES]

Prints the violations and "N kill points, M held". With --full each git call in turn
fails as git does on a full disk instead: the command must name the full disk (or
succeed), and the repeated command must again end exactly as the uninterrupted one. With
--disk the disk really is full (a tmpfs with 0, 1, ... pages free; needs root): the command
succeeds, or names the full disk and leaves the person's checkout as it was (a merge:
everything), and with space again it ends as the uninterrupted one.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

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
    parser.add_argument("--canary", action="store_true",
                        help="the canary variant of the loop: merged as a canary, a worse "
                        "candidate, the end-canary PR opened, merged and recorded")
    parser.add_argument("--github", action="store_true",
                        help="the loop on GitHub: --forge github against the stand-in, each "
                        "try in a fresh clone (as Actions runs it)")
    parser.add_argument("--disk", type=int, metavar="PAGES", default=0,
                        help="instead of kills: a real full disk (a tmpfs; needs root) with "
                        "0, 1, ... PAGES-1 pages of 4 KiB left free")
    args = parser.parse_args()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="promptbot-faults-") as tmp:
        where = Path(tmp)
        h = fk.Harness(where / "harness")
        if args.github:
            return _github_sweep(h, where, args, started)
        steps = fk.canary_walkthrough() if args.canary else fk.walkthrough()
        base = fk.baseline(h, steps, where, canary=args.canary)
        if args.disk:
            return _disk_sweep(h, steps, base, where, args)
        points = [(i, k, when) for i, step in enumerate(steps)
                  if step.faults and (not args.only or step.name in args.only)
                  for k in range(1, base.calls[i] + 1, args.stride)
                  for when in (("full",) if args.full else ("before", "after"))]
        for i, step in enumerate(steps):
            if step.faults and (not args.only or step.name in args.only):
                print(f"{step.name:<22} {base.calls[i]:>3} git calls")
        with ProcessPoolExecutor(args.jobs, initializer=_init,
                                 initargs=(h, steps, base, where, args.signal)) as pool:
            held = _tally(pool.map(_one, points), [s.name for s in steps])
    what = "full-disk git failures" if args.full else f"kill points (SIG{args.signal})"
    print(f"\n{len(points)} {what}, {held} held ({time.monotonic() - started:.0f} s)")
    return 0 if held == len(points) else 1


def _tally(results: Iterable[tuple[tuple[int, int, str], list[str]]],
           names: list[str]) -> int:
    """Print each violation as it comes and the count per step; how many points held."""
    held = 0
    counts: dict[str, list[int]] = {}
    for (index, k, when), problems in results:
        c = counts.setdefault(names[index], [0, 0])
        c[0] += 1
        if problems:
            unit = "write" if when == "request" else "git call"
            print(f"VIOLATION {names[index]} {when} {unit} {k}:", flush=True)
            for line in problems[:5]:
                print(f"    {line}", flush=True)
        else:
            held += 1
            c[1] += 1
    print()
    for name, (total, ok) in counts.items():
        print(f"{name:<22} {total:>4} points, {ok:>4} held")
    return held


_HUB: dict[str, object] = {}


def _hub_init(h: fk.Harness, plan: list[object], base: object, where: Path) -> None:
    import faultkit_github as fg

    world = fg.HubWorld(Path(tempfile.mkdtemp(dir=where, prefix="worker-")), h)
    shutil.copytree(base.snapshots[0] / "origin.git", world.origin)  # type: ignore[attr-defined]
    world.start()
    _HUB.update(world=world, plan=plan, base=base)


def _hub_one(point: tuple[int, int, str]) -> tuple[tuple[int, int, str], list[str]]:
    import faultkit_github as fg

    index, k, when = point
    return point, fg.kill_point(_HUB["world"], _HUB["base"], _HUB["plan"],  # type: ignore[arg-type]
                                index, k, when)


def _github_sweep(h: fk.Harness, where: Path, args: argparse.Namespace,
                  started: float) -> int:
    import faultkit_github as fg

    world = fg.HubWorld(where / "hub", h)
    world.work.mkdir()
    plan = fg.steps(where / "sim")
    base = fg.baseline(world, plan, where / "sim")
    assert world.standin is not None
    world.standin.stop()
    chosen = [i for i, hs in enumerate(plan) if not args.only or hs.step.name in args.only]
    points = [(i, k, when) for i in chosen
              for k in range(1, base.calls[i] + 1, args.stride)
              for when in ("before", "after")]
    points += [(i, k, "request") for i in chosen for k in range(1, base.writes[i] + 1)]
    for i in chosen:
        print(f"{plan[i].step.name:<22} {base.calls[i]:>3} git calls, {base.writes[i]:>3} "
              "writes to GitHub")
    with ProcessPoolExecutor(args.jobs, initializer=_hub_init,
                             initargs=(h, plan, base, where)) as pool:
        held = _tally(pool.map(_hub_one, points), [hs.step.name for hs in plan])
    every = f", every {args.stride}. git call" if args.stride > 1 else ""
    print(f"\n{len(points)} kill points on GitHub (SIGKILL before/after git calls{every}, "
          f"and after each write GitHub carried out), {held} held "
          f"({time.monotonic() - started:.0f} s)")
    return 0 if held == len(points) else 1


def _disk_sweep(h: fk.Harness, steps: list[fk.Step], base: fk.Baseline, where: Path,
                args: argparse.Namespace) -> int:
    disk = where / "disk"
    if not fk.mount_tmpfs(disk):
        print("cannot mount a tmpfs here (needs root); --disk skipped")
        return 2
    started = time.monotonic()
    total = held = 0
    try:
        for i, step in enumerate(steps):
            if not step.faults or (args.only and step.name not in args.only):
                continue
            ok = 0
            for pages in range(0, args.disk, args.stride):
                problems = fk.full_disk_point(h, base, steps, i, pages, disk)
                total += 1
                if problems:
                    print(f"VIOLATION {step.name} with {pages} pages free:")
                    for line in problems[:5]:
                        print(f"    {line}")
                else:
                    ok += 1
            held += ok
            print(f"{step.name:<22} {len(range(0, args.disk, args.stride)):>4} disk sizes, "
                  f"{ok:>4} held")
    finally:
        fk.unmount(disk)
    print(f"\n{total} full-disk points, {held} held ({time.monotonic() - started:.0f} s)")
    return 0 if held == total else 1


if __name__ == "__main__":
    sys.exit(main())
