from __future__ import annotations

import numpy as np
import torch

from gsvnet.ops import warp_by_flow
from training.flow_targets import clip_flows, dis_flow

from .synthetic import moving_texture


def test_dis_target_is_backward_flow_in_grid_pixels(rng):
    frames = moving_texture(rng, 2, (128, 192), dx=8)  # frame 1 = frame 0 moved 8 px left
    prev, cur = frames[0], frames[1]
    flow = dis_flow(cur, prev, (16, 24))
    assert flow.shape == (2, 16, 24) and flow.dtype == np.float32
    inner = (slice(2, -2), slice(2, -4))
    # current(x) = previous(x + 8 px) = previous(x + 1 grid px): backward flow +1 in x, 0 in y
    np.testing.assert_allclose(np.median(flow[0][inner]), 1.0, atol=0.1)
    np.testing.assert_allclose(np.median(flow[1][inner]), 0.0, atol=0.1)


def test_warping_previous_by_target_approximates_current(rng):
    frames = moving_texture(rng, 2, (128, 192), dx=8)
    small = torch.from_numpy(frames).permute(0, 3, 1, 2).float()
    small = torch.nn.functional.avg_pool2d(small, 8)  # [2,3,16,24] on the 1/8 grid
    flow = torch.from_numpy(dis_flow(frames[1], frames[0], (16, 24)))[None]
    warped = warp_by_flow(small[:1], flow)
    inner = (..., slice(1, -1), slice(1, -3))
    err_warped = (warped - small[1:])[inner].abs().mean()
    err_still = (small[:1] - small[1:])[inner].abs().mean()
    assert err_warped < 0.35 * err_still
    # the opposite sign is as bad as not warping at all
    assert (warp_by_flow(small[:1], -flow) - small[1:])[inner].abs().mean() > 2 * err_warped


def test_clip_flows_both_directions(rng):
    frames = moving_texture(rng, 3, (64, 96), dx=8)
    forward, reverse = clip_flows(frames, (8, 12))
    assert forward.shape == reverse.shape == (3, 2, 8, 12)
    assert (forward[0] == 0).all() and (reverse[-1] == 0).all()
    assert np.median(forward[1, 0]) > 0.5 and np.median(reverse[0, 0]) < -0.5
