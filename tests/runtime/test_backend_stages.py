"""The deployed stage graphs at the cases the random-input build check never draws."""

from __future__ import annotations

import numpy as np
import torch

from engine_format.manifest import load_manifest
from gsvnet import grid_size, ops
from runtime.backends import create_backend


def test_filter_stage_is_zero_where_every_weight_is_zero(engines, rng):
    """The guiding net ends in a ReLU, so a pixel can get all K+2 weights exactly zero; SPEC.md
    (and the PyTorch reference) then give 0, and the rest of the frame is unaffected."""
    backend = create_backend("onnxruntime", load_manifest(engines))
    c, (h, w) = backend.num_classes, grid_size(backend.frame_size)
    warped = rng.standard_normal((1, c, h, w)).astype(np.float32)
    intra = rng.standard_normal((1, c, h, w)).astype(np.float32)
    weights = rng.random((1, ops.num_weights(1), h, w)).astype(np.float32)
    weights[:, :, 3, 4] = 0.0
    weights[:, :, h - 1, :] = 0.0  # a whole row, at the border
    got = np.asarray(backend.run("filter", warped, intra, weights))
    expected = ops.chunk_filter(torch.from_numpy(warped), torch.from_numpy(intra), torch.from_numpy(weights), 1).numpy()
    assert np.all(expected[:, :, 3, 4] == 0) and np.all(expected[:, :, h - 1] == 0)
    assert np.isfinite(got).all(), f"{int(np.isnan(got).sum())} NaN outputs"
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)

