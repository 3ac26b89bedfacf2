"""Typed options of ``python -m benchmarks.fps`` (the tables, and ``--end-to-end``): what its command
line parses into and what ``fps.run`` / ``end_to_end.run`` take, so callers need no argv."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path

from engine_format.sizes import size_error

from .environment import CAMVID_TRAIN, RESULTS

QUICK_SIZE = (64, 112)
PRECISIONS = ("fp32", "int8")


@dataclass
class FpsOptions:
    """Every ``benchmarks.fps`` flag with the command line's default (``--help`` says what each
    one measures). ``backends``: ('auto',) or backend names (PyTorch eager is always added as the
    baseline); sizes are (H, W). A value out of range raises a one-line ValueError."""

    size: tuple[int, int] = (544, 960)
    backends: tuple[str, ...] = ("auto",)
    threads: int = field(default_factory=lambda: os.cpu_count() or 1)
    iterations: int = 20
    warmup: int = 3
    frames: int = 40
    repeats: int = 3
    intervals: tuple[int, ...] = (1, 2, 3, 4, 5)
    scaling_sizes: tuple[tuple[int, int], ...] = ((512, 1024), (768, 1536), (1024, 2048))
    batches: tuple[int, ...] = (1, 2, 4)
    checkpoint: Path | None = None
    out_dir: Path = RESULTS
    quick: bool = False
    end_to_end: bool = False
    precisions: tuple[str, ...] = PRECISIONS
    calibration: Path | None = CAMVID_TRAIN
    e2e_eager_intervals: tuple[int, ...] = (1, 4)
    e2e_frames: int = 0
    e2e_repeats: int = 2

    def __post_init__(self) -> None:
        from runtime.backends import CHOICES

        self.out_dir = Path(self.out_dir)
        self.checkpoint = Path(self.checkpoint) if self.checkpoint is not None else None
        self.calibration = Path(self.calibration) if self.calibration is not None else None
        for name in ("backends", "intervals", "batches", "precisions", "e2e_eager_intervals"):
            setattr(self, name, tuple(getattr(self, name)))
        self.size = (int(self.size[0]), int(self.size[1]))
        self.scaling_sizes = tuple((int(h), int(w)) for h, w in self.scaling_sizes)
        for size in (self.size, *self.scaling_sizes):
            if size_error(size):
                raise ValueError(size_error(size))
        for name, low in (("threads", 1), ("iterations", 1), ("warmup", 0), ("frames", 1), ("repeats", 1),
                          ("e2e_frames", 0), ("e2e_repeats", 1)):
            _at_least(name, getattr(self, name), low)
        for name in ("intervals", "batches", "e2e_eager_intervals"):
            if not getattr(self, name):
                raise ValueError(f"--{name.replace('_', '-')} needs at least one value")
            for value in getattr(self, name):
                _at_least(name, value, 1)
        for name, values, known in (("backends", self.backends, CHOICES), ("precisions", self.precisions, PRECISIONS)):
            unknown = [v for v in values if v not in known]
            if unknown:
                raise ValueError(f"--{name}: unknown {', '.join(unknown)}; choose from {', '.join(known)}")

    def quick_tables(self) -> FpsOptions:
        """With ``quick``: the smoke-test settings of the tables (what CI runs); else unchanged."""
        if not self.quick:
            return self
        return replace(self, size=QUICK_SIZE, iterations=2, warmup=1, frames=6, repeats=1, scaling_sizes=(),
                       batches=(1,))

    def quick_end_to_end(self) -> FpsOptions:
        """With ``quick``: the smoke-test settings of ``--end-to-end``; else unchanged."""
        if not self.quick:
            return self
        return replace(self, size=QUICK_SIZE, intervals=(1, 4), e2e_eager_intervals=(1,), e2e_frames=8, e2e_repeats=1)


def _at_least(name: str, value: int, low: int) -> None:
    if value < low:
        raise ValueError(f"--{name.replace('_', '-')} must be >= {low}, got {value}")
