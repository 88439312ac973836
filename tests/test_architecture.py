"""The functional core imports no I/O library (SPEC §14)."""

from __future__ import annotations

import ast
from pathlib import Path

CORE = Path(__file__).resolve().parents[1] / "bot" / "core"
FORBIDDEN = {
    "os", "io", "pathlib", "shutil", "subprocess", "socket", "tempfile", "glob", "fcntl",
    "http", "urllib", "requests", "httpx", "sqlite3", "time",
    "git", "github", "anthropic", "duckdb", "tiktoken",
    "bot.load", "bot.edges", "bot.app", "bot.cli",
}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def _forbidden(name: str) -> bool:
    return any(name == f or name.startswith(f + ".") for f in FORBIDDEN)


def test_core_modules_import_no_io_library() -> None:
    files = sorted(CORE.glob("*.py"))
    assert len(files) > 10
    offenders = {
        f"{path.name}: {name}" for path in files for name in _imports(path) if _forbidden(name)
    }
    assert offenders == set()


def test_the_walker_catches_an_offender(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import duckdb\nfrom os import path\nfrom bot.edges.git import Git\n")
    assert {n for n in _imports(bad) if _forbidden(n)} == {"duckdb", "os", "bot.edges.git"}
