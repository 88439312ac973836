"""Plain data of the prompts repository: agent files and the bot's policy.

Every model forbids unknown keys: a typo in a prompt file must be an error that
points at the line, never a silently ignored setting.

The field descriptions and examples are the user's reference: the JSON Schemas in
bot/schemas/ and docs/REFERENCE.md are generated from them (`python
scripts/gen_schemas.py --write`), so a description says what the key does and in which
unit, for someone who has not read the code.
"""

from __future__ import annotations

from datetime import date
from itertools import pairwise
from typing import Any, Literal, get_args

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictFloat,
    StrictInt,
    field_validator,
    model_validator,
)

# Re-exported: most callers know them from here.
from bot.core.ids import ID_PATTERN as ID_PATTERN
from bot.core.ids import is_safe_id as is_safe_id
from bot.core.version import json_value_error

# The columns of a per-execution metrics export, and of the pre-aggregated daily form
# (docs/METRICS.md). Here rather than in the loader: `metrics.columns` may only map onto
# them, and the schema offers them to an editor.
MetricColumn = Literal[
    "timestamp", "agent_id", "prompt_version", "execution_id", "status", "latency_ms",
    "input_tokens", "output_tokens", "cost_usd", "error_type", "error_message",
    "quality_score", "model", "retries", "segment", "input",
]
DailyColumn = Literal[
    "date", "executions", "successes", "timeouts", "errors", "latency_n", "latency_log_sum",
    "latency_log_sumsq", "cost_sum", "input_tokens_sum", "output_tokens_sum", "quality_n",
    "quality_sum", "count", "metric", "bin", "bin_count", "input_tokens_n", "output_tokens_n",
    "input_tokens_sumsq", "output_tokens_sumsq", "input_output_tokens_sum",
]
ColumnTarget = Literal[MetricColumn, DailyColumn]
Status = Literal["success", "failure", "error", "timeout"]
METRIC_COLUMNS: tuple[str, ...] = get_args(MetricColumn)
DAILY_COLUMNS: tuple[str, ...] = get_args(DailyColumn)
STATUSES: tuple[str, ...] = get_args(Status)


def _plain(value: dict[str, Any]) -> dict[str, Any]:
    """Free-form values hash the same in every runtime only when they are plain JSON."""
    why = json_value_error(value)
    if why:
        raise ValueError(why)
    return value


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelConfig(Strict):
    """The model the agent runs on and its sampling settings."""

    name: str = Field(min_length=1, description="Model id as the provider's API spells it.",
                      examples=["claude-sonnet-4-5"])
    # Strict: `"0.2"` or `true` would pass as numbers here but not in a runtime reading the
    # YAML itself (bot/runtime.py, other languages), and the version must not depend on it.
    temperature: StrictFloat = Field(
        default=0.0, ge=0.0, le=2.0,
        description="Sampling temperature, 0 (most deterministic) to 2. Part of the prompt "
        "version and of an eval recording's key.", examples=[0.2])
    max_tokens: StrictInt = Field(
        default=1024, ge=1, le=200_000,
        description="Most tokens the model may write in one reply; also the worst case the "
        "eval budget reserves per request.", examples=[1500])


class Prompts(Strict):
    """The prompt text: what the bot proposes changes to."""

    system: str = Field(
        min_length=1,
        description="System prompt. Lines between `# promptbot:protected begin NAME` and "
        "`# promptbot:protected end` inside it are never changed by a proposal.",
        examples=["You are the first-line support triage assistant for Acme Outfitters.\n"])
    user_template: str = Field(
        min_length=1,
        description="Jinja2 template of the user message, rendered in a sandbox with the "
        "runtime's variables (and with each tests.yaml case's `inputs`). Proposals keep "
        "every `{{ variable }}` in it.",
        examples=["Subject: {{ ticket.subject }}\n\n{{ ticket.body }}\n"])


class Tool(Strict):
    """A tool the runtime offers the model; described to the model verbatim."""

    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_-]{0,63}$",
                      description="Tool name the model calls it by (letters, digits, `_`, "
                      "`-`; up to 64 characters).", examples=["lookup_order"])
    description: str = Field(min_length=1,
                             description="What the tool does, shown to the model verbatim.",
                             examples=["Look up an order by number: status, items, tracking."])
    parameters: dict[str, Any] = Field(
        default_factory=dict,
        description="JSON Schema of the tool's arguments (an `object` schema).",
        examples=[{"type": "object", "properties": {"order_id": {"type": "string"}},
                   "required": ["order_id"]}])

    @field_validator("parameters")
    @classmethod
    def _plain_json(cls, value: dict[str, Any]) -> dict[str, Any]:
        return _plain(value)


class Example(Strict):
    """A few-shot example, sent before the real message with every request."""

    input: str | dict[str, Any] = Field(
        description="The user turn: the message text, or a mapping of template variables "
        "that `prompts.user_template` is rendered with.",
        examples=["Subject: Where is my order??\nI ordered a rain jacket 9 days ago.\n"])
    output: str = Field(description="The assistant turn: the reply the model should give.",
                        examples=['{"category": "order_status", "priority": "high"}\n'])

    @field_validator("input")
    @classmethod
    def _plain_json(cls, value: str | dict[str, Any]) -> str | dict[str, Any]:
        if isinstance(value, str):
            return _turn(value)
        return _plain(value)

    @field_validator("output")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        return _turn(value)


def _turn(value: str) -> str:
    # The Messages API refuses a turn without text: every request would fail.
    if not value.strip():
        raise ValueError("must not be empty: the model API refuses an empty turn")
    return value


class AgentFile(Strict):
    """`prompts/<id>/agent.yaml`: the prompt and configuration of one agent."""

    id: str = Field(pattern=ID_PATTERN,
                    description="Agent id: the folder name under `prompts/` and the "
                    "`agent_id` in the metrics (lowercase letters, digits, `-`).",
                    examples=["support-triage"])
    owner: str = Field(min_length=1, description="Who reviews changes to this agent (a "
                       "GitHub team or person). Not part of the prompt version.",
                       examples=["@acme/support-ai"])
    description: str = Field(default="", description="One line about what the agent does. "
                             "Not part of the prompt version.",
                             examples=["Triages inbound support tickets and drafts a reply."])
    output_format: Literal["auto", "json", "sql", "markdown", "text"] = Field(
        default="auto",
        description="What the agent answers with. Decides which rules the bot may propose: "
        "never a JSON rule for an agent that answers in SQL. `auto`: inferred from the "
        "examples, else from the prompt (shown in each proposal). Not part of the prompt "
        "version.", examples=["sql"])
    model: ModelConfig = Field(description="Model and sampling settings (section `model`).")
    prompts: Prompts = Field(description="System prompt and user template (section "
                             "`prompts`).")
    tools: list[Tool] = Field(default_factory=list,
                              description="Tools offered to the model (section `tools[]`); "
                              "offline eval does not send them.")
    examples: list[Example] = Field(default_factory=list,
                                    description="Few-shot examples (section `examples[]`); "
                                    "keep them short, they are sent with every request.")


# `sql_parses` names the dialect the SQL is read in (sqlglot's names); "generic" reads it in
# sqlglot's own dialect, which accepts what most engines share.
SQL_DIALECTS: tuple[str, ...] = ("generic", "athena", "bigquery", "clickhouse", "databricks",
                                 "duckdb", "hive", "mysql", "oracle", "postgres", "presto",
                                 "redshift", "snowflake", "spark", "sqlite", "trino", "tsql")

# One kind per item of a case's `assert` list: what `promptbot check` accepts (parsed and
# checked in bot/core/assertions.py, whose KINDS a test compares with these).
_TEXT = {"type": "string", "minLength": 1}
ASSERTION_ITEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "minProperties": 1,
    "maxProperties": 1,
    "additionalProperties": False,
    "properties": {
        "contains": {**_TEXT, "description": "The reply contains this text (case-sensitive)."},
        "not_contains": {**_TEXT, "description": "The reply does not contain this text "
                         "(case-sensitive)."},
        "regex": {**_TEXT, "description": "Python `re.search` finds this pattern in the "
                  "reply; flags inline, e.g. `(?i)`."},
        "equals": {"type": "string", "description": "The reply equals this text after "
                   "stripping whitespace from both."},
        "json_schema": {"type": "object", "description": "The whole reply is one JSON "
                        "document valid under this JSON Schema (remote `$ref`s are never "
                        "fetched)."},
        "sql_parses": {"type": "string", "description": "The reply's SQL (its first ```sql "
                       "block, else its first fenced block, else the whole reply) parses in "
                       "this dialect (sqlglot's names, or `generic`).",
                       "enum": list(SQL_DIALECTS)},
        "rubric": {**_TEXT, "description": "A criterion graded PASS or FAIL by "
                   "`eval.grader_model`; graded only when the other assertions pass."},
    },
}


class TestCase(Strict):
    """One offline evaluation case."""

    name: str = Field(min_length=1, description="Unique name of the case; results are "
                      "keyed by it.", examples=["lost-parcel-is-order-status"])
    inputs: dict[str, Any] = Field(
        description="Variables `prompts.user_template` is rendered with for this case.",
        examples=[{"ticket": {"subject": "Parcel not arrived", "body": "Where is it?"}}])
    assert_: list[dict[str, Any]] = Field(
        default_factory=list, alias="assert",
        description="Checks on the reply, one kind per list item: `contains`, "
        "`not_contains`, `regex`, `equals`, `json_schema`, `sql_parses`, `rubric` (section "
        "`cases[].assert[]`). A case needs at least one.",
        examples=[[{"contains": "Lena"}, {"regex": "(?i)order"}]],
        json_schema_extra={"items": ASSERTION_ITEM_SCHEMA})


class TestsFile(Strict):
    """`prompts/<id>/tests.yaml`: offline evaluation cases (run by `promptbot eval`)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)
    cases: list[TestCase] = Field(min_length=1, description="The cases (section `cases[]`), "
                                  "run in order; `eval.max_cases` caps how many.")


# ---------------------------------------------------------------- policy


class MetricsPolicy(Strict):
    """Where the metrics exports are and how to read them (docs/METRICS.md)."""

    source: str = Field(
        default="metrics/*.csv",
        description="Glob of the metrics exports, relative to the repository root; used "
        "when `--metrics` is not given. CSV, TSV, JSONL and Parquet, optionally gzipped.",
        examples=["exports/metrics/*.parquet"])
    columns: dict[str, ColumnTarget] = Field(
        default_factory=dict,
        description="Your export's column names mapped onto the canonical ones "
        "(`{your_name: canonical_name}`). A column that is neither canonical nor mapped is "
        "ignored with a warning.",
        examples=[{"ts": "timestamp", "agent": "agent_id", "duration": "latency_ms"}])
    status_values: dict[str, Status] = Field(
        default_factory=dict,
        description="Your export's status values mapped onto the canonical ones (`success`, "
        "`failure`, `error`, `timeout`); matched ignoring case and surrounding spaces. Any "
        "other value is a bad row (`unknown status`).",
        examples=[{"ok": "success", "failed": "error", "deadline_exceeded": "timeout"}],
        json_schema_extra={"propertyNames": {"pattern": r"\S"}})
    window_days: int = Field(
        default=28, ge=1, le=3650,
        description="Days of data, counted back from the newest row, that the analysis "
        "looks at.", examples=[14])
    preset: Literal["canonical", "otel"] = Field(
        default="canonical",
        description="`otel`: the files are flat OpenTelemetry GenAI span exports. OTLP/JSON "
        "trace files are recognized by their content with either preset.",
        examples=["otel"])

    @field_validator("status_values", mode="before")
    @classmethod
    def _keys_as_written(cls, value: Any) -> Any:
        # YAML reads `200:` and `true:` as a number and a boolean; exports hold such
        # statuses as text ("200", "true"), which is what they are compared with.
        if isinstance(value, dict):
            return {(str(k).lower() if isinstance(k, bool) else str(k))
                    if isinstance(k, int | float) else k: v for k, v in value.items()}
        return value

    @field_validator("status_values")
    @classmethod
    def _normalized_statuses(cls, value: dict[str, str]) -> dict[str, str]:
        # Statuses are compared lower-cased and trimmed (as the canonical ones are), so two
        # keys that differ only in case would be one key in ingest: refuse the ambiguity.
        out: dict[str, str] = {}
        for key, target in value.items():
            norm = key.strip().lower()
            if not norm:
                raise ValueError("an empty status value cannot be mapped")
            if norm in out and out[norm] != target:
                raise ValueError(f"'{key}' is mapped twice (statuses are compared ignoring "
                                 "case and surrounding spaces)")
            out[norm] = target
        return out


class ProposePolicy(Strict):
    """When the bot opens proposal pull requests."""

    min_executions: int = Field(
        default=200, ge=1,
        description="Executions of the current prompt version needed before the bot "
        "proposes a change to it.", examples=[500])
    min_failure_share: float = Field(
        default=0.01, ge=0.0, le=1.0,
        description="A failure mode must account for at least this fraction of the "
        "executions (0.01 = 1 %) to be a proposal's target.", examples=[0.02])
    min_failure_count: int = Field(
        default=20, ge=1,
        description="... and for at least this many executions, so one-off errors never "
        "open a PR.", examples=[50])
    fix_rate_prior: float = Field(
        default=0.4, ge=0.0, le=1.0,
        description="Prior fraction of the targeted failures an added instruction fixes; "
        "feeds the impact estimate until measured results calibrate it.", examples=[0.3])
    hours_per_proposal: float = Field(
        default=2.0, gt=0.0, le=1000.0,
        description="Review, deploy and follow-up hours one proposal costs (wording-only "
        "edits count half, model-config changes twice); used for ROI and the roadmap.",
        examples=[1.5])
    max_system_tokens: int = Field(
        default=4000, ge=1,
        description="Largest system prompt, in tokens, a proposal may produce.",
        examples=[6000])
    max_token_growth: float = Field(
        default=0.5, ge=0.0,
        description="Largest growth of the prompt a proposal may cause, as a fraction of "
        "the current size (0.5 = +50 %).", examples=[0.25])
    hours_budget: float = Field(
        default=40.0, ge=0.0, le=100_000.0,
        description="Review hours the roadmap (`promptbot propose --dry-run`) may plan; "
        "proposals beyond it wait in the backlog.", examples=[16])
    min_quality: float = Field(
        default=0.0, ge=0.0,
        description="Mean `quality_score` (on the export's own scale) below which a "
        "version gets an accuracy proposal; 0 turns the accuracy goal off.", examples=[0.8])
    healthy_success_rate: float = Field(
        default=0.95, ge=0.0, le=1.0,
        description="An agent whose current version succeeds at least this often is healthy: "
        "its failure modes are listed in the report, not proposed. 1 proposes for every "
        "agent.", examples=[0.98])
    review_hour_usd: float = Field(
        default=0.0, ge=0.0,
        description="What an hour of a reviewer's time costs, in USD. With payback_months it "
        "sets the floor a proposal's value must clear: value per month (pricing."
        "value_per_success_usd × extra successes - added token spend) at least hours × "
        "review_hour_usd / payback_months. 0 (the default) turns the floor off.",
        examples=[150.0])
    payback_months: float = Field(
        default=6.0, gt=0.0,
        description="Months within which a proposal must pay back its review hours; below "
        "the floor a proposal is listed in the report with its value, not opened.",
        examples=[12.0])


MOVED_TO_GUARDRAILS = ("max_prs_per_run", "cooldown_days")


class GuardrailsPolicy(Strict):
    """What keeps the bot from flooding a team, in one place (SPEC section 10); the
    dashboard shows them. One open change per agent at a time is not a setting: a second
    change would make the first one's measurement unreadable."""

    max_prs_per_run: int = Field(
        default=3, ge=0, le=100,
        description="Most new proposal PRs one `promptbot run` opens; 0 turns proposing off "
        "(analysis, measurement and reports still run).", examples=[1])
    cooldown_days: float = Field(
        default=3.0, ge=0.0, le=365.0,
        description="Days a prompt version must have been live (in the data, not on the "
        "clock) before it gets a proposal.", examples=[7])
    max_open_proposals: int = Field(
        default=10, ge=0, le=1000,
        description="Most proposal PRs open at once in the repository; new ones wait in "
        "the backlog (the dashboard's roadmap) until one is merged or closed.", examples=[5])
    min_confidence: Literal["low", "medium"] = Field(
        default="low",
        description="Least confidence of the success-rate estimate a proposal needs to "
        "open: `medium` waits for 3 measured proposals of its type in this repository "
        "(calibration).", examples=["medium"])
    snooze: dict[str, date] = Field(
        default_factory=dict,
        description="Agents that get no new proposal until the given day (inclusive), "
        "e.g. {support-triage: 2027-01-15}; measuring and alerts go on. The dashboard's "
        "snooze box adds 14 days without editing this file.",
        examples=[{"support-triage": "2027-01-15"}])

    @field_validator("snooze")
    @classmethod
    def _snooze_ids(cls, value: dict[str, date]) -> dict[str, date]:
        for agent in value:
            if not is_safe_id(agent):
                raise ValueError(f"'{agent[:80]}' is not an agent id (lowercase letters, "
                                 "digits and '-')")
        return value


class AlertsPolicy(Strict):
    """Conditions that open one labelled issue each (`<prefix>:alert`), closed when they
    clear (seed 003)."""

    rollback_window: int = Field(
        default=5, ge=1, le=100,
        description="Rollback rate: how many of the latest measured proposals are looked "
        "at.", examples=[10])
    max_rollbacks: int = Field(
        default=2, ge=0, le=100,
        description="Rollback rate: alert when at least this many of them regressed or "
        "were rolled back; 0 = off.", examples=[3])
    degraded: bool = Field(
        default=True,
        description="Alert while an agent's degradation or SLA trigger fires.",
        examples=[False])
    backlog_days: float = Field(
        default=14.0, ge=0.0, le=365.0,
        description="Alert when a proposal PR has been open longer than this many days; "
        "0 = off.", examples=[7])
    recurring: bool = Field(
        default=True,
        description="Alert when a failure mode a merged proposal fixed (measured success) "
        "is back on the current version.", examples=[False])
    stale_export_hours: float = Field(
        default=48.0, ge=0.0, le=8760.0,
        description="Alert when the newest metrics row is older than this many hours: the "
        "export stopped arriving. 0 = off.", examples=[26])


class LearningPolicy(Strict):
    """The learning loop (SPEC section 11): rules that kept working are proposed for
    `policies/promoted_rules.yaml`, promoted ones that regress for removal."""

    enabled: bool = Field(
        default=True, description="Open promotion and demotion PRs.", examples=[False])
    min_successes: int = Field(
        default=3, ge=1, le=1000,
        description="Measured successes a rule needs before it is proposed for promotion.",
        examples=[5])
    min_agents: int = Field(
        default=2, ge=1, le=1000,
        description="... on at least this many agents (one agent's successes may be its "
        "quirk).", examples=[3])
    min_non_regressing: float = Field(
        default=0.90, ge=0.0, le=1.0,
        description="Share of the rule's measured uses that must be kept (neither "
        "regressed nor rolled back); a promoted rule whose later use was not kept and whose "
        "share falls below it is proposed for demotion.", examples=[0.95])


class DashboardPolicy(Strict):
    """The dashboard issue (a Markdown file under .promptbot/ on the local forge)."""

    enabled: bool = Field(
        default=True, description="Keep one dashboard issue up to date.", examples=[False])
    max_chars: int = Field(
        default=60000, ge=5000, le=64000,
        description="Longest dashboard body; healthy agents collapse, then the longest "
        "lists are cut, to stay under GitHub's 65,536 characters.", examples=[30000])


class MeasurePolicy(Strict):
    """How a merged (deployed) proposal is measured against the version before it."""

    min_executions_per_arm: int = Field(
        default=500, ge=10,
        description="No decision before each side (the version before and the new one) "
        "has this many executions.", examples=[1000])
    min_failures_per_arm: int = Field(
        default=10, ge=0,
        description="... and this many failures: a comparison of failure rates with "
        "almost no failures is fragile.", examples=[20])
    alpha: float = Field(
        default=0.05, gt=0.0, lt=0.5,
        description="Error level of the always-valid test: the chance of ever calling a "
        "change that did nothing a success or a regression, however many runs look.",
        examples=[0.01])
    max_executions_per_arm: int = Field(
        default=20_000, ge=100,
        description="Canary splits (both versions serving at once): the planned horizon in "
        "executions per side, by which \"no measurable effect\" is called at the latest.",
        examples=[50_000])
    rollback_threshold: float = Field(
        default=0.02, ge=0.0, le=1.0,
        description="Recommend a rollback when the success rate drops by more than this "
        "absolute fraction (0.02 = 2 points); also the non-inferiority margin.",
        examples=[0.01])
    min_detectable_effect: float = Field(
        default=0.02, gt=0.0, le=1.0,
        description="Smallest success-rate change worth having (absolute fraction): \"no "
        "effect\" only once the interval lies within ± this; sizes the wait for proposals "
        "without an estimate.", examples=[0.03])
    latency_margin: float = Field(
        default=0.10, ge=0.0, le=10.0,
        description="Guardrail: a win whose latency (geometric mean) is shown more than "
        "this fraction higher (0.10 = +10 %) is not a success.", examples=[0.2])
    canary_share: float = Field(
        default=0.0, ge=0.0, lt=1.0,
        description="Fraction of traffic a canary deploy sends to the new version (0 = "
        "deploys switch all traffic); a split far from it is reported as a sample-ratio "
        "mismatch.", examples=[0.1])
    cost_margin: float = Field(
        default=0.10, ge=0.0, le=10.0,
        description="Guardrail: a win whose cost per execution (capped at the 99.9th "
        "percentile) is shown more than this fraction higher is not a success.",
        examples=[0.05])
    quality_margin: float = Field(
        default=0.05, ge=0.0, le=1.0,
        description="A change whose mean quality score is shown more than this much lower "
        "(on the score's scale) is a regression, whatever the success rate did.",
        examples=[0.1])
    base_days: int = Field(
        default=56, ge=1, le=366,
        description="Complete days of the version before the deploy used as its history "
        "(weekday levels, trend, day-to-day variation).", examples=[28])
    horizon_days: int = Field(
        default=14, ge=1, le=366,
        description="Days of the new version after which the test is sharpest.",
        examples=[7])
    max_days: int = Field(
        default=42, ge=1, le=366,
        description="Days without a decision after which the result is \"inconclusive\" "
        "and the agent is free for new proposals.", examples=[28])
    day_sd: float = Field(
        default=0.02, ge=0.0, le=0.5,
        description="Day-to-day standard deviation of the success rate (absolute fraction) "
        "assumed while the history is too short to estimate it (under about two weeks).",
        examples=[0.03])
    incident_share: float = Field(
        default=0.02, gt=0.0, le=1.0,
        description="A day is left out as an incident day when one failure template takes "
        "at least this fraction of the executions above its usual level and comes from "
        "outside the prompt (an infrastructure error, or the same jump in another agent).",
        examples=[0.05])
    canary_stages: list[float] = Field(
        default_factory=list,
        description="Merge proposals as canaries (prompts/<agent>/rollout.yaml, "
        "docs/RUNTIME.md): the shares of request keys the new version serves, stage by "
        "stage, as fractions (e.g. [0.05, 0.25, 0.5]); after the last one a promote PR "
        "takes it to all traffic. Empty: a merge switches all traffic at once.",
        examples=[[0.05, 0.25, 0.5]])
    canary_agents: dict[str, list[float]] = Field(
        default_factory=dict,
        description="Per-agent stage plans that replace `canary_stages` for those agents "
        "(an empty list: no canary for that agent).",
        examples=[{"support-triage": [0.1, 0.5], "sql-writer": []}])
    canary_stage_hours: int = Field(
        default=24, ge=1, le=24 * 60,
        description="Hours a canary stage runs before the next stage may be proposed "
        "(when the comparison so far shows no harm).", examples=[48])

    @field_validator("canary_stages")
    @classmethod
    def _stages(cls, value: list[float]) -> list[float]:
        return _stage_plan(value)

    @field_validator("canary_agents")
    @classmethod
    def _agent_stages(cls, value: dict[str, list[float]]) -> dict[str, list[float]]:
        for agent, plan in value.items():
            if not is_safe_id(agent):
                raise ValueError(f"'{agent[:60]}' is not an agent id (lowercase letters, "
                                 "digits, -)")
            _stage_plan(plan)
        return value


def _stage_plan(value: list[float]) -> list[float]:
    # Percent with two decimals is what the runtime's assignment can express.
    for share in value:
        if not 0 < share < 1 or abs(share * 10_000 - round(share * 10_000)) > 1e-6:
            raise ValueError(f"stage {share!r}: each stage is a fraction above 0 and below 1 "
                             "(1 = promote) with at most four decimals, e.g. 0.05")
    if any(b <= a for a, b in pairwise(value)):
        raise ValueError("stages must increase, e.g. [0.05, 0.25, 0.5]")
    return value


class TriggerPolicy(Strict):
    """Conditions that need a person's attention now; `promptbot analyze` exits 1 on one."""

    recent_days: float = Field(
        default=1.0, gt=0.0, le=30.0,
        description="Length of the recent stretch, in days of data ending at the newest "
        "row; it is compared with the week before it.", examples=[2])
    success_drop: float = Field(
        default=0.05, ge=0.0, le=1.0,
        description="Degradation: success rate down by more than this absolute fraction "
        "(and significantly).", examples=[0.03])
    latency_increase: float = Field(
        default=0.5, ge=0.0, le=100.0,
        description="Degradation: p95 latency up by more than this fraction (0.5 = +50 %); "
        "0 turns it off.", examples=[1.0])
    repeated_errors: int = Field(
        default=50, ge=0,
        description="Repeated errors: one failure mode more often than this in the recent "
        "stretch; 0 turns it off.", examples=[100])
    sla_success_rate: float = Field(
        default=0.0, ge=0.0, le=1.0,
        description="SLA: lowest acceptable success rate in the recent stretch (fraction); "
        "0 = off.", examples=[0.95])
    sla_latency_p95_ms: float = Field(
        default=0.0, ge=0.0,
        description="SLA: highest acceptable p95 latency in the recent stretch, in "
        "milliseconds; 0 = off.", examples=[8000])


class ForgePolicy(Strict):
    """The forge (GitHub or the local one) the bot talks to."""

    base_branch: str = Field(
        default="main",
        description="Branch proposals target and the agent runtime deploys from.",
        examples=["production"])
    results: Literal["commit", "pr"] = Field(
        default="commit",
        description="How measured results reach the base branch: pushed as a `commit`, or "
        "as a `pr` where branch protection forbids the bot to push.", examples=["pr"])
    label_prefix: str = Field(
        default="promptbot", pattern=r"^[a-z0-9][a-z0-9-]{0,30}$",
        description="Prefix of the lifecycle labels on the bot's PRs (`<prefix>:proposed`, "
        "...); lowercase letters, digits and `-`.", examples=["prompt-bot"])
    max_writes_per_run: int = Field(
        default=60, ge=1, le=1000,
        description="Most GitHub writes (PRs, comments, labels, statuses) one run makes; "
        "the rest waits for the next run. Bounds the damage of a bug or an event flood.",
        examples=[30])
    max_rate_limit_wait_s: float = Field(
        default=300.0, ge=0, le=3600,
        description="Longest wait for a rate-limit reset, in seconds, before a run gives "
        "up (the next run continues).", examples=[60])


class PricingPolicy(Strict):
    """Model prices and the value of a success: turn changes into money."""

    input_per_mtok: float = Field(
        default=3.0, ge=0,
        description="USD per million input tokens: the cost delta of a proposal, and the "
        "cost of OpenTelemetry spans (which record none).", examples=[0.8])
    output_per_mtok: float = Field(
        default=15.0, ge=0, description="USD per million output tokens.", examples=[4.0])
    value_per_success_usd: float = Field(
        default=0.10, ge=0,
        description="What one more successful execution is worth, in USD (a resolved "
        "ticket, a correct query): turns a success-rate change into money per month for "
        "ROI and priority.", examples=[0.5])


class GeneratorPolicy(Strict):
    """Who writes prompt variants."""

    kind: Literal["auto", "offline", "anthropic"] = Field(
        default="auto",
        description="`auto`: Anthropic when ANTHROPIC_API_KEY is set, else the offline "
        "generator (deterministic rules, no network); `anthropic` without a key is an "
        "error.", examples=["offline"])
    model: str = Field(default="claude-sonnet-4-6", min_length=1,
                       description="Model that writes candidates (generator `anthropic`).",
                       examples=["claude-opus-4-1"])
    candidates: int = Field(
        default=3, ge=1, le=5,
        description="Candidates asked for per proposal; the cheapest valid one is "
        "proposed, the others are listed in the PR.", examples=[2])
    budget_usd: float = Field(
        default=1.0, ge=0.0,
        description="Per run, in USD: the generator stops before exceeding it and the run "
        "falls back to the offline generator.", examples=[5.0])
    budget_tokens: int = Field(
        default=200_000, ge=0,
        description="Per run, in tokens (input + output): the same limit counted in "
        "tokens.", examples=[500_000])


class EvalPolicy(Strict):
    """Offline eval (`promptbot eval`): tests.yaml cases on the base and the changed version."""

    max_regression: float = Field(
        default=0.10, ge=0.0, le=1.0,
        description="The gate fails when the variant's pass rate is more than this far "
        "below the base's (absolute fraction of the cases both could run: 0.10 = 10 "
        "points); exactly at the threshold passes.", examples=[0.0])
    provider: Literal["auto", "anthropic", "recorded"] = Field(
        default="auto",
        description="`auto`: Anthropic when ANTHROPIC_API_KEY is set, else the recorded "
        "replies (`eval-recordings.jsonl`); `anthropic` and `recorded` force one.",
        examples=["recorded"])
    max_cases: int = Field(
        default=50, ge=1, le=10_000,
        description="At most this many cases per agent (the first ones of tests.yaml); "
        "bounds the cost.", examples=[20])
    budget_usd: float = Field(
        default=1.0, ge=0.0,
        description="Per run with a live provider, in USD: no request starts that could "
        "exceed it; the cases left are reported unavailable.", examples=[2.5])
    budget_tokens: int = Field(
        default=300_000, ge=0,
        description="Per run with a live provider, in tokens (worst case: input estimate + "
        "`max_tokens`).", examples=[100_000])
    grader_model: str = Field(default="claude-sonnet-4-6", min_length=1,
                              description="Model that grades `rubric` assertions PASS or "
                              "FAIL.", examples=["claude-haiku-4-5"])
    require_replies: bool = Field(
        default=False,
        description="When the variant could not be evaluated at all (no recording, no "
        "key): `false` reports the `promptbot/eval` status as success marked \"not "
        "evaluated\"; `true` fails it, so nothing merges unevaluated.", examples=[True])


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


class RegressionPolicy(Strict):
    """Regression cases from production: when a merged proposal fixed a failure mode, a PR
    adds the inputs that failed that way to the agent's tests.yaml (docs/WAREHOUSE.md)."""

    enabled: bool = Field(
        default=True, description="Open regression-case PRs (they need an `input` column "
        "in the export, or an OpenTelemetry input attribute).", examples=[False])
    max_cases: int = Field(
        default=3, ge=1, le=20, description="Cases per fixed failure mode.", examples=[5])
    max_input_chars: int = Field(
        default=8_000, ge=200, le=100_000,
        description="Longer inputs (as JSON, after scrubbing) are not used.",
        examples=[4000])


# Rejects what `Policy._relative` rejects, for editors and the schema validation: an
# absolute path, a `..` segment, a blank value.
_RELATIVE_PATH = r"^(?!/)(?!([\s\S]*[/\\])?\.\.([/\\]|$))(?=[\s\S]*\S)"


class Policy(Strict):
    """`policies/promptbot.yaml`: the bot's configuration and guardrails. Every key is
    optional; a missing key has its default."""

    metrics: MetricsPolicy = Field(default_factory=MetricsPolicy,
                                   description="Where the metrics exports are and how to "
                                   "read them.")
    propose: ProposePolicy = Field(default_factory=ProposePolicy,
                                   description="When the bot opens proposal PRs.")
    guardrails: GuardrailsPolicy = Field(default_factory=GuardrailsPolicy,
                                         description="Limits on proposals, in one place.")
    alerts: AlertsPolicy = Field(default_factory=AlertsPolicy,
                                 description="Conditions that open an alert issue.")
    dashboard: DashboardPolicy = Field(default_factory=DashboardPolicy,
                                       description="The dashboard issue.")
    learning: LearningPolicy = Field(default_factory=LearningPolicy,
                                     description="Promoting rules that kept working.")
    regression: RegressionPolicy = Field(
        default_factory=RegressionPolicy,
        description="Regression cases from production failures a merged proposal fixed.")
    measure: MeasurePolicy = Field(default_factory=MeasurePolicy,
                                   description="How a deployed proposal is measured.")
    triggers: TriggerPolicy = Field(default_factory=TriggerPolicy,
                                    description="Conditions that need attention now.")
    generator: GeneratorPolicy = Field(default_factory=GeneratorPolicy,
                                       description="Who writes prompt variants.")
    eval: EvalPolicy = Field(default_factory=EvalPolicy,
                             description="Offline eval and its gate.")
    forge: ForgePolicy = Field(default_factory=ForgePolicy,
                               description="The forge the bot talks to.")
    pricing: PricingPolicy = Field(default_factory=PricingPolicy,
                                   description="Model prices and the value of a success.")
    reports_dir: str = Field(
        default="reports", description="Where `promptbot run` writes analysis.md/.json, "
        "relative to the repository root.", examples=["build/promptbot"],
        json_schema_extra={"pattern": _RELATIVE_PATH})

    @model_validator(mode="before")
    @classmethod
    def _moved_guardrails(cls, data: Any) -> Any:
        """`propose.max_prs_per_run` and `propose.cooldown_days` moved to `guardrails`
        (0.9): a policy written before still loads, with the same meaning."""
        if not isinstance(data, dict) or not isinstance(data.get("propose"), dict):
            return data
        propose = dict(data["propose"])
        moved = {k: propose.pop(k) for k in MOVED_TO_GUARDRAILS if k in propose}
        if not moved:
            return data
        guardrails = data.get("guardrails") or {}
        if not isinstance(guardrails, dict):
            return data  # the section's own validation says what is wrong
        both = sorted(set(moved) & set(guardrails))
        if both:
            raise ValueError(f"propose.{both[0]} and guardrails.{both[0]} are both set: keep "
                             f"guardrails.{both[0]} (the propose key is its old place)")
        return {**data, "propose": propose, "guardrails": {**guardrails, **moved}}

    @field_validator("reports_dir")
    @classmethod
    def _relative(cls, value: str) -> str:
        parts = value.replace("\\", "/").split("/")
        if value.startswith("/") or ".." in parts or not value.strip():
            raise ValueError("must be a relative path inside the repository")
        return value
