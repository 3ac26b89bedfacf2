"""Fleet fixtures: three short clips cut from the real videos, their runtime.infer outputs (the
reference), and one fleet run over them on a local Ray cluster with 2 workers."""

from __future__ import annotations

import contextlib
import filecmp
import io
import json
import os
import signal
import threading
import time
from pathlib import Path

import av
import numpy as np
import pytest

from benchmarks.clips import cut_clip
from tests.conftest import DATA, run_module

VIDEOS = DATA / "videos"
#: name -> (source video, first frame, frame count): two parts of one clip and one of another size
CLIPS = {"white_a": ("solidWhiteRight.mp4", 0, 30), "white_b": ("solidWhiteRight.mp4", 120, 30),
         "project": ("project_video_short.mp4", 0, 24)}


@pytest.fixture(scope="session")
def engines(shipped_engines) -> Path:
    """The fleet tests run the shipped-weight engines (real labels, so the fleet's outputs can also
    be held to the independent reference of tests/independent.py)."""
    return shipped_engines


@pytest.fixture(scope="session")
def fleet_clips(tmp_path_factory) -> dict[str, Path]:
    if not DATA.is_dir():
        pytest.skip(f"no shared data folder at {DATA} (read-only data beside the repo); the fleet tests need its videos")
    missing = sorted({name for name, *_ in CLIPS.values() if not (VIDEOS / name).exists()})
    assert not missing, f"{missing} missing from {VIDEOS}, but {DATA} exists (the data is expected to be complete)"
    folder = tmp_path_factory.mktemp("clips")
    return {name: cut_clip(VIDEOS / src, folder / f"{name}.mp4", start, n) for name, (src, start, n) in CLIPS.items()}


@pytest.fixture(scope="session")
def reference(fleet_clips, engines, tmp_path_factory) -> dict[str, Path]:
    """Per clip, a folder with what ``python -m runtime.infer`` writes for it alone."""
    root = tmp_path_factory.mktemp("reference")
    out = {}
    for name, clip in fleet_clips.items():
        folder = root / name
        folder.mkdir()
        proc = run_module("runtime.infer", "--video", str(clip), "--engines", str(engines), "--out",
                          str(folder / "overlay.mp4"), "--labels-dir", str(folder / "labels"), "--stats",
                          str(folder / "stats.json"), "--no-progress", cwd=root)
        assert proc.returncode == 0, proc.stderr[-2000:]
        out[name] = folder
    return out


def run_fleet(*argv: str, on_event=None) -> tuple[int, str]:
    """``python -m runtime.fleet argv`` in this process; (exit status, what it printed on stderr)."""
    from runtime.fleet.cli import main

    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        try:
            status = main(list(argv), on_event=on_event)
        except SystemExit as e:  # argparse refusing a flag
            status = e.code
    return status, err.getvalue()


def fleet_args(clips, engines: Path, out_dir: Path, *extra: str) -> list[str]:
    return ["--videos", *map(str, clips), "--engines", str(engines), "--out-dir", str(out_dir), "--workers", "2",
            "--labels", "--overlay", "--no-progress", *extra]


@pytest.fixture(scope="session")
def fleet_run(fleet_clips, engines, tmp_path_factory) -> Path:
    """The three clips through the fleet (2 workers, labels and overlays); returns the out-dir."""
    out_dir = tmp_path_factory.mktemp("fleet") / "out"
    status, err = run_fleet(*fleet_args(fleet_clips.values(), engines, out_dir))
    assert status == 0, err[-3000:]
    return out_dir


class Throttle:
    """Slow a worker process about tenfold (stopped 90 ms of every 100, by SIGSTOP/SIGCONT), so a
    test that kills it, or its node, at a progress report finds its short video still running,
    however loaded the machine is. Ends when the process is gone or ``release`` is called."""

    def __init__(self, pid: int, stopped_s: float = 0.09, running_s: float = 0.01) -> None:
        self.pid, self._done = pid, threading.Event()
        self._thread = threading.Thread(target=self._loop, args=(stopped_s, running_s), daemon=True)
        self._thread.start()

    def _loop(self, stopped_s: float, running_s: float) -> None:
        try:
            while not self._done.is_set():
                os.kill(self.pid, signal.SIGSTOP)
                time.sleep(stopped_s)
                os.kill(self.pid, signal.SIGCONT)
                time.sleep(running_s)
        except ProcessLookupError:
            pass  # killed: nothing left to slow

    def release(self) -> None:
        self._done.set()
        self._thread.join()
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGCONT)


def summary_rows(out_dir: Path) -> dict[str, dict]:
    return {row["name"]: row for row in json.loads((out_dir / "summary.json").read_text())["videos"]}


def partial_files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if "partial" in p.name or p.name == ".fleet.lock"]


def _frames(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


def assert_same_as_infer(folder: Path, reference: Path) -> None:
    """Labels byte for byte, the stats' counts and settings, and the overlay video: same frames,
    size and rate, and pixels within H.264 encoder noise (libx264 with threads does not always
    produce the same bytes twice, even from runtime.infer itself)."""
    ref_pngs = sorted(p.name for p in (reference / "labels").iterdir())
    assert sorted(p.name for p in (folder / "labels").iterdir()) == ref_pngs
    match, mismatch, errors = filecmp.cmpfiles(reference / "labels", folder / "labels", ref_pngs, shallow=False)
    assert not mismatch and not errors, f"label PNGs differ: {mismatch[:5]}"
    got, want = json.loads((folder / "stats.json").read_text()), json.loads((reference / "stats.json").read_text())
    for key in ("video", "frames", "keyframes", "expected_frames", "lost_frames", "video_size", "video_fps",
                "interval", "backend", "engine_size", "keyframe_net"):
        assert got[key] == want[key], key
    with av.open(str(folder / "overlay.mp4")) as a, av.open(str(reference / "overlay.mp4")) as b:
        sa, sb = a.streams.video[0], b.streams.video[0]
        assert (sa.width, sa.height, sa.average_rate) == (sb.width, sb.height, sb.average_rate)
    frames, ref_frames = _frames(folder / "overlay.mp4"), _frames(reference / "overlay.mp4")
    assert len(frames) == len(ref_frames) == want["frames"]
    for i, (x, y) in enumerate(zip(frames, ref_frames)):
        mse = float(np.mean((x.astype(np.float64) - y) ** 2))
        assert mse == 0 or 10 * np.log10(255**2 / mse) > 45, f"overlay frame {i} differs beyond encoder noise"
