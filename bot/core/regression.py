"""Regression cases from production: a fixed failure mode's failing inputs as tests.yaml cases.

When a merged proposal fixed a failure mode (its measured result is a success), the inputs of
the executions that failed that way before the fix become offline eval cases, each with an
assertion derived from the failure: the whole reply parses as JSON, carries the field that
was missing, or the SQL parses in the case's dialect. Merged, they guard the fix: every
later proposal's eval runs them. A failure no offline check tells from a good reply (a
timeout, a refusal, a tool call, a column that does not exist) gives no cases.

Production inputs are untrusted and personal. Before anything is written:
- personal data is replaced by reserved stand-ins that keep the shape (`user1@example.com`,
  a 555-01xx phone number, the 4111 test card, the documentation IBAN), numbered per case so
  "the same address twice" survives; keys, tokens and passwords become `[redacted]`;
- instruction-like text ("ignore all previous instructions", chat role markup) is replaced
  by a marker, so a case does not carry an injection into the eval, the PR or a model that
  later reads the tests file.

Everything here is pure: the rows come in, the tests.yaml text and the PR text go out.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import yaml

from bot.core import templates
from bot.core.model import SQL_DIALECTS
from bot.core.render import fenced, untrusted
from bot.core.yamlparse import parse_yaml
from bot.errors import InputError

NEUTRALISED: Final = "[instruction-like text removed by promptbot]"
REDACTED: Final = "[redacted]"
MAX_CASES: Final = 3
NAME_PREFIX: Final = "prod-"
SHOWN_CHARS: Final = 4_000  # of one input in the PR body (GitHub caps a body at 65,536)

# ---------------------------------------------------------------- personal data

# Unicode letters in the local part and the domain (jürgen.müller@gmx.de).
_EMAIL = re.compile(r"(?<![\w.+-])[\w.%+-]{1,64}@[\w-]{1,63}(?:\.[\w-]{1,63})*\.[^\W\d_]{2,24}"
                    r"(?![\w-])")
# Keys by their published shapes; a PEM block; a bearer token.
_KEY = re.compile(
    r"-----BEGIN [A-Z ]{0,40}PRIVATE KEY-----[A-Za-z0-9+/=\s:,-]{0,16000}?"
    r"-----END [A-Z ]{0,40}PRIVATE KEY-----"
    r"|\bsk-(?:ant-|proj-|live-|test-)?[A-Za-z0-9_-]{16,}"
    r"|\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"
    r"|\bgh[pousr]_[A-Za-z0-9]{30,}\b|\bgithub_pat_[A-Za-z0-9_]{30,}"
    r"|\bxox[abposr]-[A-Za-z0-9-]{10,}"
    r"|\bAIza[0-9A-Za-z_-]{35}"
    r"|\b(?:sk|pk|rk)_(?:live|test)_[A-Za-z0-9]{16,}"
    r"|\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"
    r"|(?i:\bbearer\s+)[A-Za-z0-9._~+/-]{16,}=*"
    r"|(?i:\bbasic\s+)[A-Za-z0-9+/]{8,}=*"
    # The password of credentials in a URL (postgres://user:PASSWORD@host).
    r"|(?<=://)[^\s:/@]{1,64}:[^\s@/]{1,128}(?=@)"
    # US social security numbers.
    r"|\b\d{3}-\d{2}-\d{4}\b")
# What names a secret, inside a longer name too (client_secret, DB_PASSWORD, apiKey after
# the camel case is split): the value after it is one.
_SECRET_WORD = (r"pass(?:word|wd|phrase)?|pwd|secret|api[_-]?key|access[_-]?key|"
                r"private[_-]?key|credentials?|otp|ssn|cvv|cvc|pin|token|authorization|"
                r"cookie")
# `name: value` or `name=value`; the name is checked in code (a pattern that searched it
# for a secret word backtracked quadratically on long runs of word characters).
_ASSIGNMENT = re.compile(
    r"(?<![\w.-])([\"']?)([A-Za-z_][\w.-]{0,63})([\"']?)(\s*[:=]\s*)"
    r"(\"[^\"\n]{1,200}\"|'[^'\n]{1,200}'|[^\s,;}\]]{3,200})")
_SECRET_KEY = re.compile(rf"(?i)(?:^|[_.-])(?:{_SECRET_WORD})(?:$|[_.-])")
# 13-19 digits, single spaces or dashes between groups, not inside a word (`blk_1724…`) and
# not after a `+` (an international phone number); an issuer's prefix and Luhn decide.
_CARD = re.compile(r"(?<![\w+-])\d(?:[ -]?\d){12,18}(?![\w-])")
_ISSUER = re.compile(r"4|5[1-5]|2[2-7]|3[47]|3[068]|35|6(?:011|4[4-9]|5)")
_IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?\b")
# International (+...), bracketed area codes, a national trunk 0 (0171 2345678, 06 12 34 56
# 78), or NANP 3-3-4; then 7-15 digits, no date, and no word before it that says it is an
# article, ticket or order number.
_PHONE = re.compile(
    r"(?<![\w+/.:-])(?:\+\d{1,3}[ .-]?(?:\(\d{1,4}\)[ .-]?)?\d{1,4}(?:[ .-]?\d{2,4}){1,4}"
    r"|\(\d{2,5}\)[ .-]?\d{3,4}[ .-]?\d{3,5}"
    r"|0[1-9](?:[ .-]?\d{2}){4}"
    r"|0[1-9]\d{0,3}[ /.-]\d{3,4}(?:[ .-]?\d{2,5}){0,2}"
    r"|\d{3}[ .-]\d{3}[ .-]\d{4})(?![\w/:-])")
_DATE_LIKE = re.compile(r"\d{4}[-/.]\d{1,2}[-/.]\d{1,2}|\d{1,2}[-/.]\d{1,2}[-/.]\d{2,4}")
_NOT_A_PHONE = re.compile(r"(?i)\b(?:sku|art(?:icle)?|item|ticket|order|invoice|case|ref|"
                          r"id|no|nr|number|version|build|serial|part)\b\W{0,4}$|#\s?$")

# Keys whose values are personal whatever they look like.
_EMAIL_KEYS = re.compile(r"(?i)^(e_?mail|email_?address|mail)$")
_PHONE_KEYS = re.compile(r"(?i)^(phone|phone_?number|mobile|tel|telephone|cell|msisdn)$")
_PERSON_NAME_KEYS = re.compile(r"(?i)^(first_?name|last_?name|full_?name|given_?name|"
                               r"family_?name|surname|customer_?name|display_?name)$")
# `name` is a person's only beside contact details that look like contact details (a table
# with `name` and an `email` column is a schema, not a person).
_NAME_KEY = re.compile(r"(?i)^name$")
# What a name field holds when there is no name.
_PLACEHOLDER_NAMES = frozenset(("unknown", "guest", "customer", "user", "n/a", "na", "none",
                                "anonymous", "test", "-", "?", "null"))
# Parts of a name that are common words too: replaced only as part of the full name.
_COMMON_WORDS = frozenset((
    "will", "may", "june", "april", "august", "mark", "bill", "rose", "grace", "hope", "joy",
    "sunny", "chase", "page", "brook", "dean", "frank", "grant", "hunter", "king", "lane",
    "long", "miles", "price", "rich", "ray", "young", "white", "black", "brown", "green",
    "love", "summer", "winter", "autumn", "faith", "art", "van", "von", "del", "der", "den"))


# Keys whose numbers are secrets (a PIN); other secret-word keys hold counters too
# (`token_count: 4096`).
_SHORT_SECRET = re.compile(r"(?i)(?:^|[_.-])(?:pin|otp|cvv|cvc|ssn|code)(?:$|[_.-])")


def _snake(key: str) -> str:
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", key)


_TYPE_NAME = re.compile(r"(?i)(?:var)?char|text|string|str|int(?:eger)?|bigint|smallint|"
                        r"numeric|decimal|float|double|bool(?:ean)?|bytea|blob|uuid|json|"
                        r"date|time(?:stamp)?|null|none|true|false|required|optional|hidden|"
                        r"redacted|\*+|x+")


def _type_name(value: str) -> bool:
    """`text`, `varchar(64)`: what a schema says about a column, no secret."""
    bare = value.strip("'\"").strip()
    return _TYPE_NAME.fullmatch(re.sub(r"\(\d+(,\s*\d+)?\)$", "", bare)) is not None


def _secret_like(value: str) -> bool:
    """A value after `password:` in text that looks like one: a short word ("Token: Token
    {") is the log's own wording, a type name (`password_hash: text`) a schema's."""
    bare = value.strip("'\"").strip()
    if "\ue000" in bare or _type_name(bare):
        return False  # replaced already, or a type
    return len(bare) >= 8 or not bare.isalpha()


def _luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _iban_ok(text: str) -> bool:
    s = text.replace(" ", "")
    if not 15 <= len(s) <= 34:
        return False
    moved = s[4:] + s[:4]
    return int("".join(str(int(c, 36)) for c in moved)) % 97 == 1


def _contact(value: Any, phone: bool) -> bool:
    text = str(value)
    return sum(c.isdigit() for c in text) >= 7 if phone else "@" in text


@dataclass
class Scrubber:
    """Replaces personal data and secrets; the same value gets the same stand-in within one
    case (numbered in order of appearance), and `found` counts what was replaced by kind."""

    found: Counter[str] = field(default_factory=Counter)
    _seen: dict[tuple[str, str], str] = field(default_factory=dict)

    def _stand_in(self, kind: str, value: str) -> str:
        """A private-use token for now (a stand-in's own digits must not be matched again
        by a later pattern), replaced by the stand-in when the text is done."""
        key = (kind, value)
        if key not in self._seen:
            n = sum(1 for k, _ in self._seen if k == kind) + 1
            self._seen[key] = {
                "email": f"user{n}@example.com",
                "phone": f"+1 555 01{n % 100:02d}",
                "card": "4111 1111 1111 1111",
                "iban": "DE89 3704 0044 0532 0130 00",
                "name": f"Person {n}",
            }.get(kind, REDACTED)
        self.found[kind] += 1
        return f"\ue000{list(self._seen).index(key)}\ue001"

    def _done(self, text: str) -> str:
        stand_ins = list(self._seen.values())
        return re.sub("\ue000(\\d+)\ue001", lambda m: stand_ins[int(m.group(1))], text)

    def names_elsewhere(self, value: Any) -> Any:
        """`value` with the names found in name fields replaced where free text repeats
        them ("Hi, this is lena"): the full name, then each part of 3+ letters that is not
        a common word too (any case)."""
        names = [(k[1], v) for k, v in self._seen.items() if k[0] == "name"]
        if not names:
            return value
        # As written, in capitals or in lower case; a part only as written or in capitals
        # ("Order" the surname is not "my order").
        parts = [(form, stand) for full, stand in names
                 for form in (full, full.upper(), full.lower())] + [
            (form, stand) for full, stand in names for part in full.split()
            if len(part) >= 3 and part.lower() not in _COMMON_WORDS
            for form in (part, part.upper(), part.capitalize())]
        pattern = re.compile("|".join(rf"(?<!\w){re.escape(p)}(?!\w)" for p, _ in
                                      sorted(set(parts), key=lambda x: (-len(x[0]), x[0]))))
        lookup = dict(reversed(parts))

        def walk(v: Any) -> Any:
            if isinstance(v, dict):
                return {walk(k) if isinstance(k, str) else k: walk(x) for k, x in v.items()}
            if isinstance(v, list):
                return [walk(x) for x in v]
            if isinstance(v, str):
                def sub(m: re.Match[str]) -> str:
                    self.found["name"] += 1
                    return lookup[m.group(0)]
                return pattern.sub(sub, v)
            return v

        return walk(value)

    def _name(self, value: str) -> str:
        if value.strip().lower() in _PLACEHOLDER_NAMES:
            return value
        return self._done(self._stand_in("name", value.strip()))

    def text(self, text: str) -> str:
        text = _KEY.sub(lambda m: self._stand_in("key", m.group(0)), text)
        def assignment(m: re.Match[str]) -> str:
            if not (_SECRET_KEY.search(_snake(m.group(2))) and _secret_like(m.group(5))):
                return m.group(0)
            return m.group(1) + m.group(2) + m.group(3) + m.group(4) + \
                self._stand_in("key", m.group(5))

        text = _ASSIGNMENT.sub(assignment, text)
        text = _EMAIL.sub(lambda m: self._stand_in("email", m.group(0).lower()), text)
        text = _IBAN.sub(lambda m: self._stand_in("iban", m.group(0)) if _iban_ok(m.group(0))
                         else m.group(0), text)

        def phone(m: re.Match[str]) -> str:
            raw = m.group(0)
            digits = re.sub(r"\D", "", raw)
            if not 7 <= len(digits) <= 15 or _DATE_LIKE.fullmatch(raw.strip()) \
                    or _NOT_A_PHONE.search(text[max(0, m.start() - 16):m.start()]):
                return raw
            return self._stand_in("phone", digits)

        def card(m: re.Match[str]) -> str:
            digits = re.sub(r"\D", "", m.group(0))
            if 13 <= len(digits) <= 19 and _ISSUER.match(digits) and _luhn(digits) \
                    and len(set(digits)) > 1:
                return self._stand_in("card", digits)
            return m.group(0)

        # Cards first: a 16-digit card number in 4-4-4-4 also fits a phone's shape.
        return self._done(_PHONE.sub(phone, _CARD.sub(card, text)))

    def value(self, value: Any, key: str = "") -> Any:
        """`value` (JSON data) with every string, key and long number scrubbed; values
        under secret keys redacted whole (nested ones too), under contact keys replaced."""
        if key and _SECRET_KEY.search(_snake(key)) and value not in (None, "", [], {}) \
                and not isinstance(value, bool):
            if isinstance(value, dict | list):
                return self._redact(value)
            if isinstance(value, str) and not _type_name(value):
                return self._done(self._stand_in("key", value))
            if isinstance(value, int) and _SHORT_SECRET.search(_snake(key)):
                return self._done(self._stand_in("key", str(value)))
        if isinstance(value, dict):
            contact = any((_EMAIL_KEYS.match(str(k)) and _contact(v, False))
                          or (_PHONE_KEYS.match(str(k)) and _contact(v, True))
                          for k, v in value.items())
            out: dict[Any, Any] = {}
            for k, v in value.items():
                name = isinstance(v, str) and v.strip() and (
                    _PERSON_NAME_KEYS.match(str(k)) or (contact and _NAME_KEY.match(str(k))))
                out[self.text(k) if isinstance(k, str) else k] = (
                    self._name(v) if name else self.value(v, str(k)))
            return out
        if isinstance(value, list):
            return [self.value(v, key) for v in value]
        if isinstance(value, int) and not isinstance(value, bool):
            if key and _PHONE_KEYS.match(key) and _contact(value, True):
                return self._done(self._stand_in("phone", str(value)))
            text = str(value)
            # A long number may be a card or a phone number written without separators.
            if len(text) >= 13 and self.text(text) != text:
                return self.text(text)
            return value
        if isinstance(value, str):
            if key and _EMAIL_KEYS.match(key) and "@" in value:
                return self._done(self._stand_in("email", value.strip().lower()))
            if key and _PHONE_KEYS.match(key) and _contact(value, True):
                return self._done(self._stand_in("phone", re.sub(r"\D", "", value)))
            return self.text(value)
        return value

    def _redact(self, value: Any) -> Any:
        """Everything under a secret key that could be one (`credentials: {user, pass}`);
        type names and booleans stay."""
        if isinstance(value, dict):
            return {k: self._redact(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self._redact(v) for v in value]
        if value in (None, "") or isinstance(value, bool) or (
                isinstance(value, str) and _type_name(value)):
            return value
        return self._done(self._stand_in("key", str(value)))


# ---------------------------------------------------------------- instructions

# Verbs that override, and what they override; `don't ignore …` is no override.
_OVERRIDE = (r"(?<!n't )(?<!not )(?<!never )\b(?:ignore|disregard|forget|override|bypass)"
             r"\b")
_INSTRUCTION = re.compile(
    rf"(?is){_OVERRIDE}[^.!?]{{0,40}}?"
    r"\b(?:previous|prior|above|earlier|all|any|your|system|initial|original|preceding)\b"
    r"[^.!?]{0,40}?\b(?:instructions?|prompts?|rules|directions|guidelines|guardrails|"
    r"policies)\b"
    rf"|{_OVERRIDE}\s+(?:the\s+)?(?:above|everything(?:\s+(?:above|before|else))?|"
    r"all\s+(?:of\s+)?(?:the\s+)?above|what\s+you\s+were\s+told)"
    rf"|{_OVERRIDE}\s+(?:the|your|all|any)?\s*(?:instructions|rules|prompt|guidelines)\s+"
    r"(?:you\s+(?:were|have\s+been)\s+given|so\s+far|above)"
    # "You are now subscribed" is a newsletter's; "you are now DAN" is not.
    r"|\byou\s+are\s+(?:now|no\s+longer)\s+(?:an?\s+|in\s+)?(?:\w+\s+){0,2}?(?:ai|assistant|"
    r"model|bot|chatbot|dan|free|unrestricted|unfiltered|jailbroken|allowed|able|going\s+to|"
    r"mode|bound)\b"
    r"|\bfrom\s+now\s+on,?\s+you\s+(?:will|must|are|should|shall)\s+(?:\w+\s+)?(?:ignore|"
    r"answer|respond|reply|act|obey|only|always|never|pretend)\b"
    r"|\b(?:new|updated|real|actual|admin)\s+(?:system\s+)?instructions?\s*:"
    r"|\b(?:reveal|print|show|repeat|output|leak)\b[^.!?\n]{0,30}?"
    r"\b(?:system\s+prompt|(?:hidden|initial|original|system)\s+instructions|internal\s+notes|"
    r"your\s+(?:instructions|prompt)\s+(?:verbatim|word\s+for\s+word|in\s+full|above))\b"
    r"|\bpretend\s+(?:to\s+be|you\s+are)\b|\bjailbreak|\bdeveloper\s+mode\b"
    r"|<\|?(?:im_start|im_end|system|endoftext|assistant)\|?>|\[/?INST\]|<<\s*/?SYS\s*>>"
    r"|</?(?:system|instructions?)>"
    # A role prefix only where an instruction follows it ("System: Windows 11" is data).
    r"|(?:(?m:^)|(?<=[.!?] ))[ \t]*(?:#{1,6}[ \t]*)?(?:system|assistant|developer)[ \t]*:"
    r"[ \t]*"
    r"(?:you|ignore|disregard|from now|new|act|pretend|always|never|do not|reply|respond|"
    r"answer|output)\b")
# The sentence or line around a hit goes: a half-removed instruction may still read as one.
_SENTENCE_END = re.compile(r"[.!?](?=\s)|\n")
# Letters from other scripts that look like Latin ones ("ignore" spelled with a Cyrillic
# ie): matched as the Latin letter, the text itself unchanged.
_LOOKALIKE = str.maketrans(
    "\u0430\u0435\u0456\u0458\u043e\u0440\u0441\u0443\u0445\u0455\u0501\u04bb\u04cf"
    "\u051b\u051d\u0410\u0412\u0415\u041d\u0406\u0408\u041a\u041c\u041e\u0420\u0421"
    "\u0422\u0425\u0423\u0405",
    "aeijopcyxsdhlqwABEHIJKMOPCTXYS")


_INVISIBLE = frozenset("\u00ad\u200b\u200c\u200d\u2060\ufeff")


def _skeleton(text: str) -> tuple[str, list[int]]:
    """The text as the patterns read it — invisible characters dropped, full-width and
    look-alike letters as Latin ones — and, per character of it, its index in `text`."""
    chars: list[str] = []
    where: list[int] = []
    for i, ch in enumerate(text):
        if ch in _INVISIBLE:
            continue
        if "\uff01" <= ch <= "\uff5e":  # full-width ASCII
            ch = chr(ord(ch) - 0xFEE0)
        chars.append(ch)
        where.append(i)
    where.append(len(text))
    return "".join(chars).translate(_LOOKALIKE), where


def neutralise(text: str) -> tuple[str, int]:
    """`text` with each sentence that holds instruction-like text replaced by NEUTRALISED,
    and how many were."""
    skeleton, where = _skeleton(text)
    count = 0
    out: list[str] = []
    pos = 0
    for hit in _INSTRUCTION.finditer(skeleton):
        first, last = where[hit.start()], where[hit.end()]  # in `text`
        if first < pos:
            continue
        starts = [e.end() for e in _SENTENCE_END.finditer(text, pos, first)]
        start = starts[-1] if starts else pos
        while start < first and text[start] in " \t":
            start += 1
        end_m = _SENTENCE_END.search(text, last)
        end = end_m.end() if end_m else len(text)
        if end_m and text[end_m.start()] == "\n":
            end = end_m.start()
        out.append(text[pos:start] + NEUTRALISED)
        pos = end
        count += 1
    out.append(text[pos:])
    return "".join(out), count


def _neutralise_value(value: Any) -> tuple[Any, int]:
    if isinstance(value, dict):
        pairs = [(k, _neutralise_value(v)) for k, v in value.items()]
        return {k: v for k, (v, _) in pairs}, sum(n for _, (_, n) in pairs)
    if isinstance(value, list):
        items = [_neutralise_value(v) for v in value]
        return [v for v, _ in items], sum(n for _, n in items)
    if isinstance(value, str):
        return neutralise(value)
    return value, 0


# ---------------------------------------------------------------- assertions


@dataclass(frozen=True)
class Derived:
    """The assertion a failure mode gives a case, and why (said in the PR)."""

    assertion: dict[str, Any]  # one item of a case's `assert` list
    why: str


# A field the failure says was missing: pydantic, jsonschema, KeyError, prose.
_FIELD = re.compile(
    r"'([A-Za-z_][\w-]{0,63})' is a required property"
    r"|\bmissing (?:required )?(?:field|key|property|attribute)s?:? ['\"`]?([A-Za-z_][\w-]{0,63})"
    r"|\b(?:field|key|property) ['\"`]([A-Za-z_][\w-]{0,63})['\"`] (?:is )?(?:required|missing)"
    r"|^KeyError: '([A-Za-z_][\w-]{0,63})'"
    r"|(?:^|\s)([A-Za-z_][\w-]{0,63}(?:\.(?:\d+|<\*>|[A-Za-z_][\w-]{0,63})){0,5})\s+"
    r"Field required", re.IGNORECASE | re.MULTILINE)
def _requiring(path: Sequence[str]) -> dict[str, Any]:
    """A JSON schema that requires the field at `path` (numbers and `<*>`: any item of an
    array, `action_items.1.owner` -> every action item has an owner)."""
    head, rest = path[0], path[1:]
    if head.isdigit() or head == templates.WILD:
        return {"type": "array", "items": _requiring(rest)} if rest else {"type": "array"}
    schema: dict[str, Any] = {"type": "object", "required": [head]}
    if rest:
        schema["properties"] = {head: _requiring(rest)}
    return schema


def _first_group(m: re.Match[str] | None) -> str | None:
    return next((g for g in m.groups() if g), None) if m else None


def derivable(category: str, fmt: str) -> bool:
    """Whether `derive` can give a failure of `category` an assertion for an agent that
    answers in `fmt` (asked before any input is read)."""
    return (category in ("missing_field", "invalid_json") and fmt == "json") \
        or (category == "sql_syntax" and fmt == "sql")


def derive(category: str, messages: Sequence[str], fmt: str,
           dialect: str | None = None) -> Derived | None:
    """The assertion for a failure of `category` (bot.core.diagnosis), from its messages
    (the template and real examples) and the agent's output format; None when no offline
    check would tell the failure from a good reply (a timeout, a refusal, a tool call)."""
    if category == "missing_field" and fmt == "json":
        # The real messages first: the template has `<*>` where they have the index.
        name = next((f for f in (_first_group(_FIELD.search(m)) for m in reversed(messages))
                     if f is not None), None)
        if name is not None:
            return Derived({"json_schema": _requiring(name.split("."))},
                           f"the reply lacked the field `{name}`: it must be a JSON object "
                           "that has it")
        return Derived({"json_schema": {"type": "object"}},
                       "the reply lacked a field (the message does not name it): it must at "
                       "least be one JSON object")
    if category == "invalid_json" and fmt == "json":
        return Derived({"json_schema": {}},
                       "the reply was not valid JSON: the whole reply must parse as JSON "
                       "(no prose, no code fence around it)")
    if category == "sql_syntax" and fmt == "sql":
        # Only in the dialect the case names: sqlglot's generic dialect refuses valid
        # BigQuery or T-SQL, and a case that fails a good reply is worse than none.
        read = dialect.lower() if dialect else ""
        if read not in SQL_DIALECTS or read == "generic":
            return None
        return Derived({"sql_parses": read},
                       f"the SQL did not parse: it must parse as {read} SQL")
    return None


# ---------------------------------------------------------------- inputs


@dataclass(frozen=True)
class Failing:
    """One failing execution of the fixed failure mode, as the export has it."""

    execution_id: str
    error_type: str
    message: str
    input: str  # the export's `input`: the template's variables as JSON, or the user text


def matches(template: str, message: str) -> bool:
    """Whether `message` belongs to the failure mode whose template is `template`: token by
    token, `<*>` matching any one token of the masked message."""
    want = template.split()
    got = templates.mask(message).split()
    if len(want) != len(got):
        return False
    return all(w == g or w == templates.WILD or (templates.WILD in w and _token_fits(w, g))
               for w, g in zip(want, got, strict=True))


def _token_fits(pattern: str, token: str) -> bool:
    parts = [re.escape(p) for p in pattern.split(templates.WILD)]
    return re.fullmatch(".+?".join(parts), token) is not None


def _user_text(raw: Any) -> str | None:
    """The last user message of OpenTelemetry's `gen_ai.input.messages` (or a chat list)."""
    if not isinstance(raw, list):
        return None
    for message in reversed(raw):
        if isinstance(message, dict) and message.get("role") == "user":
            parts = message.get("parts")
            if isinstance(parts, list):
                texts = [p.get("content") for p in parts
                         if isinstance(p, dict) and p.get("type") == "text"]
                joined = "\n".join(t for t in texts if isinstance(t, str))
                return joined or None
            content = message.get("content")
            return content if isinstance(content, str) and content else None
    return None


def inputs_of(raw: str, variables: frozenset[str]) -> tuple[dict[str, Any] | None, str]:
    """The case inputs an export's `input` value gives, or None and why not.

    A JSON object is the template's variables (what the runtime rendered from). Text, or
    the user message of a chat list, fills the template's one variable; a template of
    several variables cannot be filled from rendered text."""
    text = raw.strip()
    value: Any = text
    if text[:1] in "{[\"":
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            value = text
    if isinstance(value, dict):
        if not value:
            return None, "the input is an empty object"
        missing = sorted(variables - set(value))
        if variables and len(missing) == len(variables):
            return None, ("the input names none of the template's variables "
                          f"({', '.join(sorted(variables))})")
        return value, ""
    if isinstance(value, list):
        value = _user_text(value)
        if value is None:
            return None, "the chat messages hold no user text"
    if not isinstance(value, str) or not value.strip():
        return None, "the input is empty"
    if len(variables) != 1:
        return None, ("the input is text, and the user template has "
                      f"{len(variables)} variables: log them as a JSON object instead")
    (name,) = variables
    return {name: value}, ""


# ---------------------------------------------------------------- cases


@dataclass(frozen=True)
class NewCase:
    name: str
    inputs: dict[str, Any]
    assertions: tuple[dict[str, Any], ...]
    execution_id: str
    why: str  # the failure the assertion is derived from, for the PR


@dataclass(frozen=True)
class Plan:
    """The cases a fix gives, and what was done to the inputs on the way."""

    cases: tuple[NewCase, ...]
    scrubbed: Mapping[str, int]  # kind -> values replaced, over the chosen cases
    neutralised: int  # instruction-like sentences removed, over the chosen cases
    candidates: int  # failing executions with a usable input
    unusable: Mapping[str, int]  # why the others were not used -> how many


def _digest(inputs: Mapping[str, Any]) -> str:
    canonical = json.dumps(inputs, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def plan(failing: Iterable[Failing], *, template: str, variables: frozenset[str],
         category: str, fmt: str, existing: Mapping[str, Any],
         max_cases: int = MAX_CASES, max_chars: int = 8_000,
         renders: Callable[[dict[str, Any]], str | None] = lambda _: None) -> Plan:
    """Up to `max_cases` cases from the failing executions that belong to the failure mode
    (`template`), scrubbed and neutralised, none equal to an existing case (`existing`: name
    -> inputs of the tests file's cases) or to each other. Taken in the order of a digest of
    the export's input, so the same export always gives the same cases, round robin over
    the failure's distinct messages; only as many are scrubbed as it takes. `renders` says
    why the user template does not render with some inputs (None when it does)."""
    unusable: Counter[str] = Counter()
    taken = {_digest(v) for v in existing.values() if isinstance(v, dict)}
    queues: dict[str, dict[str, Failing]] = {}
    for row in failing:
        if matches(template, row.message):
            key = hashlib.sha256(row.input.encode("utf-8")).hexdigest()
            queues.setdefault(templates.mask(row.message), {}).setdefault(key, row)
    ordered = [[q[k] for k in sorted(q)] for _, q in sorted(queues.items())]
    candidates = sum(len(q) for q in ordered)
    chosen: list[NewCase] = []
    scrubbed: Counter[str] = Counter()
    neutralised = 0
    while len(chosen) < max_cases and any(ordered):
        for queue in ordered:
            while queue and len(chosen) < max_cases:
                made = _case(queue.pop(0), template, variables, category, fmt, max_chars,
                             renders, taken)
                if isinstance(made, str):
                    unusable[made] += 1
                    continue
                case, found, removed = made
                taken.add(_digest(case.inputs))
                chosen.append(case)
                scrubbed.update(found)
                neutralised += removed
                break  # the next message's turn
    return Plan(tuple(chosen), dict(scrubbed), neutralised, candidates, dict(unusable))


def _case(row: Failing, template: str, variables: frozenset[str], category: str, fmt: str,
          max_chars: int, renders: Callable[[dict[str, Any]], str | None],
          taken: set[str]) -> tuple[NewCase, Counter[str], int] | str:
    """The case one failing execution gives, or why it gives none. Production text is
    anything: an input too long, too deeply nested or not valid Unicode (a lone surrogate
    from a cut emoji) is unusable, never a crash of the run."""
    # Scrubbing costs with the length; an input far over the limit is not worth it.
    if len(row.input) > 4 * max_chars:
        return f"the input is longer than {max_chars:,} characters"
    try:
        inputs, why = inputs_of(row.input, variables)
        if inputs is None:
            return why
        scrub = Scrubber()
        clean = scrub.names_elsewhere(scrub.value(inputs))
        clean, removed = _neutralise_value(clean)
        shown = json.dumps(clean, ensure_ascii=False)
        shown.encode("utf-8")
    except RecursionError:
        return "the input is nested too deeply"
    except UnicodeError:
        return "the input is not valid Unicode"
    if len(shown) > max_chars:
        return f"the input is longer than {max_chars:,} characters"
    digest = _digest(clean)
    if digest in taken:
        return "the same input is a case already"
    problem = renders(clean)
    if problem is not None:
        return problem.split(" (")[0]
    dialect = clean.get("dialect")
    derived = derive(category, [template, row.message], fmt,
                     dialect if isinstance(dialect, str) else None)
    if derived is None:
        return "no check follows from it (no dialect in the input, or no field in the message)"
    name = f"{NAME_PREFIX}{category.replace('_', '-')}-{digest[:8]}"
    return (NewCase(name, clean, (derived.assertion,), row.execution_id, derived.why),
            scrub.found, removed)


# ---------------------------------------------------------------- tests.yaml


class EditError(ValueError):
    """The tests file's layout is one the line edit does not know; the PR is not opened."""


HEADER = ("# Offline evaluation cases for the {agent} agent (`promptbot eval {agent}`).\n"
          "#\n"
          "# Cases named prod-* come from production failures a merged proposal fixed\n"
          "# (personal data replaced, instruction-like text removed); see their PR.\n")


class _Dumper(yaml.SafeDumper):
    """PyYAML's safe dumper with nested lists indented under their key, as tests files
    write them. PyYAML, not ruamel: it quotes what YAML 1.1 reads as something else (`yes`,
    `no`, `on`, `off`), which the loader of tests.yaml (PyYAML) would read as booleans."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)


# Characters YAML reads as line breaks, or that a plain or single-quoted scalar cannot hold:
# such a string is written double-quoted, with escapes.
_ESCAPE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u2028\u2029\ufeff]")


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    if _ESCAPE.search(value):
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style='"')
    if "\n" in value and not re.search(r"[ \t]\n|\r", value):
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|")
    return dumper.represent_scalar("tag:yaml.org,2002:str", value)


_Dumper.add_representer(str, _str)


def _case_yaml(case: NewCase, indent: int, newline: str) -> str:
    """One list item, `indent` spaces in, with the file's line ending."""
    data = [{"name": case.name, "inputs": case.inputs,
             "assert": [dict(a) for a in case.assertions]}]
    text = yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=4096,
                     default_flow_style=False)
    pad = " " * indent
    # Empty lines stay empty; a line of a block scalar that holds only a no-break space is
    # content, not blank.
    return "".join(pad + line + newline if line else newline
                   for line in text.split("\n")[:-1])


def add_cases(text: str | None, agent: str, cases: Sequence[NewCase]) -> str:
    """`text` (a tests.yaml, or None for none yet) with `cases` appended to its `cases:`
    list, every other line as it was (a byte-order mark and CRLF line endings kept); checked
    by parsing the result."""
    if not cases:
        raise ValueError("no cases to add")
    if text is None or not text.strip():
        new = HEADER.format(agent=agent) + "cases:\n" + "".join(
            _case_yaml(c, 2, "\n") for c in cases)
        _verify(None, new, cases)
        return new
    bom = "\ufeff" if text.startswith("\ufeff") else ""
    body = text[len(bom):]
    newline = "\r\n" if "\r\n" in body else "\n"
    lines = body.splitlines(keepends=True)
    at = next((i for i, line in enumerate(lines) if re.match(r"cases\s*:", line)), None)
    if at is None:
        raise EditError("the file has no top-level `cases:` key")
    empty = re.match(r"cases\s*:\s*\[\s*\]\s*(#.*)?$", lines[at].rstrip("\r\n"))
    if empty:
        lines[at] = "cases:" + (f"  {empty.group(1)}" if empty.group(1) else "") + newline
    elif re.match(r"cases\s*:\s*[^\s#]", lines[at]):
        raise EditError("`cases:` is written in flow style (on one line); write it as a "
                        "block list (`cases:` and one `- name: ...` item per case)")
    # The block ends before the next top-level key.
    end = next((i for i in range(at + 1, len(lines))
                if re.match(r"[^\s#-]", lines[i]) or lines[i].startswith("---")), len(lines))
    # Blank lines and comments at the left margin before it (or at the end of the file)
    # belong to what follows: a footer stays a footer.
    while end > at + 1 and (not lines[end - 1].strip() or lines[end - 1].startswith("#")):
        end -= 1
    item = next((re.match(r"( *)- ", line) for line in lines[at + 1:end]
                 if re.match(r" *- ", line)), None)
    indent = len(item.group(1)) if item else 2
    head = "".join(lines[:end])
    if head and not head.endswith("\n"):
        head += newline
    new = bom + head + "".join(_case_yaml(c, indent, newline) for c in cases) \
        + "".join(lines[end:])
    _verify(text, new, cases)
    return new


def _verify(old: str | None, new: str, cases: Sequence[NewCase]) -> None:
    try:
        before = yaml.safe_load(old.lstrip("\ufeff")) if old else {"cases": []}
    except yaml.YAMLError:
        raise EditError("the file does not parse as YAML") from None
    try:
        # The loader `promptbot check` and the eval use, which refuses what PyYAML's pure
        # loader lets through (a lone surrogate).
        after = parse_yaml(new.lstrip("\ufeff"), "tests.yaml").data
    except InputError as exc:
        raise EditError(f"the edited file does not parse ({exc.render()})") from None
    want = {**(before or {}),
            "cases": [*((before or {}).get("cases") or []),
                       *({"name": c.name, "inputs": c.inputs,
                          "assert": [dict(a) for a in c.assertions]} for c in cases)]}
    if after != want:
        raise EditError("the appended cases do not read back as written, or the rest of "
                        "the file reads differently after the edit")


# ---------------------------------------------------------------- the PR


def title(agent: str, category: str, n: int, pr: int | None) -> str:
    fixed = f" (fixed by #{pr})" if pr is not None else ""
    return (f"{agent}: {n} regression case{'s' if n != 1 else ''} for "
            f"{category.replace('_', ' ')}{fixed}")


def body(*, agent: str, proposal_id: str, pr: int | None, category: str, template: str,
         p: Plan, tests_path: str, simulated: bool) -> str:
    """The PR body: what fixed what, the cases, what was removed from them, how to check."""
    by = f"#{pr}" if pr is not None else f"proposal `{proposal_id}`"
    measured = ("measured on **simulated** data" if simulated else "measured on production "
                "traffic")
    lines = [
        f"{by} fixed the `{category}` failures of **{agent}** ({measured}). This PR adds "
        f"{len(p.cases)} of the inputs that failed that way before the fix to "
        f"`{tests_path}`, so that every later proposal's offline eval checks the fix still "
        "holds.",
        "",
        f"**Failure mode:** {untrusted(template)}",
        "",
        "| case | from execution | assertion | why |",
        "|---|---|---|---|",
    ]
    for c in p.cases:
        shown = ", ".join(untrusted(json.dumps(a, ensure_ascii=False), 120)
                          for a in c.assertions)
        lines.append(f"| `{c.name}` | {untrusted(c.execution_id, 40)} | {shown} | "
                     f"{c.why.replace('|', '¦')} |")
    scrubbed = ", ".join(f"{n} {kind}{'s' if n != 1 else ''}"
                         for kind, n in sorted(p.scrubbed.items())) or "nothing found"
    lines += [
        "",
        "### Before you merge",
        f"- **Personal data replaced:** {scrubbed} (reserved stand-ins: example.com "
        "addresses, 555-01xx numbers, the 4111 test card, `Person N` for names in name "
        "fields; keys and passwords `[redacted]`). Names found only in free text, postal addresses "
        "and other details are **not** detected: read the inputs below.",
        f"- **Instruction-like text removed:** {p.neutralised} sentence(s), replaced by "
        f"`{NEUTRALISED}`.",
        f"- Chosen from {p.candidates} distinct failing input(s) of this failure mode"
        + (f"; not used: {_unusable(p.unusable)}" if p.unusable else "") + ".",
        f"- Check them: `promptbot eval {agent}` (recorded replies offline; "
        "`--record` with a key runs them on the model).",
        "- Nothing is deployed by this PR: it only adds eval cases. To drop one, delete it "
        "from the branch; to undo later, revert the merge.",
        "",
        "<details><summary>The inputs</summary>",
        "",
    ]
    for c in p.cases:
        shown = json.dumps(c.inputs, indent=2, ensure_ascii=False)
        # A forged hidden marker inside an input must not read as the bot's own.
        shown = shown.replace("<!--", "<!- -").replace("-->", "- ->")
        if len(shown) > SHOWN_CHARS:
            shown = shown[:SHOWN_CHARS] + "\n… (cut here; the whole input is in the tests file)"
        lines += [f"`{c.name}`", "", fenced(shown, "json"), ""]
    lines.append("</details>")
    return "\n".join(lines)


def _unusable(reasons: Mapping[str, int]) -> str:
    return "; ".join(f"{n} × {why}" for why, n in sorted(reasons.items()))
