"""Regenerate examples/metrics/executions.csv, the export shipped with the repository.

Six weeks of traffic for the three example agents: an older prompt version for
the first twenty days, the version now in prompts/ after that, realistic failures,
plus the mess real exports have (a few re-sent rows, a few bad rows, an agent
that is not in this repository). Deterministic: run it after editing an example
agent so the export carries the agent's new version.

    python scripts/make_example_metrics.py
"""

from __future__ import annotations

import csv
from datetime import datetime, timedelta
from pathlib import Path

from bot.core.simulate import COLUMNS, Timeline, generate
from bot.load.repo import WorkingTree, load_repo

ROOT = Path(__file__).resolve().parents[1]
START = datetime(2026, 10, 5)
DAYS = 42
# Made-up ids of the versions these agents ran before the ones in prompts/.
OLD = {"support-triage": "5d0c7a9e21b4", "sql-writer": "a81f3c6d0e97",
       "meeting-summarizer": "c3e9b1f4a062"}
RATES = {"support-triage": (0.86, 0.90), "sql-writer": (0.84, 0.88),
         "meeting-summarizer": (0.95, 0.955)}


def main() -> None:
    state = load_repo(WorkingTree(ROOT))
    timelines = []
    for agent_id, loaded in sorted(state.agents.items()):
        old_rate, new_rate = RATES[agent_id]
        changes = ((START, OLD[agent_id]), (START + timedelta(days=20), loaded.version))
        timelines.append(Timeline(agent_id, changes, per_day=110,
                                  rates={OLD[agent_id]: old_rate, loaded.version: new_rate}))
    rows = generate(timelines, START, START + timedelta(days=DAYS), seed=2026)
    # Real exports are messy: re-sent executions, broken rows, agents from elsewhere.
    rows += [dict(rows[i]) for i in range(100, 3000, 300)]
    bad = dict(rows[5])
    rows += [
        {**bad, "execution_id": "bad-1", "timestamp": "2026-13-01 25:00"},
        {**bad, "execution_id": "bad-2", "status": "succeeded"},
        {**bad, "execution_id": "bad-3", "latency_ms": -120},
    ]
    legacy = [{**r, "agent_id": "legacy-router", "prompt_version": "7f1e0d2c9b3a",
               "execution_id": f"lr-{i}"}
              for i, r in enumerate(rows[::140])]
    rows += legacy
    rows.sort(key=lambda r: (str(r["timestamp"]), r["agent_id"], r["execution_id"]))
    out = ROOT / "examples" / "metrics" / "executions.csv"
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(COLUMNS))
        writer.writeheader()
        writer.writerows(rows)
    print(f"wrote {len(rows)} rows to {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
