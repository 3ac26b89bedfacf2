"""``runtime.Segmenter``: segment videos or frames from Python with exactly what
``python -m runtime.infer`` runs: the same backend selection and first-use verification
(runtime/loading.py), the same CPU thread plan, and the same decode -> schedule pipeline
(runtime/pipeline.py) with bounded queues, so a long source streams in flat memory.

    with Segmenter.load(engines="engines") as seg:
        for result in seg.stream("video.mp4"):
            result.labels  # uint8 [H,W] class ids at the video's size
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import os
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Iterable, Iterator, Sequence, Union

import numpy as np

from .options import InferOptions, VerifyMode

if TYPE_CHECKING:
    from .loading import LoadedBackend
    from .video import DecodedFrame

#: a video path (anything runtime.video.VideoReader opens) or an iterable of RGB uint8 [H,W,3] frames
Source = Union[str, os.PathLike, Iterable[np.ndarray]]

_logger = logging.getLogger("runtime")


@dataclass
class FrameResult:
    """One segmented frame of a source."""

    index: int  # frame number in its source, from 0
    keyframe: bool  # the keyframe net ran on this frame (otherwise: propagated from the previous one)
    labels: np.ndarray  # uint8 [H,W] class ids at the source's own size
    scores: np.ndarray | None = None  # float32 [C,h,w] class scores on the 1/8 grid of the engine size (on request)


class Segmenter:
    """A loaded, verified backend and the schedule that drives it; ``load`` makes one.

    One source at a time: ``stream``, ``stream_many`` or ``segment_video``, each finished (or its
    iterator closed) before the next starts. ``close`` (or leaving a ``with`` block) stops the
    stream in progress, with its threads, and releases the backend (sessions, device memory).
    """

    def __init__(self, loaded: LoadedBackend, options: InferOptions, load_seconds: float = 0.0,
                 log: Callable[[str], None] = _logger.info) -> None:
        """Use ``load``; ``loaded``: a backend from ``runtime.loading.load_backend`` for ``options.engines``."""
        self.loaded = loaded
        self.backend = loaded.backend
        self.manifest = loaded.backend.manifest
        self.options = options
        self.load_seconds = load_seconds
        self.log = log
        self._active: Callable[[], None] | None = None  # stops the source in progress
        self._closed = False

    @classmethod
    def load(cls, engines: str | os.PathLike = "engines", backend: str = "auto", threads: int = 0, interval: int = 4,
             verify: VerifyMode = "auto", *, keyframe_net: str | None = None, size: tuple[int, int] | None = None,
             tune: bool = False, profile_stages: bool = False, precision: str | None = None,
             log: Callable[[str], None] | None = None) -> Segmenter:
        """Select, load and verify a backend for the engines folder, as ``runtime.infer`` does.

        ``backend``: 'auto' or a name (``--backend``); ``threads``: CPU budget (0: every usable
        core); ``interval``: keyframe interval l; ``verify``: 'auto', 'force' or 'skip';
        ``precision``: 'f32', 'bf16' or 'int8' (``--precision``; None: the backend's default);
        ``keyframe_net`` / ``size`` (H, W): refuse engines built otherwise; ``log``: where the
        messages ``runtime.infer`` prints go (default: the 'runtime' logger at INFO).
        Raises ``UserError`` (or ``ManifestError``) with the line the command line prints.
        """
        options = InferOptions(engines=engines, backend=backend, threads=threads, interval=interval, verify=verify,
                               keyframe_net=keyframe_net, size=size, tune=tune, profile_stages=profile_stages,
                               precision=precision)
        return cls.from_options(options, log)

    @classmethod
    def from_options(cls, options: InferOptions, log: Callable[[str], None] | None = None) -> Segmenter:
        """``load`` from typed options (their video and output fields are not used here)."""
        from engine_format.manifest import load_manifest

        from .infer import backend_line, check_engines_match
        from .loading import load_backend

        log = log or _logger.info
        manifest = load_manifest(options.engines)
        check_engines_match(manifest, options)
        started = time.perf_counter()
        loaded = load_backend(options.backend, manifest, options.threads, options.profile_stages, options.tune,
                              options.verify, log, options.precision, options.interval)
        segmenter = cls(loaded, options, time.perf_counter() - started, log)
        log(backend_line(loaded))
        if manifest.data["checkpoint"].get("random_weights"):
            log("WARNING: these engines hold RANDOM weights, so the segmentation is meaningless; "
                "rebuild them with a trained --checkpoint")
        return segmenter

    def describe(self) -> str:
        """What was chosen and why: engines, backend, verification verdict, thread plan (one line each)."""
        from .infer import backend_line
        from .schedule.dispatch import keyframe_workers

        m, plan = self.manifest, self.backend.plan
        h, w = m.frame_size
        ahead = keyframe_workers(self.backend, 1)
        threads = f"threads: {plan.describe()}" if plan is not None else "threads: no CPU thread plan (GPU backend)"
        return "\n".join([
            f"engines: {m.folder} ({m.model['keyframe_net']} at {h}x{w})",
            backend_line(self.loaded),
            self.loaded.verdict.line(),
            threads,
            f"schedule: keyframe every {self.options.interval} frames, "
            + (f"{ahead} keyframe step(s) computed ahead" if ahead else "keyframes inline"),
        ])

    # ---- segmenting ------------------------------------------------------------------------------
    def stream(self, source: Source, scores: bool = False) -> Iterator[FrameResult]:
        """One ``FrameResult`` per frame of ``source``, in order, each as soon as it is ready.

        ``source``: a video path, or an iterable of RGB uint8 [H,W,3] frames of any size (resized
        to the engine size as ``runtime.infer`` does, labels at each frame's own size; the first
        frame after a change of size is a keyframe), consumed as it goes; ``scores``: also return
        the 1/8-grid scores.
        """
        return _results(self._run([source], scores))

    def stream_many(self, sources: Sequence[Source], scores: bool = False) -> Iterator[tuple[int, FrameResult]]:
        """(source index, FrameResult) for several sources batched through the backend, the
        streams' keyframes staggered (runtime/schedule/multistream.py), as ``runtime.infer`` runs several videos.
        Per step every source that still has frames yields one result, in source order."""
        return self._run(list(sources), scores)

    def segment_video(self, video: str | os.PathLike | Sequence[str | os.PathLike], out: str | os.PathLike | None = None,
                      labels_dir: str | os.PathLike | None = None, stats: str | os.PathLike | None = None,
                      alpha: float = 0.5, max_frames: int | None = None) -> dict:
        """Write what ``runtime.infer --video VIDEO`` writes (overlay ``out``, label PNGs in
        ``labels_dir``, ``stats`` JSON; each atomically) and return the stats. Several videos
        (a list) are batched, and ``out`` / ``labels_dir`` are then existing folders."""
        from .infer import Run

        self._check_idle()
        videos = [video] if isinstance(video, (str, os.PathLike)) else list(video)
        options = dataclasses.replace(self.options, video=videos, out=out, labels_dir=labels_dir, stats=stats,
                                      alpha=alpha, max_frames=max_frames, progress=False)
        run = Run(options, log=self.log, loaded=self.loaded)
        self._active = run.stop.set
        try:
            return run.process()
        except BaseException:
            run.abort()
            raise
        finally:
            self._active = None

    # ---- lifetime -------------------------------------------------------------------------------
    def close(self) -> None:
        """Stop the stream in progress (its decode and keyframe threads end) and release the backend."""
        if self._closed:
            return
        self._closed = True
        active, self._active = self._active, None
        if active is not None:
            active()
        self.backend.close()

    def __enter__(self) -> Segmenter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- inside -------------------------------------------------------------------------------
    def _check_idle(self) -> None:
        if self._closed:
            raise RuntimeError("this Segmenter is closed; load another one")
        if self._active is not None:
            raise RuntimeError("a Segmenter runs one source at a time: finish or close the stream in progress "
                               "first, or pass every source to stream_many")

    def _run(self, sources: list[Source], scores: bool) -> Iterator[tuple[int, FrameResult]]:
        """Open every source now (a bad path fails here), then schedule them lazily."""
        self._check_idle()
        opened = [self._open(source) for source in sources]
        return self._schedule(opened, scores)

    def _schedule(self, opened: list[tuple[tuple[int, int], Iterator, bool]], scores: bool) -> Iterator[tuple[int, FrameResult]]:
        from .live import input_buffer
        from .pipeline import DECODE_DEPTH
        from .schedule.dispatch import keyframe_workers, schedule

        self._check_idle()
        backend = self.backend
        feeds = [input_buffer(frames, live, self.options.drop, depth=DECODE_DEPTH) for _, frames, live in opened]
        ticks = schedule(backend, self.options.interval, [size for size, _, _ in opened], feeds,
                         keyframe_workers(backend, len(feeds)), scores)

        def stop() -> None:
            """End the schedule, then the decode threads, then the sources (their readers)."""
            for part in (ticks, *feeds, *(frames for _, frames, _ in opened)):
                try:
                    getattr(part, "close", lambda: None)()
                except ValueError:  # running on another thread (close() from elsewhere): it ends with the backend
                    pass

        self._active = stop
        try:
            for tick in ticks:
                for index, _decoded, step in tick:
                    yield index, FrameResult(step.index, bool(step.keyframe), step.labels[0],
                                             step.scores[0] if scores else None)
        finally:
            stop()
            if self._active is stop:
                self._active = None

    def _open(self, source: Source) -> tuple[tuple[int, int], Iterator[tuple[DecodedFrame, np.ndarray]], bool]:
        """(label size, (decoded frame, uint8 [1,H,W,3] at the engine size) pairs, live) for one
        source; a URL or camera is live (read across drop-outs, the oldest frames dropped when
        segmenting falls behind, unless the options say ``drop=False``)."""
        from .live import open_source
        from .pipeline import engine_frames
        from .sources import as_source
        from .threads import codec_threads, usable_cores

        if isinstance(source, (str, os.PathLike)):
            threads = codec_threads(self.options.threads or usable_cores())
            reader, live = open_source(as_source(source), threads, self.options.live, self.options.reconnect, self.log)
            return (reader.size, _closing(engine_frames(reader, self.backend.frame_size, 0, self.backend.timer), reader),
                    live)
        frames = iter(source)
        first = next(frames, None)
        if first is None:
            return self.backend.frame_size, iter(()), False
        first = _rgb_frame(first, 0)
        return first.shape[:2], _array_frames(itertools.chain([first], frames), self.backend.frame_size,
                                              self.backend.timer), False


def _results(pairs: Iterator[tuple[int, FrameResult]]) -> Iterator[FrameResult]:
    """The results of a one-source ``_run``; closing this closes the run."""
    try:
        for _, result in pairs:
            yield result
    finally:
        pairs.close()  # type: ignore[attr-defined]


def _closing(frames: Iterator, reader) -> Iterator:
    """``frames``, closing ``reader`` when they end or are closed."""
    try:
        yield from frames
    finally:
        reader.close()


def _rgb_frame(frame: object, index: int) -> np.ndarray:
    """``frame`` as a C-contiguous uint8 [H,W,3] array."""
    rgb = np.ascontiguousarray(frame)
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"frame {index}: expected an RGB uint8 [H,W,3] array, got {rgb.dtype} {list(rgb.shape)}")
    return rgb


def _array_frames(frames: Iterable[np.ndarray], size: tuple[int, int], timer) -> Iterator[tuple[DecodedFrame, np.ndarray]]:
    """(frame, uint8 [1,H,W,3] resized to the engine ``size``), resized as ``pipeline.engine_frames``
    resizes decoded frames (bilinear libswscale, one scaler per thread); a frame whose size differs
    from the one before is marked ``restart``; times 'resize'."""
    from av.video.reformatter import VideoReformatter

    from .video import DecodedFrame, resize_rgb

    scaler = VideoReformatter()
    shape: tuple[int, ...] | None = None
    for index, frame in enumerate(frames):
        rgb = _rgb_frame(frame, index)
        restart = shape is not None and rgb.shape != shape
        shape = rgb.shape
        start = time.perf_counter()
        engine = resize_rgb(rgb, size, scaler)[None]
        if timer.enabled:
            timer.add("resize", (time.perf_counter() - start) * 1e3)
        yield DecodedFrame(index, rgb, None, None, restart), engine
