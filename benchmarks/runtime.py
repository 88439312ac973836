"""The runtime loader's cost in a service (bot/runtime.py). Prints figures; asserts nothing.

Each run is a fresh Python process (what a service pays at start-up), on the shipped agents:
  import        `import bot.runtime` (PyYAML and the contract modules)
  first load    the first `load_agent` (read, parse, validate, hash agent.yaml)
  first render  the first `render` (imports Jinja2 and compiles the user template)
  render        a steady-state `render` (median of 2,000, per agent)
  cached load   `load_agent` when nothing changed (two stats)
  choose        a canary's `choose(key)` (one SHA-256)
The median over --runs processes of each figure.

Targets (issue 15): import + first load <= 50 ms, render <= 0.1 ms.

    python benchmarks/runtime.py [--runs 15]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]

PROBE = r"""
import json, sys, time
t0 = time.perf_counter()
import bot.runtime as rt
t1 = time.perf_counter()
root, agent_id, inputs = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
agent = rt.load_agent(root, agent_id)
t2 = time.perf_counter()
agent.render(**inputs)
t3 = time.perf_counter()
renders = []
for _ in range(2000):
    a = time.perf_counter(); agent.render(**inputs); renders.append(time.perf_counter() - a)
renders.sort()
loads = []
for _ in range(2000):
    a = time.perf_counter(); rt.load_agent(root, agent_id); loads.append(time.perf_counter() - a)
loads.sort()
chooses = []
for i in range(2000):
    a = time.perf_counter(); agent.choose(f"user-{i}"); chooses.append(time.perf_counter() - a)
chooses.sort()
print(json.dumps({"import": t1 - t0, "first load": t2 - t1, "first render": t3 - t2,
                  "render": renders[1000], "cached load": loads[1000],
                  "choose": chooses[1000], "canary": agent.rollout is not None}))
"""


def inputs_of(agent_id: str) -> dict[str, object]:
    for line in (PROJECT / "examples" / "service" / "requests.jsonl").read_text().splitlines():
        request = json.loads(line)
        if request["agent"] == agent_id:
            return dict(request["inputs"])
    raise SystemExit(f"no example request for {agent_id}")


def canary_copy(folder: Path) -> Path:
    """The example repository with a 25 % canary on support-triage."""
    import shutil

    import yaml

    sys.path.insert(0, str(PROJECT))
    from bot.core import rollout
    from bot.core.version import fields_from_yaml, version_of

    shutil.copytree(PROJECT / "prompts", folder / "prompts")
    agent = folder / "prompts" / "support-triage" / "agent.yaml"
    baseline_text = agent.read_text()
    candidate_text = baseline_text.replace("friendly, short", "friendly, at most four sentences")
    agent.write_text(candidate_text)
    document = rollout.rollout_document(
        "support-triage-canary-1", fields_from_yaml(yaml.safe_load(baseline_text)),
        version_of(fields_from_yaml(yaml.safe_load(candidate_text))), 25, [25, 50])
    (agent.parent / "rollout.yaml").write_text(yaml.safe_dump(document))
    return folder


def measure(root: Path, agent_id: str, runs: int) -> dict[str, float]:
    samples: dict[str, list[float]] = {}
    for _ in range(runs):
        out = subprocess.run([sys.executable, "-c", PROBE, str(root), agent_id,
                              json.dumps(inputs_of(agent_id))], cwd=PROJECT, check=True,
                             capture_output=True, text=True).stdout
        for name, value in json.loads(out).items():
            if name != "canary":
                samples.setdefault(name, []).append(float(value))
    return {name: statistics.median(values) for name, values in samples.items()}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        rows = [(agent_id, "", measure(PROJECT, agent_id, args.runs))
                for agent_id in ("support-triage", "sql-writer")]
        rows.append(("support-triage", "canary 25 %",
                     measure(canary_copy(Path(tmp)), "support-triage", args.runs)))
    print(f"runtime loader, median of {args.runs} fresh processes each "
          f"(Python {sys.version.split()[0]})")
    print(f"{'agent':<16}{'':<12}{'import':>8}{'1st load':>9}{'imp+load':>9}"
          f"{'1st rend':>9}{'render':>9}{'cached':>8}{'choose':>8}")
    for agent_id, note, m in rows:
        print(f"{agent_id:<16}{note:<12}{m['import'] * 1e3:>6.1f}ms{m['first load'] * 1e3:>7.2f}ms"
              f"{(m['import'] + m['first load']) * 1e3:>7.1f}ms{m['first render'] * 1e3:>7.1f}ms"
              f"{m['render'] * 1e6:>7.1f}us{m['cached load'] * 1e6:>6.1f}us"
              f"{m['choose'] * 1e6:>6.1f}us")
    worst_start = max(m["import"] + m["first load"] for _, _, m in rows)
    worst_render = max(m["render"] for _, _, m in rows)
    print(f"import + first load: {worst_start * 1e3:.1f} ms (target <= 50 ms: "
          f"{'met' if worst_start <= 0.050 else 'NOT met'}); render: {worst_render * 1e3:.3f} ms "
          f"(target <= 0.1 ms: {'met' if worst_render <= 0.0001 else 'NOT met'})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
