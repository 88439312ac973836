"""What went wrong, from all the evidence: the failure's category, and the agent's format.

A failure mode's category comes from its error type and message, matched against the
shapes real stacks produce (tests/data/error_shapes.yaml is the corpus it is measured on).
The order of the table matters: the most specific shapes first, so a DuckDB
"Parser Error: syntax error" is SQL syntax, not a JSON parse failure, and a statement
timeout is the query's, not the network's.

The agent's output format (JSON, SQL, Markdown, text) is what agent.yaml declares
(`output_format`), else what its examples and prompt show. A rule is proposed only when
its premise holds: a JSON rule for an agent that answers in SQL would harm it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Final

# Failure categories; the ones in PROMPT_FIXABLE have a rule an edit of the prompt can add.
CATEGORIES: Final = (
    "tool_call", "context_length", "content_filter", "refusal", "truncated", "sql_timeout",
    "rate_limit", "sql_schema", "sql_syntax", "invalid_json", "missing_field", "timeout",
    "server_error", "config", "not_found", "unknown",
)

# Category -> the offline rule (bot/core/variants.py) that addresses it.
RULE_FOR: Final[dict[str, str]] = {
    "invalid_json": "invalid_json", "missing_field": "missing_field",
    "sql_syntax": "sql_syntax", "sql_schema": "sql_schema", "sql_timeout": "sql_timeout",
    "tool_call": "tool_misuse", "truncated": "too_long", "not_found": "ungrounded",
}

# Why the others get no prompt rule: said in the report instead of a PR.
NOT_THE_PROMPT: Final[dict[str, str]] = {
    "rate_limit": "rate limiting is the provider's quota, not the prompt: raise the limit or "
                  "retry with backoff",
    "timeout": "a request timeout is the client's or the network's: raise the timeout or look "
               "at the provider's latency (a slow prompt is the latency goal's business)",
    "server_error": "provider or network failures are not the prompt's: retry with backoff",
    "config": "a configuration error (key, permission, model name, parameter) is fixed in the "
              "service, not in the prompt",
    "content_filter": "the provider's safety filter blocked it: a person decides whether the "
                      "inputs or the task need a change",
    "refusal": "refusals need a person's judgement: a rule that talks the model out of "
               "refusing can make it help with what it should refuse",
    "context_length": "the input is longer than the model's context: trim or chunk the "
                      "input in the service",
    "unknown": "no known shape of error: a person should look at the examples",
}

# Formats a rule presupposes; a rule not listed fits any format.
RULE_FORMATS: Final[dict[str, frozenset[str]]] = {
    "invalid_json": frozenset({"json"}), "missing_field": frozenset({"json"}),
    "sql_syntax": frozenset({"sql"}), "sql_schema": frozenset({"sql"}),
    "sql_timeout": frozenset({"sql"}),
}
FORMATS: Final = ("json", "sql", "markdown", "text")

_I = re.IGNORECASE
# (category, pattern over "error_type: message"), first match wins.
_SHAPES: Final[tuple[tuple[str, re.Pattern[str]], ...]] = tuple(
    (category, re.compile(pattern, _I | re.MULTILINE)) for category, pattern in (
        ("tool_call", r"invalid json (input|arguments?) for (the )?tool|no ?such ?tool|"
                      r"unknown[ _]tool|invalid ?tool ?arguments|invalid_arguments|"
                      r"\btool\b[^.\n]{0,60}\b(not found|does not exist|is not available)|"
                      r"\btool_use\b[^.\n]{0,80}\b(input|invalid)|tool ?call ?validation|"
                      r"toolexception|function (call )?arguments|invalid (arguments|args)|"
                      r"arguments? (for|of|to) (the )?(tool|function)|not a valid tool|"
                      r"invalid input for tool|\bfunction \w+ arguments|notoolerror|"
                      r"nosuchtool"),
        ("config", r"not_found_error|does not exist or you do not have access|"
                   r"invalid x-api-key|authentication_error|permission_error|credit balance|"
                   r"accessdenied|access denied"),
        ("invalid_json", r"\bin JSON\b|JSON at position|JSON\.parse|not valid JSON|"
                         r"jsondecodeerror|json_invalid|invalid JSON|JSON parsing failed|"
                         r"malformed JSON|failed to parse JSON"),
        ("not_found", r"\b404\b(?! not found: (table|dataset))|not found for url|"
                      r"no row was found|^keyerror: '"),
        ("context_length", r"prompt is too long|maximum context length|context[_ ]length|"
                           r"context (window|limit)|too many (input )?tokens|"
                           r"input is too long|request too large for model|"
                           r"token count .{0,40}exceeds|"
                           r"max_new_tokens|tokens \+ .{0,40}must be <="),
        ("content_filter", r"content[_ ]?(filter|management|policy)|responsible ?ai|"
                           r"\bsafety\b.{0,40}(block|filter)|block(ed)?.{0,40}\bsafety\b|"
                           r"finish_reason\W+safety|guardrail|prohibited[ _]content|"
                           r"block_reason|flagged|"
                           r"usage polic|^:\s*safety\s*$"),
        ("config", r"invalid_request_error|badrequesterror|error code: 400\b|"
                   r"invalid parameter|input_schema|unsupported parameter"),
        ("refusal", r"\brefusal\b|\b(model|assistant) refused|refused to (answer|help|"
                    r"comply|respond)|\bI(?:'| a)m sorry,? (?:but )?I can(?:'|no)t|"
                    r"\bI can(?:'|no)t (?:help|assist)|\bI won'?t be able to"),
        ("truncated", r"stop_reason\W+max_tokens|finish_reason\W+length|max.?tokens.?"
                      r"(exceeded|reached|hit)|maxtokens|length limit was reached|"
                      r"lengthfinishreason|truncat|cut off|incomplete.{0,40}max_(output_)?tokens|"
                      r"max_output_tokens|^:\s*(max_tokens|length)\s*$|"
                      r"finish_reason\W+(2|max_tokens)\b|finish_?reason\]\([^)]*\) is 2\b"),
        ("sql_timeout", r"statement (timeout|or warehouse timeout)|canceling statement|"
                        r"maximum statement execution time|"
                        r"query exceeded (the )?(statement timeout|maximum (execution|statement) "
                        r"time|[^.]{0,20}time ?limit|resource limits)|"
                        r"query (was )?(cancell?ed|interrupted)|timeout exceeded: elapsed|"
                        r"query_timeout|querytimeout|statement_timeout|"
                        r"execution time exceeded|operation timed out after .{0,20}hours|"
                        r"interrupt error|interruptexception"),
        ("rate_limit", r"rate.?limit|\b429\b|too many requests|quota|throttl|"
                       r"resource (has been )?exhausted|resource_exhausted|tokens per min|"
                       r"requests per min"),
        ("sql_schema", r"binder ?(error|exception)|catalog ?(error|exception)|"
                       r"\bcolumn\b[^\n]{0,80}\b(does not exist|not found|doesn't exist)|"
                       r"\brelation\b[^\n]{0,80}\bdoes not exist|"
                       r"\b(table|view)\b[^\n]{0,80}\b(does not exist|doesn't exist|not found)|"
                       r"no such (column|table|function)|unknown (column|table|identifier)|"
                       r"invalid identifier|unrecognized name|is ambiguous|"
                       r"unresolved_column|table_or_view_not_found|unresolved_routine|"
                       r"\bfunction\b[^\n]{0,80}\bdoes not exist|not found: (table|dataset)|"
                       r"object '[^']*' does not exist|undefined(column|table|function)|"
                       r"missing from-clause|must appear in the group by|"
                       r"unknown (function|table|identifier)|no function matches|"
                       r"unknown expression identifier"),
        ("sql_syntax", r"syntax error|parse_syntax_error|error in your sql syntax|"
                       r"mismatched input|\bparser ?(error|exception)|\bsql ?compilation|"
                       r"extraneous input|sqlglot|\btokenerror|\bparseexception|"
                       r"unrecognized token|incomplete input|line \d+, col: \d+|\bat or near\b|"
                       r"unexpected (keyword|token) .{0,40}(at|line|position)|"
                       r"invalid (sql|query) syntax"),
        ("invalid_json", r"json|expecting (value|property name|'[^']{1,3}' delimiter)|"
                         r"unterminated string|extra data|invalid control character|"
                         r"eof while parsing|trailing comma|invalid \\escape|"
                         r"unexpected (token|end of input|character)"),
        ("missing_field", r"validation ?error|field required|is a required property|"
                          r"missing data for required|input should be|is not of type|"
                          r"is not one of|\brequired\b|expected \w+, received|"
                          r"additional properties|extra (inputs|fields?) (are|is) not permitted|"
                          r"schema|missing (field|key|property)|invalid enum|"
                          r"does not match|unexpected (field|key|property)"),
        ("timeout", r"timed? ?out|timeout|deadline[_ ]exceeded|\b504\b"),
        ("server_error", r"overloaded|\b5(0[0-3]|29)\b|internal ?server ?error|"
                         r"server had an error|service ?unavailable|bad gateway|"
                         r"connection ?(error|reset|refused|aborted)|remote ?end closed|"
                         r"remotedisconnected|apiconnectionerror|\bapi_error\b|"
                         r"modelnotready|try again later|temporarily unavailable|"
                         r"broken pipe|eof occurred in violation|server disconnected"),
        ("config", r"authenticat|api.?key|\b40[13]\b|permission|forbidden|unauthori[sz]ed|"
                   r"credit balance|do not have access|not_found_error|\bmodel\b.{0,60}"
                   r"(not found|does not exist)|invalid_request_error|badrequest|"
                   r"must be (greater|less)|: range:|unprocessable|billing|"
                   r"unsupported (parameter|value)|invalid (model|parameter)|"
                   r"\(validationexception\)|"
                   r"isn.t supported|not supported"),
        ("not_found", r"not found|does not exist|doesn't exist|no such|\b404\b|"
                      r"unknown (order|customer|user|account|product|id)|no (record|result)s?"
                      r" (found|for)"),
    ))


def of_failure(error_type: str, template: str, example: str,
               tools: tuple[str, ...] = ()) -> str:
    """The category of a failure mode: its template (variable parts masked) and one real
    message, whose quoted values often name the error's kind (`'type':
    'invalid_request_error'`) where the template has `<*>`."""
    return classify(error_type, f"{template}\n{example}" if example else template, tools)


def classify(error_type: str, message: str, tools: tuple[str, ...] = ()) -> str:
    """The failure category of one error (CATEGORIES), from its type and message, and the
    agent's tool names: a JSON or schema error that names one of them is about a tool call
    (frameworks validate a call's arguments with a model named after the tool)."""
    text = f"{error_type or ''}: {message or ''}"[:2000]
    found = next((c for c, pattern in _SHAPES if pattern.search(text)), "unknown")
    if found in ("invalid_json", "missing_field") and any(
            re.search(rf"(?<![\w-]){re.escape(t)}(?![\w-])", text) for t in tools if t):
        return "tool_call"
    return found


@dataclass(frozen=True)
class Format:
    name: str  # one of FORMATS
    source: str  # "declared" | "examples" | "prompt" | "default"
    # Formats carried inside it: SQL as a value of the JSON answer ({"sql": "SELECT …"}).
    also: frozenset[str] = frozenset()

    @property
    def known(self) -> bool:
        """A default "text" says nothing: no rule is refused because of it."""
        return self.source != "default"

    def describe(self) -> str:
        how = {"declared": "declared in agent.yaml (output_format)",
               "examples": "inferred from its examples",
               "prompt": "inferred from its prompt",
               "default": "not declared, nothing in the prompt says (treated as text)"}
        return f"{self.name.upper() if self.name in ('json', 'sql') else self.name} — " \
               f"{how[self.source]}"


_FENCE = re.compile(r"^\s*```\s*([A-Za-z0-9_+-]*)")
_SQL_START = re.compile(r"^\s*(WITH|SELECT|INSERT|UPDATE|DELETE|CREATE)\b", _I)
_PROMPT_SIGNS: Final[tuple[tuple[str, re.Pattern[str]], ...]] = (
    ("json", re.compile(r"\b(answer|reply|respond|response|output|return|result)\b[^.\n]{0,60}"
                        r"\bJSON\b|\bJSON (object|array|document)\b", _I)),
    ("sql", re.compile(r"```sql|\b(answer|reply|respond|return|write|with)\b[^.\n]{0,40}"
                       r"\b(SQL|query)\b|\bSQL (query|statement)\b", _I)),
    ("markdown", re.compile(r"\b(in|as|use) markdown\b|\bmarkdown (headings?|format|"
                            r"document|list)\b", _I)),
)


def _strings(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


def _example_format(output: str) -> str | None:
    fence = _FENCE.match(output)
    if fence:
        lang = fence.group(1).lower()
        if lang in ("json", "sql"):
            return lang
        return "markdown" if lang in ("md", "markdown") else None
    text = output.strip()
    if text[:1] in "{[":
        try:
            value = json.loads(text)
        except ValueError:
            return None
        return "json+sql" if any(_SQL_START.match(s) for s in _strings(value)) else "json"
    if _SQL_START.match(text):
        return "sql"
    if re.match(r"^#{1,6} \S", text) or re.search(r"\n#{1,6} \S", text):
        return "markdown"
    return None


_NEGATION = re.compile(r"\b(never|not|no|don't|do not|without|instead of|rather than)\b", _I)


def _negated(text: str, start: int, end: int) -> bool:
    """Whether the clause of a sign denies it ("Reply in prose, never as JSON")."""
    clause = re.split(r"[.;:\n]", text[max(0, start - 60):start])[-1] + text[start:end]
    return bool(_NEGATION.search(clause))


def output_format(declared: str, system: str, example_outputs: tuple[str, ...]) -> Format:
    """The agent's output format: declared, else the examples' (all that say one thing),
    else the prompt's strongest sign, else text by default."""
    if declared != "auto":
        return Format(declared, "declared")
    seen = {f for f in (_example_format(o) for o in example_outputs) if f is not None}
    if seen and seen <= {"json", "json+sql"}:
        return Format("json", "examples",
                      frozenset({"sql"}) if "json+sql" in seen else frozenset())
    if len(seen) == 1:
        return Format(seen.pop(), "examples")
    counts = {name: sum(1 for m in pattern.finditer(system)
                        if not _negated(system, m.start(), m.end()))
              for name, pattern in _PROMPT_SIGNS}
    best = max(counts.values(), default=0)
    winners = [name for name, n in counts.items() if n == best]
    if best and len(winners) == 1:
        return Format(winners[0], "prompt")
    return Format("text", "default")


def contradiction(rule_key: str, fmt: Format, has_tools: bool) -> str | None:
    """Why a rule's premise does not hold for this agent, or None when it does."""
    wants = RULE_FORMATS.get(rule_key)
    if wants is not None and fmt.known and not wants & ({fmt.name} | fmt.also):
        return (f"the `{rule_key}` rule presupposes a {'/'.join(sorted(wants)).upper()} "
                f"answer, but the agent answers in {fmt.describe()}")
    if rule_key == "tool_misuse" and not has_tools:
        return "the `tool_misuse` rule presupposes tools, and the agent declares none"
    return None
