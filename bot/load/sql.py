"""Literals for the SQL that the loaders build (values never reach SQL any other way)."""

from __future__ import annotations


def lit(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def file_literal(path: str) -> str:
    """A resolved file name as a DuckDB literal: DuckDB globs again, so escape [, * and ?."""
    return lit("".join(f"[{c}]" if c in "[*?" else c for c in path))


def ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'
