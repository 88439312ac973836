"""Jinja2 user templates, compiled and rendered only in Jinja2's sandbox.

A template in a prompt file is code written by whoever edits prompts; the
sandbox keeps it from reaching Python internals (`{{ ''.__class__ }}` and kin).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from jinja2 import StrictUndefined, Template, TemplateSyntaxError, Undefined, meta, nodes
from jinja2.exceptions import SecurityError, UndefinedError
from jinja2.sandbox import ImmutableSandboxedEnvironment


@lru_cache(maxsize=2)
def sandbox(strict: bool = True) -> ImmutableSandboxedEnvironment:
    # Lenient mode renders a missing optional field as empty, as agent runtimes do.
    return ImmutableSandboxedEnvironment(undefined=StrictUndefined if strict else Undefined,
                                         autoescape=False)


def compile_error(source: str) -> tuple[int, str] | None:
    """(line within the template, message) when the template does not compile."""
    try:
        sandbox().parse(source)
    except TemplateSyntaxError as exc:
        return exc.lineno, exc.message or "syntax error"
    return None


def unsafe_access(source: str) -> list[tuple[int, str]]:
    """(line, name) of every underscore attribute or key the template reaches for.

    The sandbox would refuse them at render time; `check` reports them before that.
    """
    found: list[tuple[int, str]] = []
    tree = sandbox().parse(source)
    for attr in tree.find_all(nodes.Getattr):
        if attr.attr.startswith("_"):
            found.append((attr.lineno, attr.attr))
    for item in tree.find_all(nodes.Getitem):
        key = item.arg.value if isinstance(item.arg, nodes.Const) else None
        if isinstance(key, str) and key.startswith("_"):
            found.append((item.lineno, key))
    # Names assembled at render time (`|attr("__class__")`, "__cl" ~ "ass__") cannot be
    # resolved statically; a dunder fragment in any string constant is reason enough.
    for const in tree.find_all(nodes.Const):
        if isinstance(const.value, str) and "__" in const.value:
            found.append((const.lineno, const.value))
    return sorted(set(found))


def variables(source: str) -> frozenset[str]:
    """Top-level variables the template reads."""
    return frozenset(meta.find_undeclared_variables(sandbox().parse(source)))


class RenderError(ValueError):
    pass


@lru_cache(maxsize=512)
def compiled(source: str, strict: bool = True) -> Template:
    # Compiling costs ~100x a render; a service renders the same few templates all day.
    return sandbox(strict).from_string(source)


def render(source: str, context: dict[str, Any], strict: bool = True) -> str:
    try:
        return compiled(source, strict).render(**context)
    except SecurityError as exc:
        raise RenderError(f"template tried an unsafe operation: {exc}") from None
    except UndefinedError as exc:
        raise RenderError(f"template variable missing: {exc.message}") from None
    except TemplateSyntaxError as exc:
        raise RenderError(f"template syntax: {exc.message}") from None
    except (TypeError, ValueError, ArithmeticError) as exc:
        raise RenderError(f"template failed: {type(exc).__name__}: {str(exc)[:200]}") from None
