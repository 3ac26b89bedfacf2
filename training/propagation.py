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
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from gsvnet import GSVNet, load_checkpoint, ops, save_checkpoint
from gsvnet.datasets.camvid import NUM_CLASSES, VOID, LabelledFrame, load_split
from gsvnet.model import GSVNetConfig, grid_size
from gsvnet.variants import build_variant
from gsvnet.checkpoint import atomic_torch_save
from engine_format.sizes import parse_any_size
from runtime.arguments import positive_int
from evaluation.clips import holdout_split, read_video

from .clip import PreparedClip, keyframe_scores, sample_sequences
from .egomotion import grid_flows, sequence as egomotion_sequence
from .flow_targets import clip_flows
from .losses import CLASS_WEIGHTS, class_frequencies, class_weights
from .optim import make_optimizer, poly_lr, set_lr
from .selection import SelectionSet, mean_over
from .state import pick_device, start_run

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
DEFAULT_VIDEOS = [str(DATA / "videos" / "solidWhiteRight.mp4"), str(DATA / "videos" / "project_video_short.mp4")]
#: the selection score is the mean of D(d) over these distances (capped at --max-interval)
SELECTION_DISTANCES = range(1, 5)


def prepare_clip(model: GSVNet, video: str | Path, size: tuple[int, int], cache: Path | None) -> PreparedClip:
    """Decode, run the frozen keyframe net and DIS once; reuse ``cache`` if it matches."""
    key = {"video": str(Path(video).resolve()), "size": list(size),
           "keyframe": float(sum(p.double().sum() for p in model.keyframe.state_dict().values() if p.is_floating_point())),
           "resampling": model.config.resampling}
    if cache is not None and cache.is_file():
        saved = torch.load(cache, map_location="cpu", weights_only=True)
        if saved.get("key") == key:
            print(f"using cached clip tensors from {cache}", flush=True)
            return PreparedClip(saved["small"], saved["scores"], saved["flow_forward"], saved["flow_reverse"])
    started = time.time()
    frames = read_video(video, size)
    small, scores = keyframe_scores(model, frames)
    forward, reverse = clip_flows(frames, grid_size(size))
    clip = PreparedClip(small, scores, torch.from_numpy(forward), torch.from_numpy(reverse))
    print(f"prepared {len(frames)} frames of {video} at {size[0]}x{size[1]} in {time.time() - started:.0f} s", flush=True)
    if cache is not None:
        atomic_torch_save({"key": key, "small": small, "scores": scores, "flow_forward": clip.flow_forward,
                           "flow_reverse": clip.flow_reverse}, cache)
    return clip


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


def propagate_with_flow(model: GSVNet, prev_scores: torch.Tensor, prev_small: torch.Tensor,
                        small: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``GSVNet.propagate`` through its stage methods, also returning the flow and the guiding weights.
    Only the full and no_intra variants are trained, and neither overrides ``propagate``."""
    flow = model.estimate_flow(small, prev_small)
    warped = model.warp(prev_scores, flow)
    intra = model.intra_scores(small)
    weights = model.guide_weights(intra, warped)
    return model.fuse(warped, intra, weights), flow, weights


def init_guide(model: GSVNet, centre: float = 2.0, others: float = 0.5) -> None:
    """Every candidate alive at the start: the guiding net's last BatchNorm with gain 1 (as the
    official initialisation) and positive biases, the unshifted candidate the largest."""
    norm = model.guide.guide_decoder[1]
    k = ops.num_shifts(model.config.radius)
    bias = torch.full_like(norm.bias, others)
    bias[k // 2] = centre  # shift_offsets: index K//2 is (0, 0)
    with torch.no_grad():
        norm.weight.fill_(1.0)
        norm.bias.copy_(bias)


def heldout_flow_l1(model: GSVNet, clips: list[PreparedClip]) -> dict[str, float]:
    """Mean L1 to DIS of the flow net and of zero flow on held-out consecutive pairs (1/8-grid px)."""
    model.eval()
    learned, zero = [], []
    with torch.inference_mode():
        for clip in clips:
            for t in range(1, len(clip.small)):
                target = clip.flow_forward[t]
                learned.append(float((model.estimate_flow(clip.small[t : t + 1], clip.small[t - 1 : t])[0] - target).abs().mean()))
                zero.append(float(target.abs().mean()))
    return {"flow_net": float(np.mean(learned)), "zero_flow": float(np.mean(zero))}


def set_training(model: GSVNet) -> None:
    """Propagation nets in train mode, the frozen keyframe net in eval mode."""
    model.train()
    model.keyframe.eval()


class Objective:
    """Class-balanced losses on upsampled scores: KL to a teacher at ``kl_scale`` x the 1/8 grid,
    cross-entropy at the ground truth's resolution."""

    def __init__(self, class_weights: torch.Tensor, align_corners: bool, kl_scale: int = 4) -> None:
        self.weights, self.align_corners, self.kl_scale = class_weights, align_corners, kl_scale

    def _up(self, scores: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        return ops.resize(scores.float(), size, self.align_corners)

    def kl(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        """KL(teacher softmax || student softmax) per pixel at kl_scale x the grid, weighted by the teacher's class."""
        size = (self.kl_scale * student.shape[-2], self.kl_scale * student.shape[-1])
        log_p = F.log_softmax(self._up(student, size), dim=1)
        target = self._up(teacher, size)
        q = F.softmax(target, dim=1)
        per_pixel = (q * (F.log_softmax(target, dim=1) - log_p)).sum(1)
        w = self.weights.to(student.device)[target.argmax(1)]
        return (w * per_pixel).sum() / w.sum()

    def ce(self, student: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Class-weighted cross-entropy against ground truth labels [B,H,W] (void ignored)."""
        return F.cross_entropy(self._up(student, tuple(labels.shape[-2:])), labels, weight=self.weights.to(student.device),
                               ignore_index=VOID)


def clip_batch(clips: list[PreparedClip], length: int, args: argparse.Namespace, rng: np.random.Generator,
               max_stride: int = 1) -> dict:
    """Sequences of length+1 frames, forward in time, from one random clip: every s-th frame with
    s drawn per sequence from 1..max_stride (1: consecutive, as flow pre-training needs)."""
    clip = clips[int(rng.integers(0, len(clips)))]
    h, w = clip.small.shape[-2:]
    crop = None if args.crop_fraction >= 1.0 else (max(8, int(round(h * args.crop_fraction))), max(8, int(round(w * args.crop_fraction))))
    # (drawn only when used, so that runs with consecutive frames keep their random stream)
    strides = rng.integers(1, max_stride + 1, size=args.batch_size) if max_stride > 1 else np.ones(args.batch_size, int)
    starts = rng.integers(0, len(clip.small) - strides * length, size=args.batch_size)
    flip = rng.random(args.batch_size) < 0.5
    return sample_sequences(clip, starts, length, np.zeros(args.batch_size, bool), flip, crop, rng, strides)


def synthetic_batch(model: GSVNet, stills: list[LabelledFrame], length: int, args: argparse.Namespace,
                    rng: np.random.Generator, keyframe: bool = True) -> dict:
    """Ego-motion sequences of CamVid train images: small [B,L+1,3,h,w], exact backward flow
    [B,L+1,2,h,w], labels [B,L+1,H,W] (ground truth moved with the image) and, with ``keyframe``,
    the frozen keyframe net's scores of the first frame [B,C,h,w]."""
    size = tuple(args.synthetic_size)
    images, labels, flows = [], [], []
    for i in rng.integers(0, len(stills), size=args.batch_size):
        frames, truth, matrices = egomotion_sequence(stills[i].image, stills[i].label, length, size, VOID, rng)
        flow = grid_flows(matrices, size, align_corners=model.align_corners)
        if rng.random() < 0.5:  # mirror: x flips, and so does the x component of the flow
            frames, truth, flow = frames[..., ::-1, :], truth[..., ::-1], flow[..., ::-1].copy()
            flow[:, 0] = -flow[:, 0]
        images.append(np.ascontiguousarray(frames))
        labels.append(np.ascontiguousarray(truth))
        flows.append(np.ascontiguousarray(flow))
    device = model.mean.device
    video = torch.from_numpy(np.stack(images)).to(device)  # [B,L+1,H,W,3]
    b = video.shape[0]
    batch = {"labels": torch.from_numpy(np.stack(labels)).long().to(device), "flow": torch.from_numpy(np.stack(flows)).to(device)}
    with torch.no_grad():
        batch["small"] = model.downsample(video.flatten(0, 1)).unflatten(0, (b, length + 1))
        if keyframe:
            batch["key"] = model.keyframe_scores(video[:, 0])
    return batch


def pretrain_flow(model: GSVNet, clips: list[PreparedClip], stills: list[LabelledFrame], args: argparse.Namespace,
                  rng: np.random.Generator) -> list[float]:
    """L1 to DIS flow on the clips and to the exact flow of ego-motion sequences (a fraction
    --synthetic of the steps), one frame pair per sequence."""
    optimizer = make_optimizer(args.optimizer, model.flow.parameters(), args.flow_lr, args.weight_decay)
    losses = []
    set_training(model)
    bar = tqdm(range(args.flow_steps), desc="flow pre-training", mininterval=1 if sys.stderr.isatty() else 30)
    for step in bar:
        set_lr(optimizer, poly_lr(args.flow_lr, step, args.flow_steps, warmup_steps=50))
        synthetic = bool(stills) and rng.random() < args.synthetic
        batch = synthetic_batch(model, stills, 1, args, rng, keyframe=False) if synthetic else clip_batch(clips, 1, args, rng)
        flow = model.estimate_flow(batch["small"][:, 1], batch["small"][:, 0])
        loss = F.l1_loss(flow, batch["flow"][:, 1])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
        bar.set_postfix(l1=f"{np.mean(losses[-50:]):.3f}", refresh=False)
    return losses


def pretrain_intra(model: GSVNet, clips: list[PreparedClip], stills: list[LabelledFrame], objective: Objective,
                   args: argparse.Namespace, rng: np.random.Generator) -> list[float]:
    """The intra net alone on single frames: against the teacher on the clips, and against the
    ground truth on CamVid train images (a fraction --synthetic of the steps)."""
    optimizer = make_optimizer(args.optimizer, model.intra.parameters(), args.intra_lr, args.weight_decay)
    losses = []
    set_training(model)
    bar = tqdm(range(args.intra_steps), desc="intra pre-training", mininterval=1 if sys.stderr.isatty() else 30)
    for step in bar:
        set_lr(optimizer, poly_lr(args.intra_lr, step, args.intra_steps, warmup_steps=50))
        if stills and rng.random() < args.synthetic:
            batch = synthetic_batch(model, stills, 0, args, rng, keyframe=False)
            loss = objective.ce(model.intra_scores(batch["small"][:, 0]), batch["labels"][:, 0])
        else:
            batch = clip_batch(clips, 0, args, rng)
            loss = objective.kl(model.intra_scores(batch["small"][:, 0]), batch["scores"][:, 0])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
        bar.set_postfix(loss=f"{np.mean(losses[-50:]):.3f}", refresh=False)
    return losses


def sequence_loss(model: GSVNet, batch: dict, objective: Objective, length: int, synthetic: bool,
                  shares: list[torch.Tensor]) -> torch.Tensor:
    """Mean over the propagated steps of the step's loss (KL to the teacher, or CE to the truth)."""
    scores = batch["key"] if synthetic else batch["scores"][:, 0]
    total = 0.0
    for i in range(1, length + 1):
        scores, _, weights = propagate_with_flow(model, scores, batch["small"][:, i - 1], batch["small"][:, i])
        shares.append((weights / (weights.sum(1, keepdim=True) + ops.WEIGHT_EPS)).mean(dim=(0, 2, 3)).detach())
        total = total + (objective.ce(scores, batch["labels"][:, i]) if synthetic else objective.kl(scores, batch["scores"][:, i]))
    return total / length


def train_end_to_end(model: GSVNet, clips: list[PreparedClip], stills: list[LabelledFrame], objective: Objective,
                     selection: SelectionSet, args: argparse.Namespace, rng: np.random.Generator, out: Path) -> dict:
    groups = [{"params": [p for m in (model.intra, model.guide) for p in m.parameters()], "lr": args.lr}]
    if args.flow_lr_e2e > 0:
        groups.append({"params": list(model.flow.parameters()), "lr": args.flow_lr_e2e})
    else:
        model.flow.requires_grad_(False)
    optimizer = make_optimizer(args.optimizer, groups, args.lr, args.weight_decay)
    peaks = [g["lr"] for g in optimizer.param_groups]
    history, best, losses, shares = [], None, [], []

    def score(done: int) -> None:
        """Selection record after ``done`` updates; OUT/final.pt keeps the best."""
        nonlocal best, shares
        record = selection_record(model, selection, args.max_interval, done, shares)
        history.append(record)
        if best is None or record["score"] > best["score"]:
            best = record
            save_checkpoint(out / "final.pt", model, {"stage": "propagation", "variant": args.variant, "selection": record})
        tqdm.write(f"step {done}: selection-half D(1..4) gsvnet {100 * record['score']:.2f} vs warp only "
                   f"{100 * record['warp_score']:.2f} (best {100 * best['score']:.2f} at step {best['step']})", file=sys.stderr)
        shares = []

    score(0)
    bar = tqdm(range(args.steps), desc="end to end", mininterval=1 if sys.stderr.isatty() else 30)
    for step in bar:
        set_training(model)
        for group, peak in zip(optimizer.param_groups, peaks):
            group["lr"] = poly_lr(peak, step, args.steps, warmup_steps=50)
        length = args.max_interval if args.lengths == "max" else int(rng.integers(1, args.max_interval + 1))
        synthetic = bool(stills) and rng.random() < args.synthetic
        batch = (synthetic_batch(model, stills, length, args, rng) if synthetic
                 else clip_batch(clips, length, args, rng, args.clip_stride))
        loss = sequence_loss(model, batch, objective, length, synthetic, shares)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
        bar.set_postfix(loss=f"{np.mean(losses[-50:]):.3f}", l=length, refresh=False)
        if (step + 1) % args.eval_every == 0 or step + 1 == args.steps:
            score(step + 1)
    return {"history": history, "best": best, "final_loss": float(np.mean(losses[-100:])) if losses else None}


def selection_record(model: GSVNet, selection: SelectionSet, max_interval: int, step: int,
                     shares: list[torch.Tensor]) -> dict:
    """GSVNet and warp-only on the selection half at distances up to ``max_interval``, plus the mean
    share of every candidate since the last record."""
    warp = build_variant("warp", model.config, model.state_dict()).to(model.mean.device)
    ours, theirs = selection.evaluate(model, max_interval), selection.evaluate(warp, max_interval)
    distances = range(SELECTION_DISTANCES.start, min(SELECTION_DISTANCES.stop, max_interval + 1))
    record = {"step": step, "score": mean_over(ours, distances), "warp_score": mean_over(theirs, distances),
              "gsvnet": ours, "warp_only": theirs}
    if shares:
        mean = torch.stack(shares).mean(0).cpu()
        k = ops.num_shifts(model.config.radius)
        record["candidate_shares"] = {"centre": float(mean[k // 2]), "shifts": float(mean[:k].sum() - mean[k // 2]),
                                      "intra": float(mean[k]), "null": float(mean[k + 1])}
        dead = [i for i, v in enumerate(mean.tolist()) if v < 1e-3]
        if dead:
            record["dead_candidates"] = dead
            tqdm.write(f"warning: guiding weights {dead} get < 0.1% of the weight (dead candidates)", file=sys.stderr)
    return record


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
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
    args = p.parse_args(argv)
    if (args.checkpoint is None) == (args.teacher_onnx is None):
        p.error("pass --checkpoint (the shipped keyframe net's training) or --teacher-onnx (your own model), one of them")
    return args


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
        clip = prepare_clip(model, video, tuple(args.size), cache_dir / f"clip-{Path(video).stem}.pt")
        if args.max_frames:
            clip = clip.frames(range(0, min(args.max_frames, len(clip.small))))
        train_frames, held = holdout_split(len(clip.small), args.holdout)
        clips.append(clip.frames(train_frames).to(device))
        held_clips.append(clip.frames(held).to(device))
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
