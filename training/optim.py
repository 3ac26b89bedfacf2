"""Optimisers and the poly learning-rate schedule shared by the training scripts."""

from __future__ import annotations

import torch
from torch import nn


def make_optimizer(name: str, params, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    """``adamw`` or ``sgd`` (momentum 0.9, Nesterov)."""
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.9, nesterov=True, weight_decay=weight_decay)
    raise ValueError(f"unknown optimizer {name!r}; choose adamw or sgd")


def poly_lr(base_lr: float, step: int, total_steps: int, power: float = 0.9, warmup_steps: int = 0) -> float:
    """Linear warm-up for ``warmup_steps``, then base_lr * (1 - t/T)^power, floored at 1% of base_lr."""
    if warmup_steps and step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    t = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return base_lr * max(0.01, (1.0 - t) ** power)


def rescheduled_lr(start_lr: float, start_step: int, step: int, total_steps: int, power: float = 0.9,
                   floor: float = 0.0) -> float:
    """A shortened poly schedule: ``start_lr`` at ``start_step`` decaying as (1 - t)^power to
    zero at ``total_steps`` (t the fraction of the remaining steps done), floored at ``floor``."""
    t = min(1.0, max(0.0, (step - start_step) / max(1, total_steps - start_step)))
    return max(floor, start_lr * (1.0 - t) ** power)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


def decay_groups(module: nn.Module, weight_decay: float) -> list[dict]:
    """Parameter groups: weight decay on conv/linear weights only, none on biases and norms."""
    decay, no_decay = [], []
    for name, p in module.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim <= 1 else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
