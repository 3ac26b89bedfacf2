"""One stream with its keyframe steps computed ahead on worker threads (a keyframe step needs only
its own frame), so the keyframe net of frame i+l runs while frames i+1.. are propagated. The
results are the ones ``KeyframeScheduler`` gives for the same backend: the same steps on the same
inputs, only earlier (tests/runtime/test_pipeline.py holds every label map to it)."""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from concurrent.futures import Future
from typing import Any, Callable, Iterator

import numpy as np

from ..backends.base import Backend
from .core import FrameInfo, KeyframeScheduler, PropagationState, StepResult


class KeyframeWorkers:
    """``count`` daemon threads running ``backend.keyframe_step`` jobs in submission order."""

    def __init__(self, backend: Backend, count: int) -> None:
        self.backend = backend
        self.jobs: queue.Queue = queue.Queue()
        self.threads = [threading.Thread(target=self._work, name=f"keyframe-{i}", daemon=True) for i in range(count)]
        for t in self.threads:
            t.start()

    def submit(self, frames: np.ndarray) -> Future:
        future: Future = Future()
        self.jobs.put((future, frames))
        return future

    def _work(self) -> None:
        while True:
            job = self.jobs.get()
            if job is None:
                return
            future, frames = job
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(self.backend.keyframe_step(frames))
            except BaseException as e:  # handed to whoever waits for this keyframe
                future.set_exception(e)

    def close(self, timeout: float | None = 60.0) -> None:
        """Cancel jobs not started and wait (up to ``timeout`` s per thread) for the threads to end:
        a step in flight finishes first, so the backend is not in use once this returns."""
        while True:
            try:
                job = self.jobs.get_nowait()
            except queue.Empty:
                break
            if job is not None:
                job[0].cancel()
        for _ in self.threads:
            self.jobs.put(None)
        for t in self.threads:
            if t is not threading.current_thread():
                t.join(timeout)


class LookaheadScheduler:
    """``KeyframeScheduler``'s schedule (keyframes at 0, l, 2l, ...) for one stream, with up to
    ``workers`` keyframe steps computed ahead, concurrently with the propagation steps before them.

    ``run`` takes (payload, uint8 frames [1,H,W,3]) pairs and yields (payload, StepResult) in
    frame order; it holds at most ``workers * l + 1`` frames. ``info(payload)``, when given, says
    which frames restart the schedule and each frame's label size. ``scores``: each StepResult
    also carries the host scores [1,C,h,w].
    """

    def __init__(self, backend: Backend, interval: int, label_size: tuple[int, int], workers: int,
                 wait_timer: Callable[[float], None] | None = None, scores: bool = False) -> None:
        if workers < 1:
            raise ValueError(f"LookaheadScheduler needs at least one keyframe worker, got {workers}")
        self.backend, self.workers = backend, workers
        self.order = KeyframeScheduler(backend, interval, label_size)  # which frames are keyframes
        self.window = workers * interval + 1
        self.wait_timer = wait_timer
        self.scores = scores

    def run(self, frames: Iterator[tuple[Any, np.ndarray]], info: FrameInfo | None = None) -> Iterator[tuple[Any, StepResult]]:
        backend, order = self.backend, self.order
        info = info or (lambda payload: (False, None))
        workers = KeyframeWorkers(backend, self.workers)
        pending: deque = deque()
        source = enumerate(frames)

        def fill() -> None:
            while len(pending) < self.window:
                item = next(source, None)
                if item is None:
                    return
                index, (payload, batch) = item
                restart, size = info(payload)
                if restart:
                    order.restart(index)
                future = workers.submit(batch) if order.is_keyframe(index) else None
                pending.append((index, payload, batch, future, size or order.label_size))

        try:
            state: PropagationState | None = None
            fill()
            while pending:
                index, payload, batch, future, size = pending.popleft()
                fill()
                if future is not None:
                    started = time.perf_counter()
                    state = future.result()
                    if self.wait_timer is not None:
                        self.wait_timer((time.perf_counter() - started) * 1e3)
                else:
                    state = backend.propagation_step(state, batch)
                scores = backend.host_scores(state) if self.scores else None
                yield payload, StepResult(index, future is not None, backend.labels(state, size), scores)
        finally:
            for *_, future, _size in pending:
                if future is not None:
                    future.cancel()
            workers.close()
