"""What the acceptance checks share: the output folder (logs, engines), the real frames, the
engine builds and the commands run as subprocesses under a time limit.

Everything a run writes is under OUT: ``acceptance.log``, ``logs/<name>.log`` (the whole output
of every command), ``engines/<HxW>/`` (built once, reused by every check and by a later run with
the same OUT), ``fps/`` (the benchmark's JSON and PNG) and the report.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np

from .builds import Build, Ledger, read_manifest
from .plan import CLIP_SIZE

REPO = Path(__file__).resolve().parents[2]
CLIP_FRAMES = 16  # frames taken from a --clip video (the shipped sample has 8)
TAIL = 4000  # characters of a command's output kept in the report


class TimedOut(Exception):
    """A command of a check ran past the time it had (``limit_s``)."""

    def __init__(self, what: str, limit_s: float) -> None:
        super().__init__(f"{what} did not finish within {limit_s:.0f} s")
        self.what, self.limit_s = what, limit_s


def read_video(path: Path, count: int, size: tuple[int, int]) -> list[np.ndarray]:
    """The first ``count`` frames of ``path`` at ``size``, uint8 [1,H,W,3] RGB: decoded with PyAV
    (runtime.video) where it imports, else with OpenCV; resized by ``gsvnet.samples.resize_bilinear``."""
    from gsvnet.samples import resize_bilinear

    rgb: list[np.ndarray] = []
    try:
        from runtime.video import VideoReader
    except ImportError:
        try:
            import cv2
        except ImportError:
            raise RuntimeError(f"cannot decode {path}: neither PyAV nor OpenCV imports here (pip install av or "
                               "opencv-python-headless, or omit --clip to use the frames shipped in gsvnet/samples)") from None
        capture = cv2.VideoCapture(str(path))
        while capture.isOpened() and len(rgb) < count:
            ok, bgr = capture.read()
            if not ok:
                break
            rgb.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
        capture.release()
    else:
        reader = VideoReader(path)
        for decoded in reader:
            rgb.append(decoded.rgb)
            if len(rgb) == count:
                break
        reader.close()
    if len(rgb) < 2:
        raise RuntimeError(f"{path} gave {len(rgb)} frame(s); the checks need at least 2 (omit --clip to use the "
                           "frames shipped in gsvnet/samples)")
    return [resize_bilinear(f[None], size) for f in rgb]


def _kill_group(proc: subprocess.Popen) -> None:
    """Kill ``proc`` and every process it started (it leads its own process session)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


class Context:
    """What several checks share. clip: a video to take the real frames from (None: the frames
    shipped in gsvnet/samples/road.npz, which need no decoder)."""

    def __init__(self, out: Path, clip: Path | None, log: Callable[[str], None], ledger: Ledger) -> None:
        self.out, self.clip, self.log, self.ledger = out, clip, log, ledger
        self.engines_root, self.logs = out / "engines", out / "logs"
        self._frames: list[np.ndarray] | None = None

    @property
    def frames_source(self) -> str:
        if self.clip is not None:
            return f"{self.clip} (first {CLIP_FRAMES} frames)"
        return "gsvnet/samples/road.npz (8 real frames of solidWhiteRight.mp4 at 272x480)"

    def frames(self) -> list[np.ndarray]:
        """The real frames at CLIP_SIZE, uint8 [1,H,W,3] each."""
        if self._frames is None:
            if self.clip is not None:
                self._frames = read_video(self.clip, CLIP_FRAMES, CLIP_SIZE)
            else:
                from gsvnet.samples import resize_bilinear, sample_frames

                self._frames = [resize_bilinear(f[None], CLIP_SIZE) for f in sample_frames()]
        return self._frames

    def command(self, name: str, args: list[str], deadline: float, env: dict[str, str] | None = None) -> tuple[int, str]:
        """Run ``python ARGS`` in the repository, its whole output in ``logs/NAME.log``; returns (exit
        status, the output's last TAIL characters). Raises TimedOut (after killing the command and
        every process it started) when it is still running at ``deadline`` (time.monotonic())."""
        self.logs.mkdir(parents=True, exist_ok=True)
        path = self.logs / f"{name}.log"
        full_env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
                    "PYTHONUNBUFFERED": "1", **(env or {})}
        limit = max(deadline - time.monotonic(), 1.0)
        with path.open("w") as output:
            proc = subprocess.Popen([sys.executable, *args], cwd=REPO, env=full_env, stdout=output,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
            try:
                rc = proc.wait(timeout=limit)
            except subprocess.TimeoutExpired:
                _kill_group(proc)
                shown = " ".join(args[:2]) if args[0] == "-m" else f"{args[0]} ..."
                raise TimedOut(f"`python {shown}` (log: {path})", limit) from None
            except BaseException:  # an interrupt: nothing the command started may live on
                _kill_group(proc)
                raise
        return rc, path.read_text(errors="replace")[-TAIL:]

    def build(self, build: Build, deadline: float) -> Path:
        """The engines folder of ``build`` under OUT/engines, built (or found up to date) with
        ``export.build_engines`` before ``deadline``; the time it took goes into the ledger.
        Raises RuntimeError (the build's last line) when the build fails, TimedOut when it is late."""
        folder = self.ledger.folder(build)
        estimate, basis = self.ledger.estimate(build), self.ledger.basis()
        before = read_manifest(folder)
        started = time.monotonic()
        rc: int | None = None
        try:
            rc, out = self.command(f"build-{build.folder}" + ("-tensorrt" if build.tensorrt else ""), build.argv(folder),
                                   deadline)
        finally:
            entry = self.ledger.record(build, time.monotonic() - started, estimate, basis, before, rc)
            state = "reused" if entry["reused"] else "built" if rc == 0 else "stopped" if rc is None else f"failed (exit {rc})"
            self.log(f"      {build.describe()}: {state} in {entry['seconds']} s (estimated {entry['estimate_s']} s, "
                     f"{basis}) -> {folder}")
        if rc != 0:
            raise RuntimeError(f"{build.describe()}: build failed (exit {rc}): "
                               + next((l for l in reversed(out.strip().splitlines()) if l.strip()), "no output"))
        return folder
