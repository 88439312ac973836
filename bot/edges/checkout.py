"""Moving the checked-out branch so a person's index and work tree are never left half-changed.

Git's own protocol, step by step: take `.git/index.lock` (no other git writes the index
meanwhile), build the new index aside (only the changed paths' entries replaced, so what
the person staged elsewhere stays staged), check that nothing of the person's is in the
way, write the changed files, move the ref (the commit point), rename the new index in.

An intent file in the git directory says what is being moved and how far it got
("checked": the files were found clean and writing may have begun). A process killed
half-way (SIGKILL, power loss) leaves it, and the next promptbot command (`recover`)
undoes the work-tree writes when the ref had not moved, or finishes the index when it
had — only while the same branch is still checked out, and never over a file a person
changed since. An error before the commit point (a full disk) puts the files back at once.

Stale stat info (a touched file, a copied repository) is refreshed first, so it is not
mistaken for a local change.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import git

from bot.edges.signals import deferred_signals
from bot.errors import GitError, raise_if_machine

INTENT = "promptbot-checkout.json"
WORK_INDEX = "promptbot-index"


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


def _paths(repo: git.Repo) -> tuple[Path, Path, Path, Path]:
    gitdir = Path(repo.git_dir)
    # The new index is built in a file of its own: git rewrites an index through its own
    # lock file (a new inode), so the held `index.lock` stays empty and recognisable.
    return gitdir / "index", gitdir / "index.lock", gitdir / INTENT, gitdir / WORK_INDEX


def _write_json(path: Path, data: dict[str, object]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_text(json.dumps(data, sort_keys=True), encoding="utf-8")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _take_lock(repo: git.Repo) -> int:
    """Hold `.git/index.lock` and start the work index as a copy of the person's; the
    lock's inode, by which a later command knows the lock for promptbot's."""
    index, lock, _, work = _paths(repo)
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
    """The files the move changes are as `old` has them, in the index and on disk, and
    nothing untracked stands where a new file (or its directory) goes."""
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
    deleting = {c.path for c in todo if c.status == "D"}
    wanted = _entries(repo, new, [c.path for c in todo if c.status == "A"])
    in_the_way = [p for p, entry in wanted.items()
                  if _blocked(repo, root, p, entry, deleting)]
    if in_the_way:
        raise _refuse("untracked files would be overwritten", in_the_way, branch)


def _blocked(repo: git.Repo, root: Path, rel: str, entry: tuple[str, str],
             deleting: set[str]) -> bool:
    """Whether something of the person's stands where the new file `rel` goes: an
    untracked file with other content there, or a file where one of its directories
    goes, or a directory holding anything but files this move deletes."""
    parts = rel.split("/")
    for depth in range(1, len(parts)):
        parent = "/".join(parts[:depth])
        where = root / parent
        if (where.is_symlink() or where.exists()) and not where.is_dir() \
                and parent not in deleting:
            return True
    path = root / rel
    if path.is_dir() and not path.is_symlink():
        return any(str(f.relative_to(root)) not in deleting
                   for f in path.rglob("*") if not f.is_dir() or f.is_symlink())
    if path.is_symlink() or path.exists():
        return not _holds(repo, path, entry[1], entry[0])
    return False


def _entries(repo: git.Repo, ref: str, paths: list[str]) -> dict[str, tuple[str, str]]:
    """(mode, blob) of each path in `ref`."""
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


def _content(repo: git.Repo, blob: str) -> bytes:
    return bytes(repo.odb.stream(bytes.fromhex(blob)).read())


def _on_disk(path: Path) -> bytes | None:
    """A file's bytes, or a symlink's target as git stores it; None when absent."""
    if path.is_symlink():
        return os.fsencode(os.readlink(path))
    if path.is_file():
        return path.read_bytes()
    return None


def _holds(repo: git.Repo, path: Path, blob: str, mode: str, *,
           or_start: bool = False) -> bool:
    """Whether `path` holds that blob (a symlink for mode 120000) — or, with `or_start`,
    a beginning of it: a file a full disk or a kill cut short while git wrote it."""
    if (mode == "120000") != path.is_symlink():
        return False
    have = _on_disk(path)
    if have is None:
        return False
    want = _content(repo, blob)
    return have == want or (or_start and len(have) < len(want) and want.startswith(have))


def _stage(repo: git.Repo, work: Path, new: str, todo: list[Change]) -> None:
    """The entries of the changed paths as `new` has them; everything else in the index
    (what the person staged elsewhere) stays as it is."""
    gone = [c.path for c in todo if c.status == "D"]
    if gone:
        _git(repo, "update-index", "--force-remove", "--", *gone, index=work)
    entries = _entries(repo, new, [c.path for c in todo if c.status != "D"])
    for path, (mode, blob) in sorted(entries.items()):
        _git(repo, "update-index", "--add", "--cacheinfo", f"{mode},{blob},{path}", index=work)


def _remove(root: Path, rel: str) -> None:
    """Remove a file (or symlink) the move replaces, and directories it leaves empty."""
    path = root / rel
    if path.is_dir() and not path.is_symlink():
        return  # a directory took its place: its files are handled one by one
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    parent = path.parent
    while parent != root:
        try:
            parent.rmdir()  # only empty directories
        except OSError:
            break
        parent = parent.parent


def _release(lock: Path | None, work: Path, intent: Path) -> None:
    for path in (work, lock, intent):  # the intent last: it is what recovery goes by
        if path is not None:
            path.unlink(missing_ok=True)


def move_checked_out(repo: git.Repo, branch: str, old: str, new: str) -> None:
    """Point the checked-out `branch` from `old` to `new`, bringing index and work tree."""
    index, lock, intent, work = _paths(repo)
    ref = f"refs/heads/{branch}"
    todo = changes(repo, old, new)
    root = Path(repo.working_tree_dir or ".")
    record: dict[str, object] = {"ref": ref, "old": old, "new": new, "pid": os.getpid()}
    with deferred_signals():
        ino = _take_lock(repo)
        record["lock_ino"] = ino
        try:
            _write_json(intent, record)
        except BaseException:
            _release(lock, work, intent)
            raise
        checked = moved = False
        try:
            _check_clean(repo, work, old, new, todo, branch)
            _write_json(intent, {**record, "checked": True})
            checked = True
            _stage(repo, work, new, todo)
            # Deleted files first: a file that becomes a directory makes way for it.
            for c in todo:
                if c.status == "D":
                    _remove(root, c.path)
            writes = [c.path for c in todo if c.status != "D"]
            if writes:
                _git(repo, "checkout-index", "-f", "-u", "-q", "--", *writes, index=work)
            try:
                _git(repo, "update-ref", ref, new, old)
            except git.GitCommandError as exc:
                # A git stopped by Ctrl-C may have moved the ref before it died.
                if _rev(repo, ref) != new:
                    raise_if_machine(exc)
                    raise GitError(f"branch {branch} moved while promptbot was working",
                                   fix="run the command again") from None
            moved = True
            os.replace(work, index)
        except BaseException:
            if not moved:
                if checked:
                    _undo(repo, todo, new, ours=True)
                _release(lock, work, intent)
            raise
        _release(lock, work, intent)


def _undo(repo: git.Repo, todo: list[Change], new: str, *, ours: bool = False) -> None:
    """Put back what a move wrote to the work tree before its ref moved: the changed paths
    return to the index's version (which is `old`'s: they were checked clean), added
    ones are removed. `ours`: this process checked them and was writing them, so what is
    there is its own. After a kill a person may have edited them since: then only a file
    holding the new content, or a beginning of it, is put back."""
    root = Path(repo.working_tree_dir or ".")
    wanted = _entries(repo, new, [c.path for c in todo if c.status != "D"])
    restore: list[str] = []
    for c in sorted(todo, key=lambda c: c.status != "A"):  # additions out of the way first
        path = root / c.path
        entry = wanted.get(c.path)
        mine = ours or (entry is not None and _holds(repo, path, entry[1], entry[0],
                                                     or_start=True))
        if c.status == "A":
            if mine:
                _remove(root, c.path)
        elif mine or (c.status == "D" and not (path.exists() or path.is_symlink())):
            if path.is_dir() and not path.is_symlink():
                continue  # the person's directory now: left alone
            restore.append(c.path)
    if restore:
        _git(repo, "checkout-index", "-f", "-q", "--", *restore)


def recover(repo: git.Repo) -> str | None:
    """Finish or undo a move a killed process left half-done; what was done, or None."""
    index, lock, intent, work = _paths(repo)
    try:
        data = json.loads(intent.read_text(encoding="utf-8"))
        ref, old, new = str(data["ref"]), str(data["old"]), str(data["new"])
    except FileNotFoundError:
        return None
    except (ValueError, KeyError, TypeError):
        _release(None, work, intent)  # unreadable: whose lock it was cannot be told
        return None
    with deferred_signals():
        if _ours(lock, data):
            lock.unlink()
        elif lock.exists():
            raise GitError("another git process is using this repository (.git/index.lock "
                           "exists) while promptbot has a half-done checkout to finish",
                           fix="wait for it to finish and run the command again; if no git "
                           "command is running, remove .git/index.lock")
        current = _rev(repo, ref)
        head = _rev(repo, "HEAD", symbolic=True)
        done: str | None = None
        name = ref.removeprefix("refs/heads/")
        if head != ref:
            done = None  # the person checked out another branch since: theirs to keep
        elif current == new:
            # The ref moved (the commit point) and the files were written before it:
            # finish the index from the person's, without touching the work tree.
            data = {**data, "lock_ino": _take_lock(repo)}
            _write_json(intent, data)
            _stage(repo, work, new, changes(repo, old, new))
            _git(repo, "update-index", "-q", "--refresh", index=work)
            os.replace(work, index)
            done = f"finished moving {name} to {new[:10]}"
        elif current == old and data.get("checked"):
            _undo(repo, changes(repo, old, new), new)
            done = f"undid a half-done update of {name}"
        _release(lock if _ours(lock, data) else None, work, intent)
        return done


def _rev(repo: git.Repo, ref: str, *, symbolic: bool = False) -> str:
    try:
        if symbolic:
            return _git(repo, "symbolic-ref", "--quiet", ref).strip()
        return _git(repo, "rev-parse", "--verify", "--quiet", ref).strip()
    except git.GitCommandError as exc:
        raise_if_machine(exc)
        if exc.status != 1:  # not git's "no such ref": never acted on as an answer
            raise GitError(f"git failed to read {ref} (exit {exc.status})",
                           fix="run the command again") from None
        return ""


def _ours(lock: Path, data: dict[str, object]) -> bool:
    try:
        return lock.stat().st_ino == data.get("lock_ino")
    except FileNotFoundError:
        return False
