"""Shared fixtures: real git repositories built from the shipped example content."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from standin.github_server import GitHubStandIn

from bot.app import Context
from bot.cli import main
from bot.core.markers import parse as parse_marker
from bot.edges.git import Git
from bot.edges.github_forge import GitHubForge
from bot.edges.tokens import count_tokens

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


# ---------------------------------------------------------------- GitHub: stand-in + origin


@pytest.fixture
def origin(tmp_path: Path) -> Path:
    """A bare repository playing GitHub's copy of the prompts repository."""
    bare = tmp_path / "origin.git"
    git(tmp_path, "init", "--bare", "-q", "-b", "main", str(bare))
    return bare


@pytest.fixture
def clone(tmp_path: Path, origin: Path) -> Path:
    """The Actions checkout: the example repository, pushed to `origin`."""
    work = make_repo(tmp_path / "work")
    git(work, "remote", "add", "origin", str(origin))
    git(work, "push", "-q", "origin", "main")
    return work


@pytest.fixture
def standin(origin: Path) -> Iterator[GitHubStandIn]:
    """The GitHub stand-in over `origin`; every request and answer checked against the
    OpenAPI description. `reviewer` may write and `lead` administers the repository."""
    with GitHubStandIn(bare_repo=origin) as server:
        server.set_permission("reviewer", "write")
        server.set_permission("lead", "admin")
        yield server
        assert server.validation_errors == []


def github_context(clone: Path, standin: GitHubStandIn, eval_live: Any = None,
                   **forge: Any) -> Context:
    """A run wired to the stand-in through the real PyGithub forge (no politeness delays)."""
    g = Git(clone)
    hub = GitHubForge(g, token="test-token", repository="acme/prompts",
                      base_url=standin.base_url, bot_login=standin.actor, fast=True, **forge)
    return Context(root=clone, git=g, forge=hub, count_tokens=count_tokens, eval_live=eval_live)


def proposal_prs(standin: GitHubStandIn) -> dict[str, dict[str, Any]]:
    """The bot's proposal PRs on the stand-in, the first one per agent."""
    out: dict[str, dict[str, Any]] = {}
    for pr in standin.pulls():
        marker = parse_marker(str(pr.get("body") or "")) or {}
        author = pr["user"]["login"] if isinstance(pr.get("user"), dict) else None
        if marker.get("kind") == "proposal" and author == standin.actor:
            out.setdefault(marker["agent"], pr)
    return out


def pull_count(standin: GitHubStandIn) -> int:
    """Every pull request on the stand-in, duplicates included."""
    return len(standin.pulls())


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


@contextmanager
def read_only(path: Path) -> Iterator[None]:
    """`path` on a read-only bind mount: a real EROFS, for root too (chmod does not stop
    root)."""
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        mode = path.stat().st_mode
        path.chmod(0o555)
        try:
            yield
        finally:
            path.chmod(mode)
        return
    ok = subprocess.run(["mount", "--bind", str(path), str(path)], capture_output=True)
    if ok.returncode != 0:
        pytest.skip("needs a bind mount (root, as in CI's container) or a non-root user")
    try:
        subprocess.run(["mount", "-o", "remount,ro,bind", str(path)], check=True,
                       capture_output=True)
        yield
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)
