"""Labelled video from labelled stills: synthetic ego-motion sequences of CamVid train images.

CamVid's training images are 1 s apart, so they give no consecutive frames; the val split (the
only labelled sequence) is kept for model selection and reporting. A camera moving forward
sees the scene expand around a focus of expansion and drift sideways; zooming into a still
image around a point, a little more each frame, and shifting it reproduces that motion, and
the label moves with the image (nearest neighbour), so every synthetic frame has ground truth.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class EgoMotion:
    zoom_per_frame: tuple[float, float] = (0.005, 0.03)  # relative scale change per frame (forward speed)
    shift_per_frame: float = 2.0  # +- pixels of lateral/vertical drift per frame, at the output size
    start_scale: tuple[float, float] = (1.0, 1.3)  # zoom of the first frame (crop of the still)


def affine(scale: float, centre: tuple[float, float], shift: tuple[float, float]) -> np.ndarray:
    """2x3 matrix mapping source pixels to output pixels: scale about ``centre``, then shift."""
    cx, cy = centre
    return np.array([[scale, 0.0, (1 - scale) * cx + shift[0]],
                     [0.0, scale, (1 - scale) * cy + shift[1]]], dtype=np.float64)


def sequence(image: np.ndarray, label: np.ndarray, length: int, size: tuple[int, int], void: int,
             rng: np.random.Generator, motion: EgoMotion = EgoMotion()) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``length`` + 1 frames of forward motion into a still: uint8 images [L+1,H,W,3], labels
    [L+1,H,W] at ``size`` = (H, W) (void where the source falls outside the still), and the
    per-frame 2x3 matrices [L+1,2,3] from the resized still to each frame."""
    h, w = size
    src = cv2.resize(image, (w, h), interpolation=cv2.INTER_LINEAR)
    src_label = cv2.resize(label, (w, h), interpolation=cv2.INTER_NEAREST)
    centre = (float(rng.uniform(0.3, 0.7) * w), float(rng.uniform(0.3, 0.6) * h))  # focus of expansion
    scale = float(rng.uniform(*motion.start_scale))
    rate = float(rng.uniform(*motion.zoom_per_frame))
    drift = rng.uniform(-motion.shift_per_frame, motion.shift_per_frame, size=2)
    images, labels, matrices = [], [], []
    for k in range(length + 1):
        m = affine(scale * (1 + rate) ** k, centre, (float(drift[0] * k), float(drift[1] * k)))
        images.append(cv2.warpAffine(src, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT101))
        labels.append(cv2.warpAffine(src_label, m, (w, h), flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT,
                                     borderValue=void))
        matrices.append(m)
    return np.stack(images), np.stack(labels), np.stack(matrices)


def grid_flows(matrices: np.ndarray, size: tuple[int, int], factor: int = 8, align_corners: bool = False) -> np.ndarray:
    """Exact backward flow of a synthetic sequence on the 1/``factor`` grid: float32 [L+1,2,h,w],
    flow[k](p) = where the point seen at grid pixel p of frame k was in frame k-1, minus p, in
    grid pixels (channel 0 = x); flow[0] = 0. Grid pixel (i, j) stands for the frame point its
    1/8 frame samples: the 8x8 block centre (8j + 3.5, 8i + 3.5) for the area downsample, or
    (j (W-1)/(w-1), i (H-1)/(h-1)) for the official point-sampling one (``align_corners``)."""
    height, width = size
    h, w = height // factor, width // factor
    if align_corners:
        sy, sx = (height - 1) / (h - 1), (width - 1) / (w - 1)
        ys, xs = np.meshgrid(sy * np.arange(h), sx * np.arange(w), indexing="ij")
    else:
        sy = sx = float(factor)
        ys, xs = np.meshgrid(factor * np.arange(h) + (factor - 1) / 2, factor * np.arange(w) + (factor - 1) / 2, indexing="ij")
    points = np.stack([xs.ravel(), ys.ravel(), np.ones(xs.size)])  # [3, h*w] frame pixels
    out = np.zeros((len(matrices), 2, h, w), np.float32)
    full = lambda m: np.vstack([m, [0.0, 0.0, 1.0]])  # noqa: E731
    for k in range(1, len(matrices)):
        to_previous = full(matrices[k - 1]) @ np.linalg.inv(full(matrices[k]))
        moved = (to_previous @ points)[:2] - points[:2]
        out[k, 0] = (moved[0] / sx).reshape(h, w)
        out[k, 1] = (moved[1] / sy).reshape(h, w)
    return out
