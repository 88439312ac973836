"""OpenTelemetry GenAI spans as executions: OTLP JSON files and flat span exports.

Which span is one execution: `invoke_agent` spans when the data has any (one per agent
run); otherwise inference spans (`chat`, `generate_content`, `text_completion`);
otherwise, for exports without GenAI attributes, every span.

Attributes (OpenTelemetry GenAI semantic conventions, plus two of promptbot's own):
  agent_id        gen_ai.agent.name, else gen_ai.agent.id, else resource service.name
  prompt_version  prompt.version (span or resource attribute; set it from
                  `promptbot version` in the agent runtime), else promptbot.prompt_version
  execution_id    traceId + spanId
  status          "timeout" when error.type is timeout; "error" when the span status is
                  ERROR or error.type is set; else "success"
  latency_ms      end - start
  input/output    gen_ai.usage.input_tokens / gen_ai.usage.output_tokens
  cost_usd        tokens x the policy's prices (OpenTelemetry has no cost attribute)
  error_type      error.type;  error_message: span status message, else exception.message
  model           gen_ai.response.model, else gen_ai.request.model
  input           promptbot.inputs (the user template's variables as JSON, set by the
                  runtime), else gen_ai.input.messages, else gen_ai.prompt, else (OTLP) the
                  `content` of the span's last gen_ai.user.message event: read only for
                  regression cases, never by ingest
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from bot.load.sql import file_literal
from bot.load.sql import lit as _lit

INFERENCE_OPS = ("chat", "generate_content", "text_completion")


def is_otlp_json(path: str) -> bool:
    """An OTLP/JSON trace export (an ExportTraceServiceRequest), by its first bytes."""
    if not path.lower().endswith(".json"):
        return False
    try:
        with open(path, "rb") as handle:
            head = handle.read(4096)
    except OSError:
        return False
    return b'"resourceSpans"' in head


def _kv(source: str) -> str:
    """A MAP from an OTLP attribute list (typed values flattened to text)."""
    value = ("coalesce(a->'value'->>'stringValue', a->'value'->>'intValue', "
             "a->'value'->>'doubleValue', a->'value'->>'boolValue')")
    return (f"map_from_entries(list_transform(coalesce(from_json({source}, '[\"JSON\"]'), []), "
            f"lambda a: {{'k': a->>'key', 'v': {value}}}))")


Lookup = Callable[[str], str]


def _canonical(attr: Lookup, res: Lookup, start_ns: str, end_ns: str, trace: str, span: str,
               status_code: str, status_message: str, prices: tuple[float, float],
               event_input: str = "NULL") -> str:
    """Canonical columns; `attr`/`res` turn an attribute name into a SQL expression."""
    tin = f"try_cast({attr('gen_ai.usage.input_tokens')} AS DOUBLE)"
    tout = f"try_cast({attr('gen_ai.usage.output_tokens')} AS DOUBLE)"
    error_type = attr("error.type")
    return f"""
        make_timestamp(CAST(({start_ns}) // 1000 AS BIGINT)) AS timestamp,
        coalesce({attr('gen_ai.agent.name')}, {attr('gen_ai.agent.id')},
                 {res('service.name')}) AS agent_id,
        coalesce({attr('prompt.version')}, {res('prompt.version')},
                 {attr('promptbot.prompt_version')}) AS prompt_version,
        coalesce({trace}, '') || '-' || coalesce({span}, '') AS execution_id,
        CASE WHEN lower({error_type}) = 'timeout' THEN 'timeout'
             WHEN upper(CAST({status_code} AS VARCHAR)) IN ('2', 'ERROR', 'STATUS_CODE_ERROR')
                  OR {error_type} IS NOT NULL THEN 'error'
             ELSE 'success' END AS status,
        (({end_ns}) - ({start_ns})) / 1e6 AS latency_ms,
        {tin} AS input_tokens,
        {tout} AS output_tokens,
        ({tin} * {prices[0]} + {tout} * {prices[1]}) / 1e6 AS cost_usd,
        {error_type} AS error_type,
        coalesce(nullif({status_message}, ''), {attr('exception.message')})
            AS error_message,
        coalesce({attr('gen_ai.response.model')},
                 {attr('gen_ai.request.model')}) AS model,
        coalesce({attr('promptbot.inputs')}, {attr('gen_ai.input.messages')},
                 {attr('gen_ai.prompt')}, {event_input}) AS input,
        {attr('gen_ai.operation.name')} AS _op,
        coalesce({trace}, '') AS _trace"""


def _pick_spans(spans: str) -> str:
    """One row per execution, decided per trace: its invoke_agent spans if it has any, else
    its inference spans, else (a trace without GenAI attributes) all its spans."""
    inference = ", ".join(_lit(op) for op in INFERENCE_OPS)
    return f"""
        SELECT * EXCLUDE (_op, _trace, _agents, _inference) FROM (
            SELECT *,
                   count(*) FILTER (_op = 'invoke_agent') OVER (PARTITION BY _trace) AS _agents,
                   count(*) FILTER (_op IN ({inference})) OVER (PARTITION BY _trace)
                       AS _inference
            FROM ({spans}))
        WHERE CASE WHEN _agents > 0 THEN _op = 'invoke_agent'
                   WHEN _inference > 0 THEN _op IN ({inference})
                   ELSE true END"""


_EV_ATTRS = _kv("ev->'attributes'")
_EVENT_INPUT = f"coalesce({_EV_ATTRS}['content'], {_EV_ATTRS}['gen_ai.prompt'])"


def otlp_relation(files: Sequence[str], prices: tuple[float, float]) -> str:
    names = "[" + ", ".join(file_literal(f) for f in files) + "]"
    spans = f"""
        WITH docs AS (SELECT json AS j FROM read_json_objects({names}, format='auto')),
        rs AS (SELECT unnest(from_json(j->'resourceSpans', '["JSON"]')) AS r FROM docs),
        ss AS (SELECT r->'resource'->'attributes' AS ra,
                      unnest(from_json(r->'scopeSpans', '["JSON"]')) AS s FROM rs),
        sp AS (SELECT ra, unnest(from_json(s->'spans', '["JSON"]')) AS span FROM ss),
        kv AS (SELECT span, {_kv('ra')} AS res, {_kv("span->'attributes'")} AS attrs,
                      -- The older event form of the prompt: the last user message event.
                      list_filter(coalesce(from_json(span->'events', '["JSON"]'), []),
                                  lambda e: e->>'name' IN ('gen_ai.user.message',
                                                            'gen_ai.content.prompt'))[-1]
                          AS ev
               FROM sp)
        SELECT {_canonical(
            attr=lambda name: f"attrs[{_lit(name)}]",
            res=lambda name: f"res[{_lit(name)}]",
            start_ns="CAST(span->>'startTimeUnixNano' AS HUGEINT)",
            end_ns="CAST(span->>'endTimeUnixNano' AS HUGEINT)",
            trace="span->>'traceId'", span="span->>'spanId'",
            status_code="span->'status'->>'code'",
            status_message="span->'status'->>'message'",
            prices=prices,
            event_input=_EVENT_INPUT)}
        FROM kv"""
    return f"({_pick_spans(spans)})"


def _first(columns: dict[str, str], *names: str) -> str | None:
    lowered = {c.lower(): c for c in columns}
    for name in names:
        for candidate in (name, f"attributes.{name}", f"resource.{name}",
                          f"resource.attributes.{name}"):
            if candidate.lower() in lowered:
                return '"' + lowered[candidate.lower()].replace('"', '""') + '"'
    return None


def flat_relation(reader: str, columns: dict[str, str], prices: tuple[float, float]) -> str:
    """Canonical columns over a flat span export (one row per span, attributes as columns).

    `columns` maps the export's column names to their DuckDB types.
    """

    def col(*names: str) -> str:
        return _first(columns, *names) or "NULL"

    def text(*names: str) -> str:
        found = _first(columns, *names)
        return f"CAST({found} AS VARCHAR)" if found else "CAST(NULL AS VARCHAR)"

    def nanos(*names: str) -> str:
        found = _first(columns, *names)
        if found is None:
            return "NULL"
        kind = columns.get(found.strip('"').replace('""', '"'), "VARCHAR").upper()
        # epoch_us of a zoned time is UTC already; a naive one is taken as UTC. (A cast to
        # TIMESTAMP on the way goes through ICU's calendar for every value.)
        if kind.startswith("TIMESTAMP") and "_NS" in kind:  # exact; epoch_us has no _NS zoned form
            return f"CAST(epoch_ns({found}) AS HUGEINT)"
        if kind.startswith("TIMESTAMP"):  # epoch_ns of a microsecond time overflows after 2262
            return f"CAST(epoch_us({found}) AS HUGEINT) * 1000"
        if kind.startswith(("BIGINT", "HUGEINT", "UBIGINT", "INTEGER", "DOUBLE", "DECIMAL")):
            return f"CAST({found} AS HUGEINT)"
        return (f"coalesce(try_cast({found} AS HUGEINT), "
                f"CAST(epoch_us(try_cast({found} AS TIMESTAMPTZ)) AS HUGEINT) * 1000)")

    start = nanos("start_time_unix_nano", "startTimeUnixNano", "start_time", "startTime",
                  "timestamp")
    end = nanos("end_time_unix_nano", "endTimeUnixNano", "end_time", "endTime")
    duration_ms = col("duration_ms")
    duration_ns = col("duration_ns", "duration")
    if end == "NULL" and duration_ms != "NULL":
        end = f"({start} + CAST(try_cast({duration_ms} AS DOUBLE) * 1e6 AS HUGEINT))"
    elif end == "NULL" and duration_ns != "NULL":
        end = f"({start} + try_cast({duration_ns} AS HUGEINT))"

    spans = f"""SELECT {_canonical(
        attr=text, res=text, start_ns=start, end_ns=end,
        trace=text("trace_id", "traceId", "trace.id"), span=text("span_id", "spanId", "span.id"),
        status_code=text("status_code", "status.code", "statusCode", "otel.status_code"),
        status_message=text("status_message", "status.message", "statusMessage",
                            "otel.status_description"),
        prices=prices)} FROM {reader}"""
    return f"({_pick_spans(spans)})"
