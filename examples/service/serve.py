"""An agent service that serves the prompt merged on main and stamps its version on every span.

    pip install -e '.[service]'        # promptbot plus the OpenTelemetry SDK
    python examples/service/serve.py --prompts . --requests examples/service/requests.jsonl \
        --spans spans.json
    promptbot analyze --metrics spans.json

Each request names an agent, a request key (whatever should see one variant throughout a
canary: a user, a ticket) and the template's inputs. Without ANTHROPIC_API_KEY the model
call is skipped and a canned reply stands in, so the example runs offline; the spans are the
same either way, minus token usage. docs/RUNTIME.md walks through it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from bot.runtime import Request, load_agent

tracer = trace.get_tracer("example-service")


def call_model(request: Request) -> tuple[str, dict[str, int]]:
    if not os.environ.get("ANTHROPIC_API_KEY"):
        return "(offline: no ANTHROPIC_API_KEY, no model call)", {}
    import anthropic

    reply = anthropic.Anthropic().messages.create(**request.anthropic())
    usage = {"gen_ai.usage.input_tokens": reply.usage.input_tokens,
             "gen_ai.usage.output_tokens": reply.usage.output_tokens}
    return "".join(b.text for b in reply.content if b.type == "text"), usage


def handle(prompts: str, agent_id: str, key: str, inputs: dict[str, Any]) -> tuple[str, str]:
    agent = load_agent(prompts, agent_id)   # parsed once; re-read when the files change
    prompt = agent.choose(request_key=key)  # baseline or candidate while a canary runs
    with tracer.start_as_current_span(f"invoke_agent {agent_id}") as span:
        span.set_attributes({"gen_ai.operation.name": "invoke_agent", **prompt.attributes()})
        try:
            text, usage = call_model(prompt.render(**inputs))
        except Exception as exc:  # the span records it; promptbot counts it as an error
            span.set_attribute("error.type", type(exc).__name__)
            raise
        span.set_attributes(usage)
        return text, prompt.version


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--prompts", default=".", help="checkout of the prompts repository")
    parser.add_argument("--requests", required=True, help="JSON lines: agent, key, inputs")
    parser.add_argument("--spans", required=True, help="OTLP/JSON lines file to append to")
    args = parser.parse_args(argv)

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from otlp_json import OtlpJsonFileExporter

    provider = TracerProvider(resource=Resource.create({"service.name": "example-service"}))
    provider.add_span_processor(BatchSpanProcessor(OtlpJsonFileExporter(args.spans)))
    trace.set_tracer_provider(provider)

    failed = 0
    with open(args.requests, encoding="utf-8") as handle_file:
        for number, line in enumerate(handle_file, 1):
            request = json.loads(line)
            try:
                reply, version = handle(args.prompts, request["agent"], request["key"],
                                        request["inputs"])
            except Exception as exc:
                failed += 1
                print(f"{args.requests}:{number}: {type(exc).__name__}: {exc}",
                      file=sys.stderr)
                continue
            print(f"{request['agent']} {version} {request['key']}: {reply[:60]!r}")
    provider.shutdown()  # flushes the spans
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
