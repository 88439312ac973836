"""Regenerate the JSON Schemas (bot/schemas/*.schema.json) and docs/REFERENCE.md from the
pydantic models in bot/core/model.py. Run it after changing a model; the tests fail while
a committed file differs from what the models generate.

    python scripts/gen_schemas.py --write    # rewrite the files
    python scripts/gen_schemas.py --check    # exit 1 and name the stale files
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bot.load.schemas import FILES, MODELS, generated_text, reference_markdown

ROOT = Path(__file__).resolve().parents[1]


def targets() -> dict[Path, str]:
    out = {ROOT / "bot" / "schemas" / FILES[kind]: generated_text(kind) for kind in MODELS}
    out[ROOT / "docs" / "REFERENCE.md"] = reference_markdown()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--write", action="store_true", help="rewrite the generated files")
    mode.add_argument("--check", action="store_true",
                      help="exit 1 when a committed file differs from the models")
    args = parser.parse_args(argv)
    stale = [path for path, text in targets().items()
             if not path.exists() or path.read_text(encoding="utf-8") != text]
    if args.check:
        for path in stale:
            print(f"{path.relative_to(ROOT)} is out of date: run python "
                  "scripts/gen_schemas.py --write", file=sys.stderr)
        return 1 if stale else 0
    for path, text in targets().items():
        if path in stale:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
