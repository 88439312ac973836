"""Plain data of the prompts repository: agent files and the bot's policy.

Every model forbids unknown keys: a typo in a prompt file must be an error that
points at the line, never a silently ignored setting.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

# Agent and proposal ids end up in branch names and file paths: keep them to a
# small alphabet so no id can walk out of prompts/ or inject into a ref name.
ID_PATTERN = r"^[a-z0-9][a-z0-9-]{0,62}$"
_ID_RE = re.compile(ID_PATTERN)


def is_safe_id(value: str) -> bool:
    return bool(_ID_RE.match(value))


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelConfig(Strict):
    name: str = Field(min_length=1)
    temperature: float = Field(default=0.0, ge=0.0, le=2.0)
    max_tokens: int = Field(default=1024, ge=1, le=200_000)


class Prompts(Strict):
    system: str = Field(min_length=1)
    user_template: str = Field(min_length=1)


class Tool(Strict):
    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_-]{0,63}$")
    description: str = Field(min_length=1)
    parameters: dict[str, Any] = Field(default_factory=dict)


class Example(Strict):
    input: str | dict[str, Any]
    output: str


class AgentFile(Strict):
    """`prompts/<id>/agent.yaml`."""

    id: str = Field(pattern=ID_PATTERN)
    owner: str = Field(min_length=1)
    description: str = ""
    model: ModelConfig
    prompts: Prompts
    tools: list[Tool] = Field(default_factory=list)
    examples: list[Example] = Field(default_factory=list)


class TestCase(Strict):
    name: str = Field(min_length=1)
    inputs: dict[str, Any]
    assert_: list[dict[str, Any]] = Field(default_factory=list, alias="assert")


class TestsFile(Strict):
    """`prompts/<id>/tests.yaml`: offline evaluation cases (run by `promptbot eval`)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)
    cases: list[TestCase] = Field(min_length=1)


# ---------------------------------------------------------------- policy


class MetricsPolicy(Strict):
    # Glob, relative to the repository root, used when `--metrics` is not given.
    source: str = "examples/metrics/*.csv"
    # A team's own column names -> canonical names (SPEC §4).
    columns: dict[str, str] = Field(default_factory=dict)
    # Days of data, counted back from the newest row, that the analysis looks at.
    window_days: int = Field(default=28, ge=1, le=3650)
    # "otel": the files are flat OpenTelemetry GenAI span exports (see docs/METRICS.md).
    # OTLP/JSON trace files are recognized by their content with either preset.
    preset: Literal["canonical", "otel"] = "canonical"


class ProposePolicy(Strict):
    max_prs_per_run: int = Field(default=3, ge=0, le=100)
    # Fewer executions of the current version than this: too little evidence.
    min_executions: int = Field(default=200, ge=1)
    # A failure mode must account for at least this share of executions.
    min_failure_share: float = Field(default=0.01, ge=0.0, le=1.0)
    min_failure_count: int = Field(default=20, ge=1)
    # Prior share of the targeted failures an added instruction fixes.
    fix_rate_prior: float = Field(default=0.4, ge=0.0, le=1.0)
    # Days a prompt version must have been live (in the data) before it gets a proposal.
    cooldown_days: float = Field(default=3.0, ge=0.0, le=365.0)
    # Review and follow-up hours per proposal, and the hours a roadmap may plan.
    hours_per_proposal: float = Field(default=2.0, gt=0.0, le=1000.0)
    # Limits on a new system prompt: absolute size and growth over the current one.
    max_system_tokens: int = Field(default=4000, ge=1)
    max_token_growth: float = Field(default=0.5, ge=0.0)
    hours_budget: float = Field(default=40.0, ge=0.0, le=100_000.0)
    # Mean quality score (the export's own scale) below which a version gets an accuracy
    # proposal; 0 turns the accuracy goal off.
    min_quality: float = Field(default=0.0, ge=0.0)


class MeasurePolicy(Strict):
    min_executions_per_arm: int = Field(default=500, ge=10)
    min_failures_per_arm: int = Field(default=10, ge=0)
    # Two-sided significance level of the before/after comparison.
    alpha: float = Field(default=0.05, gt=0.0, lt=0.5)
    # Stop with "no effect" once each arm has this many executions.
    max_executions_per_arm: int = Field(default=20_000, ge=100)
    # Recommend a rollback when the success rate drops by more than this.
    rollback_threshold: float = Field(default=0.02, ge=0.0, le=1.0)
    # Smallest success-rate change worth detecting when a proposal has no estimate.
    min_detectable_effect: float = Field(default=0.02, gt=0.0, le=1.0)
    # Guardrails: a win whose latency (geometric mean) or cost per execution is shown
    # to be more than this much higher is not called a success.
    latency_margin: float = Field(default=0.10, ge=0.0, le=10.0)
    # Share of traffic a canary deploy sends to the new version (0 = not a canary); when
    # both versions serve at once, the split is checked against it (sample-ratio mismatch).
    canary_share: float = Field(default=0.0, ge=0.0, lt=1.0)
    cost_margin: float = Field(default=0.10, ge=0.0, le=10.0)
    # ... and a change whose mean quality score (when the export has one) is shown more than
    # this much lower is a regression, whatever the success rate did.
    quality_margin: float = Field(default=0.05, ge=0.0, le=1.0)
    # Before/after comparisons are made day by day (docs/METRICS.md, "Measuring a deploy"):
    # the base version's last `base_days` complete days before the deploy are its history,
    # the test is tuned to be sharpest after `horizon_days` days of the new version, and
    # after `max_days` days without a decision the result is "inconclusive" (the agent is
    # then free for new proposals).
    base_days: int = Field(default=56, ge=1, le=366)
    horizon_days: int = Field(default=14, ge=1, le=366)
    max_days: int = Field(default=42, ge=1, le=366)
    # Day-to-day standard deviation of the success rate assumed while the base history is
    # too short to estimate it (fewer than ~2 weeks of days).
    day_sd: float = Field(default=0.02, ge=0.0, le=0.5)
    # A day is an incident day when one failure template takes at least this share of the
    # executions above its usual level and comes from outside the prompt (an infrastructure
    # error, or the same spike in another agent); such days are left out.
    incident_share: float = Field(default=0.02, gt=0.0, le=1.0)


class TriggerPolicy(Strict):
    # The most recent stretch of data (ending at the newest row) compared with the week
    # before it.
    recent_days: float = Field(default=1.0, gt=0.0, le=30.0)
    # Degradation: success rate down by more than this (and significantly) ...
    success_drop: float = Field(default=0.05, ge=0.0, le=1.0)
    # ... or p95 latency up by more than this share (0.5 = +50 %). 0 turns it off.
    latency_increase: float = Field(default=0.5, ge=0.0, le=100.0)
    # One failure mode more often than this in the recent stretch. 0 turns it off.
    repeated_errors: int = Field(default=50, ge=0)
    # SLA (0 = off): minimum success rate and maximum p95 latency in the recent stretch.
    sla_success_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    sla_latency_p95_ms: float = Field(default=0.0, ge=0.0)


class ForgePolicy(Strict):
    base_branch: str = "main"
    # How measured results reach the base branch: pushed as a commit, or as a
    # pull request where branch protection forbids pushes.
    results: Literal["commit", "pr"] = "commit"
    label_prefix: str = Field(default="promptbot", pattern=r"^[a-z0-9][a-z0-9-]{0,30}$")
    # GitHub writes (PRs, comments, labels, statuses) one run may make; the rest waits
    # for the next run. Bounds the damage of a bug or an event flood.
    max_writes_per_run: int = Field(default=60, ge=1, le=1000)
    # Longest wait for a rate-limit reset before a run gives up (the next run continues).
    max_rate_limit_wait_s: float = Field(default=300.0, ge=0, le=3600)


class PricingPolicy(Strict):
    # USD per million tokens, used for the cost delta of a proposal.
    input_per_mtok: float = Field(default=3.0, ge=0)
    output_per_mtok: float = Field(default=15.0, ge=0)
    # What one more successful execution is worth (a resolved ticket, a correct query):
    # turns a success-rate change into money per month for priority and ROI.
    value_per_success_usd: float = Field(default=0.10, ge=0)


class GeneratorPolicy(Strict):
    # "auto": Anthropic when ANTHROPIC_API_KEY is set, else the offline generator.
    kind: Literal["auto", "offline", "anthropic"] = "auto"
    model: str = Field(default="claude-sonnet-4-6", min_length=1)
    # Candidates asked for per proposal; the cheapest valid one is proposed.
    candidates: int = Field(default=3, ge=1, le=5)
    # Per run: the generator stops (and the run falls back to offline) before exceeding.
    budget_usd: float = Field(default=1.0, ge=0.0)
    budget_tokens: int = Field(default=200_000, ge=0)


class EvalPolicy(Strict):
    # The gate fails when the variant's pass rate is more than this far below the base's
    # (an absolute fraction of the cases both could run: 0.10 = 10 points). Exactly at the
    # threshold passes.
    max_regression: float = Field(default=0.10, ge=0.0, le=1.0)
    # "auto": Anthropic when ANTHROPIC_API_KEY is set, else the recorded replies.
    provider: Literal["auto", "anthropic", "recorded"] = "auto"
    # At most this many cases per agent (the first ones of tests.yaml); bounds the cost.
    max_cases: int = Field(default=50, ge=1, le=10_000)
    # Per `promptbot eval` run with a live provider: no request starts that could exceed these.
    budget_usd: float = Field(default=1.0, ge=0.0)
    budget_tokens: int = Field(default=300_000, ge=0)
    # Grades `rubric` assertions (the agent's own model answers the cases).
    grader_model: str = Field(default="claude-sonnet-4-6", min_length=1)
    # A variant the eval could not run at all (no recorded reply, no API key) is "not
    # evaluated". Commit statuses have no neutral state: false reports it as success with
    # that description; true fails it, so nothing merges unevaluated.
    require_replies: bool = False


class PromotedRule(Strict):
    """A mitigation that kept working, promoted by review into the offline generator."""

    id: str = Field(pattern=ID_PATTERN)
    # Lower-case words or phrases matched in a failure's error type and message template.
    keywords: list[str] = Field(min_length=1)
    instruction: str = Field(min_length=10, max_length=600)
    summary: str = Field(min_length=3, max_length=80)


class PromotedRules(Strict):
    """`policies/promoted_rules.yaml`."""

    rules: list[PromotedRule] = Field(default_factory=list)


class Policy(Strict):
    """`policies/promptbot.yaml`."""

    metrics: MetricsPolicy = Field(default_factory=MetricsPolicy)
    propose: ProposePolicy = Field(default_factory=ProposePolicy)
    measure: MeasurePolicy = Field(default_factory=MeasurePolicy)
    triggers: TriggerPolicy = Field(default_factory=TriggerPolicy)
    generator: GeneratorPolicy = Field(default_factory=GeneratorPolicy)
    eval: EvalPolicy = Field(default_factory=EvalPolicy)
    forge: ForgePolicy = Field(default_factory=ForgePolicy)
    pricing: PricingPolicy = Field(default_factory=PricingPolicy)
    reports_dir: str = "reports"

    @field_validator("reports_dir")
    @classmethod
    def _relative(cls, value: str) -> str:
        parts = value.replace("\\", "/").split("/")
        if value.startswith("/") or ".." in parts or not value.strip():
            raise ValueError("must be a relative path inside the repository")
        return value
