from __future__ import annotations

import torch

from gsvnet import GSVNet, GSVNetConfig, ops
from gsvnet.model import PropagationState
from training.clip import PreparedClip, sample_sequences
from gsvnet.variants import build_variant


def small_config() -> GSVNetConfig:
    return GSVNetConfig(num_classes=5, flow_channels=8, intra_channels=8, guide_channels=8)


def inputs(n=1, h=12, w=16):
    return torch.randn(n, 5, h, w), torch.randn(n, 3, h, w), torch.randn(n, 3, h, w)


def test_no_intra_output_does_not_depend_on_the_intra_net():
    model = build_variant("no_intra", small_config(), GSVNet(small_config()).state_dict())
    scores, prev_small, small = inputs()
    before = model.propagate(scores, prev_small, small)
    with torch.no_grad():
        for p in model.intra.parameters():
            p.add_(torch.randn_like(p))
    torch.testing.assert_close(model.propagate(scores, prev_small, small), before)
    weights = model.guide_weights(model.intra_scores(small), scores)
    intra_channel = ops.num_shifts(model.config.radius)  # K; the null weight K+1 stays free
    assert weights[:, intra_channel].abs().max() == 0 and weights[:, intra_channel + 1].abs().max() > 0


def test_full_output_depends_on_the_intra_net():
    model = build_variant("full", small_config(), GSVNet(small_config()).state_dict())
    scores, prev_small, small = inputs()
    before = model.propagate(scores, prev_small, small)
    with torch.no_grad():
        for p in model.intra.parameters():
            p.add_(torch.randn_like(p))
    assert not torch.allclose(model.propagate(scores, prev_small, small), before)


def test_warp_only_and_hold_baselines():
    base = GSVNet(small_config())
    warp = build_variant("warp", small_config(), base.state_dict())
    hold = build_variant("hold", small_config(), base.state_dict())
    scores, prev_small, small = inputs()
    expected = warp.warp(scores, warp.estimate_flow(small, prev_small))
    torch.testing.assert_close(warp.propagate(scores, prev_small, small), expected)
    state = PropagationState(scores, prev_small)
    image = torch.randint(0, 256, (1, 96, 128, 3), dtype=torch.uint8)
    assert hold.propagation_step(state, image).scores is scores


def test_sequences_reverse_and_flip_transform_the_flow():
    t, h, w = 6, 4, 6
    fwd = torch.arange(t, dtype=torch.float32).view(t, 1, 1, 1).expand(t, 2, h, w).clone()
    rev = -fwd
    small = torch.arange(t, dtype=torch.float32).view(t, 1, 1, 1).expand(t, 3, h, w).clone()
    scores = torch.zeros(t, 5, h, w)
    clip = PreparedClip(small, scores, fwd, rev)
    import numpy as np

    rng = np.random.default_rng(0)
    b = sample_sequences(clip, np.array([1, 1]), 2, np.array([False, True]), np.array([False, True]), None, rng)
    assert b["small"][0, :, 0, 0, 0].tolist() == [1, 2, 3]
    assert b["small"][1, :, 0, 0, 0].tolist() == [3, 2, 1]
    assert b["flow"][0, :, 0, 0, 0].tolist() == [0, 2, 3]  # keyframe has no flow; then t -> t-1
    # reversed: flow_reverse of frames 2, 1, then mirrored: x negated, y kept
    assert b["flow"][1, :, 0, 0, 0].tolist() == [0, 2, 1]
    assert b["flow"][1, :, 1, 0, 0].tolist() == [0, -2, -1]
    cropped = sample_sequences(clip, np.array([0]), 1, np.array([False]), np.array([False]), (3, 4), rng)
    assert cropped["scores"].shape == (1, 2, 5, 3, 4) and cropped["teacher"].shape == (1, 2, 3, 4)


def test_start_at_warping_makes_the_filter_close_to_the_warped_scores():
    from training.propagation import start_at_warping

    model = GSVNet(small_config())
    scores, prev_small, small = inputs(2)
    warped = model.warp(scores, model.estimate_flow(small, prev_small))
    assert (model.propagate(scores, prev_small, small) - warped).abs().mean() > 0.3 * warped.abs().mean()
    start_at_warping(model)
    assert (model.propagate(scores, prev_small, small) - warped).abs().mean() < 0.2 * warped.abs().mean()
