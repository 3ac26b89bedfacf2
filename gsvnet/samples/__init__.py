"""Real frames shipped with the package (numpy only, no video decoder needed).

``road.npz``: the first 8 frames of a real dash-camera clip (solidWhiteRight.mp4, Udacity
CarND-LaneLines-P1, MIT licence, Copyright (c) 2016-2019 Udacity, Inc.) at 272x480, written by
``python -m benchmarks.sample_frames``. They are what the build verifies engines on and what the
first use of a backend is checked against (runtime/verification.py), on machines that have no
data of their own.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

SAMPLE = Path(__file__).with_name("road.npz")
SAMPLE_SIZE = (272, 480)


def sample_frames() -> np.ndarray:
    """uint8 [8,272,480,3] RGB, consecutive frames at 25 Hz."""
    with np.load(SAMPLE) as data:
        return np.ascontiguousarray(data["frames"])


def resize_bilinear(frames: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """uint8 [N,h,w,3] -> uint8 [N,size,3], bilinear with pixel centres aligned (no antialiasing),
    in float64 numpy: the same bytes on every machine, so labels computed at build time from these
    frames are reproducible wherever the engines folder goes."""
    n, h, w, _ = frames.shape
    if (h, w) == tuple(size):
        return frames

    def axis(out_len: int, in_len: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        pos = np.clip((np.arange(out_len) + 0.5) * (in_len / out_len) - 0.5, 0, in_len - 1)
        lo = np.floor(pos).astype(np.int64)
        hi = np.minimum(lo + 1, in_len - 1)
        return lo, hi, pos - lo

    y0, y1, fy = axis(size[0], h)
    x0, x1, fx = axis(size[1], w)
    f = frames.astype(np.float64)
    rows = f[:, y0] * (1 - fy)[None, :, None, None] + f[:, y1] * fy[None, :, None, None]
    out = rows[:, :, x0] * (1 - fx)[None, None, :, None] + rows[:, :, x1] * fx[None, None, :, None]
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)
