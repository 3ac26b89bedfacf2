"""Small synthetic datasets written by tests: CamVid tree, video clip, Cityscapes tree."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
from PIL import Image

#: a distinct colour per CamVid label 0..11 (11 = void), so images encode their labels
LABEL_COLOURS = np.array([[(37 * i) % 256, (91 * i + 40) % 256, (173 * i + 90) % 256] for i in range(12)], np.uint8)


def block_label(rng: np.random.Generator, size: tuple[int, int], block: int = 20, classes: int = 12) -> np.ndarray:
    """uint8 [H,W] of constant square blocks with random labels 0..classes-1."""
    h, w = size
    coarse = rng.integers(0, classes, size=(-(-h // block), -(-w // block)), dtype=np.uint8)
    return np.kron(coarse, np.ones((block, block), np.uint8))[:h, :w]


def write_camvid_tree(root: Path, rng: np.random.Generator, counts: dict[str, int] | None = None,
                      size: tuple[int, int] = (60, 80)) -> Path:
    """root/{split}/*.jpg (PNG data would be lossless, but CamVid ships JPEG) and {split}annot/*.png."""
    for split, n in (counts or {"train": 4, "val": 2, "test": 2}).items():
        (root / split).mkdir(parents=True, exist_ok=True)
        (root / f"{split}annot").mkdir(parents=True, exist_ok=True)
        for i in range(n):
            label = block_label(rng, size)
            Image.fromarray(LABEL_COLOURS[label]).save(root / split / f"seq_{i:04d}.jpg", quality=95)
            Image.fromarray(label).save(root / f"{split}annot" / f"seq_{i:04d}.png")
    return root


def moving_texture(rng: np.random.Generator, frames: int, size: tuple[int, int], dx: int = 2) -> np.ndarray:
    """uint8 [T,H,W,3]: a smooth random texture translating ``dx`` pixels per frame to the left."""
    h, w = size
    big = rng.integers(0, 256, size=(h // 4 + 2, (w + dx * frames) // 4 + 2, 3)).astype(np.uint8)
    big = np.asarray(Image.fromarray(big).resize(((big.shape[1]) * 4, big.shape[0] * 4), Image.BICUBIC))
    return np.stack([big[:h, t * dx : t * dx + w] for t in range(frames)])


def write_video(path: Path, frames: np.ndarray, fps: int = 25) -> Path:
    """Encode uint8 RGB frames [T,H,W,3] (even H, W) as H.264 (or MPEG-4 if H.264 is unavailable)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        try:
            stream = container.add_stream("libx264", rate=fps)
            stream.options = {"crf": "12"}
        except Exception:  # noqa: BLE001 - codec availability depends on the PyAV build
            stream = container.add_stream("mpeg4", rate=fps)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        for rgb in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path
