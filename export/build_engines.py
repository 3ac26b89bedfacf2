"""python -m export.build_engines: export GSVNet's stage graphs to ONNX, verify them in
onnxruntime, optionally compile TensorRT engines, and write the engines folder's manifest.

The command line only: it parses its flags into ``export.BuildOptions`` and calls ``export.build``
(export/builder.py), which is what Python callers use directly."""

from __future__ import annotations

import argparse
import sys
from dataclasses import fields
from pathlib import Path

from engine_format.manifest import ManifestError
from engine_format.sizes import parse_any_size, parse_size

from .build_errors import BuildError
from .options import (BACKENDS, CUSTOM_OPS, DEFAULT_CALIBRATION_FRAMES, DEFAULT_OPSET, DEFAULT_OUT, DEFAULT_SIZE,
                      OPT_LEVELS, PRECISIONS, SUPPORTED_OPSETS, BuildOptions, key_scale_error)


def parse_key_scale(text: str) -> float:
    """argparse ``type`` of --key-scale: a number in (0, 1]."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"key scale must be a number in (0, 1], got {text!r}") from None
    problem = key_scale_error(value)
    if problem is not None:
        raise argparse.ArgumentTypeError(problem)
    return value


def build_parser() -> argparse.ArgumentParser:
    from gsvnet.keyframe import keyframe_net_names

    p = argparse.ArgumentParser(
        prog="python -m export.build_engines",
        description="Export the GSVNet stage graphs (keyframe net, flow, intra, guide, the warp and chunk-filter ops, "
                    "downsample and labels) to ONNX, check each one in onnxruntime against PyTorch, and write "
                    "OUT/manifest.json. With TensorRT installed, also compile FP16 engines.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--keyframe-net", choices=keyframe_net_names(), default=None,
                   help="keyframe network; default: the checkpoint's, or swiftnet_r18 without one")
    p.add_argument("--checkpoint", type=Path, default=None,
                   help="GSVNet checkpoint (gsvnet.save_checkpoint format); default: the weights shipped in "
                        "gsvnet/weights for the keyframe net, or random weights if none are shipped")
    own = p.add_argument_group("your own segmenter as the keyframe net (docs/own-segmenter.md)")
    own.add_argument("--keyframe-onnx", type=Path, default=None, metavar="MODEL.onnx",
                     help="an ONNX segmentation model with one image input (float NCHW or NHWC, dynamic batch) and one "
                          "score output [N,C,h,w] at any stride, logits or probabilities: it becomes the keyframe "
                          "net; the propagation nets come from --checkpoint (or the shipped ones, for the same class "
                          "count), else are random until trained for it")
    own.add_argument("--input-size", type=parse_any_size, default=None, metavar="HxW",
                     help="the size the model takes (default: the graph's fixed input size)")
    own.add_argument("--mean", type=float, nargs=3, default=(0.485, 0.456, 0.406), metavar=("R", "G", "B"),
                     help="the model's input mean on 0..1 RGB values")
    own.add_argument("--std", type=float, nargs=3, default=(0.229, 0.224, 0.225), metavar=("R", "G", "B"),
                     help="the model's input standard deviation on 0..1 RGB values")
    own.add_argument("--bgr", action="store_true", help="the model takes BGR channels (OpenCV-trained models)")
    own.add_argument("--classes", type=Path, default=None, metavar="NAMES_FILE",
                     help="the model's class names, one per line, each optionally followed by an R G B colour "
                          "(default: the class count from the output, numbered, with a generated palette)")
    p.add_argument("--official", type=Path, nargs="+", default=None, metavar="FILE",
                   help="the official GSVNet weights instead of --checkpoint: KEYFRAME PROPAGATION [FLOW] (the keyframe "
                        "net's file, GSVNet's training checkpoint, and the flow net's file if it is not inside the "
                        "checkpoint; docs/official-checkpoints.md); the keyframe net is --keyframe-net (default swiftnet_r18)")
    p.add_argument("--random-weights", action="store_true",
                   help="use random weights even if trained ones are shipped (outputs are meaningless; for benchmarks)")
    p.add_argument("--seed", type=int, default=0, help="seed for random weights")
    p.add_argument("--num-classes", type=int, default=19, help="classes of a random-weight model (a checkpoint fixes its own)")
    p.add_argument("--radius", type=int, default=1, help="chunk-filter radius r of a random-weight model (K = (2r+1)^2)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="engines folder to write")
    p.add_argument("--size", type=parse_size, default=DEFAULT_SIZE, metavar="HxW",
                   help="engine frame size (videos of another size are resized to it and labels resized back)")
    p.add_argument("--key-scale", type=parse_key_scale, default=None,
                   help="keyframe input scale in (0, 1]; default: the checkpoint's (0.75 for new models)")
    p.add_argument("--opset", type=int, choices=SUPPORTED_OPSETS, default=DEFAULT_OPSET, help="ONNX opset")
    p.add_argument("--precision", choices=PRECISIONS, default="fp32",
                   help="fp32: every graph in float32. int8: the keyframe graph quantised to INT8 (symmetric QDQ, "
                        "calibrated on --calibration; about 2x faster on CPUs with AVX-512 VNNI, within 0.1 mIoU on "
                        "CamVid test, docs/int8.md), the other graphs float32; onnxruntime only (no TensorRT engines)")
    p.add_argument("--calibration", type=Path, default=None, metavar="DIR",
                   help="folder of real frames (PNG/JPEG) the INT8 ranges are measured on, e.g. "
                        "../shared/data/camvid/train; required with --precision int8")
    p.add_argument("--calibration-frames", type=int, default=DEFAULT_CALIBRATION_FRAMES,
                   help="how many images of --calibration to use (a seeded random choice)")
    p.add_argument("--custom-ops", choices=CUSTOM_OPS, default="function",
                   help="'function': the warp and chunk filter become gsvnet::WarpByFlow / gsvnet::ChunkFilter nodes "
                        "backed by ONNX local functions (onnxruntime inlines them, TensorRT uses our plugins); "
                        "'none': plain standard-op graphs")
    p.add_argument("--backend", choices=BACKENDS, default="auto",
                   help="auto: ONNX, plus TensorRT engines when TensorRT is importable; onnx: ONNX only; "
                        "tensorrt: ONNX and TensorRT engines (fails if TensorRT is missing)")
    p.add_argument("--max-batch", type=int, default=4, help="largest batch in the TensorRT optimisation profiles (multi-stream)")
    p.add_argument("--opt-level", type=int, default=3, choices=OPT_LEVELS, metavar="0-5",
                   help="TensorRT builder optimisation level")
    p.add_argument("--timing-cache", type=Path, default=None, help="TensorRT timing cache file (default: OUT/timing.cache)")
    p.add_argument("--version-compatible", action="store_true",
                   help="build version-compatible TensorRT engines (runnable by the lean runtime of later TensorRT releases)")
    p.add_argument("--force", action="store_true", help="rebuild everything even if the manifest says it is up to date")
    return p


def parse_options(argv: list[str] | None = None) -> BuildOptions:
    """The command line as typed options (argparse exits with its usage line on a bad flag; flags
    that contradict each other raise BuildError)."""
    args = build_parser().parse_args(argv)
    return BuildOptions(**{f.name: getattr(args, f.name) for f in fields(BuildOptions)})


def main(argv: list[str] | None = None) -> int:
    from gsvnet import CheckpointError

    from .builder import build

    try:
        build(parse_options(argv))
    except (BuildError, ManifestError, CheckpointError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted; the previous manifest (if any) is unchanged", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
