"""Reading back what runtime.infer writes, independently of runtime/: PyAV decoding, PIL PNGs."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import av
import numpy as np
from PIL import Image


def decode_rgb(path: Path) -> Iterator[np.ndarray]:
    """Every frame of a video as uint8 [H,W,3] RGB, decoded with PyAV directly (not runtime.video)."""
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            yield frame.to_ndarray(format="rgb24")


def read_label_pngs(folder: Path, count: int) -> Iterator[np.ndarray]:
    """The label PNGs 000000.png ... of a --labels-dir, in order; exactly ``count`` of them."""
    names = sorted(p.name for p in folder.iterdir())
    assert names == [f"{k:06d}.png" for k in range(count)], names[:3] + ["..."] + names[-3:]
    for name in names:
        png = Image.open(folder / name)
        assert png.mode == "L"
        yield np.asarray(png)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio of two uint8 images in dB (float64)."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10.0 * np.log10(255.0**2 / mse)
