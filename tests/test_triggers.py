"""Triggers in the analysis: degradation, repeated errors, SLA; `analyze` exits 1 on them."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import Cli, write_csv

from bot.core.model import Policy, TriggerPolicy
from bot.core.report import analysis
from bot.load.metrics import ingest


def _export(path: Path, last_day_success: float, last_day_latency: int = 1000) -> Path:
    rows = []
    for day in range(1, 9):
        rate = last_day_success if day == 8 else 0.95
        latency = last_day_latency if day == 8 else 1000
        for i in range(400):
            ok = i < rate * 400
            rows.append((f"2026-11-{day:02d}T{i % 24:02d}:{i % 60:02d}:00Z", "sql-writer", "v1",
                         f"d{day}-{i}", "success" if ok else "error", latency,
                         "" if ok else "BinderException",
                         "" if ok else f'Referenced column "c{i}" not found'))
    return write_csv(path, rows)


def test_quiet_data_fires_nothing(tmp_path: Path) -> None:
    snap = ingest([str(_export(tmp_path / "m.csv", 0.95))], window_days=30)
    data = analysis(snap, {"sql-writer": "v1"})
    assert data["triggers"] == []


def test_degradation_and_repeated_errors(tmp_path: Path) -> None:
    snap = ingest([str(_export(tmp_path / "m.csv", 0.70, last_day_latency=2500))],
                  window_days=30)
    data = analysis(snap, {"sql-writer": "v1"})
    kinds = sorted(t["kind"] for t in data["triggers"])
    assert kinds == ["degradation", "degradation", "repeated_errors"]
    messages = " ".join(t["message"] for t in data["triggers"])
    assert "down 25.0 pts" in messages and "p95 latency" in messages
    assert "120 × [BinderException]" in messages
    assert data["agents"]["sql-writer"]["health"] == "needs attention"


def test_sla_is_off_by_default_and_fires_when_set(tmp_path: Path) -> None:
    snap = ingest([str(_export(tmp_path / "m.csv", 0.95))], window_days=30)
    policy = Policy(triggers=TriggerPolicy(sla_success_rate=0.97))
    data = analysis(snap, {"sql-writer": "v1"}, policy)
    assert [t["kind"] for t in data["triggers"]] == ["sla"]


def test_analyze_exits_1_when_a_trigger_fires(cli: Cli, tmp_path: Path) -> None:
    bad = _export(tmp_path / "bad.csv", 0.70)
    code, out, _ = cli("analyze", "--metrics", str(bad), "--json")
    assert code == 1
    assert json.loads(out)["triggers"]
    code, _, _ = cli("analyze", "--metrics", str(_export(tmp_path / "ok.csv", 0.95)))
    assert code == 0
