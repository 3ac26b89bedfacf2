"""Per-stage wall-clock timing in bounded memory (an hour of video must not grow the process)."""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from typing import Callable, Iterator

import numpy as np

RESERVOIR = 4096  # samples kept per stage for the median and p90


class StageSamples:
    """Exact count, total and mean of a stream of milliseconds; median and p90 from a uniform
    random sample of at most ``capacity`` of them (reservoir sampling, fixed seed), so memory
    stays constant however long the run. Exact while fewer than ``capacity`` were added."""

    def __init__(self, capacity: int = RESERVOIR, seed: int = 0) -> None:
        self.capacity = capacity
        self.kept = np.empty(capacity, np.float64)
        self.count = 0
        self.total = 0.0
        self._rng = np.random.default_rng(seed)

    def add(self, ms: float) -> None:
        if self.count < self.capacity:
            self.kept[self.count] = ms
        else:
            j = int(self._rng.integers(0, self.count + 1))
            if j < self.capacity:
                self.kept[j] = ms
        self.count += 1
        self.total += ms

    def summary(self) -> dict[str, float]:
        kept = self.kept[: min(self.count, self.capacity)]
        return {"count": self.count, "total_ms": self.total, "mean_ms": self.total / self.count,
                "median_ms": float(np.median(kept)), "p90_ms": float(np.percentile(kept, 90))}


class StageTimer:
    """Collects milliseconds per named stage. ``sync`` (e.g. a CUDA synchronise) runs before each
    reading so asynchronous backends are timed honestly; it is None on the CPU. Stages may be timed
    from several threads at once (the pipeline's keyframe workers)."""

    def __init__(self, sync: Callable[[], None] | None = None, enabled: bool = True) -> None:
        self.stages: dict[str, StageSamples] = {}
        self.sync = sync
        self.enabled = enabled
        self._lock = threading.Lock()

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
        self.add(name, (time.perf_counter() - start) * 1e3)

    def add(self, name: str, ms: float) -> None:
        with self._lock:
            if name not in self.stages:
                self.stages[name] = StageSamples()
            self.stages[name].add(ms)

    def summary(self) -> dict[str, dict[str, float]]:
        """stage -> {count, total_ms, mean_ms, median_ms, p90_ms}."""
        with self._lock:
            return {name: s.summary() for name, s in self.stages.items() if s.count}

    def reset(self) -> None:
        with self._lock:
            self.stages.clear()
