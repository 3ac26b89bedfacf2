"""Small synthetic videos for the runtime tests (written with PyAV)."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Iterable

import av
import numpy as np


def moving_frames(n: int, size: tuple[int, int], seed: int = 0):
    """A textured scene panning right by 2 px per frame, uint8 [H,W,3]."""
    height, width = size
    rng = np.random.default_rng(seed)
    scene = rng.integers(0, 256, (height, width + 2 * n + 8, 3), dtype=np.uint8)
    for i in range(n):
        yield np.ascontiguousarray(scene[:, 2 * i : 2 * i + width])


def write_video(path: Path, n: int, size: tuple[int, int], fps: int = 25, rotation: int | None = None,
                pts_steps: list[int] | None = None, faststart: bool = False, frames=None) -> Path:
    """Encode ``n`` frames (H.264; yuv444p for odd sizes). ``pts_steps`` gives a variable frame rate."""
    options = {"movflags": "faststart"} if faststart else {}
    with av.open(str(path), mode="w", options=options) as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.height, stream.width = size
        stream.pix_fmt = "yuv420p" if size[0] % 2 == 0 and size[1] % 2 == 0 else "yuv444p"
        if rotation is not None:
            stream.set_display_rotation(rotation)
        if pts_steps is not None:
            stream.codec_context.time_base = Fraction(1, 1000)
        pts = 0
        for i, rgb in enumerate(frames if frames is not None else moving_frames(n, size)):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            if pts_steps is not None:
                frame.pts = pts
                frame.time_base = Fraction(1, 1000)
                pts += pts_steps[i % len(pts_steps)]
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def write_lossless_frames(frames: Iterable[np.ndarray], path: Path, fps: int = 25) -> None:
    """RGB uint8 [H,W,3] frames, in order, as a video whose decoded frames are exactly these pixels
    (PNG frames in a QuickTime file)."""
    with av.open(str(path), "w") as out:
        stream = None
        for rgb in frames:
            if stream is None:
                stream = out.add_stream("png", rate=fps)
                stream.width, stream.height, stream.pix_fmt = rgb.shape[1], rgb.shape[0], "rgb24"
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")):
                out.mux(packet)
        for packet in stream.encode() if stream is not None else ():
            out.mux(packet)
