"""The learning loop: promotion and demotion PRs for policies/promoted_rules.yaml.

Being written (issue 17 part 4); until then a run proposes no promotion.
"""

from __future__ import annotations

from bot.context import Context, RunReport, Tracked
from bot.load.repo import RepoState
from bot.measuring import Recorded


def promote_all(ctx: Context, state: RepoState, base: str, base_sha: str,
                prs: list[Tracked], results: dict[str, Recorded], report: RunReport,
                dry_run: bool) -> None:
    """Open (or refresh) the PR promoting or demoting a rule when its evidence says so."""
