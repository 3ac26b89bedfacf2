"""The build's one-line, user-facing errors (shared by the ONNX and the TensorRT build), and
``first_line``, the one way every layer above (``runtime.errors`` re-exports it) puts an
exception into such a line."""

from __future__ import annotations


class BuildError(RuntimeError):
    """A one-line, user-facing reason the build cannot go on."""


TENSORRT_MISSING = ("TensorRT is not importable: install it on a machine with an NVIDIA GPU and driver "
                    "(pip install tensorrt, which needs access to NVIDIA's package index), or use --backend onnx")


def first_line(error: BaseException | str, limit: int | None = None) -> str:
    """One line for a message: ``'ValueError: <first line of its text>'`` for an exception (its type
    name alone when it has no text), the first non-blank line for a string; that line cut to
    ``limit`` characters (None: whole)."""
    text = str(error).strip()
    line = text.splitlines()[0].strip()[:limit] if text else ""
    if isinstance(error, BaseException):
        return f"{type(error).__name__}: {line}" if line else type(error).__name__
    return line
