from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from training.losses import SegmentationLoss, class_frequencies, class_weights, enet_weights
from training.precision import cpu_has_native_bf16, pick_amp


def test_class_frequencies_skip_void_and_enet_weights_by_hand():
    labels = [np.array([[0, 0, 1], [11, 2, 2]]), np.array([[0, 11]])]
    freq = class_frequencies(labels, 3)
    np.testing.assert_allclose(freq, [3 / 6, 1 / 6, 2 / 6])
    np.testing.assert_allclose(enet_weights(freq), [1 / math.log(1.02 + 0.5), 1 / math.log(1.02 + 1 / 6),
                                                    1 / math.log(1.02 + 1 / 3)], rtol=1e-6)
    with pytest.raises(ValueError, match="no labelled pixels"):
        class_frequencies([np.full((2, 2), 11)], 3)


def _float64_ce(logits: torch.Tensor, labels: torch.Tensor, ignore: int) -> torch.Tensor:
    """Per-pixel -log softmax of the true class, float64, NaN at ignored pixels: [N]."""
    logp = torch.log_softmax(logits.double(), dim=1).permute(0, 2, 3, 1).reshape(-1, logits.shape[1])
    flat = labels.reshape(-1)
    out = torch.full((flat.numel(),), float("nan"), dtype=torch.float64)
    keep = flat != ignore
    out[keep] = -logp[keep, flat[keep]]
    return out


def test_weighted_and_ohem_losses_against_a_float64_restatement():
    g = torch.Generator().manual_seed(5)
    logits = torch.randn(2, 4, 6, 7, generator=g) * 3
    labels = torch.randint(0, 4, (2, 6, 7), generator=g)
    labels[0, :2] = 9  # void
    pixel = _float64_ce(logits, labels, 9)
    flat = labels.reshape(-1)
    valid = flat != 9
    weights = torch.tensor([0.5, 1.0, 2.0, 4.0])
    w = weights.double()[flat[valid]]
    expected = (w * pixel[valid]).sum() / w.sum()
    got = SegmentationLoss("enet", 9, weights)(logits, labels)
    assert abs(float(got) - float(expected)) < 1e-5
    # OHEM: mean over pixels whose true-class probability is below 0.7, at least min_kept of them
    hard = pixel[valid][pixel[valid] > -math.log(0.7)]
    assert abs(float(SegmentationLoss("ohem", 9, min_kept=1)(logits, labels)) - float(hard.mean())) < 1e-5
    top = pixel[valid].sort(descending=True).values[: valid.sum().item()]
    assert abs(float(SegmentationLoss("ohem", 9, min_kept=10_000)(logits, labels)) - float(top.mean())) < 1e-5
    assert abs(float(SegmentationLoss("ce", 9)(logits, labels)) - float(pixel[valid].mean())) < 1e-5
    assert float(F.cross_entropy(logits, labels, ignore_index=9)) != pytest.approx(float(got))  # weights matter


def test_bf16_is_picked_only_where_the_cpu_has_it():
    assert cpu_has_native_bf16("flags\t\t: fpu sse avx512f avx512_bf16\n")
    assert cpu_has_native_bf16("flags\t\t: fpu amx_bf16 amx_tile\n")
    assert not cpu_has_native_bf16("flags\t\t: fpu sse avx2 avx512f\n")
    assert pick_amp("off", torch.device("cpu")) is None
    assert pick_amp("bf16", torch.device("cpu")) is torch.bfloat16
    with pytest.raises(SystemExit, match="--amp fp16 is not supported"):
        pick_amp("fp16", torch.device("cuda"))


def test_class_weight_kinds():
    freq = np.array([0.5, 0.3, 0.2])
    enet = [1 / math.log(1.02 + f) for f in freq]
    np.testing.assert_allclose(class_weights("enet", freq), enet, rtol=1e-6)
    np.testing.assert_allclose(class_weights("sqrt", freq), np.sqrt(enet), rtol=1e-6)
    np.testing.assert_array_equal(class_weights("none", freq), [1, 1, 1])
    with pytest.raises(ValueError, match="unknown class weighting"):
        class_weights("median", freq)
