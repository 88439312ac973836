"""Git through GitPython, mostly with plumbing commands.

Branches and commits are built from trees with a temporary index, so the
person's working copy, index and checked-out branch are never disturbed, and
a ref moves only as the very last step: a run killed half-way leaves no
half-made branch. When the branch that moves is checked out, its index and
working tree are brought along by bot/edges/checkout.py, which refuses rather
than overwrite a person's local changes and can be finished after a kill.
"""

from __future__ import annotations

import io
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import git
from gitdb.base import IStream

from bot.edges import checkout
from bot.errors import GitError, first_line, raise_if_machine

BOT_NAME = "promptbot"
BOT_EMAIL = "promptbot@users.noreply.github.com"
SCRATCH = "promptbot-tmp"


def _bot_env() -> dict[str, str]:
    return {
        "GIT_AUTHOR_NAME": BOT_NAME,
        "GIT_AUTHOR_EMAIL": BOT_EMAIL,
        "GIT_COMMITTER_NAME": BOT_NAME,
        "GIT_COMMITTER_EMAIL": BOT_EMAIL,
    }


class Git:
    def __init__(self, root: Path) -> None:
        try:
            self.repo = git.Repo(root, search_parent_directories=False)
        except (git.InvalidGitRepositoryError, git.NoSuchPathError):
            raise GitError(
                f"{root} is not a git repository",
                fix="run promptbot inside a clone of your prompts repository (or `git init` "
                "one first)",
            ) from None
        self.root = Path(self.repo.working_tree_dir or root)

    # ------------------------------------------------------------ reading
    def sha(self, ref: str) -> str | None:
        try:
            return str(self.repo.git.rev_parse("--verify", "--quiet", f"{ref}^{{commit}}"))
        except git.GitCommandError as exc:
            _no_unless_answered(exc, f"resolve {ref[:80]}")
            return None

    def read(self, ref: str, path: str) -> str | None:
        try:
            return str(self.repo.git.show(f"{ref}:{path}", strip_newline_in_stdout=False))
        except git.GitCommandError as exc:
            raise_if_machine(exc)
            return None

    def ls(self, ref: str, prefix: str) -> list[str]:
        try:
            out = self.repo.git.ls_tree("-r", "--name-only", ref, "--", prefix)
        except git.GitCommandError as exc:
            raise_if_machine(exc)
            return []
        return [line for line in out.splitlines() if line]

    def head_branch(self) -> str | None:
        try:
            return str(self.repo.git.symbolic_ref("--quiet", "--short", "HEAD"))
        except git.GitCommandError as exc:
            _no_unless_answered(exc, "read HEAD")
            return None

    def default_branch(self) -> str | None:
        """The branch a team deploys from as git knows it: origin's HEAD, else an existing
        main or master, else `init.defaultBranch`. None when git does not say."""
        try:
            remote = str(self.repo.git.symbolic_ref("--quiet", "--short",
                                                    "refs/remotes/origin/HEAD"))
            return remote.removeprefix("origin/")
        except git.GitCommandError as exc:
            _no_unless_answered(exc, "read origin's HEAD")
        for name in ("main", "master"):
            if self.sha(f"refs/heads/{name}") is not None:
                return name
        try:
            return str(self.repo.git.config("--get", "init.defaultBranch")) or None
        except git.GitCommandError as exc:
            _no_unless_answered(exc, "read init.defaultBranch")
            return None

    def base_branch_guess(self) -> str:
        """The base branch when no policy names one: git's default, else the checked-out
        branch, else `main`."""
        return self.default_branch() or self.head_branch() or "main"

    def commit_time(self, sha: str) -> datetime:
        # Through the git command, not GitPython's object reader: a failure is then a
        # GitCommandError that says why (a full disk), never an opaque ValueError.
        stamp = int(self.repo.git.log("-1", "--format=%ct", sha, "--"))
        return datetime.fromtimestamp(stamp, UTC).replace(tzinfo=None)

    def commit_meta(self, sha: str) -> tuple[datetime, str, str]:
        """(commit time, author name, subject line) of a commit."""
        out = str(self.repo.git.log("-1", "--format=%ct%x00%an%x00%s", sha, "--"))
        stamp, author, subject = [*out.split("\x00"), "", ""][:3]
        return datetime.fromtimestamp(int(stamp), UTC).replace(tzinfo=None), author, subject

    def parents(self, sha: str) -> list[str]:
        return str(self.repo.git.rev_list("--parents", "-n", "1", sha, "--")).split()[1:]

    def first_parent_log(self, ref: str, path: str) -> list[str]:
        """Commits on `ref`'s first-parent line that changed `path`, oldest first."""
        try:
            out = self.repo.git.log("--first-parent", "--format=%H", "--reverse", ref, "--", path)
        except git.GitCommandError as exc:
            raise_if_machine(exc)
            return []
        return [line for line in out.splitlines() if line]

    def touched_since(self, ref: str, since: datetime, prefix: str) -> set[str]:
        """Files under `prefix` changed by commits on `ref`'s first-parent line committed
        at or after `since` (UTC)."""
        stamp = int(since.replace(tzinfo=UTC).timestamp())
        try:
            out = self.repo.git.log("--first-parent", f"--since=@{stamp}", "--format=",
                                    "--name-only", ref, "--", prefix)
        except git.GitCommandError as exc:
            raise_if_machine(exc)
            return set()
        return {line for line in out.splitlines() if line}

    def changed_paths(self, since: str) -> list[str]:
        """Files that differ between commit `since` and the working tree."""
        try:
            names: str = self.repo.git.diff("--name-only", since, "--")
        except git.GitCommandError as exc:
            raise_if_machine(exc)
            return []
        return [n for n in names.split("\n") if n]

    def rev_list(self, older: str, newer: str) -> list[str]:
        """Commits reachable from `newer` but not from `older`."""
        try:
            listed: str = self.repo.git.rev_list(f"{older}..{newer}")
            return listed.split()
        except git.GitCommandError as exc:
            raise_if_machine(exc)
            return []

    def is_ancestor(self, older: str, newer: str) -> bool:
        try:
            self.repo.git.merge_base("--is-ancestor", older, newer)
        except git.GitCommandError as exc:
            _no_unless_answered(exc, "compare commits")
            return False
        return True

    def touched_by_people(self, base: str, tip: str) -> bool:
        """Whether any commit on `tip` that `base` lacks was authored by someone else."""
        try:
            emails = self.repo.git.log("--format=%ae", f"{base}..{tip}").split()
        except git.GitCommandError as exc:
            raise_if_machine(exc)
            return True  # unknown history: assume a person, never throw their work away
        return any(email != BOT_EMAIL for email in emails)

    # ------------------------------------------------------------ writing
    def commit_files(self, parent: str, files: Mapping[str, str | None], message: str) -> str:
        """A new commit on top of `parent` with `files` replaced (None: deleted); no ref
        moves."""
        with tempfile.TemporaryDirectory(prefix="index-", dir=self._scratch()) as tmp:
            env = {**_bot_env(), "GIT_INDEX_FILE": str(Path(tmp) / "index")}
            g = self.repo.git
            g.read_tree(parent, env=env)
            for path, content in sorted(files.items()):
                if content is None:
                    g.update_index("--force-remove", "--", path, env=env)
                    continue
                data = content.encode("utf-8")
                stored = self.repo.odb.store(IStream("blob", len(data), io.BytesIO(data)))
                blob = stored.hexsha.decode()
                g.update_index("--add", "--cacheinfo", f"100644,{blob},{path}", env=env)
            tree = g.write_tree(env=env)
            return str(g.commit_tree(tree, "-p", parent, "-m", message, env=env))

    def merge_commit(self, ours: str, theirs: str, message: str, *, as_person: bool) -> str:
        """A --no-ff merge commit of `theirs` into `ours`, as GitHub's merge button makes."""
        try:
            tree = str(self.repo.git.merge_tree("--write-tree", ours, theirs)).splitlines()[0]
        except git.GitCommandError as exc:
            raise_if_machine(exc)
            raise GitError(
                "the branch does not merge cleanly into the base branch",
                fix="resolve the conflict on the branch (or close the PR and let the bot "
                "propose again from the new base)",
            ) from None
        env = {} if as_person and self._has_identity() else _bot_env()
        return str(
            self.repo.git.commit_tree(tree, "-p", ours, "-p", theirs, "-m", message, env=env)
        )

    def revert_merge(self, merge_sha: str, onto: str, message: str) -> str:
        """A commit on top of `onto` that reverts merge `merge_sha` (like `git revert -m 1`)."""
        with self._worktree(onto) as wt:
            try:
                wt.git.revert("-m", "1", "--no-edit", merge_sha, env=_bot_env())
            except git.GitCommandError as exc:
                raise_if_machine(exc)
                raise GitError(
                    f"reverting {merge_sha[:10]} conflicts with later changes",
                    fix="revert it by hand (`git revert -m 1 <merge>`) and resolve the conflict",
                ) from None
            wt.git.commit("--amend", "-m", message, env=_bot_env())
            return str(wt.git.rev_parse("HEAD"))  # the git command: failures say why

    def move_branch(self, branch: str, new: str, old: str | None) -> None:
        """Point `branch` at `new` (only if it still is at `old`), bringing a checkout along."""
        ref = f"refs/heads/{branch}"
        if old is not None and self.head_branch() == branch:
            checkout.move_checked_out(self.repo, branch, old, new)
            return
        try:
            self.repo.git.update_ref(ref, new, old or "0" * 40)
        except git.GitCommandError as exc:
            if self.sha(ref) == new:
                return  # done before the git that did it was stopped (Ctrl-C)
            raise_if_machine(exc)
            raise GitError(
                f"branch {branch} moved while promptbot was working",
                fix="run the command again",
            ) from None

    def recover(self) -> str | None:
        """Finish (or undo) a checkout update a killed promptbot left half-done, and remove
        the temporary indexes and worktrees it left."""
        done = checkout.recover(self.repo)
        scratch = self.git_dir / SCRATCH
        if scratch.exists():
            shutil.rmtree(scratch, ignore_errors=True)
            self.repo.git.worktree("prune")
        return done

    @property
    def git_dir(self) -> Path:
        return Path(self.repo.git_dir)

    # ------------------------------------------------------------ remotes
    def has_remote(self, name: str = "origin") -> bool:
        return name in [r.name for r in self.repo.remotes]

    def push(self, branch: str, *, sha: str | None = None, force: bool = False,
             lease: str | None = None) -> None:
        """Push the local branch (or the commit `sha`) to `branch` on origin.

        Fast-forward only unless `force`, which only bot-owned branches use. With `lease`
        the force only applies while origin's tip is still that sha: a person's push
        that lands in between is never overwritten.
        """
        spec = f"{'+' if force and not lease else ''}{sha or f'refs/heads/{branch}'}" \
            f":refs/heads/{branch}"
        args = ["--quiet"]
        if force and lease:
            args.append(f"--force-with-lease=refs/heads/{branch}:{lease}")
        try:
            self.repo.git.push(*args, "origin", spec)
        except git.GitCommandError as exc:
            raise_if_machine(exc)
            raise GitError(
                f"pushing {branch} to origin failed: {_first_line(exc)}",
                fix="check that the token may push (contents: write) and that the branch "
                "is not protected against the bot",
            ) from None

    def fetch(self, branch: str) -> str | None:
        """Fetch `branch` from origin; its sha there, or None if it does not exist.

        Any other failure (network, auth) is an error, never "no such branch": callers
        decide from the answer whether a person's commits are on the branch.
        """
        try:
            self.repo.git.fetch("--quiet", "origin", f"+refs/heads/{branch}:refs/remotes/origin/"
                                f"{branch}")
        except git.GitCommandError as exc:
            raise_if_machine(exc)
            if "couldn't find remote ref" in str(exc.stderr).lower():
                return None
            raise GitError(f"fetching {branch} from origin failed: {_first_line(exc)}",
                           fix="check the network and that the token may read the "
                           "repository (contents: read); the next run tries again") from None
        return self.sha(f"refs/remotes/origin/{branch}")

    # ------------------------------------------------------------ helpers
    def _has_identity(self) -> bool:
        try:
            self.repo.git.var("GIT_COMMITTER_IDENT")
        except git.GitCommandError as exc:
            raise_if_machine(exc)
            return False
        return True

    def _scratch(self) -> Path:
        """Temporary indexes and worktrees live in the git directory, so what a killed run
        leaves there is found and removed by the next command (`recover`)."""
        path = self.git_dir / SCRATCH
        path.mkdir(exist_ok=True)
        return path

    @contextmanager
    def _worktree(self, commit: str) -> Iterator[git.Repo]:
        tmp = Path(tempfile.mkdtemp(prefix="wt-", dir=self._scratch()))
        path = tmp / "wt"
        self.repo.git.worktree("add", "--quiet", "--detach", str(path), commit)
        try:
            yield git.Repo(path)
        finally:
            self.repo.git.worktree("remove", "--force", str(path))
            shutil.rmtree(tmp, ignore_errors=True)


class GitTree:
    """A FileSource over one commit."""

    def __init__(self, g: Git, ref: str) -> None:
        self.git, self.ref = g, ref

    def read(self, rel: str) -> str | None:
        return self.git.read(self.ref, rel)

    def agent_files(self) -> list[str]:
        return sorted(
            p for p in self.git.ls(self.ref, "prompts/")
            if p.count("/") == 2 and p.endswith("/agent.yaml")
        )


def _no_unless_answered(exc: git.GitCommandError, what: str) -> None:
    """Exit status 1 is git's "no" (no such ref, not an ancestor, a detached HEAD); any
    other failure (a git stopped by Ctrl-C, a full disk) is not an answer and must never be
    acted on as one: a merge taken for "not done" would be made twice."""
    raise_if_machine(exc)
    if exc.status != 1:
        raise GitError(f"git failed to {what} (exit {exc.status}): {_first_line(exc)}",
                       fix="run the command again; nothing was changed on this answer") \
            from None


def _first_line(exc: git.GitCommandError) -> str:
    return first_line(str(exc.stderr or exc)) or "unknown error"
