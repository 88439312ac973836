"""An OpenTelemetry span exporter that appends OTLP/JSON lines to a file.

The OpenTelemetry Collector's file exporter writes this format (one
ExportTraceServiceRequest per line); `promptbot analyze --metrics FILE.json` reads it.
In production, send spans to your collector (OTLP over HTTP/gRPC) and export from there;
this exporter keeps the example self-contained.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult


def _value(value: Any) -> dict[str, Any]:
    # OTLP/JSON: 64-bit integers are strings; hex ids, not base64 (the OTLP JSON mapping).
    if isinstance(value, bool):
        return {"boolValue": value}
    if isinstance(value, int):
        return {"intValue": str(value)}
    if isinstance(value, float):
        return {"doubleValue": value}
    if isinstance(value, (list, tuple)):
        return {"arrayValue": {"values": [_value(v) for v in value]}}
    return {"stringValue": str(value)}


def _attributes(attributes: Any) -> list[dict[str, Any]]:
    return [{"key": k, "value": _value(v)} for k, v in (attributes or {}).items()]


def _span(span: ReadableSpan) -> dict[str, Any]:
    context = span.get_span_context()
    assert context is not None  # a recorded span always has one
    out: dict[str, Any] = {
        "traceId": f"{context.trace_id:032x}", "spanId": f"{context.span_id:016x}",
        "name": span.name, "kind": span.kind.value + 1,  # OTLP counts from UNSPECIFIED=0
        "startTimeUnixNano": str(span.start_time), "endTimeUnixNano": str(span.end_time),
        "attributes": _attributes(span.attributes),
        "status": {"code": span.status.status_code.value},
    }
    if span.parent is not None:
        out["parentSpanId"] = f"{span.parent.span_id:016x}"
    if span.status.description:
        out["status"]["message"] = span.status.description
    return out


class OtlpJsonFileExporter(SpanExporter):
    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.Lock()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        groups: dict[int, tuple[Any, list[dict[str, Any]]]] = {}
        for span in spans:
            groups.setdefault(id(span.resource), (span.resource, []))[1].append(_span(span))
        line = json.dumps({"resourceSpans": [
            {"resource": {"attributes": _attributes(resource.attributes)},
             "scopeSpans": [{"scope": {"name": "promptbot-example-service"}, "spans": items}]}
            for resource, items in groups.values()]}, ensure_ascii=False)
        with self._lock, open(self.path, "a", encoding="utf-8") as handle:
            handle.write(line + "\n")
        return SpanExportResult.SUCCESS
