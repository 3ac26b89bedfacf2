"""The threads of a run: decode -> compute -> write, overlapping, with bounded queues.

- decode (one thread per video, ``runtime.video.prefetch``): demux, decode, convert to RGB and
  resize to the engine size, at most ``DECODE_DEPTH`` frames ahead;
- compute (the caller's thread): the keyframe / propagation schedule and the labels; with
  ``LookaheadScheduler`` the keyframe steps run ahead on worker threads (a keyframe step needs
  only its own frame), so the keyframe net of frame i+l runs while frames i+1.. are propagated;
- write (``OutputWriter``, one thread): blend + encode the overlay, label PNGs, at most
  ``WRITE_DEPTH`` frames behind.

Every queue is bounded, so memory does not grow with the video. The results are the ones
``gsvnet.KeyframeScheduler`` gives for the same backend: the same steps run on the same inputs,
only earlier (tests/runtime/test_pipeline.py holds every label map to it).
"""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from concurrent.futures import Future
from typing import Any, Callable, Iterable, Iterator

import numpy as np

from gsvnet.loop import KeyframeScheduler, StepResult

from .backends.base import Backend, State
from .timing import StageTimer
from .video import DecodedFrame, VideoReader, resize_rgb

DECODE_DEPTH = 4
WRITE_DEPTH = 4


def engine_frames(reader: VideoReader, size: tuple[int, int], limit: int = 0,
                  timer: StageTimer | None = None) -> Iterator[tuple[DecodedFrame, np.ndarray]]:
    """(decoded frame, uint8 [1,H,W,3] resized to the engine ``size``) for the first ``limit``
    frames of ``reader`` (0: all); meant to run on the decode thread (``runtime.video.prefetch``).
    Times 'decode' and 'resize' per frame in ``timer``."""
    from av.video.reformatter import VideoReformatter

    scaler = VideoReformatter()  # one per thread: reuses its scaler from frame to frame
    frames = iter(reader)
    while True:
        start = time.perf_counter()
        decoded = next(frames, None)
        if decoded is None or (limit and decoded.index >= limit):
            return
        decoded_at = time.perf_counter()
        engine = resize_rgb(decoded.rgb, size, scaler)[None]
        if timer is not None and timer.enabled:
            timer.add("decode", (decoded_at - start) * 1e3)
            timer.add("resize", (time.perf_counter() - decoded_at) * 1e3)
        yield decoded, engine


def keyframe_workers(backend: Backend, streams: int) -> int:
    """Keyframe steps to compute ahead on their own threads for ``streams`` videos (0: inline;
    GPU backends and several videos, which are batched instead, use none)."""
    plan = backend.plan
    if plan is None or not backend.concurrent_steps or streams > 1:
        return 0
    return plan.keyframe_workers


def schedule(backend: Backend, interval: int, label_sizes: list[tuple[int, int]],
             sources: list[Iterable[tuple[DecodedFrame, np.ndarray]]],
             keyframe_workers: int, scores: bool = False) -> Iterator[list[tuple[int, DecodedFrame, StepResult]]]:
    """Per step, (stream, decoded frame, StepResult) of every stream that had a frame: one stream
    with ``keyframe_workers`` > 0 through ``LookaheadScheduler``, otherwise (GPU backends, a budget
    of one core, several videos) through ``MultiStreamScheduler``, one step after the other.
    ``scores``: every StepResult also carries the host scores [1,C,h,w]."""
    from .multistream import MultiStreamScheduler

    if keyframe_workers:
        if len(sources) != 1:
            raise ValueError("keyframe steps are computed ahead for one stream only")
        lookahead = LookaheadScheduler(backend, interval, label_sizes[0], keyframe_workers,
                                       lambda ms: backend.timer.add("keyframe_wait", ms), scores)
        for decoded, result in lookahead.run(iter(sources[0])):
            yield [(0, decoded, result)]
        return
    current: list = [None] * len(sources)

    def engine_only(index: int, source: Iterable[tuple[DecodedFrame, np.ndarray]]) -> Iterator[np.ndarray]:
        for decoded, frame in source:
            current[index] = decoded
            yield frame

    scheduler = MultiStreamScheduler(backend, interval, label_sizes, scores=scores)
    for tick in scheduler.run([engine_only(i, src) for i, src in enumerate(sources)]):
        yield [(index, current[index], result) for index, result in tick]


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
    frame order; it holds at most ``workers * l + 1`` frames. ``scores``: each StepResult also
    carries the host scores [1,C,h,w].
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

    def run(self, frames: Iterator[tuple[Any, np.ndarray]]) -> Iterator[tuple[Any, StepResult]]:
        backend, order = self.backend, self.order
        workers = KeyframeWorkers(backend, self.workers)
        pending: deque = deque()
        source = enumerate(frames)

        def fill() -> None:
            while len(pending) < self.window:
                item = next(source, None)
                if item is None:
                    return
                index, (payload, batch) = item
                future = workers.submit(batch) if order.is_keyframe(index) else None
                pending.append((index, payload, batch, future))

        try:
            state: State | None = None
            fill()
            while pending:
                index, payload, batch, future = pending.popleft()
                fill()
                if future is not None:
                    started = time.perf_counter()
                    state = future.result()
                    if self.wait_timer is not None:
                        self.wait_timer((time.perf_counter() - started) * 1e3)
                else:
                    state = backend.propagation_step(state, batch)
                scores = backend.host_scores(state) if self.scores else None
                yield payload, StepResult(index, future is not None, backend.labels(state, order.label_size), scores)
        finally:
            for *_, future in pending:
                if future is not None:
                    future.cancel()
            workers.close()


class OutputWriter:
    """One thread that writes frames to their outputs in the order given; ``put`` blocks while
    ``WRITE_DEPTH`` frames wait. An error in the thread is raised by the next ``put`` or ``finish``."""

    def __init__(self, write: Callable[..., None], depth: int = WRITE_DEPTH) -> None:
        self.write = write
        self.items: queue.Queue = queue.Queue(maxsize=depth)
        self.error: BaseException | None = None
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._work, name="write", daemon=True)
        self.thread.start()

    def _work(self) -> None:
        while True:
            item = self.items.get()
            if item is None or self.stopped.is_set():
                return
            try:
                self.write(*item)
            except BaseException as e:
                self.error = e
                self.stopped.set()
                return

    def put(self, *item: Any) -> None:
        if not self._offer(item):
            self._raise()
            raise RuntimeError("the output writer was stopped")

    def finish(self) -> None:
        """Wait until every frame is written; raises the thread's error if it failed."""
        self._offer(None)
        self.thread.join()
        self._raise()

    def _offer(self, item: Any) -> bool:
        """Queue ``item`` unless the writer stops first (then False)."""
        while not self.stopped.is_set():
            try:
                self.items.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def stop(self, timeout: float = 5.0) -> None:
        """Drop the frames not written yet and wait for the one being written (at most ``timeout`` s)."""
        self.stopped.set()
        while True:
            try:
                self.items.get_nowait()
            except queue.Empty:
                break
        try:
            self.items.put_nowait(None)
        except queue.Full:
            pass
        self.thread.join(timeout)

    def _raise(self) -> None:
        if self.error is not None:
            raise self.error
