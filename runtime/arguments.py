"""argparse types for bounded numbers: one definition for the flags of runtime.infer and runtime.fleet."""

from __future__ import annotations

import argparse
from typing import Callable


def bounded(kind: type, low: float, high: float | None = None, strict: bool = False) -> Callable[[str], float]:
    """An argparse ``type`` parsing ``kind`` (int or float) within [low, high] (``strict``: above
    low); anything else is argparse's one-line error ("must be >= 1, got 0")."""
    noun = "a whole number" if kind is int else "a number"
    rule = f"in [{low:g}, {high:g}]" if high is not None else f"{'>' if strict else '>='} {low:g}"

    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {noun} {rule}, got {text!r}") from None
        above = value > low if strict else value >= low
        if not (above and (high is None or value <= high)):  # NaN fails too
            raise argparse.ArgumentTypeError(f"must be {rule}, got {value if kind is int else format(value, 'g')}")
        return value

    return parse


positive_int = bounded(int, 1)
non_negative_int = bounded(int, 0)
positive_float = bounded(float, 0, strict=True)
non_negative_float = bounded(float, 0)
alpha_value = bounded(float, 0, 1)
crf_value = bounded(int, 0, 51)
