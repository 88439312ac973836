"""Moving the checked-out branch so a person's index and work tree are never left half-changed.

Git's own protocol, step by step: take `.git/index.lock`, build the new index in it (a
two-tree `read-tree -m`, so whatever else the person has staged stays staged), write the
changed files, move the ref (the commit point), rename the lock over the index. Before
the first change an intent file in the git directory says what is being moved; a process
killed half-way (SIGKILL, power loss) leaves that intent, and the next promptbot command
(`recover`) undoes the work-tree writes when the ref had not moved yet, or finishes the
index when it had. Files a person changed in between are never overwritten.

Stale stat info (a touched file, a copied repository) is refreshed first, so it is not
mistaken for a local change.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import git

from bot.edges.signals import deferred_signals
from bot.errors import GitError, explain

INTENT = "promptbot-checkout.json"
WORK_INDEX = "promptbot-index"
STALE_LOCK_S = 60.0  # an index.lock without our mark is only ours when this old


@dataclass(frozen=True)
class Change:
    status: str  # A, M, D (T counts as M)
    path: str


def _git(repo: git.Repo, command: str, *args: str, index: Path | None = None) -> str:
    env = {"GIT_LITERAL_PATHSPECS": "1"}
    if index is not None:
        env["GIT_INDEX_FILE"] = str(index)
    run = getattr(repo.git, command.replace("-", "_"))
    return str(run(*args, env=env, strip_newline_in_stdout=False))


def changes(repo: git.Repo, old: str, new: str) -> list[Change]:
    out = _git(repo, "diff-tree", "-r", "--no-renames", "--name-status", "-z", old, new)
    parts = [p for p in out.split("\0") if p]
    return [Change("M" if s == "T" else s[0], p) for s, p in zip(parts[::2], parts[1::2],
                                                                     strict=True)]


def _paths(repo: git.Repo) -> tuple[Path, Path, Path]:
    gitdir = Path(repo.git_dir)
    return gitdir / "index", gitdir / "index.lock", gitdir / INTENT


def _work_index(repo: git.Repo) -> Path:
    """Where the new index is built: git rewrites an index through its own lock file (a
    new inode), so the held `index.lock` itself stays empty and recognisable as ours."""
    return Path(repo.git_dir) / WORK_INDEX


def _write_json(path: Path, data: dict[str, object]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_text(json.dumps(data, sort_keys=True), encoding="utf-8")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _take_lock(repo: git.Repo) -> int:
    """Hold `.git/index.lock` (so no other git writes the index meanwhile) and start the
    work index as a copy of the person's; the lock's inode, to recognise it later."""
    index, lock, _ = _paths(repo)
    work = _work_index(repo)
    try:
        fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
    except FileExistsError:
        raise GitError(
            "another git process is using this repository (.git/index.lock exists)",
            fix="wait for it to finish and run the command again; if no git command is "
            "running, remove .git/index.lock",
        ) from None
    try:
        ino = os.fstat(fd).st_ino
        os.close(fd)
        if index.exists():
            shutil.copyfile(index, work)
        else:
            work.unlink(missing_ok=True)
        return ino
    except BaseException:
        lock.unlink(missing_ok=True)
        raise


def _refuse(what: str, paths: list[str], branch: str) -> GitError:
    shown = ", ".join(paths[:5]) + (f" and {len(paths) - 5} more" if len(paths) > 5 else "")
    return GitError(
        f"cannot update the checked-out branch {branch}: {what} ({shown})",
        fix="commit or stash those changes and run the command again",
    )


def _check_clean(repo: git.Repo, work: Path, old: str, new: str, todo: list[Change],
                 branch: str) -> None:
    """The files the move changes are as `old` has them, in the index and on disk."""
    paths = [c.path for c in todo]
    if not paths:
        return
    # Refresh stat info first: a touched or copied file is not a change.
    _git(repo, "update-index", "-q", "--refresh", index=work)
    staged = [p for p in _git(repo, "diff-index", "--cached", "--name-only", "-z", old, "--",
                              *paths, index=work).split("\0") if p]
    if staged:
        raise _refuse("staged changes are in the way", staged, branch)
    tracked = [c.path for c in todo if c.status != "A"]
    edited = [p for p in _git(repo, "diff-files", "--name-only", "-z", "--", *tracked,
                              index=work).split("\0") if p] if tracked else []
    if edited:
        raise _refuse("local changes are in the way", edited, branch)
    root = Path(repo.working_tree_dir or ".")
    wanted = _blobs(repo, new, [c.path for c in todo if c.status == "A"])
    untracked = [p for p, blob in wanted.items()
                 if (root / p).exists() and _hash(repo, root / p) != blob]
    if untracked:
        raise _refuse("untracked files would be overwritten", untracked, branch)


def _blobs(repo: git.Repo, ref: str, paths: list[str]) -> dict[str, str]:
    return {path: blob for path, (_, blob) in _entries(repo, ref, paths).items()}


def _hash(repo: git.Repo, path: Path) -> str | None:
    if path.is_symlink() or not path.is_file():
        return None
    return _git(repo, "hash-object", "--", str(path)).strip()


def _unlink(root: Path, rel: str) -> None:
    path = root / rel
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    parent = path.parent
    while parent != root:
        try:
            parent.rmdir()  # only empty directories the move emptied
        except OSError:
            break
        parent = parent.parent


def move_checked_out(repo: git.Repo, branch: str, old: str, new: str) -> None:
    """Point the checked-out `branch` from `old` to `new`, bringing index and work tree."""
    index, lock, intent = _paths(repo)
    work = _work_index(repo)
    ref = f"refs/heads/{branch}"
    todo = changes(repo, old, new)
    root = Path(repo.working_tree_dir or ".")
    with deferred_signals():
        _write_json(intent, {"ref": ref, "old": old, "new": new, "pid": os.getpid()})
        try:
            ino = _take_lock(repo)
        except BaseException:
            intent.unlink(missing_ok=True)
            raise
        moved = False
        try:
            _write_json(intent, {"ref": ref, "old": old, "new": new, "pid": os.getpid(),
                                 "lock_ino": ino})
            _check_clean(repo, work, old, new, todo, branch)
            _stage(repo, work, new, todo)
            writes = [c.path for c in todo if c.status != "D"]
            if writes:
                _git(repo, "checkout-index", "-f", "-u", "-q", "--", *writes, index=work)
            for c in todo:
                if c.status == "D":
                    _unlink(root, c.path)
            try:
                _git(repo, "update-ref", ref, new, old)
            except git.GitCommandError as exc:
                known = explain(exc)
                if known is not None:
                    raise known from None
                raise GitError(f"branch {branch} moved while promptbot was working",
                               fix="run the command again") from None
            moved = True
            os.replace(work, index)
        except BaseException:
            if not moved:
                _undo(repo, todo, new, ours=True)
                _release(lock, work, intent)
            raise
        _release(lock, work, intent)


def _stage(repo: git.Repo, work: Path, new: str, todo: list[Change]) -> None:
    """The entries of the changed paths as `new` has them; everything else in the index
    (what the person staged elsewhere) stays as it is."""
    gone = [c.path for c in todo if c.status == "D"]
    if gone:
        _git(repo, "update-index", "--force-remove", "--", *gone, index=work)
    entries = _entries(repo, new, [c.path for c in todo if c.status != "D"])
    for path, (mode, blob) in sorted(entries.items()):
        _git(repo, "update-index", "--add", "--cacheinfo", f"{mode},{blob},{path}", index=work)


def _entries(repo: git.Repo, ref: str, paths: list[str]) -> dict[str, tuple[str, str]]:
    if not paths:
        return {}
    out = _git(repo, "ls-tree", "-z", ref, "--", *paths)
    found: dict[str, tuple[str, str]] = {}
    for entry in out.split("\0"):
        if entry:
            meta, path = entry.split("\t", 1)
            mode, _, blob = meta.split()
            found[path] = (mode, blob)
    return found


def _release(lock: Path | None, work: Path, intent: Path) -> None:
    for path in (work, lock, intent):  # the intent last: it is what recovery goes by
        if path is not None:
            path.unlink(missing_ok=True)


def _undo(repo: git.Repo, todo: list[Change], new: str, *, ours: bool = False) -> None:
    """Put back what a move wrote to the work tree before its ref moved: the changed paths
    return to the index's version (added ones are removed). `ours`: this process checked
    them clean and was writing them, so whatever is there is its own (a file cut short by
    a full disk too). After a kill a person may have edited them since: then only a file
    holding the new content, or a start of it, is put back."""
    root = Path(repo.working_tree_dir or ".")
    wanted = _blobs(repo, new, [c.path for c in todo if c.status != "D"])
    restore: list[str] = []
    for c in todo:
        path = root / c.path
        mine = ours or _partial_or_new(repo, path, wanted.get(c.path))
        if c.status == "A":
            if mine and (path.exists() or path.is_symlink()):
                _unlink(root, c.path)
        elif mine or (c.status == "D" and not path.exists()):
            restore.append(c.path)
    if restore:
        _git(repo, "checkout-index", "-f", "-q", "--", *restore)


def _partial_or_new(repo: git.Repo, path: Path, blob: str | None) -> bool:
    if blob is None or path.is_symlink() or not path.is_file():
        return False
    if _hash(repo, path) == blob:
        return True
    want = repo.odb.stream(bytes.fromhex(blob)).read()
    have = path.read_bytes()
    return len(have) < len(want) and want.startswith(have)


def recover(repo: git.Repo) -> str | None:
    """Finish or undo a move a killed process left half-done; what was done, or None."""
    index, lock, intent = _paths(repo)
    work = _work_index(repo)
    try:
        data = json.loads(intent.read_text(encoding="utf-8"))
        ref, old, new = str(data["ref"]), str(data["old"]), str(data["new"])
    except FileNotFoundError:
        return None
    except (ValueError, KeyError, TypeError):
        _release(lock if _ours(lock, {}) else None, work, intent)
        return None
    with deferred_signals():
        if _ours(lock, data):
            lock.unlink()
        elif lock.exists():
            raise GitError("another git process is using this repository (.git/index.lock "
                           "exists) while promptbot has a half-done checkout to finish",
                           fix="wait for it to finish and run the command again; if no git "
                           "command is running, remove .git/index.lock")
        try:
            current = _git(repo, "rev-parse", "--verify", "--quiet", ref).strip()
        except git.GitCommandError as exc:
            known = explain(exc)
            if known is not None:
                raise known from None
            current = ""
        done: str | None = None
        if current == new:
            # The ref moved (the commit point) and the files were written before it:
            # finish the index from the person's, without touching the work tree.
            data = {**data, "lock_ino": _take_lock(repo)}
            _write_json(intent, data)
            _stage(repo, work, new, changes(repo, old, new))
            _git(repo, "update-index", "-q", "--refresh", index=work)
            os.replace(work, index)
            done = f"finished moving {ref.removeprefix('refs/heads/')} to {new[:10]}"
        elif current == old:
            _undo(repo, changes(repo, old, new), new)
            done = f"undid a half-done update of {ref.removeprefix('refs/heads/')}"
        _release(lock if _ours(lock, data) else None, work, intent)
        return done


def _ours(lock: Path, data: dict[str, object]) -> bool:
    try:
        st = lock.stat()
    except FileNotFoundError:
        return False
    if "lock_ino" in data:
        return st.st_ino == data["lock_ino"]
    # Killed between writing the intent and marking the lock: only a lock this old.
    return time.time() - st.st_mtime > STALE_LOCK_S
