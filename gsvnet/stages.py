"""The PyTorch definition of every stage graph (the table in ``engine_format.stages``): which
``GSVNet`` method each one runs. The exporter traces these into ONNX; the torch backend runs them."""

from __future__ import annotations

from typing import Callable

import torch


def stage_functions(frame_size: tuple[int, int]) -> dict[str, Callable[..., torch.Tensor]]:
    """stage name -> fn(model, *inputs) on tensors: the torch definition of every graph."""
    return {
        "downsample": lambda m, image: m.downsample(image),
        "keyframe": lambda m, image: m.keyframe_scores(image),
        "flow": lambda m, small, prev_small: m.estimate_flow(small, prev_small),
        "warp": lambda m, seg, flow: m.warp(seg, flow),
        "intra": lambda m, small: m.intra_scores(small),
        "guide": lambda m, intra, warped: m.guide_weights(intra, warped),
        "filter": lambda m, warped, intra, weights: m.fuse(warped, intra, weights),
        "labels": lambda m, scores: m.scores_to_labels(scores, frame_size),
    }
