"""The threads of a run: decode -> compute -> write, overlapping, with bounded queues.

- decode (one thread per video, ``runtime.video.prefetch``): demux, decode, convert to RGB and
  resize to the engine size, at most ``DECODE_DEPTH`` frames ahead;
- compute (the caller's thread): the keyframe / propagation schedule and the labels
  (``runtime.schedule``; with its lookahead variant the keyframe steps run ahead on worker threads);
- write (``OutputWriter``, one thread): blend + encode the overlay, label PNGs, at most
  ``WRITE_DEPTH`` frames behind.

Every queue is bounded, so memory does not grow with the video.
"""

from __future__ import annotations

import queue
import threading
import time
from typing import Any, Callable, Iterator

import numpy as np

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
