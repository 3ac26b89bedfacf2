"""Engine frame sizes as users write them ('544x960', height x width)."""

from __future__ import annotations

import argparse


def parse_size(text: str) -> tuple[int, int]:
    """'HxW' -> (H, W); both multiples of 8 and at least 16."""
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must look like 1024x2048 (height x width), got {text!r}") from None
    if h < 16 or w < 16 or h % 8 or w % 8:
        near = f"{max(16, round(h / 8) * 8)}x{max(16, round(w / 8) * 8)}"
        raise argparse.ArgumentTypeError(f"size {h}x{w}: height and width must be multiples of 8 and >= 16 (try {near})")
    return h, w
