"""The chunk filter's epsilon, its null candidate and the edge map's zero padding, each held to
the official GSVNet computation (robert80203/GSVNet, model/gsv/network.py; restated in float64
by ``official_restatement.fusion_np`` / ``edge_map_np``) on inputs where the constant changes
the output: a different epsilon, a denominator without the null weight, or replicate padding
fails these tests (each test also shows that its inputs tell the variants apart)."""

from __future__ import annotations

import numpy as np
import torch

from gsvnet import ops

from .official_restatement import OFFICIAL_DELAYS, edge_map_np, fusion_np

#: model/gsv/network.py line 88 (robert80203/GSVNet @48cc199): guide_feat / (sum + 1e-9)
OFFICIAL_EPS = 1e-9
SHAPE = (2, 4, 7, 9)  # N, C, h, w


def project_order() -> list[int]:
    """ours[j] = official[order[j]]: ours is 9 shifts row-major over (dy, dx) in [-1, 1], then
    intra, then null (plugins/SPEC.md); the official is [warped, 8 delays, zero kernel, intra]."""
    shifts = [0 if (dy, dx) == (0, 0) else 1 + OFFICIAL_DELAYS.index((dy, dx)) for dy in (-1, 0, 1) for dx in (-1, 0, 1)]
    return [*shifts, 10, 9]


def official_inputs(rng: np.random.Generator, low: float, high: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """float32 warped, intra [N,C,h,w] and official-order weights [N,11,h,w] uniform in
    [low, high), with one all-zero patch (every ReLU off: the output there is 0, not NaN)."""
    warped = (2.0 * rng.standard_normal(SHAPE)).astype(np.float32)
    intra = rng.standard_normal(SHAPE).astype(np.float32)
    w11 = rng.uniform(low, high, (SHAPE[0], 11, *SHAPE[2:])).astype(np.float32)
    w11[:, :, 0, :3] = 0.0
    return warped, intra, w11


def ours(warped: np.ndarray, intra: np.ndarray, w11: np.ndarray) -> np.ndarray:
    """gsvnet.ops.chunk_filter (radius 1) on the official weights in our channel order, as float64."""
    weights = np.ascontiguousarray(w11[:, project_order()])
    out = ops.chunk_filter(torch.from_numpy(warped), torch.from_numpy(intra), torch.from_numpy(weights), radius=1)
    return out.double().numpy()


def max_rel(got: np.ndarray, ref: np.ndarray) -> float:
    """max |got - ref| / max |ref| (ref not all zero)."""
    scale = np.abs(ref).max()
    assert scale > 0
    return float(np.abs(got - ref).max() / scale)


def test_chunk_filter_epsilon_is_the_official_1e9_where_it_matters(rng):
    # weights of order 1e-8 (a guiding net whose ReLUs are almost off): the 11 sum to ~1.1e-7, so
    # eps 1e-9 takes ~1% off every output and eps 1e-7 about half
    warped, intra, w11 = official_inputs(rng, 0.5e-8, 1.5e-8)
    got = ours(warped, intra, w11)
    official = fusion_np(warped, intra, w11, eps=OFFICIAL_EPS)
    assert np.all(np.isfinite(got)) and np.all(got[:, :, 0, :3] == 0.0)
    assert max_rel(got, official) < 1e-5, max_rel(got, official)
    for other in (1e-10, 1e-8, 1e-7):  # the inputs tell these apart from 1e-9 by far more than 1e-5
        assert max_rel(fusion_np(warped, intra, w11, eps=other), official) > 5e-4, other


def test_chunk_filter_null_candidate_counts_in_the_denominator_only(rng):
    # the zero kernel (official channel 9, our K+1) with a large weight: it must shrink the output
    # towards 0 (denominator) without adding to it (numerator); ordinary weights elsewhere
    warped, intra, w11 = official_inputs(rng, 0.0, 1.0)
    w11[:, 9] = rng.uniform(1.0, 3.0, w11[:, 9].shape).astype(np.float32)
    w11[:, :, 0, :3] = 0.0
    got = ours(warped, intra, w11)
    official = fusion_np(warped, intra, w11, eps=OFFICIAL_EPS)
    assert max_rel(got, official) < 1e-5, max_rel(got, official)
    without_null = fusion_np(warped, intra, w11, eps=OFFICIAL_EPS, null_in_denominator=False)
    assert max_rel(without_null, official) > 0.2  # dropping it changes the output by a factor ~1.4
    # and it is not a candidate either: as the intra's weight instead, the output is another one
    swapped = w11.copy()
    swapped[:, [9, 10]] = w11[:, [10, 9]]
    assert max_rel(fusion_np(warped, intra, swapped, eps=OFFICIAL_EPS), official) > 0.2


def block_labels(rng: np.random.Generator, n: int, h: int, w: int, classes: range) -> np.ndarray:
    """int64 [n,h,w] of 2x2 blocks with labels drawn from ``classes``: flat regions and edges."""
    coarse = rng.choice(np.asarray(classes), size=(n, -(-h // 2), -(-w // 2)))
    return np.kron(coarse, np.ones((1, 2, 2), np.int64))[:, :h, :w]


def scores_of(labels: np.ndarray, classes: int, rng: np.random.Generator) -> np.ndarray:
    """float32 scores [N,C,h,w] whose argmax is ``labels`` (one-hot * 2 plus noise below 1)."""
    one_hot = np.eye(classes, dtype=np.float32)[labels].transpose(0, 3, 1, 2)
    return (2.0 * one_hot + rng.uniform(0.0, 0.9, one_hot.shape)).astype(np.float32)


def test_edge_map_zero_padding_as_the_official_where_the_border_class_is_not_0(rng):
    # no class 0 anywhere: with zero padding every border pixel is an edge, with replicate padding
    # only those on a class boundary
    labels = block_labels(rng, 2, 8, 12, range(1, 5))
    got = ops.edge_map(torch.from_numpy(scores_of(labels, 5, rng))).double().numpy()
    official = edge_map_np(labels)
    np.testing.assert_array_equal(got, official)
    border = np.ones((8, 12), bool)
    border[1:-1, 1:-1] = False
    assert np.all(official[:, 0, border] == 1.0)
    replicate = edge_map_np(labels, padding="edge")
    assert np.any(replicate[:, 0, border] != official[:, 0, border])  # the inputs tell the paddings apart
    np.testing.assert_array_equal(replicate[:, 0, 1:-1, 1:-1], official[:, 0, 1:-1, 1:-1])
    assert 0 < official[:, 0, 1:-1, 1:-1].mean() < 1  # interior edges and flat cells both occur
