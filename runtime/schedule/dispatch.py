"""Which schedule a run uses: one stream with keyframes computed ahead (``lookahead``), or every
stream stepped together in batches (``multistream``, also one stream on a GPU or one core)."""

from __future__ import annotations

from typing import Iterable, Iterator

import numpy as np

from ..backends.base import Backend
from ..video import DecodedFrame
from .core import StepResult
from .lookahead import LookaheadScheduler
from .multistream import MultiStreamScheduler


def keyframe_workers(backend: Backend, streams: int) -> int:
    """Keyframe steps to compute ahead on their own threads for ``streams`` videos (0: inline;
    GPU backends and several videos, which are batched instead, use none)."""
    plan = backend.plan
    if plan is None or not backend.concurrent_steps or streams > 1:
        return 0
    return plan.keyframe_workers


def frame_info(decoded: DecodedFrame) -> tuple[bool, tuple[int, int]]:
    """What the schedule takes from a decoded frame: whether it restarts the keyframe schedule, and
    its own size (its labels' size)."""
    return decoded.restart, tuple(decoded.rgb.shape[:2])  # type: ignore[return-value]


def schedule(backend: Backend, interval: int, label_sizes: list[tuple[int, int]],
             sources: list[Iterable[tuple[DecodedFrame, np.ndarray]]],
             keyframe_workers: int, scores: bool = False) -> Iterator[list[tuple[int, DecodedFrame, StepResult]]]:
    """Per step, (stream, decoded frame, StepResult) of every stream that had a frame: one stream
    with ``keyframe_workers`` > 0 through ``LookaheadScheduler``, otherwise (GPU backends, a budget
    of one core, several videos) through ``MultiStreamScheduler``, one step after the other.
    ``scores``: every StepResult also carries the host scores [1,C,h,w]. Labels have each decoded
    frame's own size, and a frame marked ``restart`` (the frame size changed) is a keyframe."""
    if keyframe_workers:
        if len(sources) != 1:
            raise ValueError("keyframe steps are computed ahead for one stream only")
        lookahead = LookaheadScheduler(backend, interval, label_sizes[0], keyframe_workers,
                                       lambda ms: backend.timer.add("keyframe_wait", ms), scores)
        for decoded, result in lookahead.run(iter(sources[0]), frame_info):
            yield [(0, decoded, result)]
        return
    current: list = [None] * len(sources)

    def engine_only(index: int, source: Iterable[tuple[DecodedFrame, np.ndarray]]) -> Iterator[np.ndarray]:
        for decoded, frame in source:
            current[index] = decoded
            yield frame

    scheduler = MultiStreamScheduler(backend, interval, label_sizes, scores=scores)
    for tick in scheduler.run([engine_only(i, src) for i, src in enumerate(sources)], lambda s: frame_info(current[s])):
        yield [(index, current[index], result) for index, result in tick]
