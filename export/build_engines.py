"""python -m export.build_engines: export GSVNet's stage graphs to ONNX, verify them in
onnxruntime, optionally compile TensorRT engines, and write the engines folder's manifest."""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import platform
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from .build_errors import TENSORRT_MISSING, BuildError
from .custom_ops import custom_op_transform
from .verification_set import write_verification_set
from engine_format.sizes import parse_size
from engine_format.manifest import (FORMAT, MANIFEST_NAME, STAGES, VERSION, Manifest, ManifestError, build_key, read_manifest,
                       sha256_file, write_json_atomic)

DEFAULT_SIZE = (1024, 2048)
DEFAULT_OUT = Path("engines")
CHECKPOINT_FILE = "model.pt"


def parse_key_scale(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"key scale must be a number in (0, 1], got {text!r}") from None
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"key scale must be in (0, 1], got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    from gsvnet.keyframe import keyframe_net_names

    from .onnx_export import DEFAULT_OPSET, SUPPORTED_OPSETS
    from .quantize import DEFAULT_CALIBRATION_FRAMES

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
    p.add_argument("--precision", choices=("fp32", "int8"), default="fp32",
                   help="fp32: every graph in float32. int8: the keyframe graph quantised to INT8 (symmetric QDQ, "
                        "calibrated on --calibration; about 2x faster on CPUs with AVX-512 VNNI, within 0.1 mIoU on "
                        "CamVid test, docs/int8.md), the other graphs float32; onnxruntime only (no TensorRT engines)")
    p.add_argument("--calibration", type=Path, default=None, metavar="DIR",
                   help="folder of real frames (PNG/JPEG) the INT8 ranges are measured on, e.g. "
                        "../shared/data/camvid/train; required with --precision int8")
    p.add_argument("--calibration-frames", type=int, default=DEFAULT_CALIBRATION_FRAMES,
                   help="how many images of --calibration to use (a seeded random choice)")
    p.add_argument("--custom-ops", choices=("function", "none"), default="function",
                   help="'function': the warp and chunk filter become gsvnet::WarpByFlow / gsvnet::ChunkFilter nodes "
                        "backed by ONNX local functions (onnxruntime inlines them, TensorRT uses our plugins); "
                        "'none': plain standard-op graphs")
    p.add_argument("--backend", choices=("auto", "onnx", "tensorrt"), default="auto",
                   help="auto: ONNX, plus TensorRT engines when TensorRT is importable; onnx: ONNX only; "
                        "tensorrt: ONNX and TensorRT engines (fails if TensorRT is missing)")
    p.add_argument("--max-batch", type=int, default=4, help="largest batch in the TensorRT optimisation profiles (multi-stream)")
    p.add_argument("--opt-level", type=int, default=3, choices=range(0, 6), metavar="0-5",
                   help="TensorRT builder optimisation level")
    p.add_argument("--timing-cache", type=Path, default=None, help="TensorRT timing cache file (default: OUT/timing.cache)")
    p.add_argument("--version-compatible", action="store_true",
                   help="build version-compatible TensorRT engines (runnable by the lean runtime of later TensorRT releases)")
    p.add_argument("--force", action="store_true", help="rebuild everything even if the manifest says it is up to date")
    return p


def tensorrt_available() -> bool:
    if importlib.util.find_spec("tensorrt") is None:
        return False
    try:
        import tensorrt  # noqa: F401
    except Exception:  # the bindings wheel imports but fails without its libraries
        return False
    return True


def _load_model(args: argparse.Namespace):
    """(model, checkpoint description) from the flags; the model is in eval mode."""
    import torch

    from gsvnet import GSVNet, GSVNetConfig, load_checkpoint
    from gsvnet.pretrained import default_checkpoint

    overrides = {"key_scale": args.key_scale} if args.key_scale is not None else {}
    if args.official:
        return _load_official(args, overrides)
    checkpoint = args.checkpoint
    if checkpoint is None and not args.random_weights:
        checkpoint = default_checkpoint(args.keyframe_net or "swiftnet_r18")
    if checkpoint is not None:
        model, metadata = load_checkpoint(checkpoint, **overrides)
        if args.keyframe_net and args.keyframe_net != model.config.keyframe_net:
            raise BuildError(f"--keyframe-net {args.keyframe_net} does not match the checkpoint {checkpoint}, "
                             f"which holds {model.config.keyframe_net}; drop the flag or pass another checkpoint")
        return model, {"source": str(checkpoint), "source_sha256": sha256_file(checkpoint), "random_weights": False,
                       "metadata": metadata}
    torch.manual_seed(args.seed)
    config = GSVNetConfig(keyframe_net=args.keyframe_net or "swiftnet_r18", num_classes=args.num_classes,
                          radius=args.radius, **overrides)
    model = GSVNet(config).eval()
    with torch.no_grad():  # the zero-initialised flow head would make every warp an identity
        torch.nn.init.normal_(model.flow.toflow.weight, std=0.05)
    return model, {"source": None, "source_sha256": None, "random_weights": True, "seed": args.seed, "metadata": {}}


def _load_official(args: argparse.Namespace, overrides: dict):
    """(model, description) from the official files (gsvnet.official), with resampling 'official'."""
    import hashlib

    from gsvnet.official import model_from_official_files

    if not 2 <= len(args.official) <= 3:
        raise BuildError(f"--official takes 2 or 3 files (KEYFRAME PROPAGATION [FLOW]), got {len(args.official)}")
    if args.checkpoint is not None or args.random_weights:
        raise BuildError("--official replaces --checkpoint and --random-weights; pass only one of them")
    model = model_from_official_files(args.keyframe_net or "swiftnet_r18", *args.official)
    for key, value in overrides.items():
        setattr(model.config, key, value)
    digest = hashlib.sha256("".join(sha256_file(f) for f in args.official).encode()).hexdigest()
    return model, {"source": " ".join(str(f) for f in args.official), "source_sha256": digest, "random_weights": False,
                   "metadata": {"official": [str(f) for f in args.official]}}


def _calibration(args: argparse.Namespace) -> tuple[list[Path], dict]:
    """The calibration images and the record of them (what the INT8 graph depends on)."""
    from .quantize import calibration_files, files_digest

    if args.calibration is None:
        raise BuildError("--precision int8 needs --calibration DIR: a folder of real frames (PNG/JPEG) to measure "
                         "the INT8 ranges on, e.g. ../shared/data/camvid/train")
    if args.calibration_frames < 1:
        raise BuildError(f"--calibration-frames must be >= 1, got {args.calibration_frames}")
    files = calibration_files(args.calibration, args.calibration_frames)
    return files, {"folder": str(args.calibration), "frames": len(files), "sha256": files_digest(files)}


def _versions() -> dict:
    import onnx
    import onnxruntime
    import torch

    import gsvnet

    return {"gsvnet": gsvnet.__version__, "torch": torch.__version__, "onnx": onnx.__version__,
            "onnxruntime": onnxruntime.__version__, "python": platform.python_version(), "platform": platform.platform()}


def _up_to_date(out: Path, key: str) -> Manifest | None:
    try:
        manifest = read_manifest(out)
    except ManifestError:
        return None
    if manifest.data.get("build_key") != key or "verification" not in manifest.data:
        return None
    entries = [manifest.data["checkpoint"], manifest.data["verification"], *manifest.graphs.values()]
    for entry in entries:
        path = manifest.file(entry["file"])
        if not path.is_file() or sha256_file(path) != entry["sha256"]:
            return None
    return manifest


def build(args: argparse.Namespace, log=print) -> Manifest:
    """Do the whole build; raises BuildError / ManifestError / CheckpointError with one-line messages."""
    from gsvnet import grid_size, key_size, save_checkpoint

    from .graphs import export_graphs

    int8 = args.precision == "int8"
    if int8 and args.backend == "tensorrt":
        raise BuildError("--precision int8 builds an onnxruntime keyframe graph; TensorRT engines are built from FP32 "
                         "folders (drop --precision int8, or use --backend onnx)")
    calibration = _calibration(args) if int8 else None
    want_trt = not int8 and (args.backend == "tensorrt" or (args.backend == "auto" and tensorrt_available()))
    if args.backend == "tensorrt" and not tensorrt_available():
        raise BuildError(TENSORRT_MISSING)
    if int8 and args.backend == "auto" and tensorrt_available():
        log("--precision int8: building ONNX graphs only (TensorRT engines come from FP32 folders)")
    elif args.backend == "auto" and not want_trt:
        log("TensorRT is not importable: building ONNX graphs only (onnxruntime / torch backends)")

    model, ckpt_info = _load_model(args)
    if ckpt_info["random_weights"]:
        log("WARNING: no checkpoint: exporting RANDOM weights; segmentations will be meaningless (fine for benchmarks). "
            "Pass --checkpoint PATH for real output.")
    config = model.config
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)

    versions = _versions()
    state_digest = hashlib.sha256()
    for k, v in model.state_dict().items():
        state_digest.update(k.encode())
        state_digest.update(v.detach().cpu().contiguous().numpy().tobytes())
    key = build_key(state_digest.hexdigest(), config.to_dict(), args.size, args.opset, args.custom_ops, versions,
                    quantization=calibration[1] if calibration else None)

    reuse = None if args.force else _up_to_date(out, key)
    if reuse is not None and not want_trt:
        log(f"{out}/{MANIFEST_NAME} is up to date (same weights, config, size, opset); nothing to do (--force rebuilds)")
        return reuse

    # the checkpoint the graphs come from, so the torch backend runs exactly the same weights
    ckpt_path = out / CHECKPOINT_FILE
    if reuse is None:
        save_checkpoint(ckpt_path, model, metadata={"exported_from": ckpt_info["source"], **ckpt_info["metadata"]})
    started = time.perf_counter()
    graphs, failures = export_graphs(
        model, args.size, out, precision="fp32", opset=args.opset, custom_ops=args.custom_ops, build_key=key,
        stages=STAGES, reuse=reuse.graphs if reuse is not None else {},
        transform=custom_op_transform(args.custom_ops, config.radius), log=log)
    if failures:
        raise BuildError(f"onnxruntime disagrees with PyTorch beyond tolerance for: {', '.join(failures)} "
                         f"(see the lines above); no manifest was written")
    if int8 and graphs["keyframe"].get("precision") != "int8":
        from .quantize import quantize_keyframe_graph

        graphs["keyframe"] = quantize_keyframe_graph(out, graphs["keyframe"], calibration, args.size, log)
    verification = write_verification_set(out, model, args.size,
                                          out / graphs["keyframe"]["file"] if int8 else None)
    log(f"  verification set: {verification['frames']} real frames and their reference labels "
        f"({', '.join(verification['references'])}) in {out / verification['file']}")

    data = {
        "format": FORMAT, "version": VERSION, "build_key": key,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name, "-m", "export.build_engines", *sys.argv[1:]]),
        "versions": versions,
        "model": config.to_dict(),
        "checkpoint": {"file": CHECKPOINT_FILE, "sha256": sha256_file(ckpt_path), **{k: v for k, v in ckpt_info.items() if k != "metadata"}},
        "frame_size": list(args.size), "grid_size": list(grid_size(args.size)),
        "key_size": list(key_size(args.size, config.key_scale, config.resampling)),
        "opset": args.opset, "custom_ops": args.custom_ops, "graphs": graphs,
        "engines": {}, "verification": verification,
        "export_seconds": round(time.perf_counter() - started, 1),
    }
    manifest = Manifest(out, data)
    # the ONNX graphs and their manifest first, always: whatever happens to TensorRT below, the
    # folder works with the onnxruntime and torch backends
    write_json_atomic(out / MANIFEST_NAME, manifest.data)
    if not int8:
        (out / "keyframe.int8.onnx").unlink(missing_ok=True)  # from an earlier --precision int8 build
    log(f"wrote {len(graphs)} graphs and {out / MANIFEST_NAME} ({args.size[0]}x{args.size[1]}, "
        f"{config.keyframe_net}, {config.num_classes} classes, opset {args.opset})")
    if want_trt:
        from .tensorrt_build import build_tensorrt_engines

        manifest.data["engines"] = reuse.engines if reuse is not None else {}
        try:
            build_tensorrt_engines(manifest, model, args, log)
        except BuildError as e:
            manifest.data["engines"] = {}
            manifest.data["tensorrt"] = {"built": False, "reason": str(e)}
            write_json_atomic(out / MANIFEST_NAME, manifest.data)
            if args.backend == "tensorrt":
                raise BuildError(f"TensorRT engines were not built ({e}); the ONNX graphs in {out} work with "
                                 "--backend onnxruntime or torch") from None
            log(f"TensorRT engines were not built: {e}; the ONNX graphs in {out} work with the onnxruntime "
                "and torch backends")
            return manifest
        write_json_atomic(out / MANIFEST_NAME, manifest.data)
    return manifest


def main(argv: list[str] | None = None) -> int:
    from gsvnet import CheckpointError

    args = build_parser().parse_args(argv)
    try:
        build(args)
    except (BuildError, ManifestError, CheckpointError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted; the previous manifest (if any) is unchanged", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
