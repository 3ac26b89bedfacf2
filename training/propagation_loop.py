"""The training steps of the propagation nets (training.propagation and training.distill use them):
flow and intra pre-training, the end-to-end loop over l steps from a keyframe, its objective and
the selection record."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from gsvnet import GSVNet, ops, save_checkpoint
from gsvnet.datasets.camvid import VOID, LabelledFrame
from gsvnet.variants import build_variant

from .clip import PreparedClip, sample_sequences
from .egomotion import grid_flows, sequence as egomotion_sequence
from .optim import make_optimizer, poly_lr, set_lr
from .selection import SelectionSet, mean_over

#: the selection score is the mean of D(d) over these distances (capped at --max-interval)
SELECTION_DISTANCES = range(1, 5)


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
    device = model.mean.device
    with torch.inference_mode():
        for clip in clips:
            for t in range(1, len(clip.small)):
                target = clip.flow_forward[t].to(device)
                pair = clip.small[t - 1 : t + 1].to(device)
                learned.append(float((model.estimate_flow(pair[1:], pair[:1])[0] - target).abs().mean()))
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
               device: torch.device, max_stride: int = 1) -> dict:
    """Sequences of length+1 frames, forward in time, from one random clip, on ``device`` (the
    clips stay memory-mapped on the CPU): every s-th frame with s drawn per sequence from
    1..max_stride (1: consecutive, as flow pre-training needs)."""
    clip = clips[int(rng.integers(0, len(clips)))]
    h, w = clip.small.shape[-2:]
    crop = None if args.crop_fraction >= 1.0 else (max(8, int(round(h * args.crop_fraction))), max(8, int(round(w * args.crop_fraction))))
    # (drawn only when used, so that runs with consecutive frames keep their random stream)
    strides = rng.integers(1, max_stride + 1, size=args.batch_size) if max_stride > 1 else np.ones(args.batch_size, int)
    starts = rng.integers(0, len(clip.small) - strides * length, size=args.batch_size)
    flip = rng.random(args.batch_size) < 0.5
    batch = sample_sequences(clip, starts, length, np.zeros(args.batch_size, bool), flip, crop, rng, strides)
    return {k: v.to(device) for k, v in batch.items()}


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
        batch = synthetic_batch(model, stills, 1, args, rng, keyframe=False) if synthetic else clip_batch(clips, 1, args, rng, model.mean.device)
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
            batch = clip_batch(clips, 0, args, rng, model.mean.device)
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
                 else clip_batch(clips, length, args, rng, model.mean.device, args.clip_stride))
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
