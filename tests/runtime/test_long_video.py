"""Resident memory of the whole CLI must stay flat over a video.

In CI: 2,000 frames at the engines' size, where one tensor kept per frame would add tens of MB.
Slow: a 1-hour-equivalent video (90,000 frames at 25 fps; tens of minutes on 2 cores), run with

    python -m pytest -q -m slow tests/runtime/test_long_video.py -s
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from tests.conftest import ENGINE_SIZE, REPO, run_module
from tests.runtime.videos import write_video

FRAMES = int(os.environ.get("GSVNET_LONG_FRAMES", "90000"))


def _rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def _run_sampling_rss(cmd: list[str], cwd: Path, progress: Callable[[], int],
                      period: float) -> tuple[subprocess.Popen, list[tuple[float, int, int]]]:
    """Run ``cmd`` to the end; every ``period`` s sample (seconds, progress(), RSS in KiB)."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    started = time.time()
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stderr=subprocess.PIPE, text=True)
    samples: list[tuple[float, int, int]] = []
    while proc.poll() is None:
        try:
            samples.append((time.time() - started, progress(), _rss_kib(proc.pid)))
        except (FileNotFoundError, ProcessLookupError, RuntimeError):
            pass
        time.sleep(period)
    return proc, samples


def _looped_frames(n: int, size: tuple[int, int]):
    base = np.random.default_rng(0).integers(0, 256, (size[0], size[1] + 64, 3), dtype=np.uint8)
    for i in range(n):
        shift = i % 64
        yield np.ascontiguousarray(base[:, shift : shift + size[1]])


SIZE = (48, 64)


@pytest.fixture(scope="module")
def small_engines(tmp_path_factory) -> Path:
    """Engines at the video's own 48x64, so the hour is bounded by the pipeline, not by compute."""
    out = tmp_path_factory.mktemp("engines") / "small"
    proc = run_module("export.build_engines", "--random-weights", "--num-classes", "11", "--out", str(out),
                      "--size", f"{SIZE[0]}x{SIZE[1]}", "--backend", "onnx")
    assert proc.returncode == 0, proc.stderr[-2000:]
    return out


@pytest.mark.slow
def test_memory_stays_flat_over_an_hour_of_video(small_engines, tmp_path):
    video = write_video(tmp_path / "hour.mp4", FRAMES, SIZE, frames=_looped_frames(FRAMES, SIZE))
    stats = tmp_path / "stats.json"
    cmd = [sys.executable, "-m", "runtime.infer", "--video", str(video), "--engines", str(small_engines), "--interval", "4",
           "--out", str(tmp_path / "o.mp4"), "--labels-dir", str(tmp_path / "labels"), "--stats", str(stats), "--no-progress"]
    proc, samples = _run_sampling_rss(cmd, tmp_path, lambda: 0, period=1.0)
    assert proc.returncode == 0, proc.stderr.read()[-2000:]
    total = samples[-1][0]

    def rss_at(fraction: float) -> int:
        return min(samples, key=lambda s: abs(s[0] - fraction * total))[2]

    start, middle, end = rss_at(0.1), rss_at(0.5), rss_at(1.0 - 2.0 / max(total, 4.0))
    s = json.loads(stats.read_text())
    report = (f"{s['frames']} frames in {s['wall_seconds']:.0f} s ({s['fps']:.0f} FPS); RSS start {start / 1024:.1f} MiB, "
              f"middle {middle / 1024:.1f} MiB, end {end / 1024:.1f} MiB; growth {100 * (end - start) / start:+.2f}%")
    print(report)
    assert s["frames"] == FRAMES
    assert end <= start * 1.05 and middle <= start * 1.05, report


CI_FRAMES = 2000
WARM_FRAMES = 500  # onnxruntime arenas, the encoder and the stage timer settle before this
MAX_GROWTH_KIB_PER_FRAME = 3  # a state at 136x240 is 28 KiB (11 classes), a label map 32 KiB, a frame 96 KiB


def test_memory_stays_flat_over_2000_frames(engines, tmp_path):
    """RSS of the CLI from frame 500 to the end of a 2,000-frame video grows by less than 3 KiB per
    frame: no state, label map or frame is kept per frame (each would add 28 KiB or more)."""
    video = write_video(tmp_path / "v.mp4", CI_FRAMES, ENGINE_SIZE, frames=_looped_frames(CI_FRAMES, ENGINE_SIZE))
    labels = tmp_path / "labels"
    partial = tmp_path / ".labels.partial"  # where the PNGs go until the run completes: one per frame done
    cmd = [sys.executable, "-m", "runtime.infer", "--video", str(video), "--engines", str(engines), "--interval", "4",
           "--out", str(tmp_path / "o.mp4"), "--labels-dir", str(labels), "--backend", "onnxruntime", "--no-progress"]
    proc, samples = _run_sampling_rss(cmd, tmp_path, lambda: len(os.listdir(partial)) if partial.exists() else 0,
                                      period=0.1)
    assert proc.returncode == 0, proc.stderr.read()[-2000:]
    assert len(os.listdir(labels)) == CI_FRAMES
    warm = [(frames, rss) for _, frames, rss in samples if frames >= WARM_FRAMES]
    late = [(frames, rss) for frames, rss in warm if frames >= CI_FRAMES - 200]
    assert warm and late, f"too few samples: {samples[-3:]}"
    (first_frames, first_rss), (last_frames, last_rss) = warm[0], max(late, key=lambda s: s[1])
    growth = last_rss - first_rss
    report = (f"RSS {first_rss / 1024:.1f} MiB at frame {first_frames}, {last_rss / 1024:.1f} MiB by frame {last_frames}: "
              f"{growth / max(1, last_frames - first_frames):+.2f} KiB per frame")
    print(report)
    assert growth < MAX_GROWTH_KIB_PER_FRAME * (last_frames - first_frames), report
