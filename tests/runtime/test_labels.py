import numpy as np
import pytest
import torch

from gsvnet import ops
from runtime.labels import upsample_argmax_x8


def _reference(scores: np.ndarray) -> np.ndarray:
    n, c, h, w = scores.shape
    return ops.scores_to_labels(torch.from_numpy(scores), (8 * h, 8 * w)).numpy()


@pytest.mark.parametrize("shape", [(1, 19, 17, 30), (2, 11, 5, 7), (1, 3, 2, 2), (3, 2, 9, 4)])
def test_equals_the_reference_on_noise(shape, rng):
    scores = rng.standard_normal(shape).astype(np.float32)  # a class boundary between almost every cell
    got = upsample_argmax_x8(scores)
    assert got.dtype == np.uint8 and got.shape == (shape[0], 8 * shape[2], 8 * shape[3])
    assert np.mean(got != _reference(scores)) <= 1e-4


def test_equals_the_reference_on_smooth_scenes(rng):
    base = torch.from_numpy(rng.standard_normal((2, 19, 5, 9)).astype(np.float32))
    scores = (3 * torch.nn.functional.interpolate(base, size=(34, 60), mode="bilinear")).numpy()
    assert np.array_equal(upsample_argmax_x8(scores), _reference(scores))


def test_first_maximum_wins_ties_like_the_reference():
    scores = np.zeros((1, 4, 3, 3), np.float32)
    scores[:, 2] = 1.0
    scores[:, 3] = 1.0  # classes 2 and 3 tie everywhere: the first one is the label
    assert (upsample_argmax_x8(scores) == 2).all() and (_reference(scores) == 2).all()
