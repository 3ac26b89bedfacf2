"""Shared fixtures: paths to the read-only real data beside the repository, seeded RNGs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
CLIP = DATA / "videos" / "solidWhiteRight.mp4"
CAMVID = DATA / "camvid"


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


@pytest.fixture(autouse=True)
def _seed_torch() -> None:
    torch.manual_seed(1234)


@pytest.fixture
def real_clip() -> Path:
    if not CLIP.exists():
        pytest.skip(f"real clip not found at {CLIP} (read-only data beside the repo: ../shared/data)")
    return CLIP


@pytest.fixture
def camvid_dir() -> Path:
    if not (CAMVID / "test").is_dir():
        pytest.skip(f"CamVid not found at {CAMVID} (read-only data beside the repo: ../shared/data)")
    return CAMVID


ENGINE_SIZE = (136, 240)  # the real clip (540x960) at 1/4, rounded up to multiples of 8


def clip_frames(clip: Path, n: int, size: tuple[int, int] = ENGINE_SIZE) -> list[np.ndarray]:
    """The first ``n`` frames of a video resized to ``size``, as uint8 [1,H,W,3] batches."""
    from runtime.video import VideoReader, resize_rgb

    out = []
    reader = VideoReader(clip)
    for decoded in reader:
        out.append(resize_rgb(decoded.rgb, size)[None])
        if len(out) == n:
            break
    reader.close()
    return out


def run_module(module: str, *args: str, cwd: Path | None = None, timeout: int = 900):
    """Run ``python -m module args`` as a user would (repo on PYTHONPATH, output captured)."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd or REPO, env=env, capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture(scope="session")
def engines(tmp_path_factory) -> Path:
    """Random-weight engines at ENGINE_SIZE, built once per session through the CLI."""
    out = tmp_path_factory.mktemp("engines") / "eng"
    proc = run_module("export.build_engines", "--random-weights", "--num-classes", "11", "--out", str(out),
                      "--size", f"{ENGINE_SIZE[0]}x{ENGINE_SIZE[1]}", "--backend", "onnx", "--seed", "3")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out
