"""`promptbot eval`: which agents, which versions, which provider; then one report each.

In-process use (e.g. for a proposal before it is committed):

    report = evaluate_pair(base_agent, variant_agent, tests, provider, policy)
    markdown = render_eval_markdown(report)   # from bot.core.eval_render
    report.gate.state, report.gate.description  # -> a commit status

`provider` is anything with `label` and `complete(EvalRequest) -> Reply | None`; build one
with `make_provider` (or `RecordedProvider` / `AnthropicEvalProvider` directly).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bot.core.agentfile import parse_agent
from bot.core.assertions import Case, LineOf, parse_cases
from bot.core.evaluation import (
    Arm,
    CaseOutcome,
    EvalReport,
    EvalRequest,
    Provider,
    Reply,
    case_request,
    gate,
    judge,
    parse_grade,
    pending_rubrics,
    rubric_request,
)
from bot.core.model import AgentFile, Policy, TestsFile
from bot.core.version import prompt_version
from bot.core.yamlparse import parse_yaml, validate_as
from bot.edges.anthropic_generator import BudgetExceeded
from bot.edges.eval_providers import (
    AnthropicEvalProvider,
    RecordedProvider,
    RecordingProvider,
    read_recordings,
    recordings_path,
    recordings_rel,
    write_recordings,
)
from bot.edges.git import Git, GitTree
from bot.errors import UsageError
from bot.load.repo import WorkingTree, agent_path, load_agent, load_policy, tests_path

NO_RECORDING = "no recorded reply for this request (record one with `promptbot eval --record`)"


@dataclass
class _Asker:
    """One provider for a pair: identical requests are asked once; a budget stop is sticky."""

    provider: Provider
    memo: dict[str, Reply | None] = field(default_factory=dict)
    stopped: str = ""
    requests: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    billed_in: int = 0
    billed_out: int = 0

    def ask(self, request: EvalRequest) -> Reply | None:
        key = request.key()
        if key in self.memo:
            return self.memo[key]
        if self.stopped:
            return None
        try:
            reply = self.provider.complete(request)
        except BudgetExceeded as exc:
            self.stopped = exc.message
            return None
        self.memo[key] = reply
        if reply is not None:
            self.requests += 1
            self.input_tokens += reply.input_tokens
            self.output_tokens += reply.output_tokens
            if reply.billed:
                self.billed_in += reply.input_tokens
                self.billed_out += reply.output_tokens
        return reply

    def missing(self) -> str:
        return f"not run: {self.stopped}" if self.stopped else NO_RECORDING


def _run_case(asker: _Asker, agent: AgentFile, case: Case, grader: str) -> CaseOutcome:
    request = case_request(agent, case)
    if isinstance(request, str):
        # The runtime would fail on this input too: a broken template is a failing case.
        return CaseOutcome(case.name, "fail", request)
    reply = asker.ask(request)
    if reply is None:
        return CaseOutcome(case.name, "unavailable", asker.missing())
    grades: dict[int, tuple[bool, str] | None] = {}
    for assertion in pending_rubrics(case, reply.text):
        graded = asker.ask(rubric_request(grader, str(assertion.value), reply.text,
                                          case=f"{case.name} rubric #{assertion.index}"))
        if graded is None:
            return CaseOutcome(case.name, "unavailable",
                               f"rubric #{assertion.index}: {asker.missing()}")
        grades[assertion.index] = parse_grade(graded.text)
    return judge(case, reply.text, grades)


def evaluate_pair(base: AgentFile | None, variant: AgentFile, tests: TestsFile,
                  provider: Provider, policy: Policy, *, base_label: str = "base",
                  variant_label: str = "variant", tests_path: str = "tests.yaml",
                  line_of: LineOf | None = None, notes: Sequence[str] = ()) -> EvalReport:
    """Run `tests` on both versions of one agent and gate the variant against the base.

    Raises InputError (naming tests_path, line, case and assertion) before any request when
    an assertion is invalid. `base=None` means a new agent: nothing to compare, the gate says
    success with a note. Requests are interleaved case by case, so a budget stop leaves the
    two arms with the same cases run.
    """
    all_cases = parse_cases(tests, tests_path, line_of)
    limit = policy.eval.max_cases
    cases = all_cases[:limit]
    extra = list(notes)
    if len(all_cases) > limit:
        extra.append(f"only the first {limit} of {len(all_cases)} cases ran (eval.max_cases)")
    asker = _Asker(provider)
    grader = policy.eval.grader_model
    base_out: list[CaseOutcome] = []
    variant_out: list[CaseOutcome] = []
    for case in cases:
        if base is not None:
            base_out.append(_run_case(asker, base, case, grader))
        variant_out.append(_run_case(asker, variant, case, grader))
    if asker.stopped:
        extra.append(asker.stopped)
    base_arm = None if base is None else Arm(base_label, prompt_version(base), tuple(base_out))
    variant_arm = Arm(variant_label, prompt_version(variant), tuple(variant_out))
    pricing = policy.pricing
    cost = (asker.billed_in * pricing.input_per_mtok
            + asker.billed_out * pricing.output_per_mtok) / 1e6
    return EvalReport(
        agent=variant.id, provider=provider.label, base=base_arm, variant=variant_arm,
        cases=tuple(c.name for c in cases),
        gate=gate(base_arm, variant_arm, policy.eval.max_regression),
        requests=asker.requests, input_tokens=asker.input_tokens,
        output_tokens=asker.output_tokens, cost_usd=cost, notes=tuple(extra))


# ---------------------------------------------------------------- the command


@dataclass
class EvalRun:
    base_ref: str
    base_sha: str
    plain: bool  # nothing differed from the base: every agent with tests, base == variant
    reports: list[EvalReport] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    written: list[str] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return any(r.gate.state == "failure" for r in self.reports)

    def to_json(self) -> dict[str, object]:
        return {"base": self.base_ref, "base_sha": self.base_sha, "plain_run": self.plain,
                "notes": self.notes, "recorded": self.written,
                "reports": [r.to_json() for r in self.reports]}


def _select(work: WorkingTree, base: GitTree, agents: Sequence[str],
            base_tests: bool = False) -> tuple[list[str], bool]:
    if agents:
        for agent in agents:
            if work.read(agent_path(agent)) is None:
                known = ", ".join(Path(p).parent.name for p in work.agent_files()) or "none"
                raise UsageError(f"unknown agent '{agent}'", fix=f"known agents: {known}")
            if work.read(tests_path(agent)) is None and not (
                    base_tests and base.read(tests_path(agent)) is not None):
                raise UsageError(f"agent '{agent}' has no {tests_path(agent)}",
                                 fix="add eval cases there (see prompts/support-triage/"
                                 "tests.yaml in the promptbot repository for the format)")
        return list(dict.fromkeys(agents)), False
    tested = [Path(p).parent.name for p in work.agent_files()
              if work.read(tests_path(Path(p).parent.name)) is not None]
    if not tested:
        raise UsageError("no agent has a tests.yaml", fix="add prompts/<agent>/tests.yaml")
    changed = [a for a in tested
               if any(work.read(rel) != base.read(rel) for rel in (agent_path(a), tests_path(a)))]
    return (changed, False) if changed else (tested, True)


def make_provider(root: Path, agent_id: str, *, record: bool,
                  live: AnthropicEvalProvider | None) -> Provider:
    """Recorded replies, the live provider, or the live one recording into the agent's file."""
    if live is not None and not record:
        return live
    records = read_recordings(recordings_path(root, agent_id), recordings_rel(agent_id))
    return RecordedProvider(records) if live is None else RecordingProvider(live, records)


def live_provider(policy: Policy, *, api_key: str, base_url: str | None,
                  record: bool) -> AnthropicEvalProvider | None:
    """The one Anthropic provider of a run (one budget), or None for recorded replies."""
    kind = policy.eval.provider
    if record and not api_key:
        raise UsageError("--record calls the Anthropic API and needs ANTHROPIC_API_KEY",
                         fix="export ANTHROPIC_API_KEY, or drop --record to replay recordings")
    if kind == "anthropic" and not api_key:
        raise UsageError("eval.provider is anthropic but ANTHROPIC_API_KEY is not set",
                         fix="export ANTHROPIC_API_KEY, or set eval.provider: auto or recorded "
                         "in policies/promptbot.yaml")
    if not record and (kind == "recorded" or not api_key):
        return None
    return AnthropicEvalProvider(api_key=api_key, base_url=base_url,
                                 price_in=policy.pricing.input_per_mtok,
                                 price_out=policy.pricing.output_per_mtok,
                                 budget_usd=policy.eval.budget_usd,
                                 budget_tokens=policy.eval.budget_tokens)


def run_eval(root: Path, agents: Sequence[str], base_ref: str | None, *, record: bool,
             api_key: str, base_url: str | None) -> EvalRun:
    policy = load_policy(WorkingTree(Git(root).root))
    live = live_provider(policy, api_key=api_key, base_url=base_url, record=record)
    return run_eval_with(root, agents, base_ref, record=record, live=live)


def run_eval_with(root: Path, agents: Sequence[str], base_ref: str | None, *, record: bool,
                  live: AnthropicEvalProvider | None, gate_from_base: bool = False) -> EvalRun:
    """`run_eval` with the provider decided by the caller (the PR check shares one).

    `gate_from_base`: the policy (threshold, limits) and the cases of agents that exist at
    the base are read from the base, so a change cannot relax the gate that judges it.
    """
    git = Git(root)
    work = WorkingTree(git.root)
    policy = load_policy(work)
    ref = base_ref or policy.forge.base_branch
    sha = git.sha(ref)
    if sha is None:
        raise UsageError(f"the base '{ref}' is not a commit in this repository",
                         fix="pass --base with a branch, tag or commit (default: the policy's "
                         "forge.base_branch)")
    base = GitTree(git, sha)
    if gate_from_base:
        policy = load_policy(base)
    chosen, plain = _select(work, base, agents, gate_from_base)
    run = EvalRun(ref, sha, plain)
    if plain:
        run.notes.append(f"no agent with tests differs from {ref}: a plain run of every agent "
                         "with tests (base = variant)")
    for agent_id in chosen:
        rel = agent_path(agent_id)
        variant = load_agent(work, rel)
        base_text = base.read(rel)
        base_agent = None if base_text is None else \
            parse_agent(base_text, rel, folder_id=agent_id).agent
        notes = [] if base_agent else [f"new agent: not in {ref}, nothing to compare"]
        cases_rel = tests_path(agent_id)
        text = work.read(cases_rel) or ""
        on_base = base.read(cases_rel) if gate_from_base and base_agent is not None else None
        if on_base is not None:
            if on_base != text:
                notes.append("cases from the base's tests.yaml: this change edits them, and "
                             "its own cases judge it after the merge")
            text = on_base
        located = parse_yaml(text, cases_rel)
        tests = validate_as(TestsFile, located)
        provider = make_provider(git.root, agent_id, record=record, live=live)
        report = evaluate_pair(base_agent, variant.agent, tests, provider, policy,
                               base_label=f"{ref} {sha[:8]}", variant_label="working tree",
                               tests_path=cases_rel, line_of=located.line_of,
                               notes=notes)
        run.reports.append(report)
        if isinstance(provider, RecordingProvider) and provider.added and \
                write_recordings(recordings_path(git.root, agent_id), provider.records):
            run.written.append(recordings_rel(agent_id))
    return run
