"""Regenerate examples/metrics/executions.csv, the export shipped with the repository.

Six weeks of traffic for the three example agents: an older prompt version for
the first twenty days, the version now in prompts/ after that, realistic failures,
plus the mess real exports have (a few re-sent rows, a few bad rows, an agent
that is not in this repository). Deterministic: run it after editing an example
agent so the export carries the agent's new version.

    python scripts/make_example_metrics.py
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

from bot.core.simulate import Options, Timeline, query
from bot.load.repo import WorkingTree, load_repo
from bot.load.simulate import write

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
    # An agent the export knows but this repository does not.
    timelines.append(Timeline("legacy-router", ((START, "7f1e0d2c9b3a"),), per_day=3,
                              rates={"7f1e0d2c9b3a": 0.93}))
    sql = query(timelines, START, START + timedelta(days=DAYS),
                Options(seed=2026, duplicate_rate=0.0008, bad_rate=0.0008))
    for path, rows in write(sql, ROOT / "examples" / "metrics", ["csv"]):
        print(f"wrote {rows} rows to {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
