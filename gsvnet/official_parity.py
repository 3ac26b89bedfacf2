"""python -m gsvnet.official_parity --official-repo PATH: run the official GSVNet modules and ours
side by side and report how far apart they are.

The official repository (github robert80203/GSVNet) is imported from a copy the user keeps
outside this project (nothing of it is copied here). With random weights and non-trivial
BatchNorm statistics (or, with ``--propagation``/``--keyframe``, the user's official files),
it runs:
- the keyframe net (official SwiftNet-R18 and BiSeNet-R18 modules vs ours loaded through
  ``gsvnet.official``) on the same normalised RGB input;
- the official non-keyframe loop of trainer/gsvnet_trainer.py (FlowLight, MC_Module_Batch,
  GuidedSpatiallyVaryingConv) over a 5-step sequence vs ``GSVNet.propagate``, from the same
  keyframe scores and 1/8 frames (BGR for the official nets, RGB for ours).
It prints max-abs and relative errors and label agreement per step and exits non-zero if the
fused scores differ by more than ``--rtol`` (relative to their magnitude) or any label differs.

Two shims make the official code run as it did: ``Tensor.cuda`` returns the tensor itself when
no GPU is present, and ``grid_sample`` defaults to ``align_corners=True``, the behaviour of
torch 1.1, which the official requirements.txt pins (torch >= 1.3 changed the default).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import importlib
import json
import sys
from pathlib import Path
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from .model import GSVNet, GSVNetConfig
from .checkpoint import CheckpointError
from .official import (FLOW_KEY, PROPAGATION_KEY, load_official, map_bisenet, map_swiftnet, model_from_official_files,
                       read_official_file, strip_module)


@contextlib.contextmanager
def official_runtime(repo: Path) -> Iterator[None]:
    """Import path and torch-1.1 behaviour for the official modules (undone on exit)."""
    original_cuda, original_grid_sample = torch.Tensor.cuda, F.grid_sample
    sys.path.insert(0, str(repo))
    if not torch.cuda.is_available():
        torch.Tensor.cuda = lambda self, *a, **k: self  # type: ignore[method-assign]
    F.grid_sample = functools.partial(original_grid_sample, align_corners=True)  # type: ignore[assignment]
    try:
        yield
    finally:
        torch.Tensor.cuda = original_cuda  # type: ignore[method-assign]
        F.grid_sample = original_grid_sample  # type: ignore[assignment]
        sys.path.remove(str(repo))


def randomize(module: nn.Module, generator: torch.Generator) -> None:
    """Random conv weights and non-trivial BatchNorm statistics (so BN is not the identity)."""
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                fan_in = m.weight[0].numel()
                m.weight.copy_(torch.randn(m.weight.shape, generator=generator) * (1.5 / fan_in) ** 0.5)
                if m.bias is not None:
                    m.bias.copy_(torch.randn(m.bias.shape, generator=generator) * 0.1)
            elif isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=generator) * 0.3)
                m.running_var.copy_(torch.rand(m.num_features, generator=generator) * 1.5 + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=generator) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=generator) * 0.2)


def errors(ours: torch.Tensor, official: torch.Tensor) -> dict:
    diff = (ours.double() - official.double()).abs()
    scale = official.double().abs().max().clamp_min(1e-12)
    return {"max_abs": float(diff.max()), "max_rel": float(diff.max() / scale),
            "labels_agree": float((ours.argmax(1) == official.argmax(1)).double().mean()), "scale": float(scale)}


def keyframe_parity(net: str, generator: torch.Generator, size: tuple[int, int]) -> dict:
    """Official keyframe module vs ours, random weights, same RGB-normalised input: logits errors."""
    num_classes = 19
    if net == "swiftnet_r18":
        resnet = importlib.import_module("model.swiftnet.models.resnet.resnet_single_scale")
        semseg = importlib.import_module("model.swiftnet.models.semseg")
        official = semseg.SemsegModel(resnet.resnet18(pretrained=False, efficient=False, mean=[73.15, 82.90, 72.3],
                                                      std=[47.67, 48.49, 47.73], scale=1, batchnorm=nn.BatchNorm2d),
                                      num_classes, batchnorm=nn.BatchNorm2d)
        mapper = map_swiftnet
    else:
        bisenet = importlib.import_module("model.bisenet.bisenet_resnet18")
        official = bisenet.BiSeNet(num_classes, is_training=False, criterion=None, ohem_criterion=None,
                                   real_time=False, norm_layer=nn.BatchNorm2d)
        mapper = map_bisenet
    randomize(official, generator)
    official.eval()
    ours = GSVNet(GSVNetConfig(keyframe_net=net, num_classes=num_classes)).eval()
    load_official(ours, keyframe=mapper(official.state_dict()))
    x = torch.randn(1, 3, *size, generator=generator)
    with torch.no_grad():
        expected = official(x)
        expected = expected[0] if isinstance(expected, (tuple, list)) else expected
        got = ours.keyframe(x)
    if got.shape != expected.shape:
        return {"error": f"output shapes differ: ours {tuple(got.shape)}, official {tuple(expected.shape)}"}
    return errors(got, expected)


def official_propagation(files: tuple[Path, ...] | None, generator: torch.Generator) -> tuple[nn.Module, nn.Module, nn.Module]:
    """(flow net, motion compensation, End2End(GuidedSpatiallyVaryingConv)) from the official code,
    with random weights or those of the official files (KEYFRAME, PROPAGATION[, FLOW])."""
    gsv = importlib.import_module("model.gsv.network")
    flownet = importlib.import_module("model.flownet.networks")
    mc = importlib.import_module("model.warp.mc_mod")
    end2end = importlib.import_module("model.end2end")
    flow = flownet.FlowLight(nn.BatchNorm2d)
    network = end2end.End2End(gsv.GuidedSpatiallyVaryingConv(freeze_bn=False, in_class=19, out_class=19, num_filter=32,
                                                             batch_norm=nn.BatchNorm2d, is_train_filter=False))
    if files is None:
        randomize(flow, generator)
        randomize(network, generator)
        with torch.no_grad():  # keep most guiding weights alive, as a trained net's are
            network.grm.guide.guide_decoder[1].bias.add_(1.0)
    else:
        prop = read_official_file(files[1])
        flow_source = read_official_file(files[2]) if len(files) > 2 else prop
        network.load_state_dict(strip_module(prop[PROPAGATION_KEY]))
        flow.load_state_dict(strip_module(flow_source.get(FLOW_KEY, flow_source)))
    return flow.eval(), mc.MC_Module_Batch(train_noise_sigma=False, eval_noise_sigma=False).eval(), network.eval()


def smooth_frames(generator: torch.Generator, steps: int, size: tuple[int, int]) -> list[torch.Tensor]:
    """steps + 1 normalised 1/8 RGB frames of a smooth texture drifting one grid pixel per frame."""
    h, w = size
    base = torch.randn(1, 3, h // 2, (w + steps) // 2 + 1, generator=generator)
    big = F.interpolate(base, size=(h, w + steps + 2), mode="bilinear", align_corners=False)
    return [big[..., t : t + w].contiguous() for t in range(steps + 1)]


def propagation_parity(generator: torch.Generator, steps: int, size: tuple[int, int],
                       files: tuple[Path, ...] | None = None, net: str = "swiftnet_r18") -> list[dict]:
    """Per step: errors of ``GSVNet.propagate`` vs the official loop (trainer/gsvnet_trainer.py forward)."""
    flow, mc, network = official_propagation(files, generator)
    if files:
        ours = model_from_official_files(net, *files)
    else:
        ours = GSVNet(GSVNetConfig(keyframe_net=net, num_classes=19, radius=1)).eval()
        load_official(ours, flow=flow.state_dict(), guided_conv=network.state_dict())
    rgb = smooth_frames(generator, steps, size)
    key = 3 * F.interpolate(torch.randn(1, 19, size[0] // 4, size[1] // 4, generator=generator), size=size,
                            mode="bilinear", align_corners=False)
    report, theirs, mine = [], key, key
    with torch.no_grad():
        for t in range(1, steps + 1):
            cur, prev = rgb[t].flip(1), rgb[t - 1].flip(1)  # the official nets see BGR
            output_flow = F.interpolate(flow(torch.cat([cur, prev], dim=1)), size=size, mode="bilinear", align_corners=True)
            mc_out = mc(torch.cat((theirs, prev), dim=1).unsqueeze(1), output_flow)
            theirs, _, _ = network(mc_out[:, :19], cur)
            mine = ours.propagate(mine, rgb[t - 1], rgb[t])
            report.append({"step": t, **errors(mine, theirs)})
    return report


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m gsvnet.official_parity", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--official-repo", required=True, type=Path, help="a copy of github.com/robert80203/GSVNet (kept outside this project)")
    p.add_argument("--keyframe", type=Path, default=None, help="official keyframe weights (with --propagation: use the real files)")
    p.add_argument("--propagation", type=Path, default=None, help="official GSVNet training checkpoint (state_dict + state_dict_of)")
    p.add_argument("--flow", type=Path, default=None, help="the official flow net's file, if not inside --propagation")
    p.add_argument("--net", default="swiftnet_r18", choices=("swiftnet_r18", "bisenet_r18"), help="keyframe net of the files")
    p.add_argument("--steps", type=int, default=5, help="propagation steps after the keyframe")
    p.add_argument("--size", type=int, nargs=2, default=(64, 128), metavar=("h", "w"), help="1/8 grid (multiples of 4)")
    p.add_argument("--rtol", type=float, default=1e-4, help="largest accepted max|ours - official| / max|official|")
    p.add_argument("--seed", type=int, default=0, help="seed of the random weights and inputs")
    p.add_argument("--json", type=Path, default=None, help="write the report here")
    args = p.parse_args(argv)
    if not (args.official_repo / "model" / "gsv" / "network.py").is_file():
        print(f"error: {args.official_repo} is not a copy of the official GSVNet repository (no model/gsv/network.py); "
              "clone github.com/robert80203/GSVNet and pass its folder")
        return 2
    if (args.keyframe is None) != (args.propagation is None):
        print("error: pass both --keyframe and --propagation (the official files), or neither (random weights)")
        return 2
    generator = torch.Generator().manual_seed(args.seed)
    files = tuple(f for f in (args.keyframe, args.propagation, args.flow) if f is not None) if args.keyframe else None
    try:
        with official_runtime(args.official_repo.resolve()):
            report = {"keyframe": {} if files else {net: keyframe_parity(net, generator, (96, 192))
                                                    for net in ("swiftnet_r18", "bisenet_r18")},
                      "propagation": propagation_parity(generator, args.steps, tuple(args.size), files, args.net)}
    except CheckpointError as e:
        print(f"error: {e}")
        return 2
    ok = True
    for net, r in report["keyframe"].items():
        good = "error" not in r and r["max_rel"] <= args.rtol
        ok &= good
        print(f"keyframe {net:<13} " + (r.get("error") or f"max|d| {r['max_abs']:.2e}  rel {r['max_rel']:.2e}  labels {r['labels_agree']:.4%}")
              + ("" if good else "  <-- FAIL"))
    for r in report["propagation"]:
        good = r["max_rel"] <= args.rtol and r["labels_agree"] == 1.0
        ok &= good
        print(f"propagation step {r['step']}: max|d| {r['max_abs']:.2e}  rel {r['max_rel']:.2e}  "
              f"labels {r['labels_agree']:.4%}" + ("" if good else "  <-- FAIL"))
    if args.json:
        args.json.write_text(json.dumps({**report, "ok": ok, "args": {k: str(v) for k, v in vars(args).items()}}, indent=1))
    print("PARITY OK" if ok else "PARITY FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
