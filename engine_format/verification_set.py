"""The engines folder's verification set: a few real frames and the labels the PyTorch reference
gives for them, written by the build and read by the runtime's first-use check
(runtime/verification.py), so a backend proves itself on the user's machine without PyTorch.

``verification.npz`` holds
- ``frames``: uint8 [F,h,w,3], real frames at the shipped sample's size (gsvnet/samples);
- ``labels_fp32``: uint8 [F,H,W] at the engine size, from the checkpoint in FP32 (PyTorch), with
  frame 0 a keyframe and frames 1..F-1 propagated, the frames resized by
  ``gsvnet.samples.resize_bilinear``;
- ``labels_int8`` (INT8 folders): the same with the keyframe scores of the INT8 keyframe graph
  (onnxruntime), i.e. what an INT8 engine should give; that graph was itself held to FP32 by the
  build's INT8 gate.
Reading it needs numpy only.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

FILE = "verification.npz"
#: frames in the set: a keyframe and l - 1 propagation steps at the default interval l = 4
FRAMES = 4
#: a backend passes when, on every frame, at least this share of pixels has the reference label
MIN_AGREEMENT = 0.995


def engine_frames(frames: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The set's frames at the engine size (the same bytes on every machine)."""
    from gsvnet.samples import resize_bilinear

    return resize_bilinear(frames, size)


def read_verification_set(path: Path) -> dict[str, np.ndarray]:
    """The arrays of a verification file (numpy only)."""
    with np.load(path) as data:
        return {k: np.ascontiguousarray(data[k]) for k in data.files}
