"""A 1-hour-equivalent video (90,000 frames at 25 fps) through the whole CLI: resident memory
must stay flat. Slow (tens of minutes on 2 cores): run with

    python -m pytest -q -m slow tests/runtime/test_long_video.py -s
"""

import json
import os
import subprocess
import sys
import time

from pathlib import Path

import numpy as np
import pytest

from tests.conftest import REPO, run_module
from tests.runtime.videos import write_video

FRAMES = int(os.environ.get("GSVNET_LONG_FRAMES", "90000"))


def _rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


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
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "runtime.infer", "--video", str(video), "--engines", str(small_engines), "--interval", "4",
           "--out", str(tmp_path / "o.mp4"), "--labels-dir", str(tmp_path / "labels"), "--stats", str(stats), "--no-progress"]
    started = time.time()
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True)
    samples: list[tuple[float, int]] = []
    while proc.poll() is None:
        try:
            samples.append((time.time() - started, _rss_kib(proc.pid)))
        except (FileNotFoundError, ProcessLookupError, RuntimeError):
            pass
        time.sleep(1.0)
    assert proc.returncode == 0, proc.stderr.read()[-2000:]
    total = samples[-1][0]

    def rss_at(fraction: float) -> int:
        return min(samples, key=lambda s: abs(s[0] - fraction * total))[1]

    start, middle, end = rss_at(0.1), rss_at(0.5), rss_at(1.0 - 2.0 / max(total, 4.0))
    s = json.loads(stats.read_text())
    report = (f"{s['frames']} frames in {s['wall_seconds']:.0f} s ({s['fps']:.0f} FPS); RSS start {start / 1024:.1f} MiB, "
              f"middle {middle / 1024:.1f} MiB, end {end / 1024:.1f} MiB; growth {100 * (end - start) / start:+.2f}%")
    print(report)
    assert s["frames"] == FRAMES
    assert end <= start * 1.05 and middle <= start * 1.05, report
