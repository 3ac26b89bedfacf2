"""Train GSVNet's propagation nets (flow, intra, guiding) with the keyframe net frozen.

    python -m training.propagation --checkpoint runs/keyframe/best.pt --out runs/propagation
    python -m training.propagation --teacher-onnx MY_SEGMENTER.onnx --videos MY_VIDEOS... --out runs/mine

The second form distils the nets for your own ONNX segmenter on unlabelled video (training/distill.py);
what follows describes the first, for the shipped CamVid keyframe net.

What is trained matches what is scored (python -m evaluation camvid-sequence):
1. Data, forward in time only (as the deployed pipeline plays video):
   - real clips (--videos; their first 1 - holdout of frames): soft targets, the frozen keyframe
     net's softmax on every frame (cached once with OpenCV DIS flows at 1/8 resolution);
   - ground truth: CamVid train images turned into short sequences by synthetic ego-motion
     (training.egomotion), a fraction --synthetic of the batches.
   The CamVid val sequence is never trained on: its first half selects the model.
2. Flow pre-training: L1 to DIS on the clips and to the exact flow of the ego-motion sequences
   (backward flow in 1/8-grid pixels).
3. Intra pre-training: the intra net alone, against the teacher on clip frames and the ground
   truth of CamVid train images, so the intra candidate starts useful instead of dying.
4. End to end over l steps from a keyframe (--lengths: always max-interval, so that every
   distance weighs the same in the loss, or l ~ U{1..max-interval}): at every step the scores are
   upsampled to the frame size and scored by KL to the teacher's softmax (clips) or cross-entropy
   to the ground truth (synthetic), optionally class-weighted (--class-weights). The guiding and intra nets
   learn at --lr, the flow net at --flow-lr-e2e (0: frozen), like the official 0.04 vs 1e-4.
   The guiding net starts with every candidate alive (BatchNorm gain 1, positive biases, the
   unshifted candidate largest); candidate shares are logged and a dead one is reported.
5. Before the first update and after every --eval-every updates (and the last): the ground-truth
   protocol on the first half of the val sequence for GSVNet and the warp-only baseline (same
   flow net); OUT/final.pt keeps the best by the mean of D(1..4). OUT/summary.json holds the
   selection history and the candidates' weight shares.
"""

from __future__ import annotations

import argparse
import glob
import json
import time
from pathlib import Path

import numpy as np
import torch

from gsvnet import GSVNet, load_checkpoint
from gsvnet.datasets.camvid import NUM_CLASSES, load_split
from gsvnet.model import GSVNetConfig
from gsvnet.variants import build_variant
from engine_format.sizes import parse_any_size
from runtime.arguments import positive_int
from evaluation.clips import holdout_split

from .clip import PreparedClip, prepare_clip
from .losses import CLASS_WEIGHTS, class_frequencies, class_weights
from .selection import SelectionSet
from .propagation_loop import (Objective, heldout_flow_l1, init_guide, pretrain_flow, pretrain_intra,
                               train_end_to_end)
from .state import pick_device, start_run

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
DEFAULT_VIDEOS = [str(DATA / "videos" / "solidWhiteRight.mp4"), str(DATA / "videos" / "project_video_short.mp4")]


def keyframe_clip(model: GSVNet, video: str | Path, size: tuple[int, int], cache: Path | None) -> PreparedClip:
    """The clip prepared once with the frozen keyframe net (on the model's device) and DIS."""
    key = {"video": str(Path(video).resolve()), "size": list(size),
           "keyframe": float(sum(p.double().sum() for p in model.keyframe.state_dict().values() if p.is_floating_point())),
           "resampling": model.config.resampling}
    model.eval()

    def on_device(x: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(x).to(model.mean.device)

    return prepare_clip(video, size, lambda x: model.downsample(on_device(x)).cpu(),
                        lambda x: model.keyframe_scores(on_device(x)).cpu(), cache, key)


def student(teacher: GSVNet, variant: str, intra_channels: int | None = None) -> GSVNet:
    """The model to train: ``variant`` with ``teacher``'s weights, and an intra net of
    ``intra_channels`` (freshly initialised when that differs from the teacher's)."""
    config = teacher.config
    if intra_channels is None or intra_channels == config.intra_channels:
        return build_variant(variant, config, teacher.state_dict())
    if intra_channels < 1:
        raise ValueError(f"--intra-channels must be >= 1, got {intra_channels}")
    config = GSVNetConfig.from_dict({**config.to_dict(), "intra_channels": intra_channels})
    model = build_variant(variant, config)
    state = {k: v for k, v in teacher.state_dict().items() if not k.startswith("intra.")}
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected or any(not k.startswith("intra.") for k in missing):
        raise RuntimeError(f"checkpoint does not fit the model: missing {missing}, unexpected {unexpected}")
    return model.eval()


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--checkpoint", default=None, help="GSVNet checkpoint with the trained keyframe net (training.keyframe's best.pt)")
    own = p.add_argument_group("distil for your own ONNX segmenter (training/distill.py; as build_engines --keyframe-onnx)")
    own.add_argument("--teacher-onnx", default=None, metavar="MODEL.onnx",
                     help="your segmenter: the nets learn its per-frame scores on --videos (no labels, no CamVid)")
    own.add_argument("--input-size", type=parse_any_size, default=None, metavar="HxW",
                     help="the size it takes (default: its graph's fixed size)")
    own.add_argument("--mean", type=float, nargs=3, default=(0.485, 0.456, 0.406), help="its input mean on 0..1 RGB")
    own.add_argument("--std", type=float, nargs=3, default=(0.229, 0.224, 0.225), help="its input std on 0..1 RGB")
    own.add_argument("--bgr", action="store_true", help="it takes BGR")
    own.add_argument("--classes", default=None, help="its class names file (as build_engines --classes)")
    p.add_argument("--videos", nargs="+", default=DEFAULT_VIDEOS, help="real clips for the soft targets")
    p.add_argument("--camvid", default=str(DATA / "camvid"), help="CamVid root: train for ego-motion sequences, val (first half) for selection")
    p.add_argument("--out", default="runs/propagation", help="output folder: final.pt, summary.json, clip caches")
    p.add_argument("--variant", default="full", choices=("full", "no_intra"),
                   help="full GSVNet, or the Table 4 ablation without the intra branch")
    p.add_argument("--size", type=int, nargs=2, default=(544, 960), metavar=("H", "W"), help="clip frame size (multiples of 8)")
    p.add_argument("--synthetic-size", type=int, nargs=2, default=(360, 480), metavar=("H", "W"), help="ego-motion frame size")
    p.add_argument("--holdout", type=float, default=0.3, help="fraction of every clip's frames at its end kept out of training")
    p.add_argument("--synthetic", type=float, default=0.5, help="fraction of end-to-end batches from CamVid ego-motion (ground truth)")
    p.add_argument("--flow-steps", type=int, default=3000, help="flow pre-training steps against DIS (0: none)")
    p.add_argument("--flow-from", default=None, help="start the flow net from this checkpoint's (e.g. the full variant's final.pt)")
    p.add_argument("--intra-steps", type=int, default=1000, help="intra pre-training steps (teacher on clips, ground truth on CamVid train; 0: none)")
    p.add_argument("--guide-init", type=float, nargs=2, default=(2.0, 0.5), metavar=("CENTRE", "OTHERS"),
                   help="initial bias of the guiding net's last BatchNorm for the unshifted candidate and for every "
                        "other one (larger CENTRE: starts closer to plain warping)")
    p.add_argument("--steps", type=int, default=1500, help="end-to-end steps")
    p.add_argument("--batch-size", type=int, default=4, help="sequences per step")
    p.add_argument("--kl-scale", type=int, default=4, help="the KL to the teacher is taken on scores upsampled this many "
                   "times from the 1/8 grid (8: the frame size)")
    p.add_argument("--class-weights", default="none", choices=CLASS_WEIGHTS,
                   help="per-class weights of both losses, from the CamVid train class shares: enet (1/ln(1.02+p), as the "
                        "official trainer), their square root, or none. Rare-class weights bias the filter towards "
                        "growing rare classes a little at every step, which compounds over an interval (docs/accuracy.md)")
    p.add_argument("--clip-stride", type=int, default=1,
                   help="end-to-end clip sequences take every s-th frame, s drawn from 1..this (the clips are 25 fps, "
                        "the CamVid sequence that selects and reports 15 Hz)")
    p.add_argument("--max-interval", type=int, default=5, help="the longest propagation length l trained and selected on")
    p.add_argument("--lengths", default="max", choices=("uniform", "max"),
                   help="uniform: every sequence's l is drawn from 1..max-interval and its loss averaged over its l steps, "
                        "so distance 1 weighs 11x distance 5 (at max-interval 5); max: every sequence runs max-interval "
                        "steps and every distance weighs the same")
    p.add_argument("--intra-channels", type=positive_int, default=None,
                   help="width of the intra net's two hidden convs (default: the checkpoint's; another width starts the "
                        "intra net from scratch)")
    p.add_argument("--crop-fraction", type=float, default=0.75, help="crop of a clip's 1/8 grid per sequence (paper: 3/4)")
    p.add_argument("--optimizer", default="adamw", choices=("adamw", "sgd"), help="optimiser")
    p.add_argument("--lr", type=float, default=1e-3, help="end-to-end peak learning rate of the guiding and intra nets")
    p.add_argument("--flow-lr-e2e", type=float, default=1e-5, help="end-to-end learning rate of the flow net (0: frozen)")
    p.add_argument("--flow-lr", type=float, default=2e-3, help="flow pre-training peak learning rate")
    p.add_argument("--intra-lr", type=float, default=2e-3, help="intra pre-training peak learning rate")
    p.add_argument("--weight-decay", type=float, default=1e-4, help="weight decay")
    p.add_argument("--eval-every", type=int, default=150, help="selection-half evaluation every N end-to-end steps")
    p.add_argument("--cache-dir", default=None, help="where prepared clips are cached (default: OUT)")
    p.add_argument("--max-frames", type=int, default=None, help="use only the first N frames of each clip (smoke tests)")
    p.add_argument("--device", default="auto", help="auto (a CUDA GPU when PyTorch sees one, else the CPU), cpu, cuda or cuda:N")
    p.add_argument("--limit", type=int, default=None, help="use only the first N CamVid images of each split (smoke tests)")
    p.add_argument("--seed", type=int, default=0, help="seed for torch and numpy")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    return p


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = build_parser()
    args = p.parse_args(argv)
    if (args.checkpoint is None) == (args.teacher_onnx is None):
        p.error("pass --checkpoint (the shipped keyframe net's training) or --teacher-onnx (your own model), one of them")
    try:
        args.videos = expand_videos(args.videos)
    except FileNotFoundError as e:
        p.error(str(e))
    return args


def expand_videos(patterns: list[str]) -> list[str]:
    """Paths and glob patterns (``videos/*.mp4``, ``**`` recursive) -> the files, each once, in
    the order given (a pattern's matches sorted); raises naming a pattern that matches no file."""
    found: list[str] = []
    for pattern in patterns:
        matches = sorted(glob.glob(pattern, recursive=True)) if glob.has_magic(pattern) else [pattern]
        files = [m for m in matches if Path(m).is_file()]
        if not files:
            raise FileNotFoundError(f"--videos {pattern}: no such video file")
        found += [f for f in files if f not in found]
    return found


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.teacher_onnx is not None:
        from export.build_errors import BuildError

        from .distill import run

        try:
            summary = run(args)
        except BuildError as e:  # what the model contradicts, as build_engines says it
            raise SystemExit(f"error: {e}") from None
        if summary.get("exit_code"):
            raise SystemExit(summary["exit_code"])
        return summary
    rng, out = start_run(args.seed, args.threads, args.out)
    started = time.time()
    teacher, keyframe_meta = load_checkpoint(args.checkpoint)
    device = pick_device(args.device)
    model = student(teacher, args.variant, args.intra_channels).to(device)
    model.keyframe.requires_grad_(False)
    print(f"training the {args.variant} propagation nets on {device}", flush=True)

    cache_dir = Path(args.cache_dir) if args.cache_dir else out
    clips, held_clips, spans = [], [], {}
    for video in args.videos:
        clip = keyframe_clip(model, video, tuple(args.size), cache_dir / f"clip-{Path(video).stem}")
        if args.max_frames:
            clip = clip.frames(range(0, min(args.max_frames, len(clip.small))))
        train_frames, held = holdout_split(len(clip.small), args.holdout)
        clips.append(clip.frames(train_frames))  # memory-mapped on the CPU; batches go to the device
        held_clips.append(clip.frames(held))
        spans[str(video)] = {"train": [train_frames.start, train_frames.stop], "heldout": [held.start, held.stop]}
        print(f"{Path(video).name}: training on frames {train_frames.start}..{train_frames.stop - 1}, "
              f"holding out {held.start}..{held.stop - 1}", flush=True)
    train_stills = load_split(args.camvid, "train", args.limit)
    stills = train_stills if args.synthetic > 0 else []
    frequencies = class_frequencies([f.label for f in train_stills], NUM_CLASSES)
    objective = Objective(torch.from_numpy(class_weights(args.class_weights, frequencies)), model.align_corners, args.kl_scale)
    selection = SelectionSet.prepare(model, load_split(args.camvid, "val", args.limit), tuple(args.synthetic_size),
                                     args.max_interval, "first")

    if args.flow_from:
        source, _ = load_checkpoint(args.flow_from)
        model.flow.load_state_dict(source.flow.state_dict())
        print(f"flow net initialised from {args.flow_from}", flush=True)
    flow_losses = pretrain_flow(model, clips, stills, args, rng) if args.flow_steps else []
    flow_check = heldout_flow_l1(model, held_clips)
    print(f"held-out flow L1 to DIS: flow net {flow_check['flow_net']:.3f}, zero flow {flow_check['zero_flow']:.3f} grid px", flush=True)
    intra_losses = pretrain_intra(model, clips, stills, objective, args, rng) if args.intra_steps and args.variant == "full" else []
    init_guide(model, *args.guide_init)
    result = train_end_to_end(model, clips, stills, objective, selection, args, rng, out)

    summary = {"variant": args.variant, "args": vars(args), "clips": spans, "wall_s": round(time.time() - started, 1),
               "flow_pretrain_final_l1": float(np.mean(flow_losses[-100:])) if flow_losses else None,
               "heldout_flow_l1_after_pretraining": flow_check,
               "intra_pretrain_final_kl": float(np.mean(intra_losses[-100:])) if intra_losses else None,
               "selection_half": "CamVid val sequence, first half (ground truth)", "selected": result["best"],
               "selection_history": result["history"], "final_loss": result["final_loss"],
               "keyframe_checkpoint": str(args.checkpoint), "keyframe_metadata": keyframe_meta}
    (out / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
    best = result["best"]
    print(f"selected step {best['step']}: D(1..4) {100 * best['score']:.2f} vs warp only {100 * best['warp_score']:.2f}; "
          f"wrote {out / 'final.pt'} in {summary['wall_s'] / 60:.1f} min", flush=True)
    return summary


if __name__ == "__main__":
    main()
