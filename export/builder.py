"""The whole build behind ``python -m export.build_engines`` and ``export.build``: the model from
its weights, one ONNX graph per stage checked in onnxruntime against PyTorch, the verification
set, the manifest, and (where TensorRT is importable) the TensorRT engines."""

from __future__ import annotations

import hashlib
import importlib.util
import platform
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from engine_format.manifest import (FORMAT, MANIFEST_NAME, STAGES, VERSION, Manifest, ManifestError, build_key,
                                    read_manifest, sha256_file, write_json_atomic)

from .build_errors import TENSORRT_MISSING, BuildError
from .custom_ops import custom_op_transform
from .options import BuildOptions
from .verification_set import write_verification_set

CHECKPOINT_FILE = "model.pt"


def tensorrt_available() -> bool:
    """Whether the TensorRT Python bindings import (and their libraries load) here."""
    if importlib.util.find_spec("tensorrt") is None:
        return False
    try:
        import tensorrt  # noqa: F401
    except Exception:  # the bindings wheel imports but fails without its libraries
        return False
    return True


def _load_model(options: BuildOptions):
    """(model, checkpoint description) from the options; the model is in eval mode."""
    import torch

    from gsvnet import GSVNet, GSVNetConfig, load_checkpoint
    from gsvnet.pretrained import default_checkpoint

    overrides = {"key_scale": options.key_scale} if options.key_scale is not None else {}
    if options.official:
        return _load_official(options, overrides)
    checkpoint = options.checkpoint
    if checkpoint is None and not options.random_weights:
        checkpoint = default_checkpoint(options.keyframe_net or "swiftnet_r18")
    if checkpoint is not None:
        model, metadata = load_checkpoint(checkpoint, **overrides)
        if options.keyframe_net and options.keyframe_net != model.config.keyframe_net:
            raise BuildError(f"--keyframe-net {options.keyframe_net} does not match the checkpoint {checkpoint}, "
                             f"which holds {model.config.keyframe_net}; drop the flag or pass another checkpoint")
        return model, {"source": str(checkpoint), "source_sha256": sha256_file(checkpoint), "random_weights": False,
                       "metadata": metadata}
    torch.manual_seed(options.seed)
    config = GSVNetConfig(keyframe_net=options.keyframe_net or "swiftnet_r18", num_classes=options.num_classes,
                          radius=options.radius, **overrides)
    model = GSVNet(config).eval()
    with torch.no_grad():  # the zero-initialised flow head would make every warp an identity
        torch.nn.init.normal_(model.flow.toflow.weight, std=0.05)
    return model, {"source": None, "source_sha256": None, "random_weights": True, "seed": options.seed, "metadata": {}}


def _load_official(options: BuildOptions, overrides: dict):
    """(model, description) from the official files (gsvnet.official), with resampling 'official'."""
    import hashlib

    from gsvnet.official import model_from_official_files

    model = model_from_official_files(options.keyframe_net or "swiftnet_r18", *options.official)
    for key, value in overrides.items():
        setattr(model.config, key, value)
    digest = hashlib.sha256("".join(sha256_file(f) for f in options.official).encode()).hexdigest()
    return model, {"source": " ".join(str(f) for f in options.official), "source_sha256": digest, "random_weights": False,
                   "metadata": {"official": [str(f) for f in options.official]}}


def _imported_model(options: BuildOptions, spec, log: Callable[[str], None]):
    """(model, checkpoint description) for ``--keyframe-onnx``: the stand-in keyframe net, and
    propagation nets from ``--checkpoint`` (or the shipped ones when their classes match),
    else random ones (said loudly)."""
    import torch

    from gsvnet import load_checkpoint
    from gsvnet.pretrained import default_checkpoint

    from .keyframe_import import class_names, imported_gsvnet

    names, palette = class_names(options.classes, spec.num_classes)
    source_path = options.checkpoint
    if source_path is None:
        shipped = default_checkpoint("swiftnet_r18")
        if shipped is not None and load_checkpoint(shipped)[0].config.num_classes == spec.num_classes:
            source_path = shipped
    source = load_checkpoint(source_path)[0] if source_path is not None else None
    if source is not None and source.config.num_classes != spec.num_classes:
        raise BuildError(f"--checkpoint {source_path} has propagation nets for {source.config.num_classes} classes, but "
                         f"{options.keyframe_onnx} outputs {spec.num_classes}; pass a checkpoint trained for this model")
    torch.manual_seed(options.seed)
    model = imported_gsvnet(spec, names, palette, source, options.radius)
    if source is not None:
        propagation = {"propagation": str(source_path), "propagation_sha256": sha256_file(source_path)}
        log(f"keyframe net: {options.keyframe_onnx} ({spec.num_classes} classes, input {spec.input_size[0]}x"
            f"{spec.input_size[1]} {spec.layout}{' BGR' if spec.bgr else ''}, {spec.output} at 1/{spec.output_stride:g}); "
            f"propagation nets from {source_path}")
    else:
        propagation = {"propagation": None, "propagation_seed": options.seed}
        log(f"WARNING: no propagation nets for {spec.num_classes} classes (--checkpoint): they are RANDOM, so only "
            "--interval 1 gives your model's labels; train them for this model (docs/own-segmenter.md)")
    return model, {"source": str(options.keyframe_onnx), "source_sha256": spec.sha256, "random_weights": False,
                   **propagation, "metadata": {"keyframe_onnx": str(options.keyframe_onnx)}}


def _imported_keyframe_graph(options: BuildOptions, user_model, spec, model, out: Path, key: str,
                             log: Callable[[str], None]) -> dict:
    """Write ``out/keyframe.onnx`` for an imported model, verified against it; its manifest entry."""
    import onnx

    from engine_format.stages import stage_table

    from .keyframe_import import keyframe_graph, verify_keyframe_graph

    config = model.config
    stage = stage_table(config.num_classes, config.radius, options.size)["keyframe"]
    path, tmp = out / "keyframe.onnx", out / ".keyframe.onnx.tmp"
    try:
        onnx.save_model(keyframe_graph(user_model, spec, options.size, options.opset), str(tmp))
        check = verify_keyframe_graph(tmp, user_model, spec, options.size)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    log(f"  keyframe: {Path(spec.source).name} imported; max |err| {check['max_abs']:.2e} "
        f"({check['relative']:.1e} of its scores' range) vs the model in onnxruntime on {check['frames']} real frames")
    if not check["ok"]:
        tmp.unlink(missing_ok=True)
        raise BuildError(f"the keyframe graph made from {spec.source} differs from the model itself by "
                         f"{check['relative']:.1e} of its scores' range (more than {check['tolerance']:g}); "
                         "no manifest was written")
    tmp.replace(path)
    return {"file": path.name, "sha256": sha256_file(path), "opset": options.opset, "precision": "fp32",
            "inputs": [s.to_dict() for s in stage.inputs], "outputs": [s.to_dict() for s in stage.outputs],
            "custom_op": None, "imported": spec.source, "verification": check, "build_key": key}


def _calibration(options: BuildOptions) -> tuple[list[Path], dict]:
    """The calibration images and the record of them (what the INT8 graph depends on)."""
    from .quantize import calibration_files, files_digest

    files = calibration_files(options.calibration, options.calibration_frames)
    return files, {"folder": str(options.calibration), "frames": len(files), "sha256": files_digest(files)}


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


def build(options: BuildOptions, log: Callable[[str], None] = print) -> Manifest:
    """Build the engines folder ``options.out`` and return its manifest (the one already there when
    it is up to date); ``log`` gets each progress line. Raises BuildError / ManifestError /
    CheckpointError with one-line messages, and writes no manifest when a graph fails its check."""
    from gsvnet import grid_size, key_size, save_checkpoint

    from .graphs import export_graphs

    int8 = options.precision == "int8"
    calibration = _calibration(options) if int8 else None
    imported = options.keyframe_onnx is not None
    want_trt = not int8 and (options.backend == "tensorrt" or (options.backend == "auto" and tensorrt_available()))
    if options.backend == "tensorrt" and not tensorrt_available():
        raise BuildError(TENSORRT_MISSING)
    if int8 and options.backend == "auto" and tensorrt_available():
        log("--precision int8: building ONNX graphs only (TensorRT engines come from FP32 folders)")
    elif options.backend == "auto" and not want_trt:
        log("TensorRT is not importable: building ONNX graphs only (onnxruntime / torch backends)")

    if imported:
        from .keyframe_import import ImportOptions, inspect_model

        user_model, spec = inspect_model(options.keyframe_onnx, ImportOptions(options.input_size, options.mean,
                                                                               options.std, options.bgr))
        model, ckpt_info = _imported_model(options, spec, log)
    else:
        model, ckpt_info = _load_model(options)
    if ckpt_info["random_weights"]:
        log("WARNING: no checkpoint: exporting RANDOM weights; segmentations will be meaningless (fine for benchmarks). "
            "Pass --checkpoint PATH for real output.")
    config = model.config
    out: Path = options.out
    out.mkdir(parents=True, exist_ok=True)

    versions = _versions()
    state_digest = hashlib.sha256()
    for k, v in model.state_dict().items():
        state_digest.update(k.encode())
        state_digest.update(v.detach().cpu().contiguous().numpy().tobytes())
    key = build_key(state_digest.hexdigest(), config.to_dict(), options.size, options.opset, options.custom_ops, versions,
                    quantization=calibration[1] if calibration else None)

    reuse = None if options.force else _up_to_date(out, key)
    if reuse is not None and not want_trt:
        log(f"{out}/{MANIFEST_NAME} is up to date (same weights, config, size, opset); nothing to do (--force rebuilds)")
        return reuse

    # the checkpoint the graphs come from, so the torch backend runs exactly the same weights
    ckpt_path = out / CHECKPOINT_FILE
    if reuse is None:
        save_checkpoint(ckpt_path, model, metadata={"exported_from": ckpt_info["source"], **ckpt_info["metadata"]})
    started = time.perf_counter()
    graphs, failures = export_graphs(
        model, options.size, out, precision="fp32", opset=options.opset, custom_ops=options.custom_ops, build_key=key,
        stages=tuple(s for s in STAGES if not (imported and s == "keyframe")),
        reuse=reuse.graphs if reuse is not None else {},
        transform=custom_op_transform(options.custom_ops, config.radius), log=log)
    if imported and not failures:
        keyframe = (reuse.graphs["keyframe"] if reuse is not None and "keyframe" in reuse.graphs
                    else _imported_keyframe_graph(options, user_model, spec, model, out, key, log))
        graphs = {name: keyframe if name == "keyframe" else graphs[name] for name in STAGES}
    if failures:
        raise BuildError(f"onnxruntime disagrees with PyTorch beyond tolerance for: {', '.join(failures)} "
                         f"(see the lines above); no manifest was written")
    if int8 and graphs["keyframe"].get("precision") != "int8":
        from .quantize import quantize_keyframe_graph

        graphs["keyframe"] = quantize_keyframe_graph(out, graphs["keyframe"], calibration, options.size, log)
    verification = write_verification_set(out, model, options.size,
                                          out / graphs["keyframe"]["file"] if int8 else None,
                                          out / graphs["keyframe"]["file"] if imported else None)
    log(f"  verification set: {verification['frames']} real frames and their reference labels "
        f"({', '.join(verification['references'])}) in {out / verification['file']}")

    data = {
        "format": FORMAT, "version": VERSION, "build_key": key,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": options.command_line(),
        "versions": versions,
        "model": config.to_dict(),
        "checkpoint": {"file": CHECKPOINT_FILE, "sha256": sha256_file(ckpt_path), **{k: v for k, v in ckpt_info.items() if k != "metadata"}},
        "frame_size": list(options.size), "grid_size": list(grid_size(options.size)),
        "key_size": list(key_size(options.size, config.key_scale, config.resampling)),
        "opset": options.opset, "custom_ops": options.custom_ops, "graphs": graphs,
        "engines": {}, "verification": verification,
        "export_seconds": round(time.perf_counter() - started, 1),
    }
    manifest = Manifest(out, data)
    # the ONNX graphs and their manifest first, always: whatever happens to TensorRT below, the
    # folder works with the onnxruntime and torch backends
    write_json_atomic(out / MANIFEST_NAME, manifest.data)
    if not int8:
        (out / "keyframe.int8.onnx").unlink(missing_ok=True)  # from an earlier --precision int8 build
    log(f"wrote {len(graphs)} graphs and {out / MANIFEST_NAME} ({options.size[0]}x{options.size[1]}, "
        f"{config.keyframe_net}, {config.num_classes} classes, opset {options.opset})")
    if want_trt:
        from .tensorrt_build import build_tensorrt_engines

        manifest.data["engines"] = reuse.engines if reuse is not None else {}
        try:
            build_tensorrt_engines(manifest, model, options, log)
        except BuildError as e:
            manifest.data["engines"] = {}
            manifest.data["tensorrt"] = {"built": False, "reason": str(e)}
            write_json_atomic(out / MANIFEST_NAME, manifest.data)
            if options.backend == "tensorrt":
                raise BuildError(f"TensorRT engines were not built ({e}); the ONNX graphs in {out} work with "
                                 "--backend onnxruntime or torch") from None
            log(f"TensorRT engines were not built: {e}; the ONNX graphs in {out} work with the onnxruntime "
                "and torch backends")
            return manifest
        write_json_atomic(out / MANIFEST_NAME, manifest.data)
    return manifest


