"""`promptbot simulate`: synthetic exports that follow the versions in git history."""

from __future__ import annotations

import csv
import os
from datetime import timedelta
from pathlib import Path
from typing import Any

import yaml

from bot.core.agentfile import parse_agent
from bot.core.simulate import COLUMNS, Timeline, generate
from bot.edges.git import Git, GitTree
from bot.errors import InputError, PromptbotError, UsageError

DEFAULT_EFFECT = 0.04


def _effects(path: str | None) -> dict[str, Any]:
    if path is None:
        return {}
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise InputError(f"cannot read effects file {path}: {str(exc)[:200]}",
                         fix="pass a YAML file like `agents: {support-triage: {effect: 0.04}}`"
                         ) from None
    agents = data.get("agents", {}) if isinstance(data, dict) else None
    if not isinstance(agents, dict):
        raise InputError(f"{path}: 'agents' must be a mapping",
                         fix="write `agents: {AGENT: {base_success_rate: 0.9, effect: 0.04}}`")
    return agents


def timelines(git: Git, base: str, per_day: int, effect: float | None,
              effects: dict[str, Any]) -> list[Timeline]:
    out = []
    tree = GitTree(git, f"refs/heads/{base}")
    for rel in tree.agent_files():
        changes = []
        for sha in git.first_parent_log(f"refs/heads/{base}", rel):
            text = git.read(sha, rel)
            if text is None:
                continue
            try:
                version = parse_agent(text, rel).version
            except PromptbotError:
                continue
            changes.append((git.commit_time(sha), version))
        if not changes:
            continue
        agent_id = Path(rel).parent.name
        conf = effects.get(agent_id, {}) or {}
        try:
            base_rate = float(conf.get("base_success_rate", 0.9))
            true_effect = float(conf.get("effect", effect if effect is not None
                                         else DEFAULT_EFFECT))
        except (TypeError, ValueError):
            raise InputError(f"effects for {agent_id} must be numbers",
                             fix="e.g. {base_success_rate: 0.9, effect: 0.04}") from None
        out.append(Timeline(agent_id, tuple(changes), base_rate, true_effect, per_day))
    return out


def simulate(git: Git, out_dir: Path, *, days: int, seed: int, per_day: int,
             effect: float | None, effects_file: str | None,
             version_column: bool, base: str = "main") -> list[tuple[Path, int]]:
    lines = timelines(git, base, per_day, effect, _effects(effects_file))
    if not lines:
        raise UsageError("no agents with history on main to simulate",
                         fix=f"commit prompts/<agent>/agent.yaml files to {base} first")
    latest = max(when for tl in lines for when, _ in tl.changes)
    # Traffic `days` before the newest deploy (older versions) and `days` after it
    # (the version on main); the later half may lie in the future: it is a simulation.
    start = (latest - timedelta(days=days)).replace(minute=0, second=0)
    rows = generate(lines, start, latest + timedelta(days=days), seed, version_column)
    columns = [c for c in COLUMNS if version_column or c != "prompt_version"]
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "executions.csv"
    tmp = path.with_name(".executions.csv.tmp")
    with tmp.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)
    return [(path, len(rows))]
