"""What every stage of a run shares: the injected edges, the report, the bot's PRs.

Pure data and small helpers over the forge and git; the stages (bot/measuring.py, the
proposing in bot/app.py) and the event handlers (bot/events.py) build on it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from bot.core import markers
from bot.core.generation import GenerationRequest, VariantCandidate
from bot.core.model import is_safe_id
from bot.core.proposals import (
    TokenCounter,
)
from bot.core.results import (
    REJECTED,
    SUPERSEDED,
)
from bot.edges.clock import utc_now
from bot.edges.eval_providers import (
    AnthropicEvalProvider,
)
from bot.edges.forge import Forge, PullRequest
from bot.edges.git import Git, GitTree
from bot.errors import GitError
from bot.load.repo import POLICY_FILE, RepoState, WorkingTree, load_policy, load_repo

RESULTS_BRANCH = "promptbot/results"


EVAL_STATUS = "promptbot/eval"


@dataclass
class Context:
    root: Path
    git: Git
    forge: Forge
    count_tokens: TokenCounter
    say: Callable[[str], None] = lambda _line: None
    progress: bool = False  # a progress bar while reading large exports
    generator: VariantSource | None = None  # None: the offline generator
    eval_live: AnthropicEvalProvider | None = None  # None: the offline eval replays recordings
    clock: Callable[[], datetime] = utc_now  # alerts (backlog, stale export) and snoozes


class VariantSource(Protocol):
    """A model that writes candidate system prompts (bot/edges/anthropic_generator.py)."""

    label: str

    def generate(self, req: GenerationRequest) -> list[VariantCandidate]: ...


@dataclass
class RunReport:
    actions: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    analysis: dict[str, Any] = field(default_factory=dict)
    superseded: set[int] = field(default_factory=set)  # PRs this run closed as out of date
    # The dashboard's guardrail input: agents snoozed, agents a ticked box opens now, and
    # the agents whose proposal waited on a per-run or per-repository limit.
    snoozed: dict[str, str] = field(default_factory=dict)
    open_now: set[str] = field(default_factory=set)
    waiting: set[str] = field(default_factory=set)
    remeasure: set[str] = field(default_factory=set)  # decided proposals to measure again
    alerts: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"actions": self.actions, "errors": self.errors, "skipped": self.skipped,
                "alerts": self.alerts}


@dataclass(frozen=True)
class Tracked:
    """A bot PR with its parsed marker."""

    pr: PullRequest
    marker: dict[str, str]

    @property
    def kind(self) -> str:
        return self.marker.get("kind", "")

    @property
    def proposal_id(self) -> str:
        return self.marker.get("proposal_id", "")

    @property
    def agent(self) -> str:
        return self.marker.get("agent", "")

    @property
    def closed_as(self) -> str:
        """What a closed, unmerged proposal was: superseded by the bot, else rejected."""
        return SUPERSEDED if self.marker.get("state") == SUPERSEDED else REJECTED


def base_tree(ctx: Context, policy_base: str | None = None, seen: tuple[str, ...] = ()
              ) -> tuple[str, str, RepoState]:
    base = policy_base or _first_guess(ctx)
    if base in seen:
        raise GitError(f"the policies on {' and '.join(seen)} name each other as the base "
                       "branch", fix=f"set forge.base_branch to the same branch on {seen[0]}")
    sha = ctx.git.sha(f"refs/heads/{base}")
    if sha is None:
        raise GitError(f"the base branch '{base}' has no commits",
                       fix=f"commit the prompts to '{base}' first, or set forge.base_branch")
    state = load_repo(GitTree(ctx.git, sha))
    if state.policy.forge.base_branch != base:
        return base_tree(ctx, state.policy.forge.base_branch, (*seen, base))
    return base, sha, state


def _first_guess(ctx: Context) -> str:
    """Where the policy that names the base branch is read: `main`, or, in a repository
    without one (`git init` still makes `master` on many machines), the branch the checked-
    out policy names."""
    if ctx.git.sha("refs/heads/main") is not None:
        return "main"
    tree = WorkingTree(ctx.root)
    if tree.read(POLICY_FILE) is not None:
        return load_policy(tree).forge.base_branch
    return ctx.git.base_branch_guess()


def tracked_prs(ctx: Context) -> list[Tracked]:
    out = []
    for pr in ctx.forge.list_prs():
        marker = markers.parse(pr.body)
        # A marker alone can be typed by anyone; the branch must be the bot's too.
        if marker is None or not pr.branch.startswith("promptbot/"):
            continue
        ids = (marker.get("agent", ""), marker.get("proposal_id", ""))
        if all(is_safe_id(i) for i in ids):
            out.append(Tracked(pr, marker))
    return out


def ensure_labels(
    ctx: Context, pr: PullRequest, labels: list[str], report: RunReport, dry_run: bool
) -> None:
    prefix = labels[0]
    keep = [lab for lab in pr.labels if lab != prefix and not lab.startswith(prefix + ":")]
    want = sorted(set(keep + labels))
    if sorted(pr.labels) == want:
        return
    report.actions.append(f"#{pr.number}: labels {', '.join(labels[1:])}")
    if not dry_run:
        ctx.forge.set_labels(pr.number, want)
