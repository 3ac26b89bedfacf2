"""training.clip: sequences sampled from a prepared clip (order, mirroring, crops, flow)."""

from __future__ import annotations

import numpy as np
import torch

from training.clip import PreparedClip, sample_sequences


def test_sequences_reverse_and_flip_transform_the_flow():
    t, h, w = 6, 4, 6
    fwd = torch.arange(t, dtype=torch.float32).view(t, 1, 1, 1).expand(t, 2, h, w).clone()
    rev = -fwd
    small = torch.arange(t, dtype=torch.float32).view(t, 1, 1, 1).expand(t, 3, h, w).clone()
    scores = torch.zeros(t, 5, h, w)
    clip = PreparedClip(small, scores, fwd, rev)
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


def test_a_stride_takes_every_sth_frame_and_marks_its_flow_unusable():
    t, h, w = 9, 4, 6
    small = torch.arange(t, dtype=torch.float32).view(t, 1, 1, 1).expand(t, 3, h, w).clone()
    scores = torch.arange(t, dtype=torch.float32).view(t, 1, 1, 1).expand(t, 5, h, w).clone()
    fwd = torch.ones(t, 2, h, w)
    clip = PreparedClip(small, scores, fwd, -fwd)
    b = sample_sequences(clip, np.array([1, 0]), 3, np.zeros(2, bool), np.zeros(2, bool), None,
                         np.random.default_rng(0), strides=np.array([2, 1]))
    assert b["small"][0, :, 0, 0, 0].tolist() == [1, 3, 5, 7] and b["scores"][0, :, 0, 0, 0].tolist() == [1, 3, 5, 7]
    assert b["small"][1, :, 0, 0, 0].tolist() == [0, 1, 2, 3]
    assert torch.isnan(b["flow"][0]).all() and b["flow"][1, 1:].eq(1).all()
