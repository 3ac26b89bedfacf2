"""The CPU budget of a run: how many threads each part of the pipeline gets.

``runtime.infer`` overlaps decoding, compute and encoding on their own threads (runtime/pipeline.py).
On a CPU the budget B (``--threads``, default: the cores this process may run on) is shared as:

- keyframe workers: ``min(B, 2)`` threads that run keyframe steps ahead of the frames that need
  them (the keyframe net does not depend on the previous frame, so frame i+l's keyframe runs
  while frames i+1..i+l-1 are propagated); with B = 1 keyframes run inline, one thing at a time;
- keyframe graph: the intra-op thread count that was fastest for it in the tuning
  (runtime/tuning.py), at most B / workers;
- every other graph (the 1/8-grid networks, the custom ops, downsample): the count that was
  fastest for it, at most what the keyframe workers leave (at least 1);
- decoder and encoder: ``codec_threads(B)`` each: 1 up to 2 cores (one thread encodes a 960x540
  frame in ~7 ms, and more threads would take cores from the graphs), else B/2, at most 4;
- onnxruntime's worker threads never spin: every thread here shares cores with others, and a
  spinning worker takes the core from the decoder or the encoder.

"Fastest" means the fewest threads within ``GAIN`` of the best measured time: a thread that buys
less than that is worth more to the other stages. Thread counts do not change any result:
onnxruntime's CPU kernels give the same bits at every count (tests/runtime/test_pipeline.py).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field

#: a stage gets more threads only if they make it at least this much faster (10%)
GAIN = 0.10
#: keyframe steps in flight at once, at most (each holds its frame; see runtime/pipeline.py)
MAX_KEYFRAME_WORKERS = 2
#: decoder / encoder threads, at most
MAX_CODEC_THREADS = 4


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity, e.g. a container's or taskset's share)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


@dataclass(frozen=True)
class ThreadPlan:
    """Threads for one run; ``stage_threads`` maps every stage graph to its intra-op threads."""

    budget: int
    stage_threads: dict[str, int]
    keyframe_workers: int  # 0: keyframe steps run inline on the compute thread
    codec_threads: int
    spinning: bool = False
    source: str = ""  # where the per-stage counts came from
    measured_ms: dict[str, dict[str, float]] = field(default_factory=dict)  # stage -> {threads: median ms}
    #: stage -> the engine that runs it where that is not the backend's own (an OpenVINO run's
    #: float32 graphs that onnxruntime runs faster here: runtime/tuning.py ``borrowed_stages``)
    engines: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    def describe(self) -> str:
        counts = sorted(set(self.stage_threads.values()))
        per_stage = (f"{counts[0]} thread(s) per graph" if len(counts) == 1 else
                     ", ".join(f"{s} {t}" for s, t in self.stage_threads.items()))
        ahead = (f"{self.keyframe_workers} keyframe worker(s) ahead" if self.keyframe_workers
                 else "keyframes inline")
        borrowed = "".join(f"; {s} on {e}" for s, e in self.engines.items())
        return (f"CPU budget {self.budget}: {per_stage}; {ahead}; codec threads {self.codec_threads}; "
                f"spinning {'on' if self.spinning else 'off'}{borrowed}" + (f" ({self.source})" if self.source else ""))


def codec_threads(budget: int) -> int:
    """Decoder and encoder threads for a CPU budget (each)."""
    return 1 if budget <= 2 else min(MAX_CODEC_THREADS, budget // 2)


def fastest(times: dict[int, float], limit: int, unmeasured: int = 1) -> int:
    """The fewest threads <= ``limit`` within GAIN of the best time among those measured
    (``times``: threads -> median ms); ``unmeasured`` if nothing at or below ``limit`` was measured."""
    usable = {t: ms for t, ms in times.items() if t <= limit}
    if not usable:
        return max(1, min(limit, unmeasured))
    best = min(usable.values())
    return min(t for t, ms in usable.items() if ms <= best * (1 + GAIN))


def plan_threads(budget: int, stages: list[str], measured: dict[str, dict[int, float]] | None = None,
                 source: str = "") -> ThreadPlan:
    """The plan for ``budget`` cores from per-stage timings (stage -> {threads: ms}). Without
    timings the keyframe graph gets every core its worker has, the other graphs 1 thread."""
    budget = max(1, int(budget))
    measured = measured or {}
    workers = min(budget, MAX_KEYFRAME_WORKERS) if budget > 1 else 0
    key_limit = max(1, budget // max(1, workers))
    key_threads = fastest(measured.get("keyframe", {}), key_limit, unmeasured=key_limit)
    rest = max(1, budget - max(1, workers) * key_threads)
    threads = {s: key_threads if s == "keyframe" else fastest(measured.get(s, {}), rest) for s in stages}
    shown = {s: {str(t): round(ms, 3) for t, ms in sorted(v.items())} for s, v in measured.items()}
    return ThreadPlan(budget, threads, workers, codec_threads(budget), spinning=False, source=source, measured_ms=shown)


def candidate_counts(budget: int) -> list[int]:
    """Thread counts worth measuring for a budget: 1, 2, 4, ... and the budget itself."""
    counts, t = {max(1, budget)}, 1
    while t < budget:
        counts.add(t)
        t *= 2
    return sorted(counts)
