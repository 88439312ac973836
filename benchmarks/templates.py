"""Failure templates: grouping accuracy on Loghub-2k and speed, beside the old masks and Drain3.

For each of the 8 Loghub-2k systems (Zhu et al., ICSE-SEIP 2019) it runs three groupers on the
Content column and prints their grouping accuracy (GA): a message is correct iff the messages
sharing its predicted template are exactly those sharing its ground-truth EventId.
  - old masks: the regex masking ingest used before `bot.core.templates` (MASKS below, the
    Python twin of the SQL in bot/load/metrics.py at the time);
  - ours: `bot.core.templates.group`;
  - Drain3: `drain3.TemplateMiner` with its default config (no persistence, no masking), if
    the package is importable (`pip install drain3`; not a dependency of promptbot).
Then the throughput of `group` on 200,000 distinct synthetic LLM-agent error messages.

    python benchmarks/templates.py [--data DIR] [--json]

Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import re
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bot.core.templates import group, mask

DATA = Path(__file__).resolve().parents[2] / "shared" / "reference" / "loghub-2k"
SYSTEMS = ("Apache", "BGL", "HDFS", "Hadoop", "Linux", "OpenSSH", "Spark", "Zookeeper")
MASKS = (
    (r"https?://[^\s'\"]+", "<url>"),
    (r"'[^']*'", "'<str>'"),
    (r'"[^"]*"', '"<str>"'),
    (r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}", "<uuid>"),
    (r"\b0x[0-9a-fA-F]+\b", "<hex>"),
    (r"\b[0-9a-fA-F]{12,}\b", "<hex>"),
    (r"(/[A-Za-z0-9_.-]+){2,}", "<path>"),
    (r"\b[A-Za-z]+[-_][0-9][A-Za-z0-9_-]*\b", "<id>"),
    (r"[0-9]+(\.[0-9]+)?", "<n>"),
)
_OLD = [(re.compile(p), r) for p, r in MASKS]
_SPACES = re.compile(r"\s+")

Grouper = Callable[[list[str]], list[str]]


def old_masks(messages: list[str]) -> list[str]:
    out = []
    for message in messages:
        for pattern, repl in _OLD:
            message = pattern.sub(repl, message)
        out.append(_SPACES.sub(" ", message).strip())
    return out


def drain3_grouper() -> Grouper | None:
    try:
        from drain3 import TemplateMiner  # type: ignore[import-untyped, import-not-found, unused-ignore]
        from drain3.template_miner_config import (  # type: ignore[import-untyped, import-not-found, unused-ignore]
            TemplateMinerConfig,
        )
    except ImportError:
        return None

    def run(messages: list[str]) -> list[str]:
        # An explicit config: TemplateMiner() would read a drain3.ini from the working folder.
        miner = TemplateMiner(config=TemplateMinerConfig())
        ids = [miner.add_log_message(m)["cluster_id"] for m in messages]
        return [str(i) for i in ids]

    return run


def grouping_accuracy(predicted: Sequence[str], truth: Sequence[str]) -> float:
    """Zhu et al.'s GA: a message is correct iff its predicted group equals its true group."""
    pairs = Counter(zip(predicted, truth, strict=True))
    pred, true = Counter(predicted), Counter(truth)
    correct = sum(n for (p, t), n in pairs.items() if n == pred[p] == true[t])
    return correct / len(truth)


def load(folder: Path, system: str) -> tuple[list[str], list[str]]:
    with (folder / f"{system}_2k.log_structured.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    return [r["Content"] for r in rows], [r["EventId"] for r in rows]


def synthetic(n: int, seed: int = 7) -> list[str]:
    """`n` distinct error messages of the kinds LLM agents log, variable parts random."""
    rng = random.Random(seed)

    def hexid(k: int) -> str:
        return "".join(rng.choice("0123456789abcdef") for _ in range(k))

    def uuid() -> str:
        return f"{hexid(8)}-{hexid(4)}-{hexid(4)}-{hexid(4)}-{hexid(12)}"

    fields = ("score", "answer", "citations", "confidence", "summary", "tool_name", "args")
    tables = ("orders", "customers", "events", "sessions", "invoices")
    words = ("the", "answer", "is", "I", "cannot", "help", "with", "that", "here", "JSON",
             "sure", "requested", "summary", "of", "your", "order", "sorry", "tool", "call")
    makers: list[Callable[[], str]] = [
        lambda: f"Rate limit exceeded for org {hexid(8)}",
        lambda: f"Error code: 429 - Rate limit reached for gpt-4o in organization org-{hexid(24)} "
                f"on tokens per min (TPM): Limit 30000, Used {rng.randint(1, 30000)}, "
                f"Requested {rng.randint(1, 9000)}. Please try again in {rng.randint(1, 999)}ms.",
        lambda: f"Could not parse LLM output: Expecting ',' delimiter: line {rng.randint(1, 60)} "
                f"column {rng.randint(1, 200)} (char {rng.randint(1, 9000)})",
        lambda: "ParserException: Parser Error: syntax error at or near "
                f"\"{rng.choice(['GROUP', 'FROM', 'WHERE', 'ORDER', 'JOIN'])}\" "
                f"LINE {rng.randint(1, 40)}: SELECT * FROM {rng.choice(tables)}",
        lambda: f"Request timed out after {rng.randint(100, 120000)} ms",
        lambda: f"Query exceeded statement timeout of {rng.randint(1, 600)}s "
                f"on table {rng.choice(tables)}",
        lambda: f"HTTP {rng.choice([500, 502, 503, 504])} from https://api.example.com/v1/"
                f"chat/completions (request id req_{hexid(24)})",
        lambda: f"1 validation error for {rng.choice(['Answer', 'Plan', 'ToolCall'])} "
                f"{rng.choice(fields)} Field required [type=missing, "
                f"input_value={{'id': {rng.randint(1, 10**6)}}}, input_type=dict]",
        lambda: f"Tool call {uuid()} failed: connection refused to "
                f"{rng.randint(1, 255)}.{rng.randint(0, 255)}.{rng.randint(0, 255)}."
                f"{rng.randint(0, 255)}:{rng.randint(1024, 65535)}",
        lambda: f"FileNotFoundError: [Errno 2] No such file or directory: "
                f"'/data/runs/{hexid(10)}/out_{rng.randint(1, 999)}.json'",
        lambda: f"Context length exceeded: {rng.randint(8193, 200000)} tokens > 8192 "
                f"for user {rng.choice(['ana', 'bo', 'chen', 'dee'])}{rng.randint(1, 9999)}"
                f"@example.com",
        lambda: "Failed to parse Answer from completion: `"
                + " ".join(rng.choice(words) for _ in range(rng.randint(3, 30)))
                + "`. Got: Expecting value: line 1 column 1 (char 0)",
        lambda: f"2 validation errors for ToolCall\n{rng.choice(fields)}\n  Input should be a "
                f"valid integer [type=int_type, input_value='{rng.choice(words)}', "
                f"input_type=str]\n{rng.choice(fields)}\n  Field required [type=missing]",
        lambda: f"KeyError: '{rng.choice(fields)}' at 2026-0{rng.randint(1, 9)}-"
                f"{rng.randint(10, 28)}T{rng.randint(10, 23)}:{rng.randint(10, 59)}:"
                f"{rng.randint(10, 59)}Z",
    ]
    seen: set[str] = set()
    while len(seen) < n:
        seen.add(rng.choice(makers)())
    out = sorted(seen)
    rng.shuffle(out)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--data", type=Path, default=DATA, help="folder of *_2k.log_structured.csv")
    parser.add_argument("--json", action="store_true", help="also print the figures as JSON")
    parser.add_argument("--messages", type=int, default=200_000,
                        help="distinct synthetic messages for the throughput figure")
    args = parser.parse_args(argv)

    drain = drain3_grouper()
    groupers: dict[str, Grouper | None] = {"old masks": old_masks, "ours": group,
                                           "Drain3": drain}
    table: dict[str, dict[str, float | None]] = {}
    print(f"{'system':<12}" + "".join(f"{name:>14}" for name in groupers))
    for system in SYSTEMS:
        messages, truth = load(args.data, system)
        row = {name: None if fn is None else grouping_accuracy(fn(messages), truth)
               for name, fn in groupers.items()}
        table[system] = row
        print(f"{system:<12}" + "".join(
            f"{'not installed' if v is None else f'{v:.3f}':>14}" for v in row.values()))
    means = {name: (None if groupers[name] is None
                    else sum(r[name] or 0.0 for r in table.values()) / len(table))
             for name in groupers}
    print(f"{'mean':<12}" + "".join(
        f"{'not installed' if v is None else f'{v:.3f}':>14}" for v in means.values()))

    messages = synthetic(args.messages)
    start = time.perf_counter()
    templates = group(messages)
    seconds = time.perf_counter() - start
    rate = len(messages) / seconds
    print(f"\ngroup() on {len(messages):,} distinct synthetic error messages: {seconds:.2f} s, "
          f"{rate:,.0f} messages/s, {len(set(templates)):,} templates")
    if drain is not None:
        start = time.perf_counter()
        clusters = len(set(drain(messages)))
        took = time.perf_counter() - start
        print(f"Drain3 on the same: {took:.2f} s, {len(messages) / took:,.0f} messages/s, "
              f"{clusters:,} clusters")
    for template, n in Counter(templates).most_common(20):
        print(f"  {n:>7,}  {template}")
    right, total, contradictions = diagnosis_figures()
    print(f"\ndiagnosis: {right}/{total} error shapes of tests/data/error_shapes.yaml "
          f"classified right ({right / total * 100:.1f} %); proposals contradicting the "
          f"agent's format over the shipped agents x the corpus: {contradictions}")
    if args.json:
        print(json.dumps({"ga": table, "mean": means, "throughput": {
            "messages": len(messages), "seconds": seconds, "per_second": rate,
            "templates": len(set(templates))},
            "diagnosis": {"right": right, "total": total,
                          "contradictions": contradictions}}, indent=2))
    return 0


def diagnosis_figures() -> tuple[int, int, int]:
    """Category accuracy on the shipped corpus (the agents' tool names known, as in a
    run), and the rules that would contradict a shipped agent's format (0 expected)."""
    from datetime import datetime

    import yaml

    from bot.core import diagnosis
    from bot.core.agentfile import parse_agent
    from bot.core.analysis import Problem
    from bot.core.metrics import ErrorGroup, VersionStats
    from bot.core.proposals import Skipped, agent_format, rules_that_hold

    root = Path(__file__).resolve().parents[1]
    corpus = yaml.safe_load((root / "tests/data/error_shapes.yaml").read_text())
    agents = [parse_agent(p.read_text(), str(p.relative_to(root)), folder_id=p.parent.name)
              for p in sorted((root / "prompts").glob("*/agent.yaml"))]
    tools = tuple(sorted({t.name for a in agents for t in a.agent.tools}))
    # As a run sees a failure mode: its template and one real message.
    right = sum(diagnosis.of_failure(e["error_type"], mask(e["error_message"]),
                                     e["error_message"], tools) == e["category"]
                for e in corpus)
    when = datetime(2026, 11, 1)
    contradictions = 0
    for loaded in agents:
        fmt = agent_format(loaded.agent)
        for e in corpus:
            group_ = ErrorGroup(e["error_type"], mask(e["error_message"]), 300, when, when,
                                e["error_message"])
            stats = VersionStats(loaded.agent.id, "v", 2000, 1700, 0, None, None, None, None,
                                 None, None, when, when, None, (group_,))
            held = rules_that_hold(loaded, Problem("failure_mode", loaded.agent.id, "v", "s",
                                                   group_, stats))
            if isinstance(held, Skipped):
                continue
            contradictions += sum(
                1 for rule in held
                if fmt.name not in diagnosis.RULE_FORMATS.get(rule.key, frozenset({fmt.name})))
    return right, len(corpus), contradictions


if __name__ == "__main__":
    raise SystemExit(main())
