"""Train a keyframe network on CamVid from scratch.

    python -m training.keyframe --net swiftnet_r18 --data ../shared/data/camvid --out runs/keyframe

Every epoch: train on random scale/crop/flip/jitter patches, score mIoU on the val split through
the same keyframe path the runtime uses (``GSVNet.keyframe_step`` + ``labels``), save the
resumable state ``OUT/last.pt`` and, when val mIoU improves, the full GSVNet checkpoint
``OUT/best.pt`` (propagation nets untrained at this point).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import asdict

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from gsvnet import GSVNet, GSVNetConfig, keyframe_net_names, ops, save_checkpoint
from gsvnet.classes import CAMVID

from .augment import AugmentConfig, augment
from .camvid import NUM_CLASSES, VOID, LabelledFrame, load_split
from .optim import decay_groups, make_optimizer, poly_lr, set_lr
from .state import load_training_state, pick_device, restore_rng, rng_state, save_training_state, start_run
from .torch_stepper import TorchStepper
from .validate import keyframe_confusion


def camvid_config(net: str) -> GSVNetConfig:
    return GSVNetConfig(keyframe_net=net, num_classes=NUM_CLASSES, class_names=list(CAMVID.class_names),
                        palette=[list(c) for c in CAMVID.palette])


def make_batch(frames: list[LabelledFrame], indices: np.ndarray, cfg: AugmentConfig,
               rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 images [B,H,W,3] and int64 labels [B,H,W] of augmented patches."""
    images, labels = zip(*(augment(frames[i].image, frames[i].label, cfg, VOID, rng) for i in indices))
    return torch.from_numpy(np.stack(images)), torch.from_numpy(np.stack(labels)).long()


def segmentation_loss(model: GSVNet, images: torch.Tensor, labels: torch.Tensor, aux_weight: float = 0.4) -> torch.Tensor:
    """Cross-entropy (void ignored) of the keyframe net's logits upsampled to the label size,
    plus ``aux_weight`` times that of each auxiliary head. images uint8 [B,H,W,3], labels [B,H,W]."""
    x = ops.normalize(images, model.mean, model.std)
    logits, aux = model.keyframe.forward_train(x)
    size = labels.shape[-2:]
    loss = F.cross_entropy(ops.resize(logits, size), labels, ignore_index=VOID)
    for a in aux:
        loss = loss + aux_weight * F.cross_entropy(ops.resize(a, size), labels, ignore_index=VOID)
    return loss


def train_step(model: GSVNet, optimizer: torch.optim.Optimizer, images: torch.Tensor, labels: torch.Tensor) -> float:
    model.keyframe.train()
    optimizer.zero_grad(set_to_none=True)
    loss = segmentation_loss(model, images, labels)
    loss.backward()
    optimizer.step()
    return float(loss.detach())


def validate(model: GSVNet, frames: list[LabelledFrame], frame_size: tuple[int, int]) -> tuple[float, list[float]]:
    """(mIoU, per-class IoU) on ``frames`` through the runtime's keyframe path, on the model's device."""
    cm = keyframe_confusion(TorchStepper(model, model.mean.device), frames, frame_size, NUM_CLASSES, VOID)
    model.train()
    return cm.miou(), [float(v) for v in cm.iou()]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--net", default="swiftnet_r18", choices=keyframe_net_names(), help="keyframe network")
    p.add_argument("--data", default="../shared/data/camvid", help="CamVid root with train/, trainannot/, val/, valannot/")
    p.add_argument("--out", default="runs/keyframe", help="output folder: last.pt (resumable), best.pt, history.json")
    p.add_argument("--epochs", type=int, default=60, help="passes over the 367 training images")
    p.add_argument("--batch-size", type=int, default=8, help="patches per step")
    p.add_argument("--crop", type=int, nargs=2, default=(320, 320), metavar=("H", "W"), help="training patch size")
    p.add_argument("--scale-min", type=float, default=0.75, help="smallest random rescale of the 360x480 image")
    p.add_argument("--scale-max", type=float, default=2.0, help="largest random rescale")
    p.add_argument("--optimizer", default="adamw", choices=("adamw", "sgd"), help="optimiser")
    p.add_argument("--lr", type=float, default=2e-3, help="peak learning rate (poly decay, power 0.9)")
    p.add_argument("--weight-decay", type=float, default=1e-4, help="weight decay on conv weights")
    p.add_argument("--warmup-steps", type=int, default=100, help="linear learning-rate warm-up steps")
    p.add_argument("--val-size", type=int, nargs=2, default=(360, 480), metavar=("H", "W"),
                   help="frame size for val scoring (multiples of 8); the keyframe net sees it scaled by key_scale")
    p.add_argument("--seed", type=int, default=0, help="seed for torch, numpy and python RNGs")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--device", default="auto", help="auto (a CUDA GPU when PyTorch sees one, else the CPU), cpu, cuda or cuda:N")
    p.add_argument("--resume", action="store_true", help="continue from OUT/last.pt if it exists")
    p.add_argument("--max-steps", type=int, default=0, help="stop after this many steps in total (0: no limit; for timing)")
    p.add_argument("--limit", type=int, default=None, help="use only the first N images of each split (smoke tests)")
    p.add_argument("--no-val", action="store_true", help="skip val scoring (timing runs)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    rng, out = start_run(args.seed, args.threads, args.out)

    train = load_split(args.data, "train", args.limit)
    val = [] if args.no_val else load_split(args.data, "val", args.limit)
    aug = AugmentConfig(crop=tuple(args.crop), scale_min=args.scale_min, scale_max=args.scale_max)
    device = pick_device(args.device)
    model = GSVNet(camvid_config(args.net)).to(device)
    print(f"training {args.net} on {device} ({len(train)} train, {len(val)} val images)", flush=True)
    optimizer = make_optimizer(args.optimizer, decay_groups(model.keyframe, args.weight_decay), args.lr, args.weight_decay)
    steps_per_epoch = math.ceil(len(train) / args.batch_size)
    total_steps = steps_per_epoch * args.epochs

    epoch, step, best, history, elapsed = 0, 0, -1.0, [], 0.0
    saved = load_training_state(out) if args.resume else None
    if saved is not None:
        model.keyframe.load_state_dict(saved["keyframe"])
        optimizer.load_state_dict(saved["optimizer"])
        restore_rng(saved["rng"], rng)
        epoch, step, best, history, elapsed = (saved["epoch"], saved["step"], saved["best"], saved["history"], saved["elapsed_s"])
        print(f"resumed from {out / 'last.pt'}: epoch {epoch}, step {step}, best val mIoU {best:.4f}", flush=True)

    interactive = sys.stderr.isatty()
    while epoch < args.epochs and not (args.max_steps and step >= args.max_steps):
        started = time.time()
        order = rng.permutation(len(train))
        losses = []
        bar = tqdm(range(steps_per_epoch), desc=f"epoch {epoch + 1}/{args.epochs}", mininterval=1 if interactive else 30,
                   file=sys.stderr, dynamic_ncols=interactive)
        for i in bar:
            indices = order[i * args.batch_size : (i + 1) * args.batch_size]
            lr = poly_lr(args.lr, step, total_steps, warmup_steps=args.warmup_steps)
            set_lr(optimizer, lr)
            images, labels = (t.to(device) for t in make_batch(train, indices, aug, rng))
            losses.append(train_step(model, optimizer, images, labels))
            step += 1
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}", lr=f"{lr:.2e}", refresh=False)
            if args.max_steps and step >= args.max_steps:
                break
        bar.close()
        train_time = time.time() - started
        epoch += 1
        record = {"epoch": epoch, "step": step, "loss": float(np.mean(losses)), "train_s": round(train_time, 1),
                  "s_per_step": round(train_time / max(1, len(losses)), 3)}
        if val:
            miou, per_class = validate(model, val, tuple(args.val_size))
            record.update(val_miou=miou, val_iou=per_class)
            if miou > best:
                best = miou
                save_checkpoint(out / "best.pt", model, {"stage": "keyframe", "epoch": epoch, "step": step, "val_miou": miou,
                                                         "val_iou": per_class, "args": vars(args)})
        elapsed += time.time() - started
        record["elapsed_s"] = round(elapsed, 1)
        history.append(record)
        save_training_state(out, {"keyframe": model.keyframe.state_dict(), "optimizer": optimizer.state_dict(),
                                  "rng": rng_state(rng), "epoch": epoch, "step": step, "best": best,
                                  "history": history, "elapsed_s": elapsed, "args": vars(args), "augment": asdict(aug)})
        (out / "history.json").write_text(json.dumps(history, indent=1))
        shown = f" val mIoU {record['val_miou']:.4f} (best {best:.4f})" if val else ""
        tqdm.write(f"epoch {epoch}: loss {record['loss']:.4f}, {record['s_per_step']:.2f} s/step{shown}, "
                   f"elapsed {elapsed / 60:.1f} min", file=sys.stderr)
        sys.stderr.flush()
    if not val:  # timing runs still leave a loadable checkpoint
        save_checkpoint(out / "best.pt", model, {"stage": "keyframe", "epoch": epoch, "step": step, "args": vars(args)})
    return {"best_val_miou": best, "epochs": epoch, "steps": step, "elapsed_s": elapsed, "history": history}


if __name__ == "__main__":
    main()
