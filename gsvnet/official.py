"""Official GSVNet checkpoints (github robert80203/GSVNet) loaded into our modules, exactly.

The official code saves three kinds of weights:
- keyframe nets: SwiftNet-R18 as a bare state dict (``backbone.*``, ``logits.*``), BiSeNet-R18
  (TorchSeg layout) under ``state_dict`` or ``model``;
- its training checkpoint (``trainer/gsvnet_trainer.py: save_state``): a dict with ``state_dict``
  (the ``End2End`` wrapper of ``GuidedSpatiallyVaryingConv``: ``grm.intra_net.intra_net.*``,
  ``grm.guide.*``, ``grm.ideal_dk.filter_copy_s``) and ``state_dict_of`` (the light flow net:
  ``conv1.*`` ... ``toflow.*``), plus epoch/optimizer/args entries we ignore;
- any of them possibly under a ``module.`` prefix (DataParallel / DistributedDataParallel).

What the mapping has to account for (each checked against the official modules, see
docs/official-checkpoints.md, and by tests/gsvnet/test_official.py against an independent
re-statement of the official forward):
- The official warp divides the flow net's output by 4; ours outputs pixels of the 1/8 grid, so
  ``toflow`` is scaled by 1/4 (the bilinear upsampling in between is linear).
- The official guiding net outputs 11 weights [unshifted, 8 shifts, null, intra]; ours orders the
  same K + 2 = 11 as [9 shifts row-major over (dy, dx), intra, null] (plugins/SPEC.md): a row
  permutation, exact.
- The official pipeline resizes with align_corners=True everywhere and takes its 1/8 frames by
  bilinear point sampling; models built from official files use ``resampling="official"``.
- The official pipeline feeds the flow and intra nets BGR frames (its transforms flip PIL's RGB)
  and the keyframe net RGB (it flips them back before the segmentation net); ours feeds RGB
  everywhere, so only the first convs of the flow and intra nets are channel-flipped.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Mapping

import torch

from .checkpoint import CheckpointError, check_state_dict_fits, load_weights_only

# ours[j] = official[OFFICIAL_GUIDE_ROWS[j]] for radius 1: 9 shifts row-major, intra, null
OFFICIAL_GUIDE_ROWS = [1, 2, 3, 4, 0, 5, 6, 7, 8, 10, 9]
OFFICIAL_NUM_WEIGHTS = 11
FLOW_SCALE = 0.25
#: the official training checkpoint's entries holding weights (the rest is optimiser state and bookkeeping)
PROPAGATION_KEY, FLOW_KEY = "state_dict", "state_dict_of"


def strip_module(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop a DataParallel ``module.`` prefix from every key."""
    return {k.removeprefix("module."): v for k, v in state.items()}


def _flip_input_channels(state: dict[str, torch.Tensor], key: str) -> None:
    state[key] = state[key].flip(1).contiguous()


def map_swiftnet(official: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Official SwiftNet-R18 state dict -> ``SwiftNetR18`` state dict (RGB input, as the official feeds it)."""
    return {k: v for k, v in strip_module(official).items()
            if k not in ("backbone.img_mean", "backbone.img_std", "backbone.img_scale")}


def map_bisenet(official: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Official (TorchSeg) BiSeNet-R18 state dict -> ``BiSeNetR18`` state dict (RGB input)."""
    return strip_module(official)


def map_flow(official: Mapping[str, torch.Tensor], bgr_input: bool = True) -> dict[str, torch.Tensor]:
    """Official ``state_dict_of`` (FlowLight) -> ``FlowNet`` state dict."""
    state = {k: v.clone() for k, v in strip_module(official).items()}
    for key in ("toflow.weight", "toflow.bias", "conv1.0.weight"):
        if key not in state:
            raise CheckpointError(f"the official flow state dict has no {key!r}: it is not the light flow net "
                                  "(FlowLight) that GSVNet's non-keyframe path uses")
    state["toflow.weight"] = state["toflow.weight"] * FLOW_SCALE
    state["toflow.bias"] = state["toflow.bias"] * FLOW_SCALE
    if bgr_input:  # input is cat(current, previous): flip each frame's three channels
        w = state["conv1.0.weight"]
        state["conv1.0.weight"] = torch.cat((w[:, 0:3].flip(1), w[:, 3:6].flip(1)), dim=1)
    return state


def map_guided_conv(official: Mapping[str, torch.Tensor], bgr_input: bool = True) -> tuple[dict, dict]:
    """Official ``state_dict`` (``grm.*``) -> (IntraNet state dict, GuidingNet state dict).

    Keys the official module structure does not produce are refused in one line.
    """
    intra, guide, unknown = {}, {}, []
    kernels = None
    for key, value in strip_module(official).items():
        key = key.removeprefix("grm.")
        if key.startswith("intra_net.intra_net."):  # GuidedSpatiallyVaryingConv.intra_net: IntraNetwork.intra_net
            intra[key.removeprefix("intra_net.")] = value
        elif key.startswith("guide."):
            guide[key.removeprefix("guide.")] = value
        elif key == "ideal_dk.filter_copy_s":
            kernels = value
        else:
            unknown.append(key)
    if unknown:
        raise CheckpointError(f"the official propagation state dict has keys GSVNet's GuidedSpatiallyVaryingConv does not "
                              f"make: {', '.join(sorted(unknown)[:4])}{' ...' if len(unknown) > 4 else ''}")
    if kernels is None:
        raise CheckpointError("the official propagation state dict lacks grm.ideal_dk.filter_copy_s: "
                              "pass the checkpoint's 'state_dict' (the End2End wrapper, keys grm.*)")
    if not intra or not guide:
        raise CheckpointError("the official propagation state dict lacks "
                              + ("grm.intra_net.intra_net.*" if not intra else "grm.guide.*")
                              + " (is this the GSVNet training checkpoint's 'state_dict'?)")
    _check_ideal_delays(kernels)
    if bgr_input and "intra_net.0.weight" in intra:
        _flip_input_channels(intra, "intra_net.0.weight")
    rows = torch.tensor(OFFICIAL_GUIDE_ROWS)
    for key in list(guide):
        value = guide[key]
        if key.startswith("guide_decoder.") and value.dim() >= 1:
            if value.shape[0] != OFFICIAL_NUM_WEIGHTS:
                raise CheckpointError(f"grm.guide.{key} has {value.shape[0]} rows; the official radius-1 guiding net "
                                      f"has {OFFICIAL_NUM_WEIGHTS} (unshifted, 8 shifts, null, intra)")
            guide[key] = value.index_select(0, rows).contiguous()
    return intra, guide


def official_delay_kernels() -> torch.Tensor:
    """The official IdealDelayKernels(3, 9): unit impulses at the 8 off-centre taps (row-major), the 9th all zero."""
    expected = torch.zeros(9, 1, 1, 3, 3)
    taps = [(i, j) for i in range(3) for j in range(3) if (i, j) != (1, 1)]
    for idx, (i, j) in enumerate(taps):
        expected[idx, 0, 0, i, j] = 1.0
    return expected


def _check_ideal_delays(kernels: torch.Tensor) -> None:
    """The official delay kernels must still be the fixed impulses (they can be trained with --train-filter)."""
    expected = official_delay_kernels()
    if tuple(kernels.shape) != tuple(expected.shape) or not torch.equal(kernels.float().cpu(), expected):
        raise CheckpointError("the checkpoint's delay kernels (grm.ideal_dk.filter_copy_s) were trained away from unit "
                              "impulses; they cannot be expressed as GSVNet's ideal-delay chunk filter")


def load_official(model, *, keyframe: Mapping | None = None, flow: Mapping | None = None,
                  guided_conv: Mapping | None = None, bgr_input: bool = True) -> None:
    """Load any of the official state dicts into a ``GSVNet`` (radius 1, matching classes).

    ``bgr_input``: the official flow and intra nets were trained on BGR frames (True for the
    official code); their first convs are flipped so the model takes RGB like every net here.
    """
    if model.config.radius != 1:
        raise CheckpointError("official checkpoints use a 3x3 neighbourhood: build the model with radius=1")
    if keyframe is not None:
        mapper = {"swiftnet_r18": map_swiftnet, "bisenet_r18": map_bisenet}.get(model.config.keyframe_net)
        if mapper is None:
            raise CheckpointError(f"no official checkpoint layout is known for {model.config.keyframe_net}")
        state = mapper(keyframe)
        check_state_dict_fits(model.keyframe, state, "official keyframe checkpoint")
        model.keyframe.load_state_dict(state)
    if flow is not None:
        state = map_flow(flow, bgr_input)
        check_state_dict_fits(model.flow, state, "official flow checkpoint (state_dict_of)")
        model.flow.load_state_dict(state)
    if guided_conv is not None:
        intra, guide = map_guided_conv(guided_conv, bgr_input)
        check_state_dict_fits(model.intra, intra, "official intra net (grm.intra_net.intra_net.*)")
        check_state_dict_fits(model.guide, guide, "official guiding net (grm.guide.*)")
        model.intra.load_state_dict(intra)
        model.guide.load_state_dict(guide)


def read_official_file(path: str | os.PathLike) -> dict:
    """A file the official code saved, read without executing code (tensors, plain data and the
    argparse.Namespace the training checkpoint stores its arguments in)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"official checkpoint not found: {path}")
    payload = load_weights_only(path, "re-save just its state dicts with torch.save", (argparse.Namespace,))
    if not isinstance(payload, dict):
        raise CheckpointError(f"{path} does not hold a state dict or a checkpoint dict")
    return payload


def _tensor_dict(payload: Mapping, path: Path, what: str) -> dict[str, torch.Tensor]:
    if not payload or not all(isinstance(v, torch.Tensor) for v in payload.values()):
        raise CheckpointError(f"{path}: {what} is not a state dict of tensors")
    return dict(payload)


def keyframe_state(payload: Mapping, path: Path) -> dict[str, torch.Tensor]:
    """The keyframe net's state dict: the file itself (SwiftNet) or its 'state_dict'/'model' entry (BiSeNet)."""
    for key in ("state_dict", "model"):
        if isinstance(payload.get(key), Mapping):
            return _tensor_dict(payload[key], path, f"its {key!r} entry")
    return _tensor_dict(payload, path, "the file")


def model_from_official_files(net: str, keyframe: str | os.PathLike, propagation: str | os.PathLike,
                              flow: str | os.PathLike | None = None, num_classes: int = 19):
    """A GSVNet (radius 1, eval mode) from the official files: the keyframe net's weights, the GSVNet
    training checkpoint (``state_dict`` + ``state_dict_of``), and optionally a separate flow state dict."""
    from .model import GSVNet, GSVNetConfig

    model = GSVNet(GSVNetConfig(keyframe_net=net, num_classes=num_classes, radius=1, resampling="official"))
    kf_path, prop_path = Path(keyframe), Path(propagation)
    prop = read_official_file(prop_path)
    if not isinstance(prop.get(PROPAGATION_KEY), Mapping):
        raise CheckpointError(f"{prop_path} has no '{PROPAGATION_KEY}' entry: pass the GSVNet training checkpoint "
                              "(trainer/gsvnet_trainer.py save_state) as the propagation file")
    if flow is not None:
        flow_path = Path(flow)
        flow_payload = read_official_file(flow_path)
        flow_state = _tensor_dict(flow_payload.get(FLOW_KEY, flow_payload), flow_path, "the flow state dict")
    elif isinstance(prop.get(FLOW_KEY), Mapping):
        flow_state = _tensor_dict(prop[FLOW_KEY], prop_path, f"its {FLOW_KEY!r} entry")
    else:
        raise CheckpointError(f"{prop_path} has no '{FLOW_KEY}' (flow net) entry: pass the flow weights as the third file")
    load_official(model, keyframe=keyframe_state(read_official_file(kf_path), kf_path), flow=flow_state,
                  guided_conv=_tensor_dict(prop[PROPAGATION_KEY], prop_path, f"its {PROPAGATION_KEY!r} entry"))
    return model.eval()


def main(argv: list[str] | None = None) -> int:
    """python -m gsvnet.official: convert the official files into one GSVNet checkpoint."""
    from .checkpoint import save_checkpoint

    p = argparse.ArgumentParser(prog="python -m gsvnet.official", description="Convert official GSVNet weights "
                                "(robert80203/GSVNet) into one checkpoint for export.build_engines --checkpoint.",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--net", required=True, choices=("swiftnet_r18", "bisenet_r18"), help="the keyframe network")
    p.add_argument("--keyframe", required=True, type=Path, help="the keyframe net's weights file")
    p.add_argument("--propagation", required=True, type=Path,
                   help="GSVNet's training checkpoint (holds 'state_dict' and usually 'state_dict_of')")
    p.add_argument("--flow", type=Path, default=None, help="the flow net's state dict, if not inside --propagation")
    p.add_argument("--num-classes", type=int, default=19, help="classes (19: Cityscapes, as the official weights)")
    p.add_argument("--out", required=True, type=Path, help="GSVNet checkpoint to write")
    args = p.parse_args(argv)
    try:
        model = model_from_official_files(args.net, args.keyframe, args.propagation, args.flow, args.num_classes)
    except CheckpointError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    save_checkpoint(args.out, model, {"source": "official GSVNet weights", "keyframe": str(args.keyframe),
                                      "propagation": str(args.propagation), "flow": str(args.flow) if args.flow else None})
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
