"""Failure templates: error messages of one failure mode share one readable template.

Two stages, both generic (the same rules for every system; nothing keyed on a source):

1. `mask` works on one message alone: variable parts that can be recognised by their shape
   become `<*>` (quoted values keep their quotes: `'<*>'`, `"<*>"`, `` `<*>` ``). URLs,
   emails, absolute paths, dates, and every run of letters and digits that holds a digit
   (numbers, signed numbers, hex, ids such as `a3f9c2b1` or `req_8Fk2`, versions, IPs),
   then runs of such placeholders joined by punctuation, spaces or a unit (`10.0.0.1:5432`,
   `Fri Jun 17 20:55:07 2005`, `1.5 s`) become one `<*>`. Words without a digit stay.
2. `group` clusters the distinct masked messages to find the variable parts that are plain
   words (user names, table names): a Drain-like pass (He et al., ICWS 2017: messages of
   one length and the same leading tokens join the most similar cluster when at least half
   of their tokens agree with its template), then each cluster is split again on every
   position whose words look like alternatives rather than a variable: fewer than
   `DISTINCT_WORDS` distinct words there, or so many varying words that too few constant
   ones would remain. So "Upload failed: disk full" and "Upload failed: quota exceeded" stay
   apart however many such pairs there are, "Task moved from NEW to RUNNING" and "... from
   RUNNING to DONE" too, while "Invalid user admin from <*>" and the same with three or more
   other user names become "Invalid user <*> from <*>".

The second stage depends on the batch (how many distinct words a position shows), like any
log parser that learns variables from the data: see `group`.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

WILD = "<*>"
# Characters of a message that are templated: its head says what failed; the rest of a long
# one is mostly a stack trace or an echoed payload.
LIMIT = 500
# A Drain cluster takes a message when this share of its tokens equals the template's.
SIMILARITY = 0.5
# Leading tokens that must be equal (or both variable) for two messages to share a cluster.
DEPTH = 2
# Fewer distinct words than this at one position: the words are alternatives (states,
# kinds), and each gets its own template. This many or more: a variable.
DISTINCT_WORDS = 4

_MONTH = r"(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)"
_MONTH_HINT = re.compile(_MONTH)
# The day and month (a time and year after it are digits, joined by the runs below).
_DATE = re.compile(
    rf"\b(?:(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun)[a-z]*\.?,? +)?"
    rf"(?:[0-9]{{1,2}}(?:st|nd|rd|th)? +{_MONTH}[a-z]*\.?"
    rf"|{_MONTH}[a-z]*\.? +[0-9]{{1,2}}(?:st|nd|rd|th)?)\b"
)
# Quotes open after a non-word character, so the apostrophe of "can't" opens nothing.
_SINGLE = re.compile(r"(?<![\w'])'[^'\n]{0,200}'(?!\w)")
_DOUBLE = re.compile(r'"[^"\n]{0,200}"')
_BACKTICK = re.compile(r"`[^`]{0,400}`")
_URL = re.compile(r"\b[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>`]+")
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_PATH = re.compile(r"(?<![\w/.])(?:/[\w.-]+){2,}/?")
# The lookbehind starts a match only at the start of a run and the possessive `*+` never
# backtracks into it: linear in the message, the costliest pattern otherwise.
_ALNUM = re.compile(r"(?<![A-Za-z0-9])[-+]?[A-Za-z]*+[0-9][A-Za-z0-9]*")
_UNIT = r"(?:[KMGTP]i?B|B|bytes?|ms|us|µs|ns|s|secs?|seconds?|mins?|minutes?|h|hours?|days?)"
_RUNS = re.compile(rf"<\*>(?:[.:/_-]+<\*>| <\*>| {_UNIT}\b)+")


def mask(message: str) -> str:
    """The message with its recognisable variable parts as `<*>`, whitespace collapsed.

    Depends on the message alone: usable as the key to count distinct messages by.
    """
    text = message[:LIMIT]
    # The substring tests are much cheaper than a scan that finds nothing.
    if "`" in text:
        text = _BACKTICK.sub("`<*>`", text)
    if "'" in text:
        text = _SINGLE.sub("'<*>'", text)
    if '"' in text:
        text = _DOUBLE.sub('"<*>"', text)
    if "://" in text:
        text = _URL.sub(WILD, text)
    if "@" in text:
        text = _EMAIL.sub(WILD, text)
    if "/" in text:
        text = _PATH.sub(WILD, text)
    if _MONTH_HINT.search(text):
        text = _DATE.sub(WILD, text)
    text = _RUNS.sub(WILD, _ALNUM.sub(WILD, text))
    return " ".join(text.split())


Tokens = tuple[str, ...]


@dataclass
class _Leaf:
    """Drain's clusters of one length and leading tokens, with an index from (position,
    constant token) to the clusters whose template has it: a message is compared only with
    the clusters it shares a token with, so a leaf of thousands of free-text messages that
    never merge costs little more than one of a few templates."""

    free: tuple[int, ...]  # positions not fixed by the leaf's key
    fixed: int  # tokens every template of the leaf shares with every message of it
    templates: list[list[str]] = field(default_factory=list)
    members: list[list[Tokens]] = field(default_factory=list)
    index: list[dict[str, list[int]]] = field(default_factory=list)

    def add(self, tokens: Tokens) -> None:
        hits: list[int] = []
        for i in self.free:
            found = self.index[i].get(tokens[i])
            if found:
                hits += found
        # Ties go to the oldest cluster, and a message that shares no free token with any
        # cluster compares with cluster 0 on the fixed tokens alone.
        best = same = 0
        if hits:
            counts = Counter(hits)
            same = max(counts.values())
            best = min(c for c, k in counts.items() if k == same)
        if self.templates and self.fixed + same >= SIMILARITY * len(tokens):
            template = self.templates[best]
            for i in self.free:
                old = template[i]
                if old != tokens[i] and old != WILD:
                    self.index[i][old].remove(best)
                    template[i] = WILD
            self.members[best].append(tokens)
            return
        c = len(self.templates)
        self.templates.append(list(tokens))
        self.members.append([tokens])
        for i in self.free:
            if tokens[i] != WILD:  # two bare placeholders are no sign of one template
                self.index[i].setdefault(tokens[i], []).append(c)


def _drain(distinct: list[Tokens]) -> list[list[Tokens]]:
    leaves: dict[Tokens, _Leaf] = {}
    for tokens in distinct:
        head = tuple(WILD if WILD in t else t for t in tokens[:DEPTH])
        key = (str(len(tokens)), *head)
        leaf = leaves.get(key)
        if leaf is None:
            # A leading token that holds a placeholder is keyed as WILD, so it may differ
            # within the leaf and is compared like the others.
            fixed = tuple(i for i, t in enumerate(head) if t != WILD)
            free = tuple(i for i in range(len(tokens)) if i not in fixed)
            leaf = leaves[key] = _Leaf(free, len(fixed),
                                       index=[{} for _ in range(len(tokens))])
        leaf.add(tokens)
    return [m for leaf in leaves.values() for m in leaf.members]


def _split(members: list[Tokens]) -> list[list[Tokens]]:
    """The cluster cut at each position whose differing words are alternatives."""
    cut: tuple[int, int] | None = None  # (distinct words, position): fewest first
    widest: tuple[int, int] | None = None
    constants = variables = 0
    for i in range(len(members[0])):
        values = {m[i] for m in members}
        if len(values) == 1:
            constants += 1
        elif any(WILD in v for v in values):
            continue  # a position that ever holds a masked value is a variable
        elif len(values) < DISTINCT_WORDS:
            cut = min(cut, (len(values), i)) if cut else (len(values), i)
        else:
            variables += 1
            widest = min(widest, (len(values), i)) if widest else (len(values), i)
    if cut is None and constants <= variables:
        # "Upload failed: disk full|quota exceeded|...": too few constant words would be
        # left to call the rest variables.
        cut = widest
    if cut is None:
        return [members]
    i = cut[1]
    parts: dict[str, list[Tokens]] = {}
    for m in members:
        parts.setdefault(m[i], []).append(m)
    return [c for part in parts.values() for c in _split(part)]


def _template(members: list[Tokens]) -> str:
    out = list(members[0])
    for m in members[1:]:
        for i, t in enumerate(m):
            if t != out[i]:
                out[i] = WILD
    return " ".join(out)


def group(messages: list[str]) -> list[str]:
    """The template of each message, in order: the same string for one failure mode.

    The result depends on the set of distinct masked messages only (not on their order or
    repetitions), but on that whole set: whether a word position is variable is learned
    from how many distinct words it shows. A message's template can therefore change when
    the batch does (a user name stays literal until the batch shows enough of them), while
    `mask(message)` never does. To compare counts across days, group the distinct messages
    of every day compared in one call.
    """
    masked = [mask(m) for m in messages]
    keys = set(masked)
    tails = _free_tails(keys)
    distinct = sorted({tuple(tails.get(k, k).split(" ")) for k in keys})
    assigned: dict[str, str] = {}
    for cluster in _drain(distinct):
        for part in _split(cluster):
            template = _template(part)
            for m in part:
                assigned[" ".join(m)] = template
    return [assigned[tails.get(m, m)] for m in masked]


# Messages that carry free text after a short head (an LLM's echoed answer: "Invalid json
# output: Sure, here is…") are first cut to "head: <*>" when the head has at least
# TAIL_GROUP distinct tails of at least TAIL_LENGTHS different lengths (free text varies in
# length; the kinds of one structured error do not): otherwise each becomes its own
# template, and the clustering's cost grows with the square of their number (100,000 such
# messages: 22 s and 96,819 templates). Loghub-2k's accuracy is the same with and without.
TAIL_GROUP = 50
TAIL_LENGTHS = 10
_HEAD = re.compile(r"^((?:\S+ ){0,7}?\S+:) \S")


def _free_tails(keys: set[str]) -> dict[str, str]:
    heads: dict[str, list[str]] = {}
    for k in keys:
        found = _HEAD.match(k)
        if found:
            heads.setdefault(found.group(1), []).append(k)
    return {k: f"{head} {WILD}" for head, ks in heads.items()
            if len(ks) >= TAIL_GROUP and len({k.count(" ") for k in ks}) >= TAIL_LENGTHS
            for k in ks}
