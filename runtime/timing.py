"""Per-stage wall-clock timing."""

from __future__ import annotations

import time
from collections import defaultdict
from contextlib import contextmanager
from typing import Callable, Iterator

import numpy as np


class StageTimer:
    """Collects milliseconds per named stage. ``sync`` (e.g. a CUDA synchronise) runs before each
    reading so asynchronous backends are timed honestly; it is None on the CPU."""

    def __init__(self, sync: Callable[[], None] | None = None, enabled: bool = True) -> None:
        self.samples: dict[str, list[float]] = defaultdict(list)
        self.sync = sync
        self.enabled = enabled

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        if not self.enabled:
            yield
            return
        if self.sync:
            self.sync()
        start = time.perf_counter()
        yield
        if self.sync:
            self.sync()
        self.samples[name].append((time.perf_counter() - start) * 1e3)

    def summary(self) -> dict[str, dict[str, float]]:
        """stage -> {count, total_ms, mean_ms, median_ms, p90_ms}."""
        out = {}
        for name, xs in self.samples.items():
            a = np.asarray(xs)
            out[name] = {"count": int(a.size), "total_ms": float(a.sum()), "mean_ms": float(a.mean()),
                         "median_ms": float(np.median(a)), "p90_ms": float(np.percentile(a, 90))}
        return out

    def reset(self) -> None:
        self.samples.clear()
