from __future__ import annotations

import torch

from gsvnet import GSVNet, GSVNetConfig, ops
from gsvnet.model import PropagationState
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
    """warp_only = the previous scores moved by the flow net's flow, no filter: with a flow of one grid
    pixel to the right, the result is the one-column shift (zero at the border), as SPEC.md defines it."""
    base = GSVNet(small_config())
    warp = build_variant("warp", small_config(), base.state_dict())
    hold = build_variant("hold", small_config(), base.state_dict())
    scores, prev_small, small = inputs()
    one_right = torch.zeros(1, 2, *scores.shape[-2:])
    one_right[:, 0] = 1.0
    warp.estimate_flow = lambda current, previous: one_right  # a known flow instead of the flow net's
    torch.testing.assert_close(warp.propagate(scores, prev_small, small), ops.shift(scores, 0, 1))
    state = PropagationState(scores, prev_small)
    image = torch.randint(0, 256, (1, 96, 128, 3), dtype=torch.uint8)
    assert hold.propagation_step(state, image).scores is scores
