"""CamVid (11 classes + void) on disk: ``{split}/*.jpg`` frames and ``{split}annot/*.png`` labels.

Images are uint8 RGB [H,W,3] (360x480 for the real data), labels uint8 [H,W] with values 0..10
for the classes of ``gsvnet.classes.CAMVID`` and 11 for void (ignored when training and scoring).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

#: The label value that marks unlabelled pixels.
VOID = 11
NUM_CLASSES = 11
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class LabelledFrame:
    name: str
    image: np.ndarray  # uint8 [H,W,3] RGB
    label: np.ndarray  # uint8 [H,W], 0..10 classes, 11 void


def split_files(root: str | Path, split: str) -> list[tuple[Path, Path]]:
    """(image, label) paths of one split, sorted by name; raises if the split is missing or unpaired."""
    if split not in SPLITS:
        raise ValueError(f"unknown CamVid split {split!r}; choose one of {SPLITS}")
    root = Path(root)
    image_dir, label_dir = root / split, root / f"{split}annot"
    if not image_dir.is_dir() or not label_dir.is_dir():
        raise FileNotFoundError(f"CamVid split {split!r} not found: expected {image_dir} and {label_dir}")
    pairs = []
    for image in sorted(p for p in image_dir.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png")):
        label = label_dir / f"{image.stem}.png"
        if not label.is_file():
            raise FileNotFoundError(f"no label {label} for {image}")
        pairs.append((image, label))
    if not pairs:
        raise FileNotFoundError(f"CamVid split {split!r} in {root} has no images")
    return pairs


def read_image(path: str | Path) -> np.ndarray:
    """uint8 RGB [H,W,3]."""
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"), dtype=np.uint8).copy()


def read_label(path: str | Path) -> np.ndarray:
    """uint8 [H,W]; any value above VOID is mapped to VOID."""
    with Image.open(path) as im:
        label = np.asarray(im, dtype=np.uint8).copy()
    if label.ndim != 2:
        raise ValueError(f"{path}: expected a single-channel label image, got shape {label.shape}")
    label[label > VOID] = VOID
    return label


def load_split(root: str | Path, split: str, limit: int | None = None) -> list[LabelledFrame]:
    """Read a whole split into memory (CamVid train is ~190 MB as uint8)."""
    pairs = split_files(root, split)[:limit]
    frames = []
    for image_path, label_path in pairs:
        image, label = read_image(image_path), read_label(label_path)
        if image.shape[:2] != label.shape:
            raise ValueError(f"{image_path.name}: image {image.shape[:2]} and label {label.shape} differ in size")
        frames.append(LabelledFrame(image_path.stem, image, label))
    return frames


#: halves of the val split, which is one labelled 15 Hz sequence (0016E5_07959 .. 0016E5_08159):
#: the first selects models, the second is reported, and neither is trained on
HALVES = ("first", "second", "all")


def sequence_half(frames: list, half: str) -> list:
    """The first floor(n/2) frames, the remaining ones, or all of a time-ordered sequence."""
    if half not in HALVES:
        raise ValueError(f"unknown half {half!r}; choose one of {HALVES}")
    cut = len(frames) // 2
    return {"first": frames[:cut], "second": frames[cut:], "all": list(frames)}[half]
