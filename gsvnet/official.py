"""Key mapping from the official GSVNet code's checkpoints (github robert80203/GSVNet) to ours.

The official repository publishes three kinds of state dict:
- keyframe nets: SwiftNet-R18 (``backbone.*``, ``logits.*``) and BiSeNet-R18 (TorchSeg layout);
- ``state_dict_of``: the light flow net (``conv1.*`` ... ``toflow.*``);
- ``state_dict``: the guided spatially-varying conv (``grm.intra_net.*``, ``grm.guide.*``,
  ``grm.ideal_dk.filter_copy_s``).

Differences handled here, all checked by tests/gsvnet/test_official.py:
- The official warp divides the flow net's output by 4; ours outputs pixels of the 1/8 grid, so
  ``toflow`` is scaled by 1/4.
- The official guiding net has 11 outputs: [unshifted, 8 shifts, an all-zero delay kernel, intra].
  Ours has K+1 = 10: [9 shifts row-major over (dy, dx), intra]. The rows are permuted and the
  all-zero kernel's row is dropped. That row only adds to the official normalising sum, so the
  mapped model is exact wherever that weight is 0 and otherwise differs by the factor
  sum(others) / (sum(others) + w_dead).
- Official nets were trained on BGR input; ``bgr_input=True`` flips the first conv's input
  channels so the mapped net takes RGB like every net here.
"""

from __future__ import annotations

from typing import Mapping

import torch

# ours[j] = official[OFFICIAL_GUIDE_ROWS[j]] for radius 1
OFFICIAL_GUIDE_ROWS = [1, 2, 3, 4, 0, 5, 6, 7, 8, 10]
OFFICIAL_DEAD_ROW = 9
FLOW_SCALE = 0.25


def _flip_input_channels(state: dict[str, torch.Tensor], key: str) -> None:
    state[key] = state[key].flip(1).contiguous()


def map_swiftnet(official: Mapping[str, torch.Tensor], bgr_input: bool = True) -> dict[str, torch.Tensor]:
    """Official SwiftNet-R18 state dict -> ``SwiftNetR18`` state dict."""
    state = {k: v for k, v in official.items() if k not in ("backbone.img_mean", "backbone.img_std", "backbone.img_scale")}
    if bgr_input:
        _flip_input_channels(state, "backbone.conv1.weight")
    return state


def map_bisenet(official: Mapping[str, torch.Tensor], bgr_input: bool = True) -> dict[str, torch.Tensor]:
    """Official (TorchSeg) BiSeNet-R18 state dict -> ``BiSeNetR18`` state dict."""
    state = {k.removeprefix("module."): v for k, v in official.items()}
    if bgr_input:
        _flip_input_channels(state, "context_path.conv1.weight")
        _flip_input_channels(state, "spatial_path.conv_7x7.conv.weight")
    return state


def map_flow(official: Mapping[str, torch.Tensor], bgr_input: bool = True) -> dict[str, torch.Tensor]:
    """Official ``state_dict_of`` (FlowLight) -> ``FlowNet`` state dict."""
    state = {k.removeprefix("module."): v.clone() for k, v in official.items()}
    state["toflow.weight"] = state["toflow.weight"] * FLOW_SCALE
    state["toflow.bias"] = state["toflow.bias"] * FLOW_SCALE
    if bgr_input:
        # input is cat(current, previous): flip each frame's three channels
        w = state["conv1.0.weight"]
        state["conv1.0.weight"] = torch.cat((w[:, 0:3].flip(1), w[:, 3:6].flip(1)), dim=1)
    return state


def map_guided_conv(official: Mapping[str, torch.Tensor], bgr_input: bool = True) -> tuple[dict, dict]:
    """Official ``state_dict`` (``grm.*``) -> (IntraNet state dict, GuidingNet state dict)."""
    intra, guide = {}, {}
    for key, value in official.items():
        key = key.removeprefix("module.").removeprefix("grm.")
        if key.startswith("intra_net."):
            intra[key] = value
        elif key.startswith("guide."):
            guide[key.removeprefix("guide.")] = value
        elif key == "ideal_dk.filter_copy_s":
            _check_ideal_delays(value)
    if bgr_input:
        _flip_input_channels(intra, "intra_net.0.weight")
    rows = torch.tensor(OFFICIAL_GUIDE_ROWS)
    for key in list(guide):
        if key.startswith("guide_decoder.") and guide[key].dim() >= 1 and guide[key].shape[0] == 11:
            guide[key] = guide[key].index_select(0, rows).contiguous()
    return intra, guide


def _check_ideal_delays(kernels: torch.Tensor) -> None:
    """The official delay kernels must still be the 3x3 unit impulses (they can be trained)."""
    expected = torch.zeros(9, 1, 1, 3, 3)
    idx = 0
    for i in range(3):
        for j in range(3):
            if (i, j) != (1, 1):
                expected[idx, 0, 0, i, j] = 1.0
                idx += 1
    if kernels.shape != expected.shape or not torch.allclose(kernels.float().cpu(), expected):
        raise ValueError("the checkpoint's delay kernels were trained away from unit impulses; "
                         "they cannot be expressed as GSVNet's ideal-delay chunk filter")


def load_official(model, *, keyframe: Mapping | None = None, flow: Mapping | None = None,
                  guided_conv: Mapping | None = None, bgr_input: bool = True) -> None:
    """Load any of the official state dicts into a ``GSVNet`` (radius 1, matching classes)."""
    from .checkpoint import check_state_dict_fits

    if model.config.radius != 1:
        raise ValueError("official checkpoints use a 3x3 neighbourhood: build the model with radius=1")
    if keyframe is not None:
        mapper = {"swiftnet_r18": map_swiftnet, "bisenet_r18": map_bisenet}.get(model.config.keyframe_net)
        if mapper is None:
            raise ValueError(f"no official checkpoint layout is known for {model.config.keyframe_net}")
        state = mapper(keyframe, bgr_input)
        check_state_dict_fits(model.keyframe, state, "official keyframe checkpoint")
        model.keyframe.load_state_dict(state)
    if flow is not None:
        state = map_flow(flow, bgr_input)
        check_state_dict_fits(model.flow, state, "official flow checkpoint")
        model.flow.load_state_dict(state)
    if guided_conv is not None:
        intra, guide = map_guided_conv(guided_conv, bgr_input)
        check_state_dict_fits(model.intra, intra, "official intra checkpoint")
        check_state_dict_fits(model.guide, guide, "official guiding checkpoint")
        model.intra.load_state_dict(intra)
        model.guide.load_state_dict(guide)
