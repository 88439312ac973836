"""Command line: `main(argv) -> int`. Exit codes live here, and only here:

  0  done; nothing needs a person
  1  done, and it found something: invalid files (`check`), a firing trigger (`analyze`),
     a failing eval gate (`eval`, the PR check)
  2  the command line is wrong (unknown option, missing argument)
  3  promptbot could not do it: an invalid repository or export, git, the forge, the disk,
     or a bug; the message says what to do
  130 interrupted (Ctrl-C, SIGTERM); nothing half-written is left behind
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import textwrap
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from bot import __version__
from bot.core.analysis import GOALS
from bot.errors import Finding, InputError, PromptbotError, UsageError, explain

OK, FINDINGS, USAGE, FAILED, INTERRUPTED = 0, 1, 2, 3, 130


def exit_code(exc: PromptbotError) -> int:
    return USAGE if isinstance(exc, UsageError) else FAILED

if TYPE_CHECKING:
    from bot.core.model import Policy

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\x1b]")


def clean(text: str) -> str:
    """Terminal-safe: metrics and PR text may carry escape sequences."""
    return _CONTROL.sub("?", text)


def out(text: str = "") -> None:
    print(clean(text))


def err(text: str) -> None:
    print(clean(text), file=sys.stderr)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(message, fix=f"see `{self.prog} --help`")


_FORGE_HELP = ("where pull requests live: local records in .promptbot/, GitHub (needs "
               "GITHUB_TOKEN and GITHUB_REPOSITORY), or auto: GitHub inside Actions, else local")
_METRICS_HELP = ("metrics export glob, relative to the current directory (repeatable; default: "
                 "metrics.source of policies/promptbot.yaml, relative to the repository root)")


def _json_opt(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="machine-readable output on stdout")


def _forge_opt(p: argparse.ArgumentParser) -> None:
    p.add_argument("--forge", choices=["auto", "local", "github"], default="auto",
                   help=_FORGE_HELP)


def _metrics_opt(p: argparse.ArgumentParser) -> None:
    p.add_argument("--metrics", action="append", metavar="GLOB", help=_METRICS_HELP)


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="promptbot", description="GitOps bot for LLM agent prompts.")
    p.add_argument("--version", action="version", version=f"promptbot {__version__}")
    p.add_argument("-C", "--repo", default=".", help="the prompts repository (default: .)")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    r = sub.add_parser("run", help="the full cycle: sync, ingest, measure, analyze, propose")
    _metrics_opt(r)
    _forge_opt(r)
    r.add_argument("--dry-run", action="store_true", help="plan only; write nothing")
    _json_opt(r)

    i = sub.add_parser("init", help="start a prompts repository here: policy, an agent, "
                       "tests, the GitHub caller, .gitignore (never overwrites)")
    i.add_argument("prompt_file", nargs="?", metavar="PROMPT_FILE",
                   help="an existing prompt to convert into the first agent: text or Markdown "
                   "(the system prompt), or JSON/YAML with `system` or `messages`")
    i.add_argument("--agent", help="the agent's id (default: from PROMPT_FILE's name, else "
                   "example-agent); the metrics export's agent_id must match it")
    i.add_argument("--owner", default="@your-org/your-team",
                   help="who reviews this agent's changes (a GitHub team or person)")
    i.add_argument("--metrics-source", metavar="GLOB",
                   help="where the metrics exports will be, relative to the repository root "
                   "(default: metrics/*.csv)")
    i.add_argument("--uses", default=f"promptbot/promptbot@v{__version__}",
                   metavar="OWNER/REPO@TAG",
                   help="the promptbot release the GitHub caller runs (your fork's tag works)")

    k = sub.add_parser("completion", help="print the shell completion script: e.g. "
                       "`promptbot completion bash > ~/.local/share/bash-completion/"
                       "completions/promptbot`")
    k.add_argument("shell", choices=["bash", "zsh", "tcsh"], help="the shell to complete in")

    c = sub.add_parser("check", help="validate agent files, tests and policies")
    c.add_argument("paths", nargs="*", metavar="PATH",
                   help="files or folders to check (default: prompts/ and policies/)")

    a = sub.add_parser("analyze", help="per-agent, per-version statistics of the metrics")
    _metrics_opt(a)
    _json_opt(a)

    v = sub.add_parser("version", help="print the prompt version of agents")
    v.add_argument("agent", nargs="?", metavar="AGENT",
                   help="one agent's id (default: every agent, one per line)")

    s = sub.add_parser("simulate", help="write synthetic metrics exports with known effects")
    s.add_argument("--out", required=True, metavar="DIR",
                   help="folder the exports are written to (created if missing)")
    s.add_argument("--days", type=int, default=21,
                   help="days of traffic before and after the newest deploy (default 21: three "
                   "whole weeks, so the walkthrough decides whatever the hour of the merge)")
    s.add_argument("--seed", type=int, default=1,
                   help="random seed: the same seed writes the same rows")
    s.add_argument("--per-day", type=int, default=400, help="executions per agent per day")
    s.add_argument("--effect", type=float, default=None,
                   help="true success-rate change of the latest deployed change (e.g. 0.04)")
    s.add_argument("--effects", help="YAML file with per-agent base rates and effects")
    s.add_argument("--quality-effect", type=float, default=None,
                   help="add a quality_score column (mean 0.70) with this true change for "
                        "the latest deployed change (e.g. 0.05)")
    s.add_argument("--no-version-column", action="store_true",
                   help="omit prompt_version (attribution by deploy time)")
    s.add_argument("--format", action="append", choices=["csv", "jsonl", "parquet"],
                   help="output format (repeatable; default csv)")
    s.add_argument("--duplicates", type=float, default=0.0,
                   help="share of rows re-sent with the same execution_id (e.g. 0.001)")
    s.add_argument("--bad-rows", type=float, default=0.0,
                   help="share of rows made invalid (e.g. 0.0005)")
    s.add_argument("--drift", type=float, default=0.0,
                   help="change of every success rate per simulated week (e.g. -0.005)")
    # What real traffic does to a before/after comparison (docs/METRICS.md); days count
    # from the day of the newest deploy (0), negative before it.
    s.add_argument("--day-sd", type=float, default=0.0,
                   help="day-to-day sd of each agent's success rate (e.g. 0.01)")
    s.add_argument("--weekend", type=float, default=0.0,
                   help="success-rate change on Saturdays and Sundays (e.g. -0.03)")
    s.add_argument("--shared-sd", type=float, default=0.0,
                   help="day-to-day change every agent shares, its sd (e.g. 0.01)")
    s.add_argument("--shared-step", type=float, default=0.0,
                   help="a lasting change of every agent's success rate (e.g. -0.02) ...")
    s.add_argument("--shared-step-day", type=int, default=0,
                   help="... from this day on (relative to the newest deploy's day)")
    s.add_argument("--incident-day", type=int, action="append", default=[],
                   help="an outage day relative to the newest deploy's day (repeatable)")
    s.add_argument("--incident-share", type=float, default=0.2,
                   help="share of executions an outage fails (default 0.2)")
    s.add_argument("--segments", action="store_true",
                   help="add a segment column: easy (+5 pts) and hard (-5 pts), half each")
    s.add_argument("--segment-shift", type=float, default=0.0,
                   help="change of the hard share after each agent's newest deploy (e.g. 0.1)")

    q = sub.add_parser("propose", help="the proposals the bot would open, with estimates "
                       "(writes nothing; `run` opens them)")
    q.add_argument("--agent", help="only this agent's proposals")
    q.add_argument("--goal", action="append",
                   choices=GOALS,
                   help="only proposals with this goal (repeatable; default: all)")
    _metrics_opt(q)
    q.add_argument("--dry-run", action="store_true",
                   help="print the plan; write nothing (also the default: `promptbot run` "
                   "opens the PRs)")
    _json_opt(q)
    _forge_opt(q)

    h = sub.add_parser("history", help="an agent's versions on the base branch: who changed "
                       "it and how, traffic, measured effects, a Mermaid chart (writes nothing)")
    h.add_argument("agent", metavar="AGENT", help="the agent's id")
    _metrics_opt(h)
    _json_opt(h)
    _forge_opt(h)

    w = sub.add_parser("sql", help="print the SQL that computes the daily form "
                       "(docs/METRICS.md) inside your warehouse, from your table with your "
                       "column names (docs/WAREHOUSE.md; writes nothing)")
    # bot.core.warehouse.DIALECTS (not imported here: sqlglot loads only for this command).
    w.add_argument("--dialect", required=True,
                   choices=["bigquery", "snowflake", "clickhouse", "spark", "postgres",
                            "duckdb"], help="the warehouse's SQL dialect")
    w.add_argument("--table", default="executions", metavar="T",
                   help="the table of per-execution rows: NAME, SCHEMA.NAME or "
                   "PROJECT.DATASET.NAME (default: executions)")
    w.add_argument("--since", metavar="YYYY-MM-DD",
                   help="only days from this one (UTC) on; re-sent executions are settled "
                   "with the day before it too")
    w.add_argument("--until", metavar="YYYY-MM-DD",
                   help="only days before this one (UTC): pass today to leave out the day "
                   "that has not ended (without --hourly the daily form has no hours, its last "
                   "day counts whole)")
    w.add_argument("--lookback-days", type=int, default=7, metavar="N",
                   help="with --since: the days before it also read, so an execution re-sent "
                   "up to N days later counts once, as ingest counts it (default 7; a re-send "
                   "later than that counts again)")
    result = w.add_mutually_exclusive_group()
    result.add_argument("--failures", action="store_true",
                        help="the failure rows (date, agent, version, error type, message, "
                        "count) instead of the daily counts and sums")
    result.add_argument("--bad-rows", action="store_true",
                        help="the rows left out (date, reason, rows): bad rows by ingest's "
                        "reasons and re-sent executions' extra copies as 'duplicate'")
    result.add_argument("--histograms", action="store_true",
                        help="the histogram rows (date, agent, version, latency or cost, log "
                        "bin, count; the token sums of latency bins) instead: percentiles, p95 "
                        "triggers, the latency estimate's fit and capped cost")
    w.add_argument("--hourly", action="store_true",
                   help="the daily counts per UTC hour too (an `hour` column, 0 to 23): what "
                   "canary stages and the newest day's hours need")
    w.add_argument("--partition-column", metavar="COL",
                   help="with --since or --until: the column the table is partitioned on "
                   "(each row's own day or time: a DATE, TIMESTAMP or DATETIME), compared as it "
                   "is so the warehouse reads only the days needed (a day of margin each side)")
    w.add_argument("--columns", metavar="COL,COL,...",
                   help="the table's columns (as metrics.columns names them); default: the "
                   "mapped names and the canonical columns of the example export")

    d = sub.add_parser("dashboard", help="print the dashboard issue as the last run left it "
                       "(local forge: .promptbot/issues/<n>.md; writes nothing)")
    _json_opt(d)
    _forge_opt(d)

    e = sub.add_parser("event", help="handle one GitHub event (in Actions: the current one)")
    e.add_argument("--name", help="event name (default: $GITHUB_EVENT_NAME)")
    e.add_argument("--payload", help="event JSON file (default: $GITHUB_EVENT_PATH)")
    e.add_argument("--dry-run", action="store_true",
                   help="plan from the payload and the working copy; no request, no write")
    _json_opt(e)
    e.add_argument("--read-only", action="store_true",
                   help="the PR check without a write token (forks, Dependabot): no status, "
                   "no comment; the exit code gates")
    _metrics_opt(e)
    _forge_opt(e)

    e = sub.add_parser("eval", help="run tests.yaml cases on the base and the working-tree "
                       "version of agents; exit 1 when the variant regresses")
    e.add_argument("agents", nargs="*", metavar="AGENT",
                   help="default: agents whose agent.yaml or tests.yaml differ from the base")
    e.add_argument("--base", help="git ref of the base version (default: forge.base_branch)")
    _json_opt(e)
    e.add_argument("--record", action="store_true",
                   help="call Anthropic for requests without a real recording and write them "
                   "to prompts/<agent>/eval-recordings.jsonl (needs ANTHROPIC_API_KEY)")

    b = sub.add_parser("rollback", help="open the PR that reverts a deployed proposal")
    b.add_argument("ref", help="proposal id or PR number")
    _forge_opt(b)

    pr = sub.add_parser("pr", help="act as the reviewer on the local forge")
    prs = pr.add_subparsers(dest="pr_command", required=True, parser_class=_Parser)
    pl = prs.add_parser("list", help="every pull request the bot opened, newest last")
    _json_opt(pl)
    def number(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("number", type=int, metavar="N",
                         help="the pull request's number (`pr list`)")

    number(prs.add_parser("show", help="title, body with the diff and estimates, comments"))
    number(prs.add_parser("merge", help="merge into the base branch as GitHub's button does: "
                          "a deploy"))
    pc = prs.add_parser("close", help="close without merging: the proposal is recorded as "
                        "rejected and never reopened")
    number(pc)
    pc.add_argument("--reason", help="why, recorded with the rejection")
    pm = prs.add_parser("comment", help="comment as the reviewer (e.g. `/promptbot explain`)")
    number(pm)
    pm.add_argument("text", help="the comment's text")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = _parser().parse_args(argv)
        return _dispatch(args)
    except PromptbotError as exc:
        err(exc.render())
        return exit_code(exc)
    except BrokenPipeError:
        # The reader went away (`promptbot analyze | head`): stop quietly, as Unix tools do.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return OK
    except KeyboardInterrupt:
        err("interrupted; nothing half-written is left behind, run the command again")
        return INTERRUPTED
    except Exception as exc:
        known = explain(exc)
        if known is not None:
            err(known.render())
            return exit_code(known)
        if os.environ.get("PROMPTBOT_DEBUG"):
            raise
        err(f"internal error: {type(exc).__name__}: {str(exc)[:300]}\n"
            "  fix: this is a bug in promptbot; rerun with PROMPTBOT_DEBUG=1 and report it")
        return FAILED


def main_entry() -> None:
    from bot.edges.signals import terminate_as_interrupt

    terminate_as_interrupt()
    sys.exit(main())


def find_root(start: Path) -> Path:
    """The repository's top directory, found upward from `start` as git finds it, so every
    command works the same from any subdirectory; `start` itself outside a repository."""
    for folder in (start, *start.parents):
        if (folder / ".git").exists():
            return folder
    return start


_PATH_OPTIONS = ("paths", "metrics", "payload", "out", "effects", "prompt_file")


def _anchor(args: argparse.Namespace, base: Path) -> None:
    """Paths typed on the command line are relative to where the person is (or to -C, as
    with git -C), not to the repository root that the policy's paths are relative to."""
    import glob

    for name in _PATH_OPTIONS:
        value = getattr(args, name, None)
        if isinstance(value, str):
            setattr(args, name, os.path.normpath(base / value))
        elif isinstance(value, list):
            # Globs: the folder's own name may hold `[` or `*`; only the pattern typed is one.
            anchor = glob.escape(str(base)) if name == "metrics" else str(base)
            setattr(args, name, [v if os.path.isabs(v) else os.path.normpath(
                os.path.join(anchor, v)) for v in value])


def _dispatch(args: argparse.Namespace) -> int:
    base = Path(args.repo).resolve()
    root = find_root(base)
    _anchor(args, base)
    handler = {
        "init": _init, "completion": _completion, "run": _run, "check": _check,
        "analyze": _analyze, "version": _version, "simulate": _simulate,
        "rollback": _rollback, "pr": _pr, "propose": _propose, "event": _event,
        "eval": _eval, "history": _history, "dashboard": _dashboard, "sql": _sql,
    }[args.command]
    if not _writes(args):
        return handler(root, args)
    from bot.edges.git import Git
    from bot.edges.lock import repo_lock

    g = Git(root)
    name = args.command + (f" {args.pr_command}" if args.command == "pr" else "")
    with repo_lock(g.git_dir, name):
        done = g.recover()
        if done:
            err(f"· {done} (an earlier promptbot command was stopped half-way)")
        return handler(root, args)


def _writes(args: argparse.Namespace) -> bool:
    """Commands that change the repository or the forge: one at a time, and each first
    finishes what a stopped one left half-done."""
    if args.command == "pr":
        return bool(args.pr_command in ("merge", "close", "comment"))
    if args.command in ("run", "event"):
        return not args.dry_run
    return bool(args.command == "rollback")


# ---------------------------------------------------------------- wiring


def _context(root: Path, forge_choice: str, quiet: bool = False, models: bool = True) -> Any:
    """The run's wiring. `models=False`: no generator and no live eval provider, for
    handlers that never write a variant or run an eval (and whose jobs get no key)."""
    from bot.app import Context
    from bot.edges.git import Git
    from bot.edges.tokens import count_tokens
    from bot.load.repo import WorkingTree, load_policy

    git = Git(root)
    policy = load_policy(WorkingTree(git.root))
    forge = _forge(git, forge_choice, policy)
    return Context(root=git.root, git=git, forge=forge, count_tokens=count_tokens,
                   say=(lambda _l: None) if quiet else (lambda line: err(f"· {line}")),
                   progress=_progress(quiet),
                   generator=_generator(policy) if models else None,
                   eval_live=_eval_live(policy) if models else None)


def _eval_live(policy: Policy) -> Any:
    """The Anthropic eval provider when the policy and a key ask for it, else None."""
    from bot.eval_run import live_provider

    return live_provider(policy,
                         api_key=os.environ.get("ANTHROPIC_API_KEY", ""),
                         base_url=os.environ.get("ANTHROPIC_BASE_URL") or None, record=False)


def _generator(policy: Policy) -> Any:
    """The Anthropic generator when the policy and the environment ask for it, else None."""
    kind, key = policy.generator.kind, os.environ.get("ANTHROPIC_API_KEY", "")
    if kind == "offline" or (kind == "auto" and not key):
        return None
    if not key:
        raise UsageError("generator.kind is anthropic but ANTHROPIC_API_KEY is not set",
                         fix="export ANTHROPIC_API_KEY (in Actions: from secrets), or set "
                         "generator.kind: offline in policies/promptbot.yaml")
    from bot.edges.anthropic_generator import AnthropicGenerator

    return AnthropicGenerator(
        api_key=key, model=policy.generator.model,
        base_url=os.environ.get("ANTHROPIC_BASE_URL") or None,
        price_in=policy.pricing.input_per_mtok, price_out=policy.pricing.output_per_mtok,
        budget_usd=policy.generator.budget_usd, budget_tokens=policy.generator.budget_tokens)


def _progress(quiet: bool) -> bool:
    """A progress bar only for a person at a terminal: never in CI, pipes or --json."""
    return not quiet and sys.stderr.isatty() and not os.environ.get("CI")


def _base_branch(root: Path) -> str:
    from bot.load.repo import WorkingTree, load_policy

    return load_policy(WorkingTree(root)).forge.base_branch


def _forge(git: Any, choice: str, policy: Policy) -> Any:
    from bot.edges.clock import utc_now
    from bot.edges.local_forge import LocalForge

    token, repository = os.environ.get("GITHUB_TOKEN"), os.environ.get("GITHUB_REPOSITORY")
    if choice == "auto":
        in_actions = os.environ.get("GITHUB_ACTIONS") == "true"
        choice = "github" if in_actions and token and repository else "local"
    if choice == "local":
        return LocalForge(git, utc_now)
    if not token or not repository:
        raise UsageError("--forge github needs GITHUB_TOKEN and GITHUB_REPOSITORY",
                         fix="export both (Actions sets GITHUB_REPOSITORY; pass the token "
                         "from secrets), or use --forge local")
    from bot.edges.github_forge import GitHubForge

    # PROMPTBOT_GITHUB_NO_DELAY=1 drops PyGithub's politeness pauses between requests: for
    # a GitHub Enterprise or a stand-in without secondary rate limits (the fault sweep).
    return GitHubForge(git, token=token, repository=repository,
                       fast=os.environ.get("PROMPTBOT_GITHUB_NO_DELAY") == "1",
                       base_url=os.environ.get("GITHUB_API_URL", "https://api.github.com"),
                       bot_login=_bot_login(), max_writes=policy.forge.max_writes_per_run,
                       max_wait_s=policy.forge.max_rate_limit_wait_s)


def _bot_login() -> str:
    return os.environ.get("PROMPTBOT_BOT_LOGIN", "github-actions[bot]")


# ---------------------------------------------------------------- commands


def _run(root: Path, args: argparse.Namespace) -> int:
    from bot.app import run

    ctx = _context(root, args.forge, quiet=args.json)
    report = run(ctx, args.metrics, dry_run=args.dry_run)
    if args.json:
        out(json.dumps({**report.to_json(), "analysis": report.analysis}, indent=2))
    else:
        from bot.core.report import analysis_text

        out(analysis_text(report.analysis).rstrip())
        out()
        verb = "would do" if args.dry_run else "did"
        out(f"{verb}:" if report.actions else f"{verb}: nothing (everything is up to date)")
        for line in report.actions:
            out(f"  - {line}")
        for line in report.skipped:
            out(f"  skipped: {line}")
        for line in report.errors:
            err(line if line.startswith("error:") else f"error: {line}")
        if ctx.generator is not None:
            usage = ctx.generator.report()
            out(f"{ctx.generator.label}: {usage.get('requests', 0)} request(s), "
                f"{usage.get('input_tokens', 0)} input / {usage.get('output_tokens', 0)} "
                f"output tokens, ${usage.get('cost_usd', 0):.4f}")
        if report.actions and not args.dry_run and ctx.forge.name == "local":
            out("\nnext: `promptbot pr list`, then `promptbot pr show N`; `promptbot dashboard` "
                "for the whole picture")
    return FAILED if report.errors else OK


def _completion(root: Path, args: argparse.Namespace) -> int:
    import shtab  # generates the script from this very parser, so it never drifts

    out(shtab.complete(_parser(), shell=args.shell))
    return OK


def _init(root: Path, args: argparse.Namespace) -> int:
    from bot import init

    prompt = Path(args.prompt_file) if args.prompt_file else None
    todo = init.plan(root, prompt_file=prompt, agent=args.agent, owner=args.owner,
                     source=args.metrics_source, uses=args.uses)
    init.apply(root, todo, said=lambda rel: out(f"wrote {rel}"))
    if any(rel == "policies/promptbot.yaml" for rel in todo.write):
        out(f"base branch: {todo.base} (forge.base_branch; the branch you deploy from)")
    for rel in todo.kept:
        out(f"left alone (exists): {rel}")
    if not todo.write:
        out("nothing to do: every file promptbot init writes is already there")
        return OK
    agent = f"agent_id {todo.agent}; " if todo.agent else ""
    out(f"""
next:
  1. put a metrics export where policies/promptbot.yaml's metrics.source points (one row per
     execution; {agent}columns in docs/METRICS.md), or pass --metrics
  2. promptbot check
  3. git add -A && git commit -m "promptbot init"
  4. promptbot run          (proposals as local PRs: promptbot pr list)""")
    return OK


def _check(root: Path, args: argparse.Namespace) -> int:
    from bot.load.check import check_paths

    paths = [Path(p) for p in args.paths] or [
        root / folder for folder in ("prompts", "policies") if (root / folder).is_dir()]
    if not any(p.name == "prompts" for p in paths) and not args.paths:
        raise InputError(f"no prompts/ folder in {root}: nothing to check",
                         fix="run `promptbot init` to start one (policies/ is optional: "
                         "without it the built-in defaults apply)")
    findings: list[Finding] = check_paths(root, paths)
    for f in findings:
        out(f.render())
    if findings:
        out(f"{len(findings)} problem(s) found")
        return FINDINGS
    out("all files valid")
    return OK


def _analyze(root: Path, args: argparse.Namespace) -> int:
    from bot.core.report import analysis
    from bot.load.metrics import ingest_with, resolve_sources
    from bot.load.repo import WorkingTree, load_repo

    state = load_repo(WorkingTree(root))
    policy = state.policy
    files = resolve_sources(args.metrics or [policy.metrics.source], root)
    snapshot = ingest_with(files, policy.metrics, policy.pricing, progress=_progress(args.json))
    data = analysis(snapshot, {a: x.version for a, x in state.agents.items()}, policy)
    if args.json:
        out(json.dumps(data, indent=2))
    else:
        from bot.core.report import analysis_text

        out(analysis_text(data).rstrip())
    # Exit 1 when a trigger fires, so a scheduled job can alert on it.
    return FINDINGS if data["triggers"] else OK


def _version(root: Path, args: argparse.Namespace) -> int:
    from bot.load.repo import WorkingTree, agent_path, load_agent

    tree = WorkingTree(root)
    if args.agent:
        rel = agent_path(args.agent)
        if tree.read(rel) is None:
            known = ", ".join(Path(p).parent.name for p in tree.agent_files()) or "none"
            raise UsageError(f"unknown agent '{args.agent}'", fix=f"known agents: {known}")
        out(load_agent(tree, rel).version)
        return OK
    if not tree.agent_files():
        raise InputError(f"no agents in {root}: no prompts/<id>/agent.yaml",
                         fix="run `promptbot init` to write one, or run promptbot inside your "
                         "prompts repository")
    failed = OK
    for rel in tree.agent_files():
        try:
            loaded = load_agent(tree, rel)
            out(f"{loaded.agent.id}  {loaded.version}")
        except PromptbotError as exc:
            err(exc.render())
            failed = FAILED
    return failed


def _simulate(root: Path, args: argparse.Namespace) -> int:
    from bot.core.simulate import Departures
    from bot.edges.git import Git
    from bot.load.simulate import simulate

    if args.days < 1 or args.per_day < 1:
        raise UsageError("--days and --per-day must be at least 1", fix="e.g. --days 14")
    if not (0 <= args.duplicates < 1 and 0 <= args.bad_rows < 1):
        raise UsageError("--duplicates and --bad-rows are shares between 0 and 1",
                         fix="e.g. --duplicates 0.001 --bad-rows 0.0005")
    if not (0 < args.incident_share <= 1 and -0.5 <= args.segment_shift <= 0.5):
        raise UsageError("--incident-share must be in (0, 1] and --segment-shift within ±0.5",
                         fix="e.g. --incident-share 0.2 --segment-shift 0.1")
    if args.segment_shift and not args.segments:
        raise UsageError("--segment-shift needs --segments", fix="add --segments")
    departures = Departures(day_sd=args.day_sd, weekend=args.weekend,
                            shared_sd=args.shared_sd, shared_step=args.shared_step,
                            shared_step_day=args.shared_step_day,
                            incident_days=tuple(sorted(set(args.incident_day))),
                            incident_share=args.incident_share, segments=args.segments,
                            segment_shift=args.segment_shift)
    written = simulate(Git(root), Path(args.out), days=args.days, seed=args.seed,
                       per_day=args.per_day, effect=args.effect, effects_file=args.effects,
                       version_column=not args.no_version_column, base=_base_branch(root),
                       formats=tuple(args.format or ["csv"]), duplicate_rate=args.duplicates,
                       bad_rate=args.bad_rows, drift_per_week=args.drift,
                       quality_effect=args.quality_effect, departures=departures)
    for path, rows in written:
        out(f"wrote {rows} rows to {path}")
    return OK


def _propose(root: Path, args: argparse.Namespace) -> int:
    from bot.app import plan

    # A plan, with or without --dry-run: opening PRs is `promptbot run`'s job, which also
    # measures what is deployed first (a proposal must not race its own measurement).
    ctx = _context(root, args.forge, quiet=args.json)
    skipped: list[str] = []
    items = plan(ctx, args.metrics, args.agent,
                 tuple(args.goal or GOALS), skipped)
    if args.json:
        out(json.dumps(items, indent=2))
        return OK
    if not items and not skipped:
        out("nothing to propose: no problem with enough evidence for these goals "
            f"({', '.join(args.goal or GOALS)}) and a valid change for it. Goals that need "
            "settings: accuracy (propose.min_quality and a quality_score column), speed "
            "(triggers.sla_latency_p95_ms)")
    for item in items:
        slot = item["roadmap_slot"]
        out(f"{'#' + str(slot) if slot else 'backlog':<8}{item['title']}  [{item['status']}]")
        impact = item["impact"]
        out(f"        success {impact['success_rate_delta'] * 100:+.1f} pts "
            f"({impact['interval'][0] * 100:+.1f} … {impact['interval'][1] * 100:+.1f}), "
            f"ROI ≈ ${item['roi_usd_per_month']:,.0f}/month, {item['hours']:g} h, "
            f"priority ${item['priority']:,.0f}/h, tokens {impact['tokens_before']} → "
            f"{impact['tokens_after']}")
        out(f"        cost {_pct_text(impact['cost_pct'])}, latency "
            f"{_pct_text(impact['latency_pct'])}; judged by {item['judged_by']}")
        out(textwrap.indent(item["diff"].rstrip("\n"), "        ") + "\n")
    for line in dict.fromkeys(skipped):
        out(f"skipped {line}")
    return OK


def _history(root: Path, args: argparse.Namespace) -> int:
    from bot.core.history import chart, text
    from bot.history import as_json, history

    ctx = _context(root, args.forge, quiet=args.json, models=False)
    found, daily, why = history(ctx, args.agent, args.metrics)
    if args.json:
        out(json.dumps(as_json(args.agent, found, daily, why), indent=2))
        return OK
    out(text(args.agent, found))
    if why:
        out(f"no traffic shown: {why}")
    drawn = chart(args.agent, daily, found)
    if drawn:
        out("\n" + drawn)
    return OK


def _sql(root: Path, args: argparse.Namespace) -> int:
    from bot.warehouse import sql_text

    out(sql_text(root, args.dialect, args.table, args.since, args.failures, args.columns,
                 args.until, args.lookback_days, bad_rows=args.bad_rows,
                 hourly=args.hourly, partition_column=args.partition_column,
                 histograms=args.histograms) + ";")
    return OK


def _dashboard(root: Path, args: argparse.Namespace) -> int:
    from bot.context import base_tree
    from bot.core import dashboard, markers
    from bot.dashboard import issue_label

    ctx = _context(root, args.forge, quiet=args.json, models=False)
    _, _, state = base_tree(ctx)
    found = [i for i in ctx.forge.list_issues(issue_label(state.policy.forge.label_prefix))
             if (markers.parse(i.body) or {}).get("kind") == dashboard.KIND]
    found.sort(key=lambda i: (i.state != "open", i.number))
    if args.json:
        out(json.dumps({"dashboard": None} if not found else {
            "dashboard": {"number": found[0].number, "state": found[0].state,
                          "url": found[0].url, "body": found[0].body}}, indent=2))
        return OK
    if not found:
        err("no dashboard yet: `promptbot run` writes it")
        return OK
    issue = found[0]
    err(f"dashboard #{issue.number} ({issue.state}): {issue.url}")
    out(issue.body.rstrip())
    return OK


def _pct_text(e: dict[str, Any]) -> str:
    if not e.get("estimated", True):
        return "not estimated"
    low, high = e["interval"]
    return f"{e['change']:+.1f} % ({low:+.1f} … {high:+.1f})"


def _event(root: Path, args: argparse.Namespace) -> int:
    from bot.core.events import classify

    name = args.name or os.environ.get("GITHUB_EVENT_NAME", "")
    path = args.payload or os.environ.get("GITHUB_EVENT_PATH", "")
    if not name or not path:
        raise UsageError("which event? no --name/--payload and no GITHUB_EVENT_NAME/"
                         "GITHUB_EVENT_PATH", fix="in Actions these are set for you; locally "
                         "pass e.g. --name pull_request --payload event.json")
    try:
        payload = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read the event payload {path}: {exc.__class__.__name__}",
                         fix="pass the JSON file GitHub delivered (--payload)") from None
    except json.JSONDecodeError as exc:
        raise UsageError(f"{path}:{exc.lineno}: the event payload is not JSON ({exc.msg})",
                         fix="pass the JSON file GitHub delivered (--payload)") from None
    plan = classify(name, payload, base_branch=_event_base_branch(root, payload),
                    bot_login=_bot_login())
    if args.read_only:
        plan = replace(plan, fork=True)
    if args.dry_run:
        if args.json:
            out(json.dumps({**plan.to_json(), "dry_run": True}, indent=2))
        else:
            out(f"{plan.event}: {plan.handler} — {plan.reason}")
            for step in plan.steps:
                out(f"  would: {step}")
        return OK
    from bot.core.events import CHECK, COMMAND, CYCLE
    from bot.events import handle

    models = plan.handler in (CYCLE, CHECK, COMMAND)
    outcome = handle(_context(root, args.forge, quiet=args.json, models=models), plan,
                     args.metrics)
    if args.json:
        out(json.dumps(outcome.to_json(), indent=2))
    else:
        out(f"{plan.event}: {plan.handler} — {plan.reason}")
        for line in outcome.actions:
            out(f"  - {line}")
        for line in outcome.errors:
            err(line if line.startswith("error:") else f"error: {line}")
    if outcome.errors:
        return FAILED
    return FINDINGS if outcome.failed else OK
def _eval(root: Path, args: argparse.Namespace) -> int:
    from bot.core.eval_render import render_eval_text
    from bot.errors import GitError, InputError
    from bot.eval_run import run_eval

    try:
        run = run_eval(root, args.agents, args.base, record=args.record,
                       api_key=os.environ.get("ANTHROPIC_API_KEY", ""),
                       base_url=os.environ.get("ANTHROPIC_BASE_URL") or None)
    except (InputError, GitError) as exc:
        err(exc.render())
        return FAILED
    if args.json:
        out(json.dumps(run.to_json(), indent=2))
    else:
        for note in run.notes:
            out(f"note: {note}")
        for report in run.reports:
            out(render_eval_text(report))
            out()
        for path in run.written:
            out(f"recorded: {path}")
        failed = [r.agent for r in run.reports if r.gate.state == "failure"]
        out(f"gate failed for {', '.join(failed)}" if failed else "no regression beyond "
            "eval.max_regression")
    return FINDINGS if run.failed else OK


def _event_base_branch(root: Path, payload: object) -> str:
    """The base branch as the base commit of a pull request sets it, so a PR cannot move
    its own gate by editing forge.base_branch; the working copy's policy otherwise."""
    from bot.core.events import text
    from bot.edges.git import Git, GitTree
    from bot.load.repo import load_policy

    sha = text(payload, "pull_request", "base", "sha")
    git = Git(root)
    if sha and git.sha(sha) is not None:
        return load_policy(GitTree(git, sha)).forge.base_branch
    return _base_branch(root)


def _rollback(root: Path, args: argparse.Namespace) -> int:
    from bot.app import rollback

    ctx = _context(root, args.forge)
    pr, created = rollback(ctx, args.ref)
    out(f"{'opened' if created else 'already open'}: #{pr.number} {pr.title} ({pr.branch})")
    return OK


def _pr(root: Path, args: argparse.Namespace) -> int:
    from bot.edges.clock import utc_now
    from bot.edges.git import Git
    from bot.edges.local_forge import LocalForge

    git = Git(root)
    forge = LocalForge(git, utc_now)
    cmd = args.pr_command
    if cmd == "list":
        from bot.core import markers

        rows: list[dict[str, Any]] = []
        for pr in forge.list_prs():
            marker = markers.parse(pr.body) or {}
            rows.append({"number": pr.number, "state": pr.state, "branch": pr.branch,
                         "title": pr.title, "agent": marker.get("agent"),
                         "proposal_id": marker.get("proposal_id"), "labels": list(pr.labels)})
        if args.json:
            out(json.dumps(rows, indent=2))
        elif not rows:
            out("no pull requests yet: run `promptbot run`")
        for r in rows if not args.json else []:
            out(f"#{r['number']:<4}{r['state']:<8}{r['title']}  [{', '.join(r['labels'])}]")
        return OK
    if cmd == "show":
        pr = forge.get(args.number)
        out(f"#{pr.number} {pr.title}")
        out(f"state: {pr.state}   branch: {pr.branch} -> {pr.base}")
        out(f"labels: {', '.join(pr.labels) or '-'}")
        if pr.merge_sha:
            out(f"merged: {pr.merge_sha} at {pr.merged_at}")
        out()
        out(pr.body.rstrip())
        for comment in forge.raw(args.number).get("comments", []):
            out(f"\n--- comment by {comment['author']} ---")
            out(comment["body"].rstrip())
        return OK
    if cmd == "merge":
        pr = forge.merge(args.number)
        out(f"merged #{pr.number} into {pr.base}: {pr.merge_sha}")
        out("next: `promptbot simulate --out sim` then `promptbot run --metrics 'sim/*.csv'`")
        return OK
    if cmd == "close":
        pr = forge.close(args.number, args.reason)
        out(f"closed #{pr.number}; the next run records it as rejected")
        return OK
    forge.comment(args.number, args.text, author=os.environ.get("USER", "reviewer"))
    out(f"commented on #{args.number}")
    return OK
