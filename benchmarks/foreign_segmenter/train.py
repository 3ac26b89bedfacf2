"""``python -m benchmarks.foreign_segmenter.train``: train ERFNet here (no pretrained weights can be
downloaded) and export it to ONNX as a user would hand it to ``build_engines --keyframe-onnx``.

Training data: CamVid train with its ground truth, and the first 70% of each highway clip labelled
by the shipped SwiftNet-R18 GSVNet keyframe net at 544x960 (pseudo-labels: the clips have no
ground truth). The clips' last 30% are never seen. Crops of 256x448 from CamVid at 360x480 and the
clips at 272x480, horizontal flips, AdamW with a poly schedule, cross-entropy (CamVid void ignored).
The model's input convention is ours to choose and is not GSVNet's: RGB on 0..1, mean 0.5, std 0.25.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from evaluation.clips import holdout_split, read_video
from evaluation.metrics import ConfusionMatrix
from gsvnet import load_checkpoint
from gsvnet.datasets.camvid import VOID, load_split
from gsvnet.pretrained import default_checkpoint

from .erfnet import ERFNet

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
CLIPS = (DATA / "videos" / "solidWhiteRight.mp4", DATA / "videos" / "project_video_short.mp4")
MEAN, STD = 0.5, 0.25
CROP = (256, 448)


def normalise(rgb: torch.Tensor) -> torch.Tensor:
    """uint8 [N,H,W,3] -> the model's input [N,3,H,W]."""
    return (rgb.permute(0, 3, 1, 2).float() / 255.0 - MEAN) / STD


def clip_pseudo_labels(clip: Path, teacher, holdout: float) -> tuple[np.ndarray, np.ndarray]:
    """(frames uint8 [T,272,480,3], teacher labels uint8 [T,272,480]) of the clip's training part."""
    frames = read_video(clip, (544, 960))
    train, _ = holdout_split(len(frames), holdout)
    frames = frames[train.start:train.stop]
    labels = []
    with torch.no_grad():
        for i in range(0, len(frames), 4):
            scores = teacher.keyframe_scores(torch.from_numpy(frames[i:i + 4]))
            labels.append(teacher.scores_to_labels(scores, (272, 480)).numpy())
    small = F.interpolate(torch.from_numpy(frames).permute(0, 3, 1, 2).float(), size=(272, 480),
                          mode="bilinear", antialias=True, align_corners=False)
    return small.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy(), np.concatenate(labels)


def crops(images: np.ndarray, labels: np.ndarray, count: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``count`` random 256x448 crops (random horizontal flip) of images [T,H,W,3] and labels [T,H,W]."""
    xs, ys = [], []
    for _ in range(count):
        i = rng.integers(len(images))
        h, w = images.shape[1:3]
        top, left = rng.integers(h - CROP[0] + 1), rng.integers(w - CROP[1] + 1)
        x = images[i, top:top + CROP[0], left:left + CROP[1]]
        y = labels[i, top:top + CROP[0], left:left + CROP[1]]
        if rng.random() < 0.5:
            x, y = x[:, ::-1], y[:, ::-1]
        xs.append(np.ascontiguousarray(x))
        ys.append(np.ascontiguousarray(y))
    return np.stack(xs), np.stack(ys)


def camvid_miou(model: ERFNet, frames) -> float:
    """mIoU (%) of the model's labels against CamVid ground truth over the 11 classes (void ignored)."""
    confusion = ConfusionMatrix(VOID, ignore=VOID)
    with torch.no_grad():
        for f in frames:
            confusion.update(f.label, model(normalise(torch.from_numpy(f.image[None]))).argmax(1)[0].numpy())
    return 100 * confusion.miou()


def export_onnx(model: ERFNet, path: Path, size: tuple[int, int]) -> None:
    """Export as a user would: one float input with a dynamic batch, one score output."""
    model.eval()
    torch.onnx.export(model, (torch.rand(1, 3, *size),), str(path), input_names=["image"], output_names=["scores"],
                      dynamic_axes={"image": {0: "N"}, "scores": {0: "N"}}, opset_version=17, dynamo=False)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="runs/erfnet", help="folder for erfnet.pt, erfnet.onnx, summary.json")
    p.add_argument("--camvid", default=str(DATA / "camvid"))
    p.add_argument("--steps", type=int, default=900)
    p.add_argument("--batch-size", type=int, default=4, help="half CamVid, half clip crops")
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--holdout", type=float, default=0.3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    camvid = load_split(args.camvid, "train")
    cam_x = np.stack([f.image for f in camvid])
    cam_y = np.stack([f.label for f in camvid])
    teacher = load_checkpoint(default_checkpoint("swiftnet_r18"))[0].eval()
    parts = [clip_pseudo_labels(c, teacher, args.holdout) for c in CLIPS]
    clip_x = np.concatenate([x for x, _ in parts])
    clip_y = np.concatenate([y for _, y in parts])
    print(f"CamVid train {len(cam_x)} images, clip training frames {len(clip_x)}", flush=True)

    model = ERFNet(VOID)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    state = out / "erfnet.pt"
    start = 0
    if state.is_file():
        saved = torch.load(state, map_location="cpu", weights_only=True)
        model.load_state_dict(saved["model"])
        opt.load_state_dict(saved["opt"])
        start = saved["step"]
        rng = np.random.default_rng(args.seed + start)
        print(f"resumed at step {start}", flush=True)
    model.train()
    t0 = time.time()
    for step in range(start, args.steps):
        for g in opt.param_groups:
            g["lr"] = args.lr * (1 - step / args.steps) ** 0.9
        half = args.batch_size // 2
        xa, ya = crops(cam_x, cam_y, half, rng)
        xb, yb = crops(clip_x, clip_y, args.batch_size - half, rng)
        x = normalise(torch.from_numpy(np.concatenate([xa, xb])))
        y = torch.from_numpy(np.concatenate([ya, yb]).astype(np.int64))
        loss = F.cross_entropy(model(x), y, ignore_index=VOID)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if (step + 1) % 25 == 0:
            print(f"step {step + 1}/{args.steps} loss {loss.item():.3f} {time.time() - t0:.0f} s", flush=True)
        if (step + 1) % 100 == 0 or step + 1 == args.steps:
            torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "step": step + 1}, state)
    model.eval()
    summary = {"architecture": "ERFNet (Romera et al., IEEE T-ITS 2018), written here",
               "parameters": sum(p.numel() for p in model.parameters()), "steps": args.steps,
               "batch_size": args.batch_size, "seed": args.seed, "input": {"mean": [MEAN] * 3, "std": [STD] * 3, "rgb": True},
               "camvid_test_miou": camvid_miou(model, load_split(args.camvid, "test")),
               "train_seconds": time.time() - t0}
    export_onnx(model, out / "erfnet.onnx", (544, 960))
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary), flush=True)
    return summary


if __name__ == "__main__":
    main()
