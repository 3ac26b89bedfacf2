"""Measured accuracy of GSVNet, through the PyTorch reference or a deployed backend.

    python -m evaluation camvid          [--data ../shared/data/camvid] [--split test] [--size 360 480]
    python -m evaluation camvid-sequence [--half first|second|all] [--no-intra-checkpoint P]
    python -m evaluation video           [--video ../shared/data/videos/solidWhiteRight.mp4] [--no-intra-checkpoint P]
    python -m evaluation cityscapes      --root /path/to/cityscapes [--split val] [--checkpoint P]
    (each with [--backend NAME --engines DIR] [--json PATH])

camvid: per-frame mIoU and per-class IoU (void ignored) at the labels' full resolution, keyframe
path only. camvid-sequence: the paper's propagation protocol against ground truth on the one
labelled video here (CamVid val, 101 frames at 15 Hz): every labelled frame t and distance
d = 0..5, keyframe t-d, scored at 360x480. video: the same protocol on the held-out end of a
clip, the keyframe net's own per-frame prediction standing in for ground truth. Rows: gsvnet,
without_intra (a separately trained checkpoint), warp_only (the same flow net, no guided filter)
and hold (the keyframe's labels unchanged); mIoU per distance and avg/min per keyframe interval
l = 1..5 (l covers distances 0..l-1, so l = 1 is the keyframe net on every frame).
cityscapes: the same protocol against gtFine at frame 20 (keyframe at 20-d), 19 train ids.
Each command prints a table and merges its section into the JSON file given by --json.

From Python: ``run(CamVidOptions(...))`` (evaluation/options.py has one options class per command);
``python -m evaluation`` only parses its flags into them.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import sys
import time
from pathlib import Path
from dataclasses import dataclass
from typing import Callable

import numpy as np

from runtime.errors import UserError

from .options import (CAMVID, CLIP, COMMAND_OPTIONS, REFERENCE, CamVidOptions, CamVidSequenceOptions, CityscapesOptions,
                      EvaluationOptions, VideoOptions, default_json)


# ---- steppers -------------------------------------------------------------------------------
def default_checkpoint() -> Path | None:
    from gsvnet.pretrained import default_checkpoint as shipped

    return shipped("swiftnet_r18")


def load_model(checkpoint: str | Path, variant: str = "full"):
    """The checkpoint as a GSVNet of ``variant`` (gsvnet.variants), FP32, eval mode."""
    from gsvnet.checkpoint import read_checkpoint
    from gsvnet import GSVNetConfig
    from gsvnet.variants import build_variant

    payload = read_checkpoint(checkpoint)
    return build_variant(variant, GSVNetConfig.from_dict(payload["config"]), payload["state_dict"]), payload.get("metadata", {})


@dataclass
class Runner:
    stepper: object  # runtime.schedule.core.Stepper on numpy uint8 frames
    frame_size: tuple[int, int] | None  # None: any multiple of 8 (the PyTorch reference)
    description: str
    class_names: list[str]
    backend: str = REFERENCE  # the resolved backend name
    int8: bool = False  # the engines' keyframe graph is INT8
    precision: str | None = None  # the run's --precision (None: the backend's default)

    @property
    def section_suffix(self) -> str:
        """'' for the PyTorch reference, else '_BACKEND' (and '_int8' for an INT8 keyframe graph, or
        '_PRECISION' for a --precision other than f32)."""
        if self.backend == REFERENCE:
            return ""
        precision = "int8" if self.int8 else self.precision if self.precision not in (None, "f32") else ""
        return f"_{self.backend}" + (f"_{precision}" if precision else "")


def make_stepper(options: EvaluationOptions, checkpoint: str | Path, variant: str = "full") -> Runner:
    """The default backend and every variant other than ``full`` run the PyTorch reference
    through ``runtime.schedule.torch_stepper.TorchStepper``; otherwise a runtime backend runs the
    engines in ``--engines`` at their frame size, loaded as ``runtime.infer`` loads it (selection,
    first-use verification and the CPU thread plan within ``--threads``: runtime.loading)."""
    if options.backend == REFERENCE or variant != "full":
        import torch

        from runtime.schedule.torch_stepper import TorchStepper

        torch.set_num_threads(options.threads or torch.get_num_threads())
        model, _ = load_model(checkpoint, variant)
        keyframe, size = imported_keyframe(options, model)
        return Runner(TorchStepper(model, keyframe_scores=keyframe), size,
                      f"{REFERENCE} ({variant}, {Path(checkpoint).name}"
                      + (f", keyframe graph of {options.engines}" if keyframe else "") + ")",
                      list(model.config.class_names))
    from runtime.loading import load_backend

    manifest = engines_manifest(options)
    loaded = load_backend(options.backend, manifest, threads=options.threads, log=lambda line: print(line, file=sys.stderr),
                          precision=options.precision, verify="auto" if options.verify else "skip")
    backend = loaded.backend
    precision = getattr(backend, "run_precision", None) or options.precision
    return Runner(backend, tuple(backend.frame_size), f"{backend.name} ({loaded.why}; engines {options.engines})",
                  list(manifest.model["class_names"]), backend.name,
                  manifest.graphs.get("keyframe", {}).get("precision") == "int8", precision)


def imported_keyframe(options: EvaluationOptions, model):
    """(keyframe scores of uint8 frames, the engines' frame size) for a model whose keyframe net is
    an imported ONNX model (``build_engines --keyframe-onnx``): its engines folder's keyframe graph
    in onnxruntime; (None, None) for the project's own keyframe nets."""
    if not model.config.keyframe_import:
        return None, None
    from engine_format.manifest import verify_file
    from engine_format.sessions import keyframe_scores

    if options.engines is None:
        raise UserError("the checkpoint's keyframe net is an imported ONNX model (build_engines --keyframe-onnx): "
                        "give --engines DIR, the folder built with it, for its keyframe graph")
    manifest = engines_manifest(options)
    graph = verify_file(manifest, manifest.graphs["keyframe"], "graph")
    return keyframe_scores(graph, threads=options.threads), tuple(manifest.frame_size)


def engines_manifest(options: EvaluationOptions):
    from engine_format.manifest import load_manifest

    if options.engines is None:
        raise UserError(f"--backend {options.backend} runs built engines: give --engines DIR (see python -m export.build_engines)")
    return load_manifest(options.engines)


def same_keyframe_net(a: str | Path, b: str | Path, atol: float = 1e-2) -> bool:
    """Whether two checkpoints hold the same keyframe weights (up to FP16 storage)."""
    from gsvnet.checkpoint import read_checkpoint

    if Path(a) == Path(b):
        return True
    sa, sb = read_checkpoint(a)["state_dict"], read_checkpoint(b)["state_dict"]
    keys = [k for k in sa if k.startswith("keyframe.")]
    return all(k in sb and sa[k].shape == sb[k].shape and
               bool((sa[k].double() - sb[k].double()).abs().max() <= atol * (1 + sa[k].double().abs().max()))
               for k in keys)


# ---- commands -------------------------------------------------------------------------------
def evaluate_camvid(options: CamVidOptions) -> dict:
    from gsvnet.datasets.camvid import NUM_CLASSES, VOID, load_split
    from evaluation.protocol import keyframe_confusion

    runner = make_stepper(options, options.checkpoint)
    size, described = runner.frame_size or tuple(options.size), runner.description
    frames = load_split(options.data, options.split, options.limit)
    started = time.time()
    cm = keyframe_confusion(runner.stepper, frames, size, NUM_CLASSES, VOID)
    names = runner.class_names
    result = {"split": options.split, "images": len(frames), "frame_size": list(size),
              "label_size": list(frames[0].label.shape), "backend": described, "checkpoint": str(options.checkpoint),
              "miou": cm.miou(), "pixel_accuracy": cm.pixel_accuracy(),
              "iou": {n: float(v) for n, v in zip(names, cm.iou())}, "seconds": round(time.time() - started, 1)}
    print(f"CamVid {options.split}: {len(frames)} images at {size[0]}x{size[1]}, scored at "
          f"{result['label_size'][0]}x{result['label_size'][1]}, {described}")
    print(format_rows([(n, v) for n, v in result["iou"].items()] + [("mean", result["miou"])], ("class", "IoU %")))
    # the reference at the native size is "camvid"; other sizes and backends get their own
    # sections ("camvid_272x360", "camvid_onnxruntime") so that all of them are kept side by side
    key = "camvid" + ("" if list(size) == result["label_size"] else f"_{size[0]}x{size[1]}")
    key += runner.section_suffix
    return {key: result}


#: propagation rows: (row name, variant of gsvnet.variants); without_intra needs its own checkpoint
ROWS = (("gsvnet", "full"), ("without_intra", "no_intra"), ("warp_only", "warp"), ("hold", "hold"))


def propagation_rows(options: CamVidSequenceOptions | VideoOptions, main_runner: Runner, frame: Callable[[int], np.ndarray],
                     reference: Callable[[int], "np.ndarray | None"], keyframes: range, last_frame: int,
                     ignore: int | None) -> dict[str, dict]:
    """The paper's protocol (evaluation.protocol) for every row of ROWS: distances 0..max_distance,
    intervals l = 1..max_distance. GSVNet runs on the chosen backend, the ablations on the reference."""
    from evaluation.protocol import distance_confusions, summarise

    distances = list(range(0, options.max_distance + 1))
    rows = {}
    for name, variant in ROWS:
        checkpoint = options.no_intra_checkpoint if variant == "no_intra" else options.checkpoint
        if checkpoint is None:
            continue
        runner = main_runner if variant == "full" else make_stepper(options, checkpoint, variant)
        if not same_keyframe_net(options.checkpoint, checkpoint):
            print(f"warning: {checkpoint} has a different keyframe net than {options.checkpoint}; "
                  "its rows are not comparable", file=sys.stderr)
        started = time.time()
        cms = distance_confusions(runner.stepper, frame, reference, keyframes, distances,
                                  len(main_runner.class_names), ignore, last_frame)
        rows[name] = {"variant": variant, "checkpoint": str(checkpoint), "backend": runner.description,
                      **summarise(cms, options.max_distance), "seconds": round(time.time() - started, 1)}
    return rows


def evaluate_camvid_sequence(options: CamVidSequenceOptions) -> dict:
    """Propagation against ground truth on the labelled 15 Hz CamVid val sequence: every labelled
    frame t of the chosen half with t >= max_distance is scored at every distance d = 0..max_distance
    (keyframe t-d, labels propagated d steps), full label resolution, void ignored."""
    from gsvnet.datasets.camvid import VOID, load_split, sequence_half
    from evaluation.protocol import resize_frame

    main_runner = make_stepper(options, options.checkpoint)
    size = main_runner.frame_size or tuple(options.size)
    frames = load_split(options.data, "val")
    half = sequence_half(list(range(len(frames))), options.half)
    targets = [t for t in half if t >= options.max_distance]
    if not targets:
        raise UserError(f"the {options.half} half of {options.data}/val has no frame with {options.max_distance} frames before it")
    target_set = set(targets)
    rows = propagation_rows(options, main_runner, lambda t: resize_frame(frames[t].image, size),
                            lambda t: frames[t].label if t in target_set else None,
                            range(targets[0] - options.max_distance, targets[-1] + 1), targets[-1], VOID)
    print(f"propagation on the CamVid val sequence, {options.half} half: {len(targets)} labelled frames "
          f"({frames[targets[0]].name}..{frames[targets[-1]].name}) at distances 0..{options.max_distance}, frames fed at "
          f"{size[0]}x{size[1]}, scored against ground truth at {frames[0].label.shape[0]}x{frames[0].label.shape[1]}; mIoU %")
    print(propagation_table(rows, options.max_distance))
    return {"camvid_sequence" + main_runner.section_suffix: {
        "data": str(options.data), "half": options.half, "frames": [frames[targets[0]].name, frames[targets[-1]].name],
        "targets": len(targets), "frame_size": list(size), "label_size": list(frames[0].label.shape),
        "reference": "ground truth (11 classes, void ignored)", "rows": rows}}


def evaluate_video(options: VideoOptions) -> dict:
    """The same protocol on a clip's held-out end, the keyframe net's own prediction standing in for
    ground truth on every held-out frame t >= held.start + max_distance."""
    from evaluation.clips import holdout_split, read_video
    from evaluation.protocol import resize_frame

    main_runner = make_stepper(options, options.checkpoint)
    size, stepper = main_runner.frame_size or tuple(options.size), main_runner.stepper
    frames = read_video(options.video, size)
    _, held = holdout_split(len(frames), options.holdout)
    targets = range(held.start + options.max_distance, held.stop)
    reference = {t: np.asarray(stepper.labels(stepper.keyframe_step(frames[t][None]), size))[0] for t in targets}
    rows = propagation_rows(options, main_runner, lambda t: resize_frame(frames[t], size), reference.get,
                            range(held.start, held.stop), held.stop - 1, None)
    print(f"propagation on held-out frames {held.start}..{held.stop - 1} of {options.video} at {size[0]}x{size[1]}, "
          f"scored on {targets.start}..{targets.stop - 1} (reference: the keyframe net's own prediction; mIoU %)")
    print(propagation_table(rows, options.max_distance))
    speed = interval_fps(stepper, frames[held.start : held.stop], size, options.max_distance, options.fps) if options.fps else None
    if speed is not None:
        print("FPS on " + main_runner.description + ": " + ", ".join(
            f"l={l} {fps:.1f} ({speed['vs_every_frame'][l]:.2f}x)" for l, fps in speed["fps"].items()))
    # one section per clip and backend ("video_solidWhiteRight", "video_solidWhiteRight_onnxruntime")
    return {f"video_{Path(options.video).stem}{main_runner.section_suffix}": {"video": str(options.video), "frame_size": list(size), "heldout_frames": [held.start, held.stop],
                      "scored_frames": [targets.start, targets.stop], "holdout": options.holdout,
                      "reference": "keyframe net per-frame prediction", "rows": rows,
                      **({"speed": speed} if speed is not None else {})}}


def interval_fps(stepper, frames: np.ndarray, size: tuple[int, int], max_interval: int, rounds: int) -> dict:
    """Frames per second of ``stepper`` over ``frames`` (keyframe step every l-th frame, labels at
    ``size``) for l = 1..max_interval, the intervals interleaved in each of ``rounds`` rounds after
    one untimed warm-up pass; medians, and each l's ratio to l = 1 (the keyframe net on every
    frame) from the same rounds."""
    from runtime.schedule import KeyframeScheduler

    def run(interval: int) -> float:
        started = time.perf_counter()
        for _ in KeyframeScheduler(stepper, interval, tuple(size)).run(f[None] for f in frames):
            pass
        return len(frames) / (time.perf_counter() - started)

    intervals = list(range(1, max_interval + 1))
    run(max_interval)  # warm-up: sessions, caches, thread pools
    times: dict[int, list[float]] = {l: [] for l in intervals}
    for r in range(rounds):
        for l in intervals[r % len(intervals):] + intervals[: r % len(intervals)]:
            times[l].append(run(l))
    fps = {str(l): float(np.median(v)) for l, v in times.items()}
    return {"frames": len(frames), "rounds": rounds, "fps": fps,
            "vs_every_frame": {l: v / fps["1"] for l, v in fps.items()}, "load_average_1min": _load()}


def _load() -> float | None:
    try:
        import os

        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def evaluate_cityscapes(options: CityscapesOptions) -> dict:
    from gsvnet.datasets.cityscapes import IGNORE, NUM_CLASSES, find_snippets, read_train_ids
    from gsvnet.datasets.camvid import read_image
    from evaluation.protocol import distance_confusions, summarise
    from evaluation.protocol import resize_frame

    runner = make_stepper(options, options.checkpoint)
    stepper, fixed, described = runner.stepper, runner.frame_size, runner.description
    snippets, skipped = find_snippets(options.root, options.split, options.max_distance)
    snippets = snippets[: options.limit] if options.limit else snippets
    if not snippets:
        raise UserError(f"no complete Cityscapes snippets under {options.root} ({len(skipped)} skipped)")
    distances = list(range(0, options.max_distance + 1))
    cms = None
    for snippet in snippets:
        truth = read_train_ids(snippet)
        size = fixed or tuple(truth.shape)
        if size[0] % 8 or size[1] % 8:
            raise UserError(f"Cityscapes frames must be multiples of 8 (got {size}); pass a backend with a fixed size")
        keyframes = [snippet.frame - d for d in distances]
        cms = distance_confusions(stepper, lambda t: resize_frame(read_image(snippet.image_path(t)), size),
                                  lambda t: truth if t == snippet.frame else None, keyframes, distances,
                                  NUM_CLASSES, IGNORE, snippet.frame, cms)
    summary = summarise(cms, options.max_distance)
    print(f"Cityscapes {options.split}: {len(snippets)} snippets ({len(skipped)} skipped), {described}; mIoU %")
    print(propagation_table({"gsvnet": summary}, options.max_distance))
    return {"cityscapes": {"root": str(options.root), "split": options.split, "snippets": len(snippets),
                           "skipped": len(skipped), "backend": described, **summary}}


# ---- output ---------------------------------------------------------------------------------
def format_rows(rows: list[tuple[str, float]], header: tuple[str, str]) -> str:
    width = max(len(header[0]), *(len(n) for n, _ in rows))
    lines = [f"{header[0]:<{width}}  {header[1]:>7}"]
    lines += [f"{n:<{width}}  {100 * v:7.1f}" for n, v in rows]
    return "\n".join(lines)


def propagation_table(rows: dict[str, dict], max_interval: int) -> str:
    """mIoU by distance d = 0..max_interval and avg/min per keyframe interval l = 1..max_interval
    (l covers distances 0..l-1), one row per method."""
    width = max(len("method"), *(len(n) for n in rows))
    distances = sorted(int(d) for d in next(iter(rows.values()))["miou_by_distance"])
    head = f"{'method':<{width}}  " + "  ".join(f"d={d:<3}" for d in distances) + "   " + \
        "  ".join(f"l={l} avg/min" for l in range(1, max_interval + 1))
    lines = [head]
    for name, r in rows.items():
        by_d = [f"{100 * r['miou_by_distance'][str(d)]:5.1f}" for d in distances]
        cells = [f"{100 * r['avg'][str(l)]:5.1f}/{100 * r['min'][str(l)]:5.1f}" for l in range(1, max_interval + 1)]
        lines.append(f"{name:<{width}}  " + "  ".join(by_d) + "   " + "  ".join(f"{c:>13}" for c in cells))
    return "\n".join(lines)


def merge_json(path: Path, section: dict, command: str) -> None:
    """Merge ``section`` into the JSON file at ``path``, recording ``command`` and the machine per key."""
    from gsvnet.provenance import git_commit, machine_description

    data = json.loads(path.read_text()) if path.is_file() else {}
    data.setdefault("runs", {})
    for key, value in section.items():
        data[key] = value
        data["runs"][key] = {"command": command,
                             "date": datetime.date.today().isoformat(), "commit": git_commit(),
                             "machine": machine_description()}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=1, default=float) + "\n")
    tmp.replace(path)
    print(f"wrote {path}")


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--checkpoint", default=None, help="GSVNet checkpoint (default: the engines' own with an engines "
                        "backend, else the shipped gsvnet/weights/swiftnet_r18-camvid.pt)")
    common.add_argument("--backend", default=REFERENCE, help=f"{REFERENCE} (PyTorch, any frame size) or a runtime backend "
                        "name (auto, onnxruntime, torch, tensorrt, ...) which runs the engines in --engines at their frame "
                        "size, loaded as runtime.infer loads it (first-use verification, CPU thread plan)")
    common.add_argument("--engines", default=None, help="engines folder for --backend other than torch-reference")
    common.add_argument("--precision", default=None, choices=("f32", "bf16", "int8"),
                        help="the run's precision on an engines backend, as runtime.infer --precision (default: the "
                             "backend's own; with auto, the CPU choice)")
    common.add_argument("--no-verify", dest="verify", action="store_false",
                        help="skip runtime.infer's first-use check of the engines backend, to measure the accuracy of "
                             "one it refuses (e.g. OpenVINO INT8, which differs from the onnxruntime INT8 labels)")
    common.add_argument("--threads", type=int, default=2, help="CPU threads")
    common.add_argument("--limit", type=int, default=None, help="evaluate only the first N images/snippets")
    common.add_argument("--json", default=str(default_json()),
                        help="JSON file the results are merged into ('' for none; default: "
                             "benchmarks/results/accuracy-<today>.json)")
    p = argparse.ArgumentParser(prog="python -m evaluation", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    c = sub.add_parser("camvid", parents=[common], help="per-frame mIoU on CamVid", formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    c.add_argument("--data", default=str(CAMVID), help="CamVid root")
    c.add_argument("--split", default="test", choices=("train", "val", "test"), help="split to score")
    c.add_argument("--size", type=int, nargs=2, default=(360, 480), metavar=("H", "W"), help="frame size fed to GSVNet (multiples of 8)")
    q = sub.add_parser("camvid-sequence", parents=[common], help="propagation against ground truth on the labelled "
                       "CamVid val sequence", formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    q.add_argument("--data", default=str(CAMVID), help="CamVid root (its val split is the sequence)")
    q.add_argument("--half", default="second", choices=("first", "second", "all"),
                   help="first: model selection; second: what is reported (never trained on either)")
    q.add_argument("--size", type=int, nargs=2, default=(360, 480), metavar=("H", "W"), help="frame size fed to GSVNet (multiples of 8)")
    q.add_argument("--max-distance", type=int, default=5, help="largest distance d (and keyframe interval l)")
    q.add_argument("--no-intra-checkpoint", default=None, help="checkpoint trained with --variant no_intra (Table 4 ablation)")
    v = sub.add_parser("video", parents=[common], help="propagation avg/min on a clip's held-out frames",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    v.add_argument("--video", default=str(CLIP), help="clip")
    v.add_argument("--size", type=int, nargs=2, default=(544, 960), metavar=("H", "W"), help="engine frame size")
    v.add_argument("--holdout", type=float, default=0.3, help="the last fraction of frames that training did not see")
    v.add_argument("--max-distance", type=int, default=5, help="largest number of propagated frames l")
    v.add_argument("--no-intra-checkpoint", default=None, help="checkpoint trained with --variant no_intra (Table 4 ablation)")
    v.add_argument("--fps", type=int, default=0, metavar="ROUNDS",
                   help="also time GSVNet on the held-out frames at every l = 1..max-distance on the same backend "
                        "(l = 1: the keyframe net on every frame), ROUNDS interleaved rounds, medians and ratios to l = 1")
    s = sub.add_parser("cityscapes", parents=[common], help="the paper's Cityscapes protocol",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    s.add_argument("--root", required=True, help="folder with leftImg8bit_sequence/ and gtFine/")
    s.add_argument("--split", default="val", help="split folder name")
    s.add_argument("--max-distance", type=int, default=5, help="largest l (keyframe at frame 20-l)")
    return p


def parse_options(argv: list[str] | None = None) -> EvaluationOptions:
    """The command line as the typed options of its command (argparse exits with its usage line on
    a bad flag; a value out of range raises UserError)."""
    from evaluation.protocol import resize_frame  # noqa: F401  (fail early if training deps are missing)

    args = build_parser().parse_args(argv)
    kind = COMMAND_OPTIONS[args.command]
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(kind)}
    return kind(**{**values, "json": Path(args.json) if args.json else None})


def resolved_checkpoint(options: EvaluationOptions) -> Path:
    """``--checkpoint``, else the checkpoint the engines were built from (for the variants), else the shipped one."""
    if options.checkpoint is not None:
        return options.checkpoint
    if options.backend != REFERENCE and options.engines:
        manifest = engines_manifest(options)
        return manifest.file(manifest.data["checkpoint"]["file"])
    shipped = default_checkpoint()
    if shipped is None:
        raise UserError("no --checkpoint given and no shipped checkpoint in gsvnet/weights/")
    return shipped


COMMANDS: dict[str, Callable[..., dict]] = {
    "camvid": evaluate_camvid, "camvid-sequence": evaluate_camvid_sequence, "video": evaluate_video,
    "cityscapes": evaluate_cityscapes}


def run(options: EvaluationOptions) -> dict:
    """Run the command ``options`` are for, print its table, merge its section into
    ``options.json`` (unless None) and return the section (section name -> results)."""
    section = COMMANDS[options.command](dataclasses.replace(options, checkpoint=resolved_checkpoint(options)))
    if options.json is not None:
        merge_json(options.json, section, options.command_line())
    return section


def main(argv: list[str] | None = None) -> dict:
    """``python -m evaluation`` without the exit status: the section ``run`` returns."""
    return run(parse_options(argv))


def cli(argv: list[str] | None = None) -> int:
    """``main`` for the command line: user errors (data, engines, checkpoint, backend) as one line, exit 2."""
    from engine_format.manifest import ManifestError
    from gsvnet.checkpoint import CheckpointError

    try:
        main(argv)
    except (UserError, ManifestError, CheckpointError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(cli())
