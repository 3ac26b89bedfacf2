"""The CPU build of the kernels' arithmetic (plugins/common) against the PyTorch reference."""

from __future__ import annotations

import numpy as np
import pytest

from plugins import cpu
from tests.gsvnet.reference import chunk_filter_np, edge_map_np, warp_by_flow_np
from tests.plugins.helpers import check_warp, errors, filter_inputs, reference_edge, reference_filter, reference_warp, warp_inputs

SHAPES = [(1, 1, 2, 2), (2, 3, 7, 9), (3, 5, 13, 6), (1, 11, 31, 17)]


def test_library_builds_outside_the_source_tree(tmp_path):
    path = cpu.build(root=tmp_path)
    assert path.is_file() and tmp_path in path.parents
    assert cpu.nvcc.PLUGINS not in path.parents


@pytest.mark.parametrize("shape", SHAPES)
def test_warp_matches_reference(shape, rng):
    seg, flow = warp_inputs(rng, shape)
    got = cpu.warp_by_flow(seg, flow)
    check_warp(got, seg, flow, 1e-5)
    abs64, rel64 = errors(got, warp_by_flow_np(seg, flow))  # the float64 loop of tests/gsvnet
    assert abs64 < 1e-5 and rel64 < 1e-5, (abs64, rel64)


def test_warp_matches_reference_on_small_grids(rng):
    seg, flow = warp_inputs(rng, (3, 7, 16, 13))
    abs_err, rel_err = errors(cpu.warp_by_flow(seg, flow), reference_warp(seg, flow))
    assert abs_err < 1e-5 and rel_err < 1e-5, (abs_err, rel_err)


def test_warp_flow_far_outside_gives_zero_and_half_pixel_outside_is_attenuated(rng):
    seg = rng.uniform(1.0, 2.0, (1, 2, 5, 6)).astype(np.float32)
    flow = np.zeros((1, 2, 5, 6), dtype=np.float32)
    flow[:, 0] = 50.0
    assert np.all(cpu.warp_by_flow(seg, flow) == 0.0)
    flow[:, 0] = -0.5  # column 0 samples half a pixel left of the frame
    got = cpu.warp_by_flow(seg, flow)
    np.testing.assert_allclose(got[..., 0], 0.5 * seg[..., 0], rtol=1e-6)
    np.testing.assert_allclose(got[..., 1:], 0.5 * (seg[..., :-1] + seg[..., 1:]), rtol=1e-6)


@pytest.mark.parametrize("dy,dx", [(0, 0), (1, 0), (0, -2), (-1, 3)])
def test_warp_integer_flow_is_a_shift(dy, dx, rng):
    seg = rng.standard_normal((2, 3, 6, 7)).astype(np.float32)
    flow = np.zeros((2, 2, 6, 7), dtype=np.float32)
    flow[:, 0], flow[:, 1] = dx, dy
    expected = np.zeros_like(seg)
    h, w = seg.shape[-2:]
    for y in range(h):
        for x in range(w):
            if 0 <= y + dy < h and 0 <= x + dx < w:
                expected[..., y, x] = seg[..., y + dy, x + dx]
    np.testing.assert_array_equal(cpu.warp_by_flow(seg, flow), expected)


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_warp_labels_are_the_argmax_of_the_stored_output(dtype, rng):
    seg, flow = warp_inputs(rng, (2, 6, 9, 11))
    out, labels = cpu.warp_by_flow(seg.astype(dtype), flow, with_labels=True)
    assert labels.dtype == np.int32 and labels.shape == (2, 9, 11)
    np.testing.assert_array_equal(labels, out.astype(np.float32).argmax(axis=1))


def test_warp_fp16_io_matches_reference(rng):
    seg, flow = warp_inputs(rng, (2, 4, 11, 13))
    half = seg.astype(np.float16)
    got = cpu.warp_by_flow(half, flow)
    assert got.dtype == np.float16
    check_warp(got, half, flow, 2e-3)


@pytest.mark.parametrize("radius", [1, 2, 3])
@pytest.mark.parametrize("shape", SHAPES)
def test_chunk_filter_matches_reference(radius, shape, rng):
    warped, intra, weights = filter_inputs(rng, shape, radius)
    got = cpu.chunk_filter(warped, intra, weights, radius)
    abs_err, rel_err = errors(got, reference_filter(warped, intra, weights, radius))
    assert abs_err < 1e-5 and rel_err < 1e-5, (abs_err, rel_err)
    if shape[2] * shape[3] <= 100:  # the float64 loop is slow
        abs64, rel64 = errors(got, chunk_filter_np(warped, intra, weights, radius))
        assert abs64 < 1e-5 and rel64 < 1e-5, (abs64, rel64)


def tiny_weights(rng: np.random.Generator, warped: np.ndarray, radius: int) -> np.ndarray:
    """Per pixel one random channel of the K+2 carries a tiny weight (~6e-8 to 1.2e-7, FP16:
    subnormal), the rest 0 (a ReLU output): the eps 1e-9 is 1-2% of the sum."""
    n, _, h, w = warped.shape
    k2 = (2 * radius + 1) ** 2 + 2
    weights = np.zeros((n, k2, h, w), dtype=np.float32)
    choice = rng.integers(0, k2, (n, h, w))
    b, y, x = np.meshgrid(np.arange(n), np.arange(h), np.arange(w), indexing="ij")
    weights[b, choice, y, x] = rng.uniform(6e-8, 1.2e-7, (n, h, w))
    return weights.astype(warped.dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("radius", [1, 3])
def test_chunk_filter_tiny_weights_use_eps_1e9_in_float32(radius, dtype, rng):
    # an FP16 sum (eps flushed to 0) or the old eps 1e-6 would be off by 1-2% / 90%
    warped, intra, _ = (a.astype(dtype) for a in filter_inputs(rng, (2, 3, 6, 7), radius))
    weights = tiny_weights(rng, warped, radius)
    got = cpu.chunk_filter(warped, intra, weights, radius)
    abs_err, rel_err = errors(got, chunk_filter_np(warped, intra, weights, radius))
    tol = 2e-3 if dtype == np.float16 else 1e-5
    assert abs_err < tol and rel_err < tol, (abs_err, rel_err)
    assert errors(got, chunk_filter_np(warped, intra, weights, radius, eps=0.0))[1] > 4 * tol  # eps is really there


@pytest.mark.parametrize("radius", [1, 2])
def test_chunk_filter_one_hot_weights_pick_one_candidate_with_zero_border(radius, rng):
    warped, intra, _ = filter_inputs(rng, (1, 3, 5, 6), radius)
    side = 2 * radius + 1
    for k in (0, side * side - 1, side * side):  # top-left shift, bottom-right shift, intra
        weights = _one_hot(radius, k)
        got = cpu.chunk_filter(warped, intra, weights, radius)
        np.testing.assert_allclose(got, reference_filter(warped, intra, weights, radius), atol=1e-6)
    np.testing.assert_allclose(cpu.chunk_filter(warped, intra, _one_hot(radius, side * side), radius), intra, rtol=1e-6)
    # the top-left corner's top-left candidate is outside the frame: zero
    assert np.all(cpu.chunk_filter(warped, intra, _one_hot(radius, 0), radius)[..., 0, 0] == 0.0)


def test_chunk_filter_null_weight_scales_towards_zero_without_blurring(rng):
    warped, intra, _ = filter_inputs(rng, (1, 3, 5, 6), 1)
    assert np.all(cpu.chunk_filter(warped, intra, _one_hot(1, 10), 1) == 0.0)  # all weight on the null candidate
    weights = _one_hot(1, 4)  # the unshifted warped score ...
    weights[:, 10] = 3.0  # ... and three times as much null weight: a quarter of it
    np.testing.assert_allclose(cpu.chunk_filter(warped, intra, weights, 1), warped / np.float32(4.0), rtol=1e-6)


def _one_hot(radius: int, k: int) -> np.ndarray:
    side = 2 * radius + 1
    weights = np.zeros((1, side * side + 2, 5, 6), dtype=np.float32)
    weights[:, k] = 1.0
    return weights


def test_chunk_filter_all_zero_weights_give_zero(rng):
    warped, intra, weights = filter_inputs(rng, (1, 2, 4, 5), 1)
    assert np.all(cpu.chunk_filter(warped, intra, np.zeros_like(weights), 1) == 0.0)


@pytest.mark.parametrize("radius", [1, 2, 3])
def test_chunk_filter_fp16_io_matches_reference(radius, rng):
    warped, intra, weights = (a.astype(np.float16) for a in filter_inputs(rng, (2, 5, 9, 10), radius))
    got = cpu.chunk_filter(warped, intra, weights, radius)
    assert got.dtype == np.float16
    abs_err, rel_err = errors(got, reference_filter(warped, intra, weights, radius))
    assert abs_err < 2e-3 and rel_err < 2e-3, (abs_err, rel_err)


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("shape", [(1, 3, 2, 2), (2, 5, 9, 13), (1, 4, 17, 8)])
def test_edge_map_matches_reference(shape, dtype, rng):
    # few classes and small integer scores: flat regions, ties and edges all occur
    scores = rng.integers(0, 3, shape).astype(dtype)
    got = cpu.edge_map(scores)
    assert got.dtype == np.float32 and got.shape == (shape[0], 1, *shape[2:])
    np.testing.assert_array_equal(got, reference_edge(scores))
    np.testing.assert_array_equal(got, edge_map_np(scores))  # the float64 loop of tests/gsvnet
    if shape[2] * shape[3] > 4:
        assert 0 < got.mean() < 1  # both values occur: the comparison says something


def test_edge_map_hand_case_border_is_an_edge_unless_class_0():
    labels = np.array([[2, 2, 2, 2],
                       [2, 2, 2, 2],
                       [2, 2, 2, 2],
                       [0, 0, 0, 0]], dtype=np.int32)[None]
    # zero padding: the top row and the side columns of the class-2 region see the zero outside;
    # the bottom row (class 0, next to class 2) is an edge where a class-2 neighbour is in reach
    expected = np.array([[1, 1, 1, 1],
                         [1, 0, 0, 1],
                         [1, 1, 1, 1],
                         [1, 1, 1, 1]], dtype=np.float32)[None, None]
    np.testing.assert_array_equal(cpu.edge_map_from_labels(labels), expected)
    scores = np.eye(3, dtype=np.float32)[labels].transpose(0, 3, 1, 2)  # one-hot scores of the labels
    np.testing.assert_array_equal(cpu.edge_map(scores), expected)


def test_edge_map_from_warp_labels_equals_edge_map_of_warped(rng):
    seg, flow = warp_inputs(rng, (2, 4, 10, 12))
    out, labels = cpu.warp_by_flow(seg, flow, with_labels=True)
    np.testing.assert_array_equal(cpu.edge_map_from_labels(labels), cpu.edge_map(out))
    np.testing.assert_allclose(cpu.edge_map_from_labels(labels), reference_edge(out), atol=1e-6)


def test_half_conversions_are_bit_exact(rng):
    specials = np.array([0.0, -0.0, 65504.0, 65519.99, 65520.0, 7e4, np.inf, -np.inf, 2.0**-25, 2.0**-25 * 1.0001,
                         2.0**-24, 2.0**-14, 6.1e-5, -3e-8, 1.0 + 2.0**-11, 1.0 + 3 * 2.0**-11], dtype=np.float32)
    values = rng.standard_normal(50_000).astype(np.float32) * np.float32(10.0) ** rng.uniform(-9, 6, 50_000).astype(np.float32)
    floats = np.concatenate([specials, values])
    with np.errstate(over="ignore"):
        expected = floats.astype(np.float16)
    np.testing.assert_array_equal(cpu.float_to_half(floats).view(np.uint16), expected.view(np.uint16))
    halves = np.arange(65536, dtype=np.uint16).view(np.float16)
    np.testing.assert_array_equal(cpu.half_to_float(halves), halves.astype(np.float32))  # NaN == NaN here


def test_bad_arguments_are_rejected(rng):
    seg, flow = warp_inputs(rng, (1, 2, 4, 5))
    with pytest.raises(ValueError, match="flow"):
        cpu.warp_by_flow(seg, flow[:, :, :3])
    with pytest.raises(ValueError, match="h, w >= 2"):
        cpu.warp_by_flow(seg[..., :1, :], flow[..., :1, :])
    warped, intra, weights = filter_inputs(rng, (1, 2, 4, 5), 1)
    with pytest.raises(ValueError, match="radius 2 needs weights \\[N,27,h,w\\]"):
        cpu.chunk_filter(warped, intra, weights, 2)
    with pytest.raises(ValueError, match="K shifts, intra, null"):
        cpu.chunk_filter(warped, intra, weights[:, :-1], 1)  # the K+1 layout of the paper's text
    with pytest.raises(ValueError, match="float32 or float16"):
        cpu.edge_map(warped.astype(np.float64))
