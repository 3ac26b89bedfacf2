"""A whole (short) video in memory for training and evaluation.

Decoding and resizing go through the runtime's one video reader (``runtime.video``), so training
sees frames exactly as the deployed pipeline does. The runtime streams frames; training needs
random access to a 221-frame clip, which fits in memory at 544x960 (~350 MB as uint8);
``iter_video`` streams a long one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np

from runtime.video import VideoReader, resize_rgb


def iter_video(path: str | Path, size: tuple[int, int] | None = None, limit: int | None = None) -> Iterator[np.ndarray]:
    """uint8 RGB frames [H,W,3] one at a time, resized (bilinear) to ``size`` = (H, W) when given."""
    for count, decoded in enumerate(VideoReader(path), 1):
        yield decoded.rgb if size is None else resize_rgb(decoded.rgb, size)
        if limit is not None and count >= limit:
            return


def read_video(path: str | Path, size: tuple[int, int] | None = None, limit: int | None = None) -> np.ndarray:
    """uint8 RGB frames [T,H,W,3], resized (bilinear) to ``size`` = (H, W) when given."""
    return np.stack(list(iter_video(path, size, limit)))


def holdout_split(num_frames: int, holdout: float = 0.3) -> tuple[range, range]:
    """(training frames, held-out frames): at least the last ``holdout`` fraction is held out."""
    if not 0.0 < holdout < 1.0:
        raise ValueError(f"holdout must be in (0, 1), got {holdout}")
    first_held = int(num_frames * (1.0 - holdout) + 1e-9)  # floor: the held-out part is never smaller
    return range(0, first_held), range(first_held, num_frames)
