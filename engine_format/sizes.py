"""Engine frame sizes as users write them ('544x960', height x width)."""

from __future__ import annotations

import argparse


def _split_size(text: str, example: str) -> tuple[int, int]:
    """'HxW' -> (H, W) as integers, or argparse's error naming ``example``."""
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must look like {example} (height x width), got {text!r}") from None
    return h, w


def parse_size(text: str) -> tuple[int, int]:
    """'HxW' -> (H, W); both multiples of 8 and at least 16."""
    h, w = _split_size(text, "1024x2048")
    problem = size_error((h, w))
    if problem is not None:
        raise argparse.ArgumentTypeError(problem)
    return h, w


def parse_any_size(text: str) -> tuple[int, int]:
    """'HxW' -> (H, W), any positive sizes (a model's input size, not an engine's)."""
    h, w = _split_size(text, "512x1024")
    if h < 1 or w < 1:
        raise argparse.ArgumentTypeError(f"size {h}x{w}: height and width must be positive")
    return h, w


def size_error(size: tuple[int, int]) -> str | None:
    """Why (H, W) cannot be an engine frame size (both must be multiples of 8 and >= 16), as one
    line naming the nearest one that can; None when it can."""
    h, w = size
    if h < 16 or w < 16 or h % 8 or w % 8:
        near = f"{max(16, round(h / 8) * 8)}x{max(16, round(w / 8) * 8)}"
        return f"size {h}x{w}: height and width must be multiples of 8 and >= 16 (try {near})"
    return None
