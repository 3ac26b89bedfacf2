from __future__ import annotations

import numpy as np
import pytest

from evaluation.metrics import ConfusionMatrix
from evaluation.protocol import distance_confusions, summarise


class DriftingStepper:
    """Labels of a keyframe = the frame's own class map; each propagation step shifts them one
    column right (a fake that is exactly wrong by d columns at distance d)."""

    def keyframe_step(self, frames):
        return frames[..., 0].copy()

    def propagation_step(self, state, frames):
        return np.roll(state, 1, axis=-1)

    def labels(self, state, size):
        assert tuple(state.shape[1:]) == tuple(size)
        return state.astype(np.uint8)


def stripes(t: int) -> np.ndarray:
    """Frame t: [8,12,3] whose first channel is a class map of vertical stripes (classes 0..2)."""
    cls = (np.arange(12) // 4).astype(np.uint8)
    return np.repeat(np.broadcast_to(cls, (8, 12))[..., None], 3, axis=-1).copy()


def expected_miou(d: int) -> float:
    truth = stripes(0)[..., 0]
    cm = ConfusionMatrix(3)
    cm.update(truth, np.roll(truth, d, axis=-1))
    return cm.miou()


def test_distances_and_avg_min_arithmetic():
    """Paper's definitions: interval l holds distances 0..l-1; avg(l) = mean D(0..l-1), min(l) = D(l-1)."""
    cms = distance_confusions(DriftingStepper(), stripes, lambda t: stripes(t)[..., 0], keyframes=range(0, 4),
                              distances=range(0, 4), num_classes=3, ignore=None, last_frame=9)
    s = summarise(cms, 4)
    assert s["miou_by_distance"]["0"] == 1.0 and s["avg"]["1"] == s["min"]["1"] == 1.0
    for d in range(1, 4):
        assert s["miou_by_distance"][str(d)] == pytest.approx(expected_miou(d))
        assert s["min"][str(d + 1)] == pytest.approx(expected_miou(d))
    assert s["avg"]["3"] == pytest.approx((1.0 + expected_miou(1) + expected_miou(2)) / 3)
    assert expected_miou(3) < expected_miou(1) < 1.0  # the fake really degrades with distance
    with pytest.raises(ValueError, match="need distances 0..4"):
        summarise(cms, 5)


def test_only_labelled_frames_within_range_are_scored():
    calls = []

    def reference(t):
        calls.append(t)
        return stripes(t)[..., 0] if t == 5 else None

    cms = distance_confusions(DriftingStepper(), stripes, reference, keyframes=[5 - d for d in range(3)],
                              distances=range(3), num_classes=3, ignore=None, last_frame=5)
    assert max(calls) == 5  # never propagates past the labelled frame
    # one scored frame per distance (keyframe at 5-d)
    assert [int(cm.matrix.sum()) for cm in cms.values()] == [96, 96, 96]
