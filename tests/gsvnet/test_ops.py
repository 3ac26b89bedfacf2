import numpy as np
import pytest
import torch

from gsvnet import ops
from tests.gsvnet.reference import chunk_filter_np, edge_map_np, warp_by_flow_np


def _errors(got: torch.Tensor, ref: np.ndarray) -> tuple[float, float]:
    diff = np.abs(got.double().numpy() - ref)
    return float(diff.max()), float(diff.max() / (np.abs(ref).max() + 1e-12))


@pytest.mark.parametrize("shape", [(2, 3, 7, 9), (1, 5, 12, 5), (1, 1, 2, 2)])
def test_warp_matches_float64_reference(shape, rng):
    seg = rng.standard_normal(shape).astype(np.float32)
    # flows up to 3 pixels, many samples fall partly or wholly outside the frame
    flow = rng.uniform(-3, 3, (shape[0], 2, *shape[2:])).astype(np.float32)
    got = ops.warp_by_flow(torch.from_numpy(seg), torch.from_numpy(flow))
    abs_err, rel_err = _errors(got, warp_by_flow_np(seg, flow))
    assert abs_err < 1e-5 and rel_err < 1e-5, (abs_err, rel_err)


def test_warp_zero_flow_is_identity(rng):
    seg = torch.from_numpy(rng.standard_normal((2, 4, 6, 8)).astype(np.float32))
    out = ops.warp_by_flow(seg, torch.zeros(2, 2, 6, 8))
    assert torch.allclose(out, seg, atol=1e-6)


@pytest.mark.parametrize("dy,dx", [(1, 0), (0, -2), (-1, 3), (2, 2)])
def test_warp_integer_flow_is_a_shift(dy, dx, rng):
    seg = torch.from_numpy(rng.standard_normal((1, 3, 7, 10)).astype(np.float32))
    flow = torch.zeros(1, 2, 7, 10)
    flow[:, 0], flow[:, 1] = dx, dy
    out = ops.warp_by_flow(seg, flow)
    assert torch.allclose(out, ops.shift(seg, dy, dx), atol=1e-6)


def test_warp_keeps_dtype_and_rejects_bad_shapes():
    seg = torch.randn(1, 3, 5, 6, dtype=torch.float64)
    assert ops.warp_by_flow(seg, torch.zeros(1, 2, 5, 6)).dtype == torch.float64
    with pytest.raises(ValueError, match="differ"):
        ops.warp_by_flow(seg, torch.zeros(1, 2, 5, 7))
    with pytest.raises(ValueError, match=r"\[N,2,h,w\]"):
        ops.warp_by_flow(seg, torch.zeros(1, 3, 5, 6))


@pytest.mark.parametrize("radius,shape", [(1, (2, 3, 6, 7)), (2, (1, 4, 5, 9)), (1, (1, 2, 1, 3)), (2, (1, 1, 3, 2))])
def test_chunk_filter_matches_float64_loop(radius, shape, rng):
    k = (2 * radius + 1) ** 2
    warped = rng.standard_normal(shape).astype(np.float32)
    intra = rng.standard_normal(shape).astype(np.float32)
    weights = rng.uniform(0, 1, (shape[0], k + 2, *shape[2:])).astype(np.float32)
    got = ops.chunk_filter(*(torch.from_numpy(a) for a in (warped, intra, weights)), radius)
    abs_err, rel_err = _errors(got, chunk_filter_np(warped, intra, weights, radius))
    assert abs_err < 1e-5 and rel_err < 1e-5, (abs_err, rel_err)


@pytest.mark.parametrize("radius", [1, 2])
def test_chunk_filter_one_hot_weights_select_one_candidate(radius, rng):
    k = (2 * radius + 1) ** 2
    warped = torch.from_numpy(rng.standard_normal((1, 3, 6, 8)).astype(np.float32))
    intra = torch.from_numpy(rng.standard_normal((1, 3, 6, 8)).astype(np.float32))
    for idx, (dy, dx) in enumerate(ops.shift_offsets(radius)):
        weights = torch.zeros(1, k + 2, 6, 8)
        weights[:, idx] = 1.0
        out = ops.chunk_filter(warped, intra, weights, radius)
        assert torch.allclose(out, ops.shift(warped, dy, dx), atol=1e-5)
    weights = torch.zeros(1, k + 2, 6, 8)
    weights[:, k] = 1.0
    assert torch.allclose(ops.chunk_filter(warped, intra, weights, radius), intra, atol=1e-5)
    # the null candidate only scales: equal intra and null weights halve the intra scores
    weights[:, k + 1] = 1.0
    assert torch.allclose(ops.chunk_filter(warped, intra, weights, radius), intra / 2, atol=1e-5)
    # all-zero weights give 0, not NaN
    assert torch.equal(ops.chunk_filter(warped, intra, torch.zeros_like(weights), radius), torch.zeros_like(warped))


def test_chunk_filter_is_invariant_to_weight_scale(rng):
    warped, intra = (torch.from_numpy(rng.standard_normal((2, 4, 5, 7)).astype(np.float32)) for _ in range(2))
    weights = torch.from_numpy(rng.uniform(0.05, 1, (2, 11, 5, 7)).astype(np.float32))
    a = ops.chunk_filter(warped, intra, weights, 1)
    b = ops.chunk_filter(warped, intra, weights * 7.5, 1)
    assert torch.allclose(a, b, atol=1e-5)
    # and a unity gain: equal candidates come out unchanged
    same = torch.ones(2, 4, 5, 7) * 3.0
    unit = torch.ones(2, 11, 5, 7)
    unit[:, 10] = 0.0  # no null weight: unity gain
    full = ops.chunk_filter(same, same, unit, 1)
    assert torch.allclose(full[..., 1:-1, 1:-1], same[..., 1:-1, 1:-1], atol=1e-5)


def test_chunk_filter_rejects_wrong_weight_count():
    x = torch.zeros(1, 2, 4, 4)
    with pytest.raises(ValueError, match="weights must be"):
        ops.chunk_filter(x, x, torch.zeros(1, 10, 4, 4), 1)  # K+1: the null weight is missing


def test_edge_map_matches_reference(rng):
    scores = rng.standard_normal((2, 5, 6, 9)).astype(np.float32)
    got = ops.edge_map(torch.from_numpy(scores))
    assert got.shape == (2, 1, 6, 9)
    assert np.abs(got.double().numpy() - edge_map_np(scores)).max() < 1e-6


def test_edge_map_hand_case_zero_padding_and_binary():
    """Hand-computed: class 2 everywhere but one class-0 pixel at (1, 1) of a 4x5 map."""
    scores = torch.zeros(1, 3, 4, 5)
    scores[:, 2] = 1.0
    scores[0, :, 1, 1] = torch.tensor([5.0, 0.0, 0.0])
    expected = torch.tensor([[1, 1, 1, 1, 1],   # top row: border (zero padding) and the 0 pixel's neighbours
                             [1, 1, 1, 0, 1],   # (1, 3) sees eight 2s: -16 + 16 = 0
                             [1, 1, 1, 0, 1],
                             [1, 1, 1, 1, 1]], dtype=torch.float32)
    assert torch.equal(ops.edge_map(scores)[0, 0], expected)
    # a flat interior is 0, a flat class-0 frame has no edge at all (not even its border)
    assert torch.equal(ops.edge_map(torch.zeros(1, 3, 5, 5)), torch.zeros(1, 1, 5, 5))


def test_downsample8_averages_blocks_and_normalises():
    image = torch.randint(0, 256, (2, 16, 24, 3), dtype=torch.uint8)
    mean, std = torch.tensor([10.0, 20.0, 30.0]), torch.tensor([2.0, 4.0, 5.0])
    small = ops.downsample8(image, mean, std)
    assert small.shape == (2, 3, 2, 3)
    block = image[1, 8:16, 16:24, :].double().mean(dim=(0, 1))
    expected = (block - mean.double()) / std.double()
    assert torch.allclose(small[1, :, 1, 2].double(), expected, atol=1e-5)
    with pytest.raises(ValueError, match="multiple of 8"):
        ops.downsample8(torch.zeros(1, 20, 24, 3, dtype=torch.uint8), mean, std)


def test_scores_to_labels_is_uint8_argmax():
    scores = torch.randn(1, 4, 3, 5)
    labels = ops.scores_to_labels(scores, (3, 5))
    assert labels.dtype == torch.uint8
    assert torch.equal(labels.long(), scores.argmax(1))
    assert ops.scores_to_labels(scores, (24, 40)).shape == (1, 24, 40)
