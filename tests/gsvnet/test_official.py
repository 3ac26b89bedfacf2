"""The official-checkpoint key mapping, checked on official-layout state dicts built here."""

import pytest
import torch

from gsvnet import GSVNet, GSVNetConfig, ops
from gsvnet.official import OFFICIAL_DEAD_ROW, OFFICIAL_GUIDE_ROWS, load_official


def _official_layout(model: GSVNet) -> dict:
    """Our weights written in the official layout (inverse mapping, BGR input)."""
    kf = {"backbone." + k.removeprefix("backbone.") if k.startswith("backbone.") else k: v.clone()
          for k, v in model.keyframe.state_dict().items()}
    kf["backbone.conv1.weight"] = kf["backbone.conv1.weight"].flip(1)
    kf["backbone.img_mean"] = torch.zeros(1, 3, 1, 1)
    flow = {k: v.clone() for k, v in model.flow.state_dict().items()}
    flow["toflow.weight"] *= 4
    flow["toflow.bias"] *= 4
    w = flow["conv1.0.weight"]
    flow["conv1.0.weight"] = torch.cat((w[:, :3].flip(1), w[:, 3:].flip(1)), 1)
    grm = {f"grm.{k}": v.clone() for k, v in model.intra.state_dict().items()}
    grm["grm.intra_net.0.weight"] = grm["grm.intra_net.0.weight"].flip(1)
    for k, v in model.guide.state_dict().items():
        if k.startswith("guide_decoder.") and v.dim() >= 1 and v.shape[0] == 10:
            full = torch.zeros(11, *v.shape[1:], dtype=v.dtype)
            full[OFFICIAL_GUIDE_ROWS] = v
            v = full
        grm[f"grm.guide.{k}"] = v.clone()
    kernels = torch.zeros(9, 1, 1, 3, 3)
    idx = 0
    for i in range(3):
        for j in range(3):
            if (i, j) != (1, 1):
                kernels[idx, 0, 0, i, j] = 1
                idx += 1
    grm["grm.ideal_dk.filter_copy_s"] = kernels
    return {"keyframe": kf, "flow": flow, "guided_conv": grm}


def test_official_layout_loads_back_exactly():
    src = GSVNet(GSVNetConfig()).eval()
    dst = GSVNet(GSVNetConfig()).eval()
    load_official(dst, **_official_layout(src))
    for (k, a), (_, b) in zip(src.state_dict().items(), dst.state_dict().items()):
        assert torch.equal(a, b), k


def test_official_fusion_semantics_match_after_row_mapping(rng):
    """Official: normalise 11 weights over [x, 8 delays, zero kernel, intra]; ours: 10 rows."""
    x = torch.randn(1, 4, 6, 7)
    intra = torch.randn(1, 4, 6, 7)
    w11 = torch.rand(1, 11, 6, 7)
    w11[:, OFFICIAL_DEAD_ROW] = 0
    delays = [x]
    for i in range(3):
        for j in range(3):
            if (i, j) != (1, 1):
                delays.append(ops.shift(x, i - 1, j - 1))
    cands = torch.stack(delays + [torch.zeros_like(x), intra], dim=1)  # [N,11,C,h,w]
    norm = w11 / (w11.sum(1, keepdim=True) + 1e-6)
    official = (norm.unsqueeze(2) * cands).sum(1)
    ours = ops.chunk_filter(x, intra, w11[:, OFFICIAL_GUIDE_ROWS], radius=1)
    assert torch.allclose(official, ours, atol=1e-5)


def test_trained_delay_kernels_are_refused():
    src = GSVNet(GSVNetConfig()).eval()
    layout = _official_layout(src)
    layout["guided_conv"]["grm.ideal_dk.filter_copy_s"] += 0.01
    with pytest.raises(ValueError, match="unit impulses"):
        load_official(GSVNet(GSVNetConfig()), guided_conv=layout["guided_conv"])
