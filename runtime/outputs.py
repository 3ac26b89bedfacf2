"""Output files, each written under a temporary name and renamed only when complete.

``OverlayVideo`` (colour overlay mp4), ``LabelPngs`` (one uint8 PNG of class ids per frame) and
``write_stats`` (JSON). ``abort()`` removes whatever was written so far. A write that fails
(disk full, folder removed, permission lost) raises ``OutputError``: one line naming the output
and the cause.
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from contextlib import contextmanager
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import av
import numpy as np
from av.video.reformatter import VideoReformatter
from PIL import Image

from engine_format.manifest import write_json_atomic

from .errors import UserError
from .video import resize_rgb

VIDEO_SUFFIXES = {".mp4": "mp4", ".mkv": "matroska", ".mov": "mov"}


class OutputError(UserError):
    """An output could not be written while the run went on (exit 2; partial outputs are removed)."""


ADVICE = {errno.ENOSPC: "free some space or write to another disk", errno.EDQUOT: "the disk quota is used up; free some",
          errno.EACCES: "give this user write permission there or choose another path",
          errno.EROFS: "the file system is read-only; choose another path",
          errno.ENOENT: "its folder was removed while the run wrote into it; choose a folder that stays"}


@contextmanager
def writing(what: str, path: Path) -> Iterator[None]:
    """Turn an ``OSError`` while writing ``what`` at ``path`` into an ``OutputError`` line."""
    try:
        yield
    except OSError as e:
        cause = e.strerror or str(e) or type(e).__name__
        fix = ADVICE.get(e.errno or 0, "check the disk and the folder, or choose another path")
        raise OutputError(f"could not write the {what} {path}: {cause}; {fix} "
                          "(the partial output was removed)") from None


def check_video_suffix(path: Path) -> None:
    """An overlay video path must name a container the encoder writes."""
    if path.suffix.lower() not in VIDEO_SUFFIXES:
        raise UserError(f"output video {path} must end in one of {', '.join(VIDEO_SUFFIXES)}")


def partial_path(path: Path) -> Path:
    """Temporary name beside ``path`` (same folder, so the final rename is atomic)."""
    return path.with_name(f".{path.name}.partial{path.suffix}")


def check_output_path(path: Path, inputs: list[Path], what: str) -> None:
    """Fail early, with one line, on outputs that cannot be written or would clobber an input."""
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.exists():
        raise UserError(f"{what} folder {parent} does not exist; create it or choose another path")
    if not parent.is_dir():
        raise UserError(f"{what} path {path}: {parent} is not a folder")
    try:  # a real probe: permissions alone say nothing on read-only file systems or for root
        fd, probe = tempfile.mkstemp(prefix=".gsvnet-probe-", dir=parent)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise UserError(f"{what} folder {parent} is not writable ({e.strerror}); choose another path") from None
    for src in inputs:
        if isinstance(src, Path) and path.exists() and src.exists() and path.resolve() == src.resolve():
            raise UserError(f"{what} {path} is the input video itself; choose another output path")
    if path.is_dir() and what != "labels":
        raise UserError(f"{what} path {path} is a folder; give a file name")


#: x264's presets, fastest first (``--encoder-preset``); each slower one spends more CPU per frame
#: for a smaller file at the same ``--encoder-crf`` quality
X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow")
DEFAULT_PRESET, DEFAULT_CRF = "veryfast", 20


class OverlayVideo:
    """H.264 video of frames blended with their label colours; the input's frame rate and first
    frame size (frames of another size, after a change part-way, are scaled to it)."""

    def __init__(self, path: Path, size: tuple[int, int], fps: Fraction, palette: np.ndarray, alpha: float,
                 threads: int = 0, preset: str = DEFAULT_PRESET, crf: int = DEFAULT_CRF) -> None:
        """threads: encoder threads (0: x264's choice, 1.5 per core); preset: one of X264_PRESETS;
        crf: x264's constant rate factor, 0 (lossless) .. 51 (lowest quality)."""
        check_video_suffix(path)
        self.path = path
        self.tmp = partial_path(path)
        height, width = size
        with writing("output video", path):
            self.container = av.open(str(self.tmp), mode="w", format=VIDEO_SUFFIXES[path.suffix.lower()])
        try:
            self.stream = self.container.add_stream("libx264", rate=fps)
            self.stream.width, self.stream.height = width, height
            # 4:2:0 needs even sizes; odd-sized videos keep their size with full-resolution chroma
            self.stream.pix_fmt = "yuv420p" if height % 2 == 0 and width % 2 == 0 else "yuv444p"
            self.stream.options = {"crf": str(crf), "preset": preset}
            if threads:
                self.stream.codec_context.thread_count = threads
        except BaseException:
            self.abort()
            raise
        self.palette, self.alpha = palette, alpha
        self.size = (height, width)
        self.frames = 0
        self.scaler: VideoReformatter | None = None  # made on the first frame of another size

    def write_frame(self, index: int, rgb: np.ndarray, labels: np.ndarray) -> None:
        """Append the frame ``rgb`` [H,W,3] blended with the colours of ``labels`` [H,W]."""
        overlay = blend(rgb, labels, self.palette, self.alpha)
        if overlay.shape[:2] != self.size:
            self.scaler = self.scaler or VideoReformatter()
            overlay = resize_rgb(overlay, self.size, self.scaler)
        frame = av.VideoFrame.from_ndarray(overlay, format="rgb24")
        with writing("output video", self.path):
            for packet in self.stream.encode(frame):
                self.container.mux(packet)
        self.frames += 1

    def close(self) -> None:
        with writing("output video", self.path):
            for packet in self.stream.encode():
                self.container.mux(packet)
            self.container.close()
            os.replace(self.tmp, self.path)

    def abort(self) -> None:
        try:
            self.container.close()
        except Exception:
            pass
        self.tmp.unlink(missing_ok=True)


class SegmentedOverlay:
    """The overlay as consecutive files of ``seconds`` of video each (``out_000.mp4``,
    ``out_001.mp4``, ...), each complete and playable once closed, so a run of days never holds one
    file open; ``abort`` removes only the file being written."""

    def __init__(self, path: Path, size: tuple[int, int], fps: Fraction, palette: np.ndarray, alpha: float,
                 seconds: float, **encoder: object) -> None:
        check_video_suffix(path)  # now: the first file is opened only with the first frame
        self.path, self.size, self.fps, self.palette, self.alpha, self.encoder = path, size, fps, palette, alpha, encoder
        self.per_file = max(1, int(round(seconds * float(fps))))
        self.current: OverlayVideo | None = None
        self.files: list[Path] = []  # complete segments
        self.frames = 0

    def segment_path(self, k: int) -> Path:
        return self.path.with_name(f"{self.path.stem}_{k:03d}{self.path.suffix}")

    def write_frame(self, index: int, rgb: np.ndarray, labels: np.ndarray) -> None:
        if self.current is None:
            self.current = OverlayVideo(self.segment_path(len(self.files)), self.size, self.fps, self.palette,
                                        self.alpha, **self.encoder)  # type: ignore[arg-type]
        self.current.write_frame(index, rgb, labels)
        self.frames += 1
        if self.current.frames >= self.per_file:
            self._close_current()

    def _close_current(self) -> None:
        current, self.current = self.current, None
        if current is not None:
            try:
                current.close()
            except BaseException:
                current.abort()
                raise
            self.files.append(current.path)

    def close(self) -> None:
        self._close_current()

    def abort(self) -> None:
        if self.current is not None:
            self.current.abort()
            self.current = None


class LabelPngs:
    """One single-channel PNG of class ids per frame (``000000.png`` ...) in a folder."""

    def __init__(self, folder: Path) -> None:
        if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
            raise UserError(f"labels folder {folder} exists and is not empty; choose a new folder or delete it")
        self.folder = folder
        self.tmp = folder.with_name(f".{folder.name}.partial")
        shutil.rmtree(self.tmp, ignore_errors=True)
        with writing("labels folder", folder):
            self.tmp.mkdir(parents=False)
        self.frames = 0

    def write_frame(self, index: int, rgb: np.ndarray, labels: np.ndarray) -> None:
        with writing("labels folder", self.folder):
            Image.fromarray(labels, mode="L").save(self.tmp / f"{index:06d}.png", compress_level=1)
        self.frames += 1

    def close(self) -> None:
        with writing("labels folder", self.folder):
            if self.folder.exists():
                self.folder.rmdir()  # empty, checked at start
            os.replace(self.tmp, self.folder)

    def abort(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)


def write_stats(path: Path, stats: dict) -> None:
    with writing("stats file", path):
        write_json_atomic(path, stats)


def blend(rgb: np.ndarray, labels: np.ndarray, palette: np.ndarray, alpha: float) -> np.ndarray:
    """(1 - alpha) * frame + alpha * palette[labels], uint8 [H,W,3]: (frame * (256 - a) + colour * a) >> 8
    with a = round(256 alpha), in 16-bit integers."""
    a = int(round(alpha * 256))
    mixed = np.multiply(rgb, 256 - a, dtype=np.uint16)
    # np.take gathers the colours several times faster than palette[labels] (fancy indexing)
    mixed += np.take(palette.astype(np.uint16) * a, labels, axis=0)
    mixed >>= 8
    return mixed.astype(np.uint8)
