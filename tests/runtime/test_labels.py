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


def _tie_margin(scores: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """|s_a - s_b| of the float64 bilinear upsample at every pixel (a, b: two label maps)."""
    n, c, h, w = scores.shape
    up = ops.resize(torch.from_numpy(scores).double(), (8 * h, 8 * w)).numpy()  # [N,C,H,W] float64
    sa = np.take_along_axis(up, a[:, None].astype(np.int64), 1)[:, 0]
    sb = np.take_along_axis(up, b[:, None].astype(np.int64), 1)[:, 0]
    return np.abs(sa - sb)


def test_numpy_labels_equal_the_labels_graph_up_to_float32_ties(engines, rng):
    """The onnxruntime CPU backend's NumPy labels and labels.onnx (the graph every other backend
    runs) may differ only where the two classes' float64 upsampled scores tie to float32
    rounding: |s_a - s_b| <= 1e-5 * (1 + max|s|) at every differing pixel."""
    from engine_format.manifest import load_manifest
    from runtime.backends import create_backend

    backend = create_backend("onnxruntime", load_manifest(engines))
    n_diff = 0
    for scale in (1.0, 8.0):
        scores = (scale * rng.standard_normal((4, 11, 17, 30))).astype(np.float32)
        ours, graph = upsample_argmax_x8(scores), backend.run("labels", scores)
        differ = ours != graph
        n_diff += int(differ.sum())
        margin = _tie_margin(scores, ours, graph)
        assert (margin[differ] <= 1e-5 * (1 + np.abs(scores).max())).all(), margin[differ].max()
        assert differ.mean() <= 1e-3
    # the tolerance is not vacuous: a label map off by one pixel breaks it
    shifted = np.roll(graph, 1, axis=-1)
    assert (_tie_margin(scores, shifted, graph)[shifted != graph] > 1e-3).any()
