"""Resumable training state: model, optimiser, step counters and RNG states in one file,
written atomically (temporary file + rename) so an interrupted save never corrupts the last one."""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gsvnet.checkpoint import atomic_torch_save

STATE_NAME = "last.pt"


def start_run(seed: int, threads: int, out_dir: str | os.PathLike) -> tuple[np.random.Generator, Path]:
    """Seed torch, python and numpy, set the torch CPU threads and create ``out_dir``.

    Returns the numpy generator every random choice of the run draws from, and ``out_dir``.
    """
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    random.seed(seed)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    return np.random.default_rng(seed), out


def pick_device(name: str) -> torch.device:
    """``auto``: the first CUDA GPU when PyTorch sees one, else the CPU; ``cuda``/``cuda:N``/``cpu`` as given.

    Raises SystemExit with one line when a GPU is asked for and PyTorch has none.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit(f"error: --device {name}: PyTorch {torch.__version__} sees no CUDA GPU "
                         "(install a CUDA build of torch, or use --device cpu)")
    return device


def rng_state(numpy_rng: np.random.Generator) -> dict[str, Any]:
    return {"torch": torch.get_rng_state(), "numpy": numpy_rng.bit_generator.state, "python": random.getstate()}


def restore_rng(state: dict[str, Any], numpy_rng: np.random.Generator) -> None:
    torch.set_rng_state(state["torch"])
    numpy_rng.bit_generator.state = state["numpy"]
    random.setstate(state["python"])


def save_training_state(out_dir: str | os.PathLike, state: dict[str, Any]) -> Path:
    """Write ``out_dir/last.pt``: a dict of tensors, numbers and the pieces above."""
    return atomic_torch_save(state, Path(out_dir) / STATE_NAME)


def load_training_state(out_dir: str | os.PathLike) -> dict[str, Any] | None:
    """The last saved state in ``out_dir``, or None if there is none.

    Only our own files are read, so full unpickling (needed for the RNG states) is acceptable.
    """
    path = Path(out_dir) / STATE_NAME
    if not path.is_file():
        return None
    return torch.load(path, map_location="cpu", weights_only=False)
