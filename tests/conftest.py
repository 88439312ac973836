"""Shared fixtures: real git repositories built from the shipped example content."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from bot.cli import main

PROJECT = Path(__file__).resolve().parents[1]
GIT_ENV = {
    "GIT_AUTHOR_NAME": "Test Person",
    "GIT_AUTHOR_EMAIL": "person@example.com",
    "GIT_COMMITTER_NAME": "Test Person",
    "GIT_COMMITTER_EMAIL": "person@example.com",
}


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No real tokens, no global git config, no Actions context leak into tests."""
    for name in ("GITHUB_TOKEN", "GITHUB_REPOSITORY", "GITHUB_ACTIONS", "GITHUB_API_URL",
                 "ANTHROPIC_API_KEY", "PROMPTBOT_DEBUG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(tmp_path / "gitconfig-global"))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    for key, value in GIT_ENV.items():
        monkeypatch.setenv(key, value)


COLS = ["timestamp", "agent_id", "prompt_version", "execution_id", "status", "latency_ms",
        "error_type", "error_message"]


def write_csv(path: Path, rows: Sequence[Sequence[object]], cols: Sequence[str] = COLS) -> Path:
    """A metrics export as a real CSV file."""
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(cols)
        writer.writerows(rows)
    return path


def git(cwd: Path, *args: str) -> str:
    env = {**os.environ, **GIT_ENV}
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True,
                          env=env).stdout.strip()


def make_repo(path: Path) -> Path:
    """A prompts repository like a fresh clone of this project: prompts, policies, examples."""
    path.mkdir(parents=True, exist_ok=True)
    for name in ("prompts", "policies", "examples"):
        shutil.copytree(PROJECT / name, path / name)
    shutil.copy(PROJECT / ".gitignore", path / ".gitignore")
    git(path, "init", "-q", "-b", "main")
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "initial prompts")
    return path


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "prompts-repo")


class Cli:
    def __init__(self, root: Path, capsys: pytest.CaptureFixture[str]) -> None:
        self.root, self.capsys = root, capsys

    def __call__(self, *args: str) -> tuple[int, str, str]:
        self.capsys.readouterr()
        code = main(["-C", str(self.root), *args])
        captured = self.capsys.readouterr()
        return code, captured.out, captured.err

    def json(self, *args: str) -> object:
        code, out, err = self(*args)
        assert code == 0, err
        return json.loads(out)


@pytest.fixture
def cli(repo: Path, capsys: pytest.CaptureFixture[str]) -> Iterator[Cli]:
    yield Cli(repo, capsys)


def snapshot_state(root: Path) -> dict[str, str]:
    """Everything a run could change: refs, the local forge records, the work tree status."""
    forge = root / ".promptbot" / "forge.json"
    return {
        "refs": git(root, "for-each-ref", "--format=%(refname) %(objectname)"),
        "status": git(root, "status", "--porcelain"),
        "forge": forge.read_text() if forge.exists() else "",
    }
