"""Measured accuracy of GSVNet, through the PyTorch reference or a deployed backend.

    python -m runtime.evaluate camvid     [--data ../shared/data/camvid] [--split test] [--size 360 480]
    python -m runtime.evaluate video      [--video ../shared/data/videos/solidWhiteRight.mp4] [--no-intra-checkpoint P]
    python -m runtime.evaluate cityscapes --root /path/to/cityscapes [--split val] [--checkpoint P]

camvid: per-frame mIoU and per-class IoU (void ignored) at the labels' full resolution, keyframe
path only. video: the paper's avg/min propagation protocol on the held-out end of a clip, with
the keyframe net's own per-frame prediction standing in for ground truth, for GSVNet, the
no-intra ablation (a separately trained checkpoint), a warp-only baseline (flow net, no guided
filter) and a hold baseline (no motion). cityscapes: the same protocol against gtFine at frame 20
(keyframe at 20-l, l = 0..5), 19 train ids, 255 ignored, full resolution.
Each command prints a table and merges its section into the JSON file given by --json.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import time
from pathlib import Path
from dataclasses import dataclass
from typing import Callable

import numpy as np

REPO = Path(__file__).resolve().parents[1]
REFERENCE = "torch-reference"


# ---- steppers -------------------------------------------------------------------------------
def default_checkpoint() -> Path | None:
    from gsvnet.pretrained import default_checkpoint as shipped

    return shipped("swiftnet_r18")


def load_model(checkpoint: str | Path, variant: str = "full"):
    """The checkpoint as a GSVNet of ``variant`` (training.variants), FP32, eval mode."""
    from gsvnet.checkpoint import read_checkpoint
    from gsvnet import GSVNetConfig
    from gsvnet.variants import build_variant

    payload = read_checkpoint(checkpoint)
    return build_variant(variant, GSVNetConfig.from_dict(payload["config"]), payload["state_dict"]), payload.get("metadata", {})


@dataclass
class Runner:
    stepper: object  # gsvnet.loop.Stepper on numpy uint8 frames
    frame_size: tuple[int, int] | None  # None: any multiple of 8 (the PyTorch reference)
    description: str
    class_names: list[str]
    backend: str = REFERENCE  # the resolved backend name


def make_stepper(args: argparse.Namespace, checkpoint: str | Path, variant: str = "full") -> Runner:
    """The default backend and every variant other than ``full`` run the PyTorch reference
    through ``training.torch_stepper.TorchStepper``; otherwise a ``runtime.backends`` backend runs
    the engines in ``--engines`` at their frame size."""
    if args.backend == REFERENCE or variant != "full":
        import torch

        from gsvnet.stepper import TorchStepper

        torch.set_num_threads(args.threads or torch.get_num_threads())
        model, _ = load_model(checkpoint, variant)
        return Runner(TorchStepper(model), None, f"{REFERENCE} ({variant}, {Path(checkpoint).name})",
                      list(model.config.class_names))
    from runtime.backends import create_backend, select_backend

    manifest = engines_manifest(args)
    name, why = select_backend(args.backend, manifest)
    backend = create_backend(name, manifest, threads=args.threads, profile=False)
    return Runner(backend, tuple(backend.frame_size), f"{name} ({why}; engines {args.engines})",
                  list(manifest.model["class_names"]), name)


def engines_manifest(args: argparse.Namespace):
    from export.manifest import load_manifest

    if args.engines is None:
        sys.exit(f"--backend {args.backend} runs built engines: give --engines DIR (see python -m export.build_engines)")
    return load_manifest(args.engines)


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
def evaluate_camvid(args: argparse.Namespace) -> dict:
    from gsvnet.datasets.camvid import NUM_CLASSES, VOID, load_split
    from runtime.protocol import keyframe_confusion

    runner = make_stepper(args, args.checkpoint)
    size, described = runner.frame_size or tuple(args.size), runner.description
    frames = load_split(args.data, args.split, args.limit)
    started = time.time()
    cm = keyframe_confusion(runner.stepper, frames, size, NUM_CLASSES, VOID)
    names = runner.class_names
    result = {"split": args.split, "images": len(frames), "frame_size": list(size),
              "label_size": list(frames[0].label.shape), "backend": described, "checkpoint": str(args.checkpoint),
              "miou": cm.miou(), "pixel_accuracy": cm.pixel_accuracy(),
              "iou": {n: float(v) for n, v in zip(names, cm.iou())}, "seconds": round(time.time() - started, 1)}
    print(f"CamVid {args.split}: {len(frames)} images at {size[0]}x{size[1]}, scored at "
          f"{result['label_size'][0]}x{result['label_size'][1]}, {described}")
    print(format_rows([(n, v) for n, v in result["iou"].items()] + [("mean", result["miou"])], ("class", "IoU %")))
    # the reference at the native size is "camvid"; other sizes and backends get their own
    # sections ("camvid_272x360", "camvid_onnxruntime") so that all of them are kept side by side
    key = "camvid" + ("" if list(size) == result["label_size"] else f"_{size[0]}x{size[1]}")
    key += "" if runner.backend == REFERENCE else f"_{runner.backend}"
    return {key: result}


def evaluate_video(args: argparse.Namespace) -> dict:
    from runtime.protocol import distance_confusions, summarise
    from runtime.protocol import resize_frame
    from runtime.clips import holdout_split, read_video

    main_runner = make_stepper(args, args.checkpoint)
    size, stepper = main_runner.frame_size or tuple(args.size), main_runner.stepper
    frames = read_video(args.video, size)
    _, held = holdout_split(len(frames), args.holdout)
    distances = list(range(0, args.max_distance + 1))
    # the keyframe net's own prediction on every held-out frame is the reference
    reference = {t: np.asarray(stepper.labels(stepper.keyframe_step(frames[t][None]), size))[0] for t in held}
    rows = {}
    candidates = [("GSVNet", args.checkpoint, "full")]
    if args.no_intra_checkpoint:
        candidates.append(("GSVNet without intra", args.no_intra_checkpoint, "no_intra"))
    candidates += [("warp only (no guided filter)", args.checkpoint, "warp"), ("hold (no motion)", args.checkpoint, "hold")]
    for title, checkpoint, variant in candidates:
        runner = main_runner if variant == "full" else make_stepper(args, checkpoint, variant)
        if not same_keyframe_net(args.checkpoint, checkpoint):
            print(f"warning: {checkpoint} has a different keyframe net than {args.checkpoint}; "
                  "its rows are not comparable", file=sys.stderr)
        started = time.time()
        cms = distance_confusions(runner.stepper, lambda t: resize_frame(frames[t], size), reference.get, held,
                                  distances, len(main_runner.class_names), None, held.stop - 1)
        rows[title] = {"variant": variant, "checkpoint": str(checkpoint), "backend": runner.description,
                       **summarise(cms, args.max_distance), "seconds": round(time.time() - started, 1)}
    print(f"propagation on held-out frames {held.start}..{held.stop - 1} of {args.video} at {size[0]}x{size[1]} "
          f"(reference: the keyframe net's own prediction; mIoU %)")
    print(propagation_table(rows, args.max_distance))
    return {"video": {"video": str(args.video), "frame_size": list(size), "heldout_frames": [held.start, held.stop],
                      "holdout": args.holdout, "reference": "keyframe net per-frame prediction", "rows": rows}}


def evaluate_cityscapes(args: argparse.Namespace) -> dict:
    from gsvnet.datasets.cityscapes import IGNORE, NUM_CLASSES, find_snippets, read_train_ids
    from gsvnet.datasets.camvid import read_image
    from runtime.protocol import distance_confusions, summarise
    from runtime.protocol import resize_frame

    runner = make_stepper(args, args.checkpoint)
    stepper, fixed, described = runner.stepper, runner.frame_size, runner.description
    snippets, skipped = find_snippets(args.root, args.split, args.max_distance)
    snippets = snippets[: args.limit] if args.limit else snippets
    if not snippets:
        sys.exit(f"no complete Cityscapes snippets under {args.root} ({len(skipped)} skipped)")
    distances = list(range(0, args.max_distance + 1))
    cms = None
    for snippet in snippets:
        truth = read_train_ids(snippet)
        size = fixed or tuple(truth.shape)
        if size[0] % 8 or size[1] % 8:
            sys.exit(f"Cityscapes frames must be multiples of 8 (got {size}); pass a backend with a fixed size")
        keyframes = [snippet.frame - d for d in distances]
        cms = distance_confusions(stepper, lambda t: resize_frame(read_image(snippet.image_path(t)), size),
                                  lambda t: truth if t == snippet.frame else None, keyframes, distances,
                                  NUM_CLASSES, IGNORE, snippet.frame, cms)
    summary = summarise(cms, args.max_distance)
    print(f"Cityscapes {args.split}: {len(snippets)} snippets ({len(skipped)} skipped), {described}; mIoU %")
    print(propagation_table({"GSVNet": summary}, args.max_distance))
    return {"cityscapes": {"root": str(args.root), "split": args.split, "snippets": len(snippets),
                           "skipped": len(skipped), "backend": described, **summary}}


# ---- output ---------------------------------------------------------------------------------
def format_rows(rows: list[tuple[str, float]], header: tuple[str, str]) -> str:
    width = max(len(header[0]), *(len(n) for n, _ in rows))
    lines = [f"{header[0]:<{width}}  {header[1]:>7}"]
    lines += [f"{n:<{width}}  {100 * v:7.1f}" for n, v in rows]
    return "\n".join(lines)


def propagation_table(rows: dict[str, dict], max_distance: int) -> str:
    """avg/min for l = 1..max_distance (l frames propagated after a keyframe), one row per method."""
    width = max(len("method"), *(len(n) for n in rows))
    head = f"{'method':<{width}}  " + "  ".join(f"l={l} avg/min" for l in range(1, max_distance + 1))
    lines = [head]
    for name, r in rows.items():
        cells = [f"{100 * r['avg'][l]:5.1f}/{100 * r['min'][l]:5.1f}" for l in range(1, max_distance + 1)]
        lines.append(f"{name:<{width}}  " + "  ".join(f"{c:>13}" for c in cells))
    return "\n".join(lines)


def merge_json(path: Path, section: dict, args: argparse.Namespace) -> None:
    from gsvnet.provenance import git_commit, machine_description

    data = json.loads(path.read_text()) if path.is_file() else {}
    data.setdefault("runs", {})
    for key, value in section.items():
        data[key] = value
        data["runs"][key] = {"command": "python -m runtime.evaluate " + " ".join(args.argv),
                             "date": datetime.date.today().isoformat(), "commit": git_commit(),
                             "machine": machine_description()}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=1, default=float) + "\n")
    tmp.replace(path)
    print(f"wrote {path}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from runtime.protocol import resize_frame  # noqa: F401  (fail early if training deps are missing)

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--checkpoint", default=None, help="GSVNet checkpoint (default: the shipped gsvnet/weights/swiftnet_r18-camvid.pt)")
    common.add_argument("--backend", default=REFERENCE, help=f"{REFERENCE} (PyTorch, any frame size) or a runtime backend "
                        "name (auto, onnxruntime, torch, tensorrt, ...) which runs the engines in --engines at their frame size")
    common.add_argument("--engines", default=None, help="engines folder for --backend other than torch-reference")
    common.add_argument("--threads", type=int, default=2, help="CPU threads")
    common.add_argument("--limit", type=int, default=None, help="evaluate only the first N images/snippets")
    common.add_argument("--json", default=str(REPO / "benchmarks" / "results" / f"accuracy-{datetime.date.today().isoformat()}.json"),
                        help="JSON file the results are merged into (default: benchmarks/results/accuracy-<today>.json)")
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    c = sub.add_parser("camvid", parents=[common], help="per-frame mIoU on CamVid", formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    c.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "camvid"), help="CamVid root")
    c.add_argument("--split", default="test", choices=("train", "val", "test"), help="split to score")
    c.add_argument("--size", type=int, nargs=2, default=(360, 480), metavar=("H", "W"), help="frame size fed to GSVNet (multiples of 8)")
    v = sub.add_parser("video", parents=[common], help="propagation avg/min on a clip's held-out frames",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    v.add_argument("--video", default=str(REPO.parent / "shared" / "data" / "videos" / "solidWhiteRight.mp4"), help="clip")
    v.add_argument("--size", type=int, nargs=2, default=(544, 960), metavar=("H", "W"), help="engine frame size")
    v.add_argument("--holdout", type=float, default=0.3, help="the last fraction of frames that training did not see")
    v.add_argument("--max-distance", type=int, default=5, help="largest number of propagated frames l")
    v.add_argument("--no-intra-checkpoint", default=None, help="checkpoint trained with --variant no_intra (Table 4 ablation)")
    s = sub.add_parser("cityscapes", parents=[common], help="the paper's Cityscapes protocol",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    s.add_argument("--root", required=True, help="folder with leftImg8bit_sequence/ and gtFine/")
    s.add_argument("--split", default="val", help="split folder name")
    s.add_argument("--max-distance", type=int, default=5, help="largest l (keyframe at frame 20-l)")
    args = p.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    if args.checkpoint is None and args.backend != REFERENCE and args.engines:
        manifest = engines_manifest(args)  # the checkpoint the engines were built from (for the variants)
        args.checkpoint = manifest.file(manifest.data["checkpoint"]["file"])
    if args.checkpoint is None:
        args.checkpoint = default_checkpoint()
        if args.checkpoint is None:
            p.error("no --checkpoint given and no shipped checkpoint in gsvnet/weights/")
    return args


COMMANDS: dict[str, Callable[[argparse.Namespace], dict]] = {
    "camvid": evaluate_camvid, "video": evaluate_video, "cityscapes": evaluate_cityscapes}


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    section = COMMANDS[args.command](args)
    if args.json:
        merge_json(Path(args.json), section, args)
    return section


if __name__ == "__main__":
    main()
