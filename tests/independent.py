"""An independent end of the pipeline: decode, resize, schedule and label-resize written here,
sharing no code with runtime/ (OpenCV's decoder instead of PyAV, resizes in numpy float64, the
keyframe rule as written in the docs), so a channel swap, a frame offset, a wrong resize or a
wrong keyframe phase in the runtime shows up as labels that differ from these.

Only the networks are shared: the PyTorch modules of ``gsvnet`` are the reference computation.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np


def decode_rgb_opencv(path: Path, count: int | None = None) -> Iterator[np.ndarray]:
    """Frames of a video as uint8 [H,W,3] RGB through OpenCV's own FFmpeg build (BGR -> RGB here)."""
    import cv2

    capture = cv2.VideoCapture(str(path))
    assert capture.isOpened(), f"OpenCV cannot open {path}"
    try:
        for _ in itertools.count() if count is None else range(count):
            ok, bgr = capture.read()
            if not ok:
                return
            yield np.ascontiguousarray(bgr[:, :, ::-1])
    finally:
        capture.release()


def _triangle_weights(out_len: int, in_len: int) -> np.ndarray:
    """[out_len, in_len] resampling matrix of the bilinear (triangle) filter, widened by the scale
    factor when shrinking (so every input pixel contributes, as libswscale and PIL do), pixel
    centres aligned, each row normalised to 1."""
    scale = in_len / out_len
    support = max(scale, 1.0)
    centres = (np.arange(out_len) + 0.5) * scale
    taps = np.arange(in_len) + 0.5
    weights = np.clip(1.0 - np.abs(taps[None, :] - centres[:, None]) / support, 0.0, None)
    return weights / weights.sum(axis=1, keepdims=True)


def resize_rgb_float64(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """uint8 [H,W,3] -> uint8 [size,3]: separable triangle filter in float64, rounded."""
    h, w = size
    if rgb.shape[:2] == (h, w):
        return rgb
    rows, cols = _triangle_weights(h, rgb.shape[0]), _triangle_weights(w, rgb.shape[1])
    out = np.einsum("yi,ijc,xj->yxc", rows, rgb.astype(np.float64), cols, optimize=True)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def resize_labels_by_centre(labels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """[h,w] class ids -> [size]: each output pixel takes the input pixel under its centre."""
    h, w = labels.shape
    rows = np.floor((np.arange(size[0]) + 0.5) * (h / size[0])).astype(np.int64)
    cols = np.floor((np.arange(size[1]) + 0.5) * (w / size[1])).astype(np.int64)
    return labels[np.minimum(rows, h - 1)][:, np.minimum(cols, w - 1)]


def documented_keyframes(interval: int, stream: int = 0, streams: int = 1) -> Iterator[int]:
    """The keyframe rule as docs/architecture.md states it, as an endless increasing sequence:
    frame 0, then every l-th frame; in a staggered run of S videos, stream s's keyframes after
    frame 0 are shifted earlier by floor(s*l/S): l - p, 2l - p, ... with p = floor(s*l/S)."""
    phase = (stream * interval) // streams
    yield 0
    yield from itertools.count(interval - phase, interval) if phase else itertools.count(interval, interval)


def reference_labels(model, frames: Iterable[np.ndarray], engine_size: tuple[int, int], interval: int,
                     video_size: tuple[int, int], stream: int = 0, streams: int = 1) -> Iterator[np.ndarray]:
    """Labels [video_size] per frame from the PyTorch ``GSVNet`` (FP32, eval mode) driven by
    ``documented_keyframes``: frames resized here, labels taken at the engine size and resized
    back here."""
    import torch

    keys = documented_keyframes(interval, stream, streams)
    next_key = next(keys)
    state = None
    for index, rgb in enumerate(frames):
        keyframe = index == next_key
        if keyframe:
            next_key = next(keys)
        batch = torch.from_numpy(resize_rgb_float64(rgb, engine_size)[None])
        with torch.inference_mode():
            state = model.keyframe_step(batch) if keyframe else model.propagation_step(state, batch)
            labels = model.labels(state, engine_size)[0].numpy()
        yield resize_labels_by_centre(labels, video_size)


def shipped_model():
    """The shipped SwiftNet GSVNet checkpoint as an FP32 PyTorch model in eval mode."""
    from gsvnet import load_checkpoint
    from gsvnet.pretrained import default_checkpoint

    model, _ = load_checkpoint(default_checkpoint("swiftnet_r18"))
    return model.float().eval()


def agreement_per_frame(got: Iterable[np.ndarray], expected: Iterable[np.ndarray]) -> list[float]:
    """Share of equal pixels per frame; both sequences must have the same length and sizes."""
    out = []
    for k, (a, b) in enumerate(itertools.zip_longest(got, expected)):
        assert a is not None and b is not None, f"frame {k}: one side ended early"
        assert a.shape == b.shape, f"frame {k}: label maps of {a.shape} and {b.shape}"
        out.append(float(np.mean(a == b)))
    return out
