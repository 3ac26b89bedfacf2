"""Train GSVNet's propagation nets (flow, intra, guiding) on real video, keyframe net frozen.

    python -m training.propagation --checkpoint runs/keyframe/best.pt \\
        --video ../shared/data/videos/solidWhiteRight.mp4 --out runs/propagation

1. Frames are decoded and resized to the engine size; the frozen keyframe net's scores on the
   1/8 grid are computed once for every frame (the distillation teacher), and OpenCV DIS flow at
   1/8 resolution for every consecutive pair (the flow pre-training target).
2. Flow pre-training: L1 between the flow net and DIS (backward flow, 1/8-grid pixels).
3. End to end, the guiding net starting at (almost) plain warping (``--guide-init``): a keyframe at t, recursive propagation over l ~ U{1..max-interval} frames
   (random direction, horizontal flip, 3/4-size crop of the 1/8 grid), cross-entropy of the
   propagated scores at t+l against the keyframe net's own label of frame t+l on the 1/8 grid,
   plus ``--flow-weight`` times the L1 to DIS at every step.
Only the first (1 - holdout) of the clip's frames are used; the rest is held out for evaluation.
Writes OUT/final.pt (full GSVNet checkpoint; ``metadata.variant`` names the variant),
OUT/flow_pretrained.pt (after step 2, for --flow-from) and OUT/summary.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from gsvnet import GSVNet, load_checkpoint, ops, save_checkpoint
from gsvnet.model import grid_size

from .clip import PreparedClip, keyframe_scores, sample_sequences
from .flow_targets import clip_flows
from runtime.metrics import ConfusionMatrix
from .optim import make_optimizer, poly_lr, set_lr
from gsvnet.checkpoint import atomic_torch_save
from gsvnet.variants import VARIANTS, build_variant
from .state import pick_device, start_run
from runtime.clips import holdout_split, read_video


def prepare_clip(model: GSVNet, video: str | Path, size: tuple[int, int], cache: Path | None,
                 max_frames: int | None = None) -> PreparedClip:
    """Decode, run the frozen keyframe net and DIS once; reuse ``cache`` if it matches."""
    key = {"video": str(Path(video).resolve()), "size": list(size), "max_frames": max_frames,
           "keyframe": float(sum(p.double().sum() for p in model.keyframe.state_dict().values() if p.is_floating_point()))}
    if cache is not None and cache.is_file():
        saved = torch.load(cache, map_location="cpu", weights_only=True)
        if saved.get("key") == key:
            print(f"using cached clip tensors from {cache}", flush=True)
            return PreparedClip(saved["small"], saved["scores"], saved["flow_forward"], saved["flow_reverse"])
    started = time.time()
    frames = read_video(video, size, max_frames)
    small, scores = keyframe_scores(model, frames)
    forward, reverse = clip_flows(frames, grid_size(size))
    clip = PreparedClip(small, scores, torch.from_numpy(forward), torch.from_numpy(reverse))
    print(f"prepared {len(frames)} frames of {video} at {size[0]}x{size[1]} in {time.time() - started:.0f} s", flush=True)
    if cache is not None:
        atomic_torch_save({"key": key, "small": small, "scores": scores, "flow_forward": clip.flow_forward,
                           "flow_reverse": clip.flow_reverse}, cache)
    return clip


def propagate_with_flow(model: GSVNet, prev_scores: torch.Tensor, prev_small: torch.Tensor,
                        small: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``model.propagate`` through its stage methods, also returning the flow [N,2,h,w]."""
    flow = model.estimate_flow(small, prev_small)
    warped = model.warp(prev_scores, flow)
    intra = model.intra_scores(small)
    return model.fuse(warped, intra, model.guide_weights(intra, warped)), flow


def random_batch(clip: PreparedClip, length: int, args: argparse.Namespace, rng: np.random.Generator) -> dict[str, torch.Tensor]:
    starts = rng.integers(0, len(clip.small) - length, size=args.batch_size)
    reverse = rng.random(args.batch_size) < 0.5
    flip = rng.random(args.batch_size) < 0.5
    return sample_sequences(clip, starts, length, reverse, flip, crop_size(clip, args.crop_fraction), rng)


def crop_size(clip: PreparedClip, fraction: float) -> tuple[int, int] | None:
    h, w = clip.small.shape[-2:]
    return None if fraction >= 1.0 else (max(8, int(round(h * fraction))), max(8, int(round(w * fraction))))


def propagation_nets(model: GSVNet) -> list[torch.nn.Parameter]:
    return [p for m in (model.flow, model.intra, model.guide) for p in m.parameters()]


def start_at_warping(model: GSVNet, centre: float = 1.0, others: float = 0.01, gain: float = 0.01) -> None:
    """Initialise the guiding net's output so the chunk filter starts as (almost) plain warping.

    The guiding net ends in conv -> BatchNorm -> ReLU; a small BatchNorm gain and a bias of
    ``centre`` for the unshifted candidate and ``others`` for the shifted and intra candidates
    give ~92% of the weight to the warped score itself, so training starts from the warp-only
    baseline and learns only the corrections that help (the default uniform start is a 3x3 blur).
    """
    norm = model.guide.guide_decoder[1]
    k = ops.num_shifts(model.config.radius)
    bias = torch.full_like(norm.bias, others)
    bias[k // 2] = centre  # shift_offsets: index K//2 is (0, 0)
    with torch.no_grad():
        norm.weight.fill_(gain)
        norm.bias.copy_(bias)


def set_training(model: GSVNet) -> None:
    """Propagation nets in train mode, the frozen keyframe net in eval mode."""
    model.train()
    model.keyframe.eval()


def pretrain_flow(model: GSVNet, clip: PreparedClip, args: argparse.Namespace, rng: np.random.Generator) -> list[float]:
    optimizer = make_optimizer(args.optimizer, model.flow.parameters(), args.flow_lr, args.weight_decay)
    losses = []
    set_training(model)
    bar = tqdm(range(args.flow_steps), desc="flow pre-training", mininterval=1 if sys.stderr.isatty() else 30)
    for step in bar:
        set_lr(optimizer, poly_lr(args.flow_lr, step, args.flow_steps, warmup_steps=50))
        batch = random_batch(clip, 1, args, rng)
        flow = model.estimate_flow(batch["small"][:, 1], batch["small"][:, 0])
        loss = F.l1_loss(flow, batch["flow"][:, 1])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
        bar.set_postfix(l1=f"{np.mean(losses[-50:]):.3f}", refresh=False)
    return losses


def distil(model: GSVNet, clip: PreparedClip, args: argparse.Namespace, rng: np.random.Generator) -> list[float]:
    optimizer = make_optimizer(args.optimizer, propagation_nets(model), args.lr, args.weight_decay)
    losses = []
    set_training(model)
    bar = tqdm(range(args.steps), desc="end-to-end distillation", mininterval=1 if sys.stderr.isatty() else 30)
    for step in bar:
        set_lr(optimizer, poly_lr(args.lr, step, args.steps, warmup_steps=50))
        length = int(rng.integers(1, args.max_interval + 1))
        batch = random_batch(clip, length, args, rng)
        scores, flow_loss = batch["scores"][:, 0], 0.0
        for i in range(1, length + 1):
            scores, flow = propagate_with_flow(model, scores, batch["small"][:, i - 1], batch["small"][:, i])
            flow_loss = flow_loss + F.l1_loss(flow, batch["flow"][:, i]) / length
        ce = F.cross_entropy(scores, batch["teacher"][:, length])
        loss = ce + args.flow_weight * flow_loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(float(ce.detach()))
        bar.set_postfix(ce=f"{np.mean(losses[-50:]):.3f}", l=length, refresh=False)
    return losses


def grid_agreement(model: GSVNet, clip: PreparedClip, max_distance: int) -> dict[str, list[float]]:
    """Quick held-out check on the 1/8 grid: mIoU of the propagated labels against the teacher's
    labels at distance d = 1..max_distance from every keyframe, and flow L1 to DIS."""
    model.eval()
    cms = [ConfusionMatrix(model.num_classes) for _ in range(max_distance)]
    flow_l1 = []
    teacher = clip.teacher
    with torch.inference_mode():
        for start in range(len(clip.small) - 1):
            scores = clip.scores[start : start + 1]
            for d in range(1, max_distance + 1):
                t = start + d
                if t >= len(clip.small):
                    break
                scores, flow = propagate_with_flow(model, scores, clip.small[t - 1 : t], clip.small[t : t + 1])
                if d == 1:
                    flow_l1.append(float((flow[0] - clip.flow_forward[t]).abs().mean()))
                cms[d - 1].update(teacher[t].cpu().numpy(), scores.argmax(1)[0].cpu().numpy())
    return {"miou_by_distance": [cm.miou() for cm in cms], "flow_l1_to_dis": float(np.mean(flow_l1))}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="GSVNet checkpoint with the trained keyframe net (training.keyframe's best.pt)")
    p.add_argument("--video", required=True, help="training video (decoded with PyAV)")
    p.add_argument("--out", default="runs/propagation", help="output folder: final.pt, summary.json, clip.pt cache")
    p.add_argument("--variant", default="full", choices=[v for v in VARIANTS if v in ("full", "no_intra")],
                   help="full GSVNet, or the Table 4 ablation without the intra branch")
    p.add_argument("--size", type=int, nargs=2, default=(544, 960), metavar=("H", "W"), help="engine frame size (multiples of 8)")
    p.add_argument("--holdout", type=float, default=0.3, help="fraction of frames at the end of the clip kept out of training")
    p.add_argument("--flow-steps", type=int, default=3000, help="flow pre-training steps against DIS (0: none)")
    p.add_argument("--flow-from", default=None, help="start the flow net from this checkpoint's (e.g. another variant's "
                   "final.pt, so ablations share one flow pre-training)")
    p.add_argument("--steps", type=int, default=1200, help="end-to-end distillation steps (0: flow pre-training only)")
    p.add_argument("--batch-size", type=int, default=4, help="sequences per step")
    p.add_argument("--guide-init", default="warp", choices=("warp", "uniform"),
                   help="start of the guiding net's output: warp = (almost) plain warping, uniform = gsvnet's default")
    p.add_argument("--max-interval", type=int, default=5, help="propagation length l is drawn from 1..max-interval")
    p.add_argument("--crop-fraction", type=float, default=0.75, help="crop of the 1/8 grid per sequence (paper: 3/4 of the input)")
    p.add_argument("--optimizer", default="adamw", choices=("adamw", "sgd"), help="optimiser")
    p.add_argument("--lr", type=float, default=1e-3, help="end-to-end peak learning rate (poly decay)")
    p.add_argument("--flow-lr", type=float, default=2e-3, help="flow pre-training peak learning rate")
    p.add_argument("--weight-decay", type=float, default=1e-4, help="weight decay")
    p.add_argument("--flow-weight", type=float, default=0.1, help="weight of the L1-to-DIS flow term during end-to-end training")
    p.add_argument("--cache", default=None, help="cache of the prepared clip tensors (default: OUT/clip.pt)")
    p.add_argument("--max-frames", type=int, default=None, help="use only the first N frames of the video (smoke tests)")
    p.add_argument("--seed", type=int, default=0, help="seed for torch and numpy")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--device", default="auto", help="auto (a CUDA GPU when PyTorch sees one, else the CPU), cpu, cuda or cuda:N")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    rng, out = start_run(args.seed, args.threads, args.out)
    started = time.time()

    teacher, keyframe_meta = load_checkpoint(args.checkpoint)
    device = pick_device(args.device)
    model = build_variant(args.variant, teacher.config, teacher.state_dict()).to(device)
    print(f"training the {args.variant} propagation nets on {device}", flush=True)
    for p in model.keyframe.parameters():
        p.requires_grad_(False)
    clip = prepare_clip(model, args.video, tuple(args.size), Path(args.cache) if args.cache else out / "clip.pt",
                        args.max_frames)
    train_frames, held_frames = holdout_split(len(clip.small), args.holdout)
    train, held = clip.frames(train_frames).to(device), clip.frames(held_frames).to(device)
    print(f"training on frames {train_frames.start}..{train_frames.stop - 1}, holding out {held_frames.start}..{held_frames.stop - 1}", flush=True)

    if args.flow_from:
        source, _ = load_checkpoint(args.flow_from)
        model.flow.load_state_dict(source.flow.state_dict())
        print(f"flow net initialised from {args.flow_from}", flush=True)
    flow_losses = pretrain_flow(model, train, args, rng) if args.flow_steps else [float("nan")]
    if args.flow_steps:
        save_checkpoint(out / "flow_pretrained.pt", model, {"stage": "flow pre-training", "args": vars(args)})
    after_flow = grid_agreement(model, held, args.max_interval)
    print(f"after flow pre-training: held-out flow L1 to DIS {after_flow['flow_l1_to_dis']:.3f} grid px, "
          f"grid mIoU by distance {[round(v, 3) for v in after_flow['miou_by_distance']]}", flush=True)
    if args.guide_init == "warp" and args.steps:
        start_at_warping(model)
    ce_losses = distil(model, train, args, rng)
    final = grid_agreement(model, held, args.max_interval)
    print(f"after distillation: held-out flow L1 to DIS {final['flow_l1_to_dis']:.3f} grid px, "
          f"grid mIoU by distance {[round(v, 3) for v in final['miou_by_distance']]}", flush=True)

    summary = {"variant": args.variant, "args": vars(args), "train_frames": [train_frames.start, train_frames.stop],
               "heldout_frames": [held_frames.start, held_frames.stop], "wall_s": round(time.time() - started, 1),
               "flow_pretrain_final_l1": float(np.mean(flow_losses[-100:])), "distill_final_ce": float(np.mean(ce_losses[-100:])) if ce_losses else None,
               "heldout_grid_after_flow_pretraining": after_flow, "heldout_grid_final": final,
               "keyframe_checkpoint": str(args.checkpoint), "keyframe_metadata": keyframe_meta}
    save_checkpoint(out / "final.pt", model, {"stage": "propagation", **summary})
    (out / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
    print(f"wrote {out / 'final.pt'} in {summary['wall_s'] / 60:.1f} min", flush=True)
    return summary


if __name__ == "__main__":
    main()
