"""``first_line``: the one way every layer (export, runtime, benchmarks) puts an exception into a
one-line, user-facing message."""

from __future__ import annotations


def first_line(error: BaseException | str, limit: int | None = None) -> str:
    """One line for a message: ``'ValueError: <first line of its text>'`` for an exception (its type
    name alone when it has no text), the first non-blank line for a string; that line cut to
    ``limit`` characters (None: whole)."""
    text = str(error).strip()
    line = text.splitlines()[0].strip()[:limit] if text else ""
    if isinstance(error, BaseException):
        return f"{type(error).__name__}: {line}" if line else type(error).__name__
    return line
