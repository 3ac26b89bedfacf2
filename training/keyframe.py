"""Train a keyframe network on CamVid from scratch.

    python -m training.keyframe --net swiftnet_r18 --data ../shared/data/camvid --out runs/keyframe

Every epoch: train on random scale/crop/flip/photometric patches (prepared on a background
thread while the network trains), score mIoU on the first half of the val sequence (the second
half is kept for reporting propagation against ground truth) through the same keyframe path the
runtime uses (``GSVNet.keyframe_step`` + ``labels``), save the resumable state ``OUT/last.pt``
and, when val mIoU improves, the full GSVNet checkpoint ``OUT/best.pt`` (propagation nets
untrained at this point). ``--resume`` continues exactly where the last epoch ended: every
epoch's shuffling and augmentation draw from a generator seeded by (seed, epoch), and the
weights, optimiser moments, schedule position, torch RNG and history come from ``last.pt``.
On the CPU the network runs in bfloat16 autocast with channels-last tensors where the CPU has
native bfloat16 (``--amp auto``); on a GPU the same command trains there (``--device``).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from tqdm import tqdm

from gsvnet import GSVNet, GSVNetConfig, keyframe_net_names, ops, save_checkpoint
from gsvnet.classes import CAMVID
from runtime.video import prefetch

from .augment import AugmentConfig, augment
from gsvnet.datasets.camvid import HALVES, NUM_CLASSES, VOID, LabelledFrame, load_split, sequence_half
from .losses import LOSSES, SegmentationLoss, class_frequencies, enet_weights
from .optim import decay_groups, make_optimizer, poly_lr, rescheduled_lr, set_lr
from .precision import autocast, pick_amp
from .state import load_training_state, pick_device, save_training_state, start_run
from runtime.schedule.torch_stepper import TorchStepper
from evaluation.protocol import keyframe_confusion

#: arguments that define the run's recipe and schedule: a resumed run must use the same
RECIPE_ARGS = ("net", "epochs", "batch_size", "crop", "scale_min", "scale_max", "optimizer", "lr", "weight_decay",
               "warmup_steps", "loss", "hue", "channel_gain", "seed", "limit", "val_half")


def camvid_config(net: str) -> GSVNetConfig:
    return GSVNetConfig(keyframe_net=net, num_classes=NUM_CLASSES, class_names=list(CAMVID.class_names),
                        palette=[list(c) for c in CAMVID.palette])


def make_batch(frames: list[LabelledFrame], indices: np.ndarray, cfg: AugmentConfig,
               rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 images [B,H,W,3] and int64 labels [B,H,W] of augmented patches."""
    images, labels = zip(*(augment(frames[i].image, frames[i].label, cfg, VOID, rng) for i in indices))
    return torch.from_numpy(np.stack(images)), torch.from_numpy(np.stack(labels)).long()


def epoch_batches(frames: list[LabelledFrame], batch_size: int, cfg: AugmentConfig, seed: int,
                  epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The batches of one epoch: order and augmentation depend only on (seed, epoch)."""
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(len(frames))
    for i in range(0, len(order), batch_size):
        yield make_batch(frames, order[i : i + batch_size], cfg, rng)


def segmentation_loss(model: GSVNet, images: torch.Tensor, labels: torch.Tensor,
                      loss: SegmentationLoss | None = None, aux_weight: float = 0.4,
                      channels_last: bool = False) -> torch.Tensor:
    """Loss (default: cross-entropy, void ignored) of the keyframe net's logits upsampled to the label
    size, plus ``aux_weight`` times that of each auxiliary head. images uint8 [B,H,W,3], labels [B,H,W]."""
    loss = loss or SegmentationLoss("ce", VOID)
    x = ops.normalize(images, model.mean, model.std)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    logits, aux = model.keyframe.forward_train(x)
    size = labels.shape[-2:]
    total = loss(ops.resize(logits, size), labels)
    for a in aux:
        total = total + aux_weight * loss(ops.resize(a, size), labels)
    return total


def train_step(model: GSVNet, optimizer: torch.optim.Optimizer, images: torch.Tensor, labels: torch.Tensor,
               loss: SegmentationLoss | None = None, amp: torch.dtype | None = None, channels_last: bool = False) -> float:
    """One optimiser step; ``amp`` (e.g. torch.bfloat16) runs the forward pass in autocast,
    ``channels_last`` feeds the net channels-last input (its weights should be channels-last too)."""
    model.keyframe.train()
    optimizer.zero_grad(set_to_none=True)
    with autocast(images.device, amp):
        value = segmentation_loss(model, images, labels, loss, channels_last=channels_last)
    value.backward()
    optimizer.step()
    return float(value.detach())


def validate(model: GSVNet, frames: list[LabelledFrame], frame_size: tuple[int, int]) -> tuple[float, list[float]]:
    """(mIoU, per-class IoU) on ``frames`` through the runtime's keyframe path (FP32), on the model's device."""
    cm = keyframe_confusion(TorchStepper(model, model.mean.device), frames, frame_size, NUM_CLASSES, VOID)
    model.train()
    return cm.miou(), [float(v) for v in cm.iou()]


def make_loss(kind: str, frames: list[LabelledFrame]) -> SegmentationLoss:
    weights = None
    if kind == "enet":
        weights = torch.from_numpy(enet_weights(class_frequencies([f.label for f in frames], NUM_CLASSES)))
    return SegmentationLoss(kind, VOID, weights)


def check_same_recipe(saved: dict, args: argparse.Namespace, path: Path, exempt: tuple[str, ...] = ()) -> None:
    """A resumed run must keep the recipe and schedule it started with (one line otherwise)."""
    for name in RECIPE_ARGS:
        if name in exempt:
            continue
        before, now = saved.get(name), getattr(args, name)
        if isinstance(before, (list, tuple)) or isinstance(now, (list, tuple)):
            before, now = list(before) if before is not None else None, list(now)
        if before != now:
            flag = "--" + name.replace("_", "-")
            raise SystemExit(f"error: {flag} {now} differs from {before} of the run in {path}; resume with the same "
                             "recipe, or start a new run with another --out")


def lr_at(peak: float, step: int, total_steps: int, warmup_steps: int, schedule: dict | None) -> float:
    """The learning rate at ``step``: the run's poly schedule, or its shortened tail after ``--reschedule``."""
    if schedule is None:
        return poly_lr(peak, step, total_steps, warmup_steps=warmup_steps)
    return rescheduled_lr(schedule["from_lr"], schedule["from_step"], step, total_steps, floor=0.01 * peak)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--net", default="swiftnet_r18", choices=keyframe_net_names(), help="keyframe network")
    p.add_argument("--data", default="../shared/data/camvid", help="CamVid root with train/, trainannot/, val/, valannot/")
    p.add_argument("--out", default="runs/keyframe", help="output folder: last.pt (resumable), best.pt, history.json")
    p.add_argument("--epochs", type=int, default=300, help="passes over the 367 training images")
    p.add_argument("--batch-size", type=int, default=8, help="patches per step")
    p.add_argument("--crop", type=int, nargs=2, default=(320, 320), metavar=("H", "W"), help="training patch size")
    p.add_argument("--scale-min", type=float, default=0.5, help="smallest random rescale of the 360x480 image "
                   "(the runtime shows the net the frame at key_scale = 0.75)")
    p.add_argument("--scale-max", type=float, default=1.5, help="largest random rescale")
    p.add_argument("--hue", type=float, default=0.1, help="random hue rotation, +- this fraction of a turn")
    p.add_argument("--channel-gain", type=float, default=0.15, help="random per-channel (white balance) gain, +-")
    p.add_argument("--loss", default="enet", choices=LOSSES,
                   help="ce: plain cross-entropy; enet: class-balanced (1/ln(1.02+p)); ohem: hard pixels only")
    p.add_argument("--optimizer", default="adamw", choices=("adamw", "sgd"), help="optimiser")
    p.add_argument("--lr", type=float, default=2e-3, help="peak learning rate (poly decay, power 0.9)")
    p.add_argument("--weight-decay", type=float, default=1e-2, help="weight decay on conv weights")
    p.add_argument("--warmup-steps", type=int, default=200, help="linear learning-rate warm-up steps")
    p.add_argument("--val-size", type=int, nargs=2, default=(360, 480), metavar=("H", "W"),
                   help="frame size for val scoring (multiples of 8); the keyframe net sees it scaled by key_scale")
    p.add_argument("--val-half", default="first", choices=HALVES,
                   help="part of the val sequence that selects the model (the second half is where propagation is "
                        "reported: python -m evaluation camvid-sequence)")
    p.add_argument("--val-every", type=int, default=1, help="score val every N epochs (and at the last epoch)")
    p.add_argument("--seed", type=int, default=0, help="seed for torch and the per-epoch numpy generators")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--device", default="auto", help="auto (a CUDA GPU when PyTorch sees one, else the CPU), cpu, cuda or cuda:N")
    p.add_argument("--amp", default="auto", choices=("auto", "off", "bf16"),
                   help="mixed precision of the forward pass: auto = bfloat16 where the CPU/GPU has it natively, else off")
    p.add_argument("--channels-last", default="auto", choices=("auto", "on", "off"),
                   help="channels-last layout (auto: on with --amp bf16 on the CPU and on GPUs)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/last.pt if it exists")
    p.add_argument("--reschedule", action="store_true",
                   help="with --resume, accept a different --epochs: from the resumed step the learning rate decays "
                        "from its current value to the schedule's floor (1%% of --lr) at the new last epoch (poly, power "
                        "0.9); the change is recorded in last.pt, history.json and best.pt")
    p.add_argument("--max-steps", type=int, default=0, help="stop after the epoch in which this many steps are done (0: no limit)")
    p.add_argument("--limit", type=int, default=None, help="use only the first N images of each split (smoke tests)")
    p.add_argument("--no-val", action="store_true", help="skip val scoring (timing runs)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    _, out = start_run(args.seed, args.threads, args.out)
    device = pick_device(args.device)
    amp = pick_amp(args.amp, device)
    channels_last = args.channels_last == "on" or (args.channels_last == "auto" and (amp is not None or device.type == "cuda"))

    train = load_split(args.data, "train", args.limit)
    val = [] if args.no_val else sequence_half(load_split(args.data, "val", args.limit), args.val_half)
    aug = AugmentConfig(crop=tuple(args.crop), scale_min=args.scale_min, scale_max=args.scale_max, hue=args.hue,
                        channel_gain=args.channel_gain)
    model = GSVNet(camvid_config(args.net)).to(device)
    if channels_last:
        model.keyframe.to(memory_format=torch.channels_last)
    loss = make_loss(args.loss, train)
    optimizer = make_optimizer(args.optimizer, decay_groups(model.keyframe, args.weight_decay), args.lr, args.weight_decay)
    steps_per_epoch = math.ceil(len(train) / args.batch_size)
    total_steps = steps_per_epoch * args.epochs
    where = f"{device}" + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else "")
    print(f"training {args.net} on {where}, amp {amp or 'off'}, channels-last {channels_last}, loss {args.loss} "
          f"({len(train)} train, {len(val)} val images)", flush=True)

    epoch, step, best, history, elapsed = 0, 0, -1.0, [], 0.0
    schedule: dict | None = None
    saved = load_training_state(out) if args.resume else None
    if saved is not None:
        check_same_recipe(saved["args"], args, out / "last.pt", exempt=("epochs",) if args.reschedule else ())
        model.keyframe.load_state_dict(saved["keyframe"])
        optimizer.load_state_dict(saved["optimizer"])
        torch.set_rng_state(saved["rng"]["torch"])
        epoch, step, best, history, elapsed = (saved["epoch"], saved["step"], saved["best"], saved["history"], saved["elapsed_s"])
        schedule = saved.get("schedule")
        print(f"resumed from {out / 'last.pt'}: epoch {epoch}, step {step}, best val mIoU {best:.4f}", flush=True)
        if args.reschedule and saved["args"]["epochs"] != args.epochs:
            if args.epochs <= epoch:
                raise SystemExit(f"error: --epochs {args.epochs} is not beyond the {epoch} epochs already trained; "
                                 "give a larger --epochs")
            now = lr_at(args.lr, step, steps_per_epoch * saved["args"]["epochs"], args.warmup_steps, schedule)
            schedule = {"from_epoch": epoch, "from_step": step, "from_lr": now, "epochs_before": saved["args"]["epochs"],
                        "epochs_after": args.epochs}
            print(f"rescheduled: {saved['args']['epochs']} -> {args.epochs} epochs, lr {now:.2e} at step {step} "
                  "decays to its floor at the new last epoch", flush=True)

    interactive = sys.stderr.isatty()
    while epoch < args.epochs and not (args.max_steps and step >= args.max_steps):
        started = time.time()
        losses = []
        batches = prefetch(epoch_batches(train, args.batch_size, aug, args.seed, epoch), depth=2)
        bar = tqdm(batches, total=steps_per_epoch, desc=f"epoch {epoch + 1}/{args.epochs}",
                   mininterval=1 if interactive else 60, file=sys.stderr, dynamic_ncols=interactive)
        for images, labels in bar:
            lr = lr_at(args.lr, step, total_steps, args.warmup_steps, schedule)
            set_lr(optimizer, lr)
            losses.append(train_step(model, optimizer, images.to(device), labels.to(device), loss, amp, channels_last))
            step += 1
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}", lr=f"{lr:.2e}", refresh=False)
        bar.close()
        train_time = time.time() - started
        epoch += 1
        record = {"epoch": epoch, "step": step, "lr": lr, "loss": float(np.mean(losses)), "train_s": round(train_time, 1),
                  "steps_per_s": round(len(losses) / max(train_time, 1e-9), 3), "device": where,
                  "amp": str(amp or "off"), "channels_last": channels_last}
        if schedule is not None and epoch == schedule["from_epoch"] + 1:
            record["rescheduled"] = schedule
        if val and (epoch % args.val_every == 0 or epoch == args.epochs):
            miou, per_class = validate(model, val, tuple(args.val_size))
            record.update(val_miou=miou, val_iou=per_class)
            if miou > best:
                best = miou
                save_checkpoint(out / "best.pt", model, {"stage": "keyframe", "epoch": epoch, "step": step, "val_miou": miou,
                                                         "val_iou": per_class, "args": vars(args),
                                                         "schedule": schedule})
        elapsed += time.time() - started
        record["elapsed_s"] = round(elapsed, 1)
        history.append(record)
        save_training_state(out, {"keyframe": model.keyframe.state_dict(), "optimizer": optimizer.state_dict(),
                                  "rng": {"torch": torch.get_rng_state()}, "epoch": epoch, "step": step, "best": best,
                                  "history": history, "elapsed_s": elapsed, "args": vars(args), "augment": asdict(aug),
                                  "schedule": schedule})
        (out / "history.json").write_text(json.dumps(history, indent=1))
        shown = f" val mIoU {record['val_miou']:.4f} (best {best:.4f})" if "val_miou" in record else ""
        tqdm.write(f"epoch {epoch}: loss {record['loss']:.4f}, {record['steps_per_s']:.2f} steps/s{shown}, "
                   f"elapsed {elapsed / 60:.1f} min", file=sys.stderr)
        sys.stderr.flush()
    if not val:  # timing runs still leave a loadable checkpoint
        save_checkpoint(out / "best.pt", model, {"stage": "keyframe", "epoch": epoch, "step": step, "args": vars(args)})
    return {"best_val_miou": best, "epochs": epoch, "steps": step, "elapsed_s": elapsed, "history": history}


if __name__ == "__main__":
    main()
