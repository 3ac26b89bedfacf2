"""A disk that fills while runtime.infer writes: one line naming the output and the cause, exit 2,
no traceback, nothing partial left behind."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from runtime.outputs import partial_path
from tests.conftest import run_module
from tests.runtime.videos import write_video

FRAMES, SIZE = 40, (136, 240)  # random texture: a few kB per encoded frame, more per label PNG


@pytest.fixture
def video(tmp_path) -> Path:
    return write_video(tmp_path / "v.mp4", FRAMES, SIZE)


@pytest.fixture
def small_disk(tmp_path):
    """A 64 kB tmpfs, too small for the outputs (mounting needs root, as CI's tests run)."""
    mount = tmp_path / "small"
    mount.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root; tests/runtime/test_write_errors.py's /dev/full test still runs")
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)], capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({proc.stderr.strip()}); the /dev/full test still runs")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=False)


def infer(engines: Path, video: Path, cwd: Path, *outputs: str) -> subprocess.CompletedProcess:
    return run_module("runtime.infer", "--video", str(video), "--engines", str(engines), "--no-progress",
                      "--backend", "onnxruntime", *outputs, cwd=cwd)


def assert_one_line(proc: subprocess.CompletedProcess, what: str, path: Path) -> None:
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: could not write the {what} {path}: No space left on device; free some space"), last


@pytest.mark.parametrize("flag, name, what", [("--out", "o.mp4", "output video"), ("--labels-dir", "labels", "labels folder")])
def test_a_full_disk_ends_in_one_line_and_leaves_nothing(engines, video, small_disk, tmp_path, flag, name, what):
    target = small_disk / name
    proc = infer(engines, video, tmp_path, flag, str(target))
    assert_one_line(proc, what, target)
    assert list(small_disk.iterdir()) == [], "a partial output was left on the full disk"


def test_an_overlay_written_to_a_full_device_ends_in_one_line(engines, video, tmp_path):
    """Without a small disk: the overlay's partial file is a link to /dev/full (every write fails
    with ENOSPC); the stats, which fit, are not written either, since the run failed."""
    out, stats = tmp_path / "o.mp4", tmp_path / "s.json"
    partial_path(out).symlink_to("/dev/full")
    proc = infer(engines, video, tmp_path, "--out", str(out), "--stats", str(stats))
    assert_one_line(proc, "output video", out)
    assert not out.exists() and not stats.exists() and not os.path.lexists(partial_path(out))
