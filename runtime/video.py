"""The one video reader: PyAV, frame by frame, never the whole video in memory."""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterable, Iterator, TypeVar

import av
import numpy as np
from av.video.reformatter import VideoReformatter

from .errors import UserError
from .sources import is_device, is_url

T = TypeVar("T")


@dataclass
class DecodedFrame:
    index: int
    rgb: np.ndarray  # uint8 [H,W,3] at the video's own size (rotation applied)
    pts: int | None
    time_base: Fraction | None
    #: the first frame after the frame size changed: segmented as a keyframe (propagating the
    #: previous frame's scores across a change of picture is wrong), the next keyframes count from it
    restart: bool = False
    arrived: float = 0.0  # time.perf_counter() when it was decoded (a live run's latency counts from it)


def _rotation(frame: av.VideoFrame) -> int:
    """Clockwise display rotation in degrees (0, 90, 180, 270) from the frame's side data."""
    angle = getattr(frame, "rotation", 0) or 0
    return int(round(-angle / 90.0)) % 4 * 90


class VideoReader:
    """Opens a video and yields ``DecodedFrame``s in display orientation.

    Damaged packets are skipped and counted; a file that ends early yields every decodable frame.
    ``lost_frames`` compares what was decoded with what the header announced. A frame size that
    changes part-way (joined recordings) is followed: each frame keeps its own size, the first
    frame of a new size is marked ``restart`` and the change is recorded in ``size_changes``.
    """

    def __init__(self, path: str | Path, threads: int = 0, timeout: tuple[float, float] | None = None) -> None:
        """path: a file, a network URL (``rtsp://``, ``udp://``, ... as a string) or a camera
        (``/dev/videoN``); threads: decoder threads (0: FFmpeg's choice, one per core and more);
        timeout: (open, read) seconds after which a source that does not answer ends the reading."""
        network, device = is_url(path), is_device(path)
        self.path = str(path) if network else Path(path)
        if not network and not self.path.exists():
            raise UserError(f"video not found: {self.path}" + (" (no camera there; list them with v4l2-ctl "
                                                              "--list-devices)" if device else ""))
        if not network and self.path.is_dir():
            raise UserError(f"{self.path} is a folder, not a video file (image sequences are not supported; "
                            "encode them first, e.g. ffmpeg -i %06d.png out.mp4)")
        try:
            # RTSP over TCP: every packet arrives (UDP loses some under load, and FFmpeg ends at the
            # server's BYE before the packets still queued), as most cameras allow
            options = {"rtsp_transport": "tcp"} if str(self.path).lower().startswith(("rtsp://", "rtsps://")) else {}
            self.container = av.open(str(self.path), mode="r", format="video4linux2" if device else None,
                                     options=options, timeout=timeout)
        except (av.error.FFmpegError, UnicodeDecodeError, ValueError) as e:
            if network or device:
                raise UserError(f"{self.path} is not a readable stream ({_short(e)}); check the URL, that the server "
                                "or camera is up and reachable from here") from None
            raise UserError(f"{self.path} is not a readable video ({_short(e)}); check that the file is a complete video") from None
        if not self.container.streams.video:
            self.container.close()
            raise UserError(f"{self.path} has no video stream")
        self.stream = self.container.streams.video[0]
        self.stream.thread_type = "AUTO"
        ctx = self.stream.codec_context
        if threads:
            ctx.thread_count = threads
        self.coded_size = (int(ctx.height), int(ctx.width))
        if self.coded_size[0] <= 0 or self.coded_size[1] <= 0:
            self.container.close()
            raise UserError(f"{self.path}: the video stream has no frame size (corrupt header)")
        rate = self.stream.average_rate or self.stream.guessed_rate or self.stream.base_rate
        self.fps: Fraction = Fraction(rate) if rate else Fraction(25)
        self.expected_frames = int(self.stream.frames or 0)
        if not self.expected_frames and self.stream.duration and self.stream.time_base:
            self.expected_frames = int(round(float(self.stream.duration * self.stream.time_base * self.fps)))
        self.decoded = 0
        self.damaged_packets = 0
        #: seconds the source announces (a file, or a recording served over RTSP); None when live
        self.duration = self.container.duration / 1e6 if self.container.duration else None
        self.last_time: float | None = None  # presentation time of the last frame decoded
        self.end_reason: str | None = None  # why the reading ended early (a timeout, a network error)
        self.size_changes: list[dict] = []  # {"frame", "from": [H, W], "to": [H, W]} per change
        self._last_size: tuple[int, int] | None = None
        self.ended_early = False
        # decode the first frame now: a video without one fails before any output exists,
        # and the displayed size (after rotation) is known up front
        self._frames = self._decode()
        self._first = next(self._frames, None)
        if self._first is None:
            self.close()
            raise UserError(f"{self.path} has no decodable video frames (empty or damaged from the start)")
        self.size: tuple[int, int] = self._first.rgb.shape[:2]  # the first frame's (the overlay's)

    @property
    def lost_frames(self) -> int:
        return max(0, self.expected_frames - self.decoded)

    def __iter__(self) -> Iterator[DecodedFrame]:
        if self._first is not None:
            first, self._first = self._first, None
            yield first
        yield from self._frames

    def _decode(self) -> Iterator[DecodedFrame]:
        try:
            for packet in self.container.demux(self.stream):
                try:
                    frames = packet.decode()
                except av.error.EOFError:
                    break
                except av.error.FFmpegError:
                    self.damaged_packets += 1
                    continue
                for frame in frames:
                    yield self._convert(frame)
        except av.error.FFmpegError as e:
            self.ended_early = True  # demuxing failed: the file is cut or damaged from here on
            self.end_reason = ("it stopped sending (no packet within the read timeout)"
                               if isinstance(e, av.error.ExitError) else f"reading failed ({_short(e)})")
        finally:
            self.close()

    @property
    def finished(self) -> bool:
        """Whether the reading reached the end the source announced (its duration, to within half a
        second), as a recording played to its end does; False for a live source without one."""
        if self.duration is None or self.last_time is None:
            return False
        return self.last_time + 1.0 / float(self.fps) >= self.duration - 0.5

    def _convert(self, frame: av.VideoFrame) -> DecodedFrame:
        rgb = frame.to_ndarray(format="rgb24")
        if frame.time is not None:
            self.last_time = frame.time
        turns = _rotation(frame) // 90
        if turns:
            rgb = np.ascontiguousarray(np.rot90(rgb, k=-turns))
        size = rgb.shape[:2]
        restart = self._last_size is not None and size != self._last_size
        if restart:
            self.size_changes.append({"frame": self.decoded, "from": list(self._last_size), "to": list(size)})
        self._last_size = size
        out = DecodedFrame(self.decoded, rgb, frame.pts, frame.time_base, restart, time.perf_counter())
        self.decoded += 1
        return out

    def close(self) -> None:
        try:
            self.container.close()
        except Exception:
            pass


def resize_rgb(rgb: np.ndarray, size: tuple[int, int], reformatter: VideoReformatter | None = None) -> np.ndarray:
    """Bilinear resize of a uint8 [H,W,3] frame to (height, width) with libswscale. A
    ``reformatter`` kept by the caller reuses its scaler between frames (same pixels, less work);
    one reformatter per thread."""
    if rgb.shape[:2] == tuple(size):
        return rgb
    frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
    scaler = reformatter if reformatter is not None else VideoReformatter()
    return scaler.reformat(frame, width=size[1], height=size[0], format="rgb24", interpolation="BILINEAR").to_ndarray()


def prefetch(items: Iterable[T], depth: int = 4) -> Iterator[T]:
    """Produce ``items`` on a background thread, at most ``depth`` ahead (decode overlaps compute)."""
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    done = object()

    def put(item: object) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def worker() -> None:
        try:
            for item in items:
                if not put(item):
                    return
            put(done)
        except BaseException as e:  # hand the error to the consumer
            put(e)

    thread = threading.Thread(target=worker, name="decode", daemon=True)
    thread.start()
    try:
        while True:
            item = q.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join(timeout=1.0)


def _short(e: BaseException) -> str:
    text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return text[:160]
