"""Moving the checked-out branch (bot/edges/checkout.py) on real repositories: what the person
has is never lost, and a move killed at any git call is finished or undone by `recover`."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path

import git
import pytest

from bot.edges import checkout
from bot.errors import GitError


def sh(d: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=d, check=True, capture_output=True,
                          text=True).stdout.strip()


def make(d: Path, old_files: dict[str, str], new_files: dict[str, str],
         links_old: dict[str, str] | None = None, links_new: dict[str, str] | None = None,
         modes: dict[str, int] | None = None) -> tuple[str, str]:
    """A repository on `old` with `new` a commit the move goes to; main checked out."""
    d.mkdir()
    sh(d, "init", "-q", "-b", "main")

    def write(files: dict[str, str], links: dict[str, str] | None) -> None:
        for p in sh(d, "ls-files", "-z").split("\0"):
            if p:
                sh(d, "--literal-pathspecs", "rm", "-q", "-f", "--", p)
        for p, text in files.items():
            (d / p).parent.mkdir(parents=True, exist_ok=True)
            (d / p).write_text(text)
        for p, target in (links or {}).items():
            (d / p).parent.mkdir(parents=True, exist_ok=True)
            os.symlink(target, d / p)
        sh(d, "add", "-A")

    write(old_files, links_old)
    sh(d, "commit", "-qm", "old", "--allow-empty")
    old = sh(d, "rev-parse", "HEAD")
    sh(d, "checkout", "-q", "-b", "tmp")
    write(new_files, links_new)
    for p, mode in (modes or {}).items():
        os.chmod(d / p, mode)
    sh(d, "add", "-A")
    sh(d, "commit", "-qm", "new", "--allow-empty")
    new = sh(d, "rev-parse", "HEAD")
    sh(d, "checkout", "-q", "main")
    sh(d, "branch", "-D", "tmp")
    return old, new


def killed_move(d: Path, old: str, new: str, command: str, nth: int = 1) -> bool:
    """Move main in a child process that SIGKILLs itself just before its nth `command`
    git call; whether it was killed."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        real = checkout._git
        count = [0]

        def shim(repo: git.Repo, cmd: str, *args: str, **kw: Path | None) -> str:
            if cmd == command:
                count[0] += 1
                if count[0] == nth:
                    os.kill(os.getpid(), signal.SIGKILL)
            return real(repo, cmd, *args, **kw)

        checkout._git = shim  # type: ignore[assignment]
        try:
            checkout.move_checked_out(git.Repo(d), "main", old, new)
        except BaseException:
            os._exit(3)
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    return os.WIFSIGNALED(status)


def leftovers(d: Path) -> list[str]:
    return sorted(p for p in os.listdir(d / ".git") if "promptbot" in p or p == "index.lock")


def move(d: Path, old: str, new: str) -> None:
    checkout.move_checked_out(git.Repo(d), "main", old, new)


def test_a_refused_move_keeps_every_local_change(tmp_path: Path) -> None:
    d = tmp_path / "r"
    old, new = make(d, {"f.txt": "v1\n", "gone.txt": "g\n"},
                    {"f.txt": "v2\n", "new.txt": "bot\n"})
    (d / "f.txt").write_text("MY EDIT\n")
    (d / "gone.txt").write_text("my edit too\n")
    (d / "new.txt").write_text("my notes\n")
    status = sh(d, "status", "--porcelain")
    with pytest.raises(GitError, match="local changes are in the way"):
        move(d, old, new)
    assert (d / "f.txt").read_text() == "MY EDIT\n"
    assert (d / "gone.txt").read_text() == "my edit too\n"
    assert (d / "new.txt").read_text() == "my notes\n"
    assert sh(d, "status", "--porcelain") == status
    assert sh(d, "rev-parse", "main") == old and leftovers(d) == []


def test_an_untracked_file_where_a_new_directory_goes_refuses(tmp_path: Path) -> None:
    d = tmp_path / "r"
    old, new = make(d, {"k": "k\n"}, {"k": "k\n", "notes/x": "bot\n"})
    (d / "notes").write_text("my precious notes\n")
    with pytest.raises(GitError, match=r"untracked files would be overwritten \(notes/x\)"):
        move(d, old, new)
    assert (d / "notes").read_text() == "my precious notes\n"
    assert leftovers(d) == []


@pytest.mark.parametrize(("before", "after"), [
    ({"a": "file\n", "k": "k\n"}, {"a/b": "in dir\n", "k": "k\n"}),
    ({"a/b": "in dir\n", "k": "k\n"}, {"a": "file\n", "k": "k\n"}),
    ({"-n x.txt": "1\n", "sp ace/ü é.txt": "2\n", ":(exclude)m": "3\n", "*": "4\n"},
     {"-n x.txt": "1b\n", "[ab].txt": "5\n", "--force": "6\n"}),
])
def test_files_and_directories_trade_places_and_odd_names_move(
        tmp_path: Path, before: dict[str, str], after: dict[str, str]) -> None:
    d = tmp_path / "r"
    old, new = make(d, before, after)
    move(d, old, new)
    assert sh(d, "rev-parse", "main") == new
    assert sh(d, "status", "--porcelain", "--untracked-files=all") == ""
    assert leftovers(d) == []


def test_what_is_staged_elsewhere_stays_staged(tmp_path: Path) -> None:
    d = tmp_path / "r"
    old, new = make(d, {"a": "1\n", "b": "1\n"}, {"a": "2\n", "b": "1\n"})
    (d / "b").write_text("staged by me\n")
    sh(d, "add", "b")
    move(d, old, new)
    assert sh(d, "status", "--porcelain") == "M  b"
    assert (d / "a").read_text() == "2\n"


def _symlinks(tmp_path: Path) -> tuple[Path, str, str]:
    d = tmp_path / "r"
    old, new = make(d, {"a.txt": "x\n", "run.sh": "echo\n"}, {"a.txt": "x\n", "run.sh": "echo\n"},
                    links_old={"link": "a.txt"}, links_new={"link": "run.sh", "newlink": "a.txt"},
                    modes={"run.sh": 0o755})
    return d, old, new


@pytest.mark.parametrize(("command", "nth"), [
    ("checkout-index", 1), ("update-ref", 1), ("update-index", 2), ("ls-tree", 2)])
def test_a_kill_before_the_ref_moves_is_undone_symlinks_and_modes_too(
        tmp_path: Path, command: str, nth: int) -> None:
    d, old, new = _symlinks(tmp_path)
    assert killed_move(d, old, new, command, nth)
    checkout.recover(git.Repo(d))
    assert sh(d, "rev-parse", "main") == old
    assert sh(d, "status", "--porcelain", "--untracked-files=all") == ""
    assert leftovers(d) == []


def test_a_kill_after_the_ref_moved_is_finished(tmp_path: Path) -> None:
    d, old, new = _symlinks(tmp_path)
    real: Callable[..., None] = os.replace
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child: killed right before the index is renamed in
        def die(src: str, dst: object) -> None:
            if str(dst).endswith("/.git/index"):
                os.kill(os.getpid(), signal.SIGKILL)
            real(src, dst)

        os.replace = die  # type: ignore[assignment]
        try:
            move(d, old, new)
        finally:
            os._exit(3)
    os.waitpid(pid, 0)
    os.replace = real  # type: ignore[assignment]
    assert sh(d, "rev-parse", "main") == new
    assert (d / ".git/index.lock").exists()  # git itself would refuse to work now
    assert checkout.recover(git.Repo(d)) == f"finished moving main to {new[:10]}"
    assert sh(d, "status", "--porcelain", "--untracked-files=all") == ""
    assert leftovers(d) == []


def test_a_kill_before_the_check_touches_nothing_of_the_persons(tmp_path: Path) -> None:
    d = tmp_path / "r"
    old, new = make(d, {"m.txt": "old\n", "d.txt": "doomed\n"},
                    {"m.txt": "new line 1\nnew line 2\n", "add.txt": "added\n"})
    (d / "add.txt").write_text("")  # the person's empty file, a "beginning" of the new one
    (d / "m.txt").write_text("new line 1\n")  # the person's edit, also a beginning
    (d / "d.txt").unlink()
    before = sh(d, "status", "--porcelain")
    assert killed_move(d, old, new, "update-index", 1)
    assert checkout.recover(git.Repo(d)) is None
    assert sh(d, "status", "--porcelain") == before
    assert (d / "m.txt").read_text() == "new line 1\n"
    assert leftovers(d) == []


def test_recovery_leaves_a_branch_the_person_switched_to(tmp_path: Path) -> None:
    d = tmp_path / "r"
    old, new = make(d, {"a": "1\n"}, {"a": "2\n", "b": "new\n"})
    assert killed_move(d, old, new, "update-ref")
    (d / ".git/index.lock").unlink()  # what git tells the person to do
    sh(d, "checkout", "-q", "-f", "-b", "pr", old)
    (d / "b").write_text("the person's own b\n")
    sh(d, "add", "b")
    sh(d, "commit", "-qm", "mine")
    checkout.recover(git.Repo(d))
    assert (d / "b").read_text() == "the person's own b\n"
    assert sh(d, "status", "--porcelain") == ""
    assert leftovers(d) == []
