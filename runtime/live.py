"""Live sources: cameras and network streams (RTSP, RTMP, HTTP/HLS, UDP, V4L2), read as they arrive.

- ``LiveReader`` reads a live source across drop-outs: a source that stops sending or closes is
  reopened with bounded back-off, the first frame after a reconnect is marked ``restart`` (a
  keyframe: nothing is propagated across a gap), and each gap is recorded. A recording served
  live that announces its duration ends when it has been played to its end.
- ``latest_frames`` is the bounded input buffer of a live run: when the segmenter is slower than
  the source, the oldest frames are dropped (counted), and the frame after a drop is marked
  ``restart``.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections import deque
from typing import Callable, Iterable, Iterator

from .errors import UserError
from .sources import Source, resolve_live
from .video import DecodedFrame, VideoReader, prefetch

DEFAULT_RECONNECT = 6  # reopen attempts after a drop-out (back-off 0.5, 1, 2, 4, 8, 8 s: about 30 s with the opens)
BACKOFF_SECONDS = (0.5, 1.0, 2.0, 4.0, 8.0)
OPEN_TIMEOUT, READ_TIMEOUT = 10.0, 5.0  # seconds: no answer / no packet for this long is a drop-out
LIVE_BUFFER = 4  # frames held between the decoder and the segmenter in a live run


def backoff(attempt: int) -> float:
    """Seconds to wait before reopen attempt ``attempt`` (0-based)."""
    return BACKOFF_SECONDS[min(attempt, len(BACKOFF_SECONDS) - 1)]


class LiveReader:
    """A live source's frames, in order, across drop-outs; as ``VideoReader`` for the rest of the run.

    ``reconnect``: reopen attempts after each drop-out (0: end at the first). ``gaps`` records each
    drop-out the source came back from: the frame count when it began, its length in seconds, the
    frames the source's frame rate says were missed, the attempts it took. ``gone`` is the reason
    when the source stayed away; the frames before it are complete. ``stop()`` ends the reading
    (from another thread) at the next frame or timeout.
    """

    def __init__(self, source: Source, threads: int = 0, reconnect: int = DEFAULT_RECONNECT,
                 log: Callable[[str], None] = print) -> None:
        self.source, self.threads, self.reconnect, self.log = source, threads, reconnect, log
        self.path = source
        self.reader = self._open()  # the first open fails as a file does: one line, before any output
        self.size, self.fps = self.reader.size, self.reader.fps
        self.expected_frames = 0  # a live source announces no frame count
        self.lost_frames = 0  # frames missed in gaps are in ``gaps``; a source gone for good in ``gone``
        self.decoded = 0
        self.gaps: list[dict] = []
        self.gone: str | None = None
        self.size_changes: list[dict] = []  # across reconnects too
        self._damaged = 0
        self._stopped = threading.Event()

    def _open(self) -> VideoReader:
        self.opened_at = time.monotonic()
        return VideoReader(self.source, threads=self.threads, timeout=(OPEN_TIMEOUT, READ_TIMEOUT))

    def refresh(self, older_than: float = 1.0) -> None:
        """Open the source again if it was opened more than ``older_than`` seconds ago and not read
        since (a run opens its sources before loading the backend, and a live source does not wait:
        what it sent meanwhile is stale or lost). Before the first frame is taken only."""
        if self.decoded == 0 and time.monotonic() - self.opened_at > older_than:
            self.reader.close()  # first: a UDP source's port is free again only then
            self.reader = self._open()

    @property
    def damaged_packets(self) -> int:
        return self._damaged + self.reader.damaged_packets

    def stop(self) -> None:
        """End the reading at the next frame (or read timeout, or back-off wait); safe from any
        thread: the decoder closes its source itself."""
        self._stopped.set()

    def __iter__(self) -> Iterator[DecodedFrame]:
        restart, last_size = False, None
        while True:
            for decoded in self.reader:
                if self._stopped.is_set():
                    return
                size = tuple(decoded.rgb.shape[:2])
                if last_size is not None and size != last_size:
                    self.size_changes.append({"frame": self.decoded, "from": list(last_size), "to": list(size)})
                last_size = size
                yield dataclasses.replace(decoded, index=self.decoded, restart=restart or decoded.restart)
                restart = False
                self.decoded += 1
            if self._stopped.is_set() or self.reader.finished:
                return  # asked to stop, or a recording served live played to its end
            began, why = time.monotonic(), self.reader.end_reason or "the source closed the stream"
            self._damaged += self.reader.damaged_packets
            reader, attempts, error = None, 0, why
            while reader is None and attempts < self.reconnect and not self._stopped.is_set():
                if self._stopped.wait(backoff(attempts)):
                    break
                attempts += 1
                try:
                    reader = self._open()
                except UserError as e:
                    error = str(e)
            if reader is None:
                if not self._stopped.is_set():
                    seconds = time.monotonic() - began
                    self.gone = (f"{why} after frame {self.decoded} and did not come back "
                                 f"({attempts} reconnect attempts over {seconds:.0f} s; last: {error})")
                return
            seconds = time.monotonic() - began
            self.gaps.append({"after_frame": self.decoded, "seconds": round(seconds, 2), "reason": why,
                              "attempts": attempts, "frames_missed": int(round(seconds * float(self.fps)))})
            self.log(f"{self.source}: reconnected after {seconds:.1f} s ({why}); the next frame is a keyframe")
            self.reader, restart = reader, True

    def close(self) -> None:
        self.stop()


def open_source(source: Source, threads: int, live: bool | None, reconnect: int = DEFAULT_RECONNECT,
                log: Callable[[str], None] = print) -> tuple[VideoReader | LiveReader, bool]:
    """(reader, live) for a ``--video`` value: a ``LiveReader`` for a live source (``live``: None
    tells by its name, ``resolve_live``), else a ``VideoReader``."""
    live = resolve_live(source, live)
    return (LiveReader(source, threads, reconnect, log=log) if live else VideoReader(source, threads=threads)), live


def input_buffer(frames: Iterable[tuple[DecodedFrame, object]], live: bool, drop: bool,
                 counter: DropCounter | None = None, depth: int = 4) -> Iterator[tuple[DecodedFrame, object]]:
    """The buffer between decoding and segmenting: ``latest_frames`` (the oldest dropped when it
    is full) for a live source that may drop, else ``prefetch`` (the decoder waits), ``depth`` ahead."""
    return latest_frames(frames, LIVE_BUFFER, counter) if live and drop else prefetch(frames, depth=depth)


class DropCounter:
    """What ``latest_frames`` dropped: the count, and per drop-out of the buffer (after_frame, count)."""

    def __init__(self) -> None:
        self.dropped = 0
        self.drops: list[dict] = []
        self.peak = 0  # the most frames the buffer held

    def add(self, after_frame: int) -> None:
        self.dropped += 1
        if self.drops and self.drops[-1]["after_frame"] == after_frame:
            self.drops[-1]["dropped"] += 1
        else:
            self.drops.append({"after_frame": after_frame, "dropped": 1})


def latest_frames(items: Iterable[tuple[DecodedFrame, object]], depth: int = LIVE_BUFFER,
                  counter: DropCounter | None = None) -> Iterator[tuple[DecodedFrame, object]]:
    """``items`` produced on a background thread into a buffer of ``depth``; when it is full the
    oldest is dropped (counted in ``counter``, by the frames delivered before it) and the next
    frame delivered is marked ``restart``. Like ``runtime.video.prefetch``, errors reach the consumer."""
    counter = counter if counter is not None else DropCounter()
    buffer: deque = deque()
    ready = threading.Condition()
    stop = threading.Event()
    done = object()
    state = {"delivered": 0, "gap": False}

    def worker() -> None:
        try:
            for item in items:
                if stop.is_set():
                    return
                with ready:
                    if len(buffer) >= depth:
                        buffer.popleft()
                        counter.add(state["delivered"])
                        state["gap"] = True
                    buffer.append(item)
                    counter.peak = max(counter.peak, len(buffer))
                    ready.notify()
            end: object = done
        except BaseException as e:  # handed to the consumer
            end = e
        with ready:
            buffer.append(end)
            ready.notify()

    thread = threading.Thread(target=worker, name="live-decode", daemon=True)
    thread.start()
    try:
        while True:
            with ready:
                while not buffer:
                    ready.wait(0.1)
                item = buffer.popleft()
                gap, state["gap"] = state["gap"], False
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            decoded, frame = item
            if gap:
                decoded.restart = True
            state["delivered"] += 1
            yield decoded, frame
    finally:
        stop.set()
        thread.join(timeout=1.0)

