"""Accuracy protocols for any ``Stepper``: per-frame keyframe accuracy on labelled images, and the
paper's propagation protocol (after Accel / DFF).

A keyframe at frame s is segmented by the keyframe path and propagated recursively; the output
at distance d = 0..max_distance (frame s+d; d = 0 is the keyframe itself) is scored against a
reference label map: the ground truth where it exists (the CamVid val sequence, Cityscapes frame
20), or the keyframe net's own prediction on that frame (video without labels). D(d) is the
mIoU over all scored frames at distance d.

Summaries per keyframe interval l = 1..max_interval, as in the paper's Tables 1 and 4: an
interval of l frames holds the keyframe and l-1 propagated frames, i.e. distances 0..l-1, so
  avg(l) = mean of D(0..l-1)   (every frame of the interval),
  min(l) = D(l-1)              (the farthest frame, hit hardest by error accumulation),
and l = 1 is the keyframe net on every frame.
"""

from __future__ import annotations

from typing import Callable, Iterable, Sequence

import numpy as np

from runtime.schedule.core import Stepper
from gsvnet.datasets.camvid import LabelledFrame

from .metrics import ConfusionMatrix

#: frame index -> reference labels [H',W'] (any integer dtype), or None where the frame is unlabelled
Reference = Callable[[int], "np.ndarray | None"]


def distance_confusions(stepper: Stepper, frame: Callable[[int], np.ndarray], reference: Reference,
                        keyframes: Iterable[int], distances: Sequence[int], num_classes: int,
                        ignore: int | None, last_frame: int,
                        cms: dict[int, ConfusionMatrix] | None = None) -> dict[int, ConfusionMatrix]:
    """Confusion matrix per distance d (0 = the keyframe itself), accumulated into ``cms`` if given.

    frame(i): uint8 [H,W,3] frame i at the stepper's frame size; reference(i): labels of frame i
    or None; keyframes: indices s; the output at s+d is scored for every d in ``distances`` with
    s+d <= last_frame and a reference label. Labels are produced at the reference's resolution.
    """
    if cms is None:
        cms = {d: ConfusionMatrix(num_classes, ignore) for d in distances}
    farthest = max(distances)
    for s in keyframes:
        state = None
        for d in range(0, farthest + 1):
            t = s + d
            if t > last_frame:
                break
            batch = frame(t)[None]
            state = stepper.keyframe_step(batch) if state is None else stepper.propagation_step(state, batch)
            truth = reference(t) if d in distances else None
            if truth is not None:
                labels = np.asarray(stepper.labels(state, truth.shape[:2]))[0]
                cms[d].update(truth, labels)
    return cms


def summarise(cms: dict[int, ConfusionMatrix], max_interval: int) -> dict:
    """{"miou_by_distance": {"d": D(d)}, "avg": {"l": avg(l)}, "min": {"l": min(l)}} for
    l = 1..max_interval (needs distances 0..max_interval-1), mIoU in 0..1, keys as strings (JSON)."""
    by_distance = {d: cm.miou() for d, cm in sorted(cms.items())}
    missing = [d for d in range(max_interval) if d not in by_distance]
    if missing:
        raise ValueError(f"intervals up to {max_interval} need distances 0..{max_interval - 1}; missing {missing}")
    avg = {str(l): float(np.mean([by_distance[d] for d in range(l)])) for l in range(1, max_interval + 1)}
    low = {str(l): by_distance[l - 1] for l in range(1, max_interval + 1)}
    return {"miou_by_distance": {str(d): v for d, v in by_distance.items()}, "avg": avg, "min": low}


def resize_frame(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """uint8 [H,W,3] -> uint8 [size[0],size[1],3] (area filter when shrinking, bilinear otherwise)."""
    h, w = image.shape[:2]
    if (h, w) == tuple(size):
        return image
    import cv2  # only where frames need resizing (opencv-python-headless, the train/dev extra)

    shrink = size[0] < h and size[1] < w
    return cv2.resize(image, (size[1], size[0]), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def keyframe_confusion(stepper: Stepper, frames: Iterable[LabelledFrame], frame_size: tuple[int, int],
                       num_classes: int, void: int) -> ConfusionMatrix:
    """Run ``keyframe_step`` on every image resized to ``frame_size`` (H, W multiples of 8) and
    score the labels at each ground truth's own resolution."""
    cm = ConfusionMatrix(num_classes, ignore=void)
    for frame in frames:
        batch = resize_frame(frame.image, frame_size)[None]
        labels = np.asarray(stepper.labels(stepper.keyframe_step(batch), frame.label.shape))
        cm.update(frame.label, labels[0])
    return cm
