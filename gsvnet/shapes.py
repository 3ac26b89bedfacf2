"""Sizes every network, graph and engine agrees on, in plain Python (no torch): the 1/8 grid of a
frame and the number of guiding weights per pixel. ``gsvnet.model`` and ``gsvnet.ops`` use them;
the engines folder's contract (``engine_format.stages``) derives its tensor shapes from them."""

from __future__ import annotations


def grid_size(frame_size: tuple[int, int]) -> tuple[int, int]:
    """The 1/8 grid of a frame size (H, W), both multiples of 8."""
    height, width = frame_size
    if height % 8 or width % 8 or height < 16 or width < 16:
        raise ValueError(f"frame size {height}x{width} must be multiples of 8 and at least 16x16")
    return height // 8, width // 8


def num_shifts(radius: int) -> int:
    """Number of ideal-delay candidates K = (2r+1)^2 for a propagation radius r."""
    if radius < 0:
        raise ValueError(f"radius must be >= 0, got {radius}")
    return (2 * radius + 1) ** 2


def num_weights(radius: int) -> int:
    """Guiding weights per pixel: K shifts, the intra candidate and the null candidate (K + 2)."""
    return num_shifts(radius) + 2
