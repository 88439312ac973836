"""`promptbot simulate`: synthetic exports that follow the versions in git history."""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from bot.core.agentfile import parse_agent
from bot.core.simulate import Departures, Options, Timeline, query
from bot.edges.git import Git, GitTree
from bot.errors import InputError, PromptbotError, UsageError
from bot.load.metrics import connect

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
        out.append(Timeline(agent_id, tuple(changes), base_rate, true_effect, per_day,
                            splits=_splits(git, base, rel.replace("agent.yaml", "rollout.yaml"))))
    return out


def _splits(git: Git, base: str, rel: str) -> tuple[tuple[datetime, str | None, float], ...]:
    """The canary splits a rollout file set over time (its share; deleted: none)."""
    out: list[tuple[datetime, str | None, float]] = []
    for sha in git.first_parent_log(f"refs/heads/{base}", rel):
        text = git.read(sha, rel)
        when = git.commit_time(sha)
        try:
            data = yaml.safe_load(text) if text is not None else None
            baseline = str(data["baseline"]["version"]) if data else None
            share = float(data["share"]) / 100 if data else 1.0
        except (yaml.YAMLError, KeyError, TypeError, ValueError):
            continue  # not a rollout file the runtime would serve either
        out.append((when, baseline, share))
    return tuple(out)


FORMATS = {"csv": "(FORMAT csv, HEADER)", "jsonl": "(FORMAT json)",
           "parquet": "(FORMAT parquet, COMPRESSION zstd)"}


def write(sql: str, out_dir: Path, formats: list[str]) -> list[tuple[Path, int]]:
    """Run the simulation query once per format straight into files (never through Python)."""
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise UsageError(f"unknown format {unknown[0]!r}", fix="use csv, jsonl or parquet")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        probe = out_dir / ".promptbot-write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise UsageError(f"cannot write to {out_dir}: {exc.strerror or exc}",
                         fix="pass --out a directory you can write to") from None
    con = connect(out_dir)
    written = []
    for fmt in formats:
        path = out_dir / f"executions.{fmt}"
        tmp = out_dir / f".executions.{fmt}.tmp"
        target = str(tmp).replace("'", "''")
        # Parquet carries types: timestamps as timestamps (a broken one becomes NULL), as a
        # warehouse export would; CSV and JSONL keep the text, broken values included.
        body = (f"SELECT * REPLACE (try_cast(timestamp AS TIMESTAMPTZ) AS timestamp) FROM ({sql})"
                if fmt == "parquet" else sql)
        row = con.execute(f"COPY ({body}) TO '{target}' {FORMATS[fmt]}").fetchone()
        os.replace(tmp, path)
        written.append((path, int(row[0]) if row else 0))
    return written


SIMULATED_MARK = ".promptbot-simulated"


def simulate(git: Git, out_dir: Path, *, days: int, seed: int, per_day: int,
             effect: float | None, effects_file: str | None, version_column: bool,
             base: str = "main", formats: tuple[str, ...] = ("csv",),
             duplicate_rate: float = 0.0, bad_rate: float = 0.0,
             drift_per_week: float = 0.0,
             quality_effect: float | None = None,
             departures: Departures | None = None) -> list[tuple[Path, int]]:
    lines = timelines(git, base, per_day, effect, _effects(effects_file))
    if not lines:
        raise UsageError(f"no agents with history on {base} to simulate",
                         fix=f"commit prompts/<agent>/agent.yaml files to {base} first")
    # The newest deploy, a canary's stage changes included: its traffic follows it.
    latest = max([when for tl in lines for when, _ in tl.changes]
                 + [when for tl in lines for when, _, _ in tl.splits])
    # Traffic `days` before the newest deploy (older versions) and `days` after it
    # (the version on main); the later half may lie in the future: it is a simulation.
    start = (latest - timedelta(days=days)).replace(minute=0, second=0)
    opts = Options(seed=seed, version_column=version_column, duplicate_rate=duplicate_rate,
                   bad_rate=bad_rate, drift_per_week=drift_per_week,
                   quality_effect=quality_effect, departures=departures or Departures())
    written = write(query(lines, start, latest + timedelta(days=days), opts, pivot=latest),
                    out_dir, list(formats))
    # Results measured on these files say so and never calibrate real estimates.
    (out_dir / SIMULATED_MARK).write_text(
        "Written by `promptbot simulate`: results measured on the exports in this directory "
        "are marked simulated and not used to calibrate estimates.\n", encoding="utf-8")
    return written
