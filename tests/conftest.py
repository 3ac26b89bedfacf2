"""Shared fixtures: paths to the read-only real data beside the repository, seeded RNGs."""

from __future__ import annotations

from dataclasses import dataclass
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


def shared_data(path: Path, what: str) -> Path:
    """``path`` inside ../shared/data, for a test that needs it.

    The rule: skip only when the whole ../shared/data folder is absent (a checkout without the
    read-only data); when the folder exists (as in CI), a missing file is a failure, not a skip.
    """
    if not DATA.is_dir():
        pytest.skip(f"no shared data folder at {DATA} (read-only data beside the repo); {what} tests need it")
    if not path.exists():
        pytest.fail(f"{what} missing: {path} does not exist, but {DATA} does (the data is expected to be complete)")
    return path


@pytest.fixture
def one_torch_thread():
    """PyTorch on one thread for the test, restored afterwards. On a busy 2-core machine two
    threads wait on each other: 40 GSVNet steps at 136x240 measured 14 s on two threads, 1.1 s on one."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def real_clip() -> Path:
    """The real 960x540 clip (see ``shared_data`` for when it skips or fails)."""
    return shared_data(CLIP, "real clip")


@pytest.fixture
def camvid_dir() -> Path:
    """The CamVid root with its test split (see ``shared_data`` for when it skips or fails)."""
    shared_data(CAMVID / "test", "CamVid test split")
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


def private_engines(source: Path, out: Path) -> Path:
    """A copy of the engines folder ``source`` at ``out`` without what earlier runs on this
    machine kept in it (verdicts, tuning timings/choice/guards, the OpenVINO model cache), so a
    test measures, verifies and chooses afresh, or as it fakes."""
    import shutil

    from runtime import tuning, verification
    from runtime.backends import openvino_backend

    kept = (verification.VERDICTS, tuning.FILE, openvino_backend.CACHE)
    shutil.copytree(source, out, ignore=shutil.ignore_patterns(*kept))
    return out


@pytest.fixture(scope="session")
def engines(tmp_path_factory) -> Path:
    """Random-weight engines at ENGINE_SIZE, built once per session through the CLI."""
    out = tmp_path_factory.mktemp("engines") / "eng"
    proc = run_module("export.build_engines", "--random-weights", "--num-classes", "11", "--out", str(out),
                      "--size", f"{ENGINE_SIZE[0]}x{ENGINE_SIZE[1]}", "--backend", "onnx", "--seed", "3")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


@pytest.fixture(scope="session")
def shipped_engines(tmp_path_factory) -> Path:
    """Engines from the shipped weights (``gsvnet.pretrained``) at ENGINE_SIZE, built once per
    session the way the README builds them: no --checkpoint, no --random-weights."""
    import hashlib
    import json

    from gsvnet.pretrained import default_checkpoint

    shipped = default_checkpoint("swiftnet_r18")
    assert shipped is not None, "no shipped swiftnet_r18 weights in gsvnet/weights/"
    out = tmp_path_factory.mktemp("shipped-engines") / "eng"
    proc = run_module("export.build_engines", "--out", str(out), "--size", f"{ENGINE_SIZE[0]}x{ENGINE_SIZE[1]}",
                      "--backend", "onnx")
    assert proc.returncode == 0, proc.stderr[-3000:]
    checkpoint = json.loads((out / "manifest.json").read_text())["checkpoint"]
    assert not checkpoint["random_weights"]
    assert checkpoint["source_sha256"] == hashlib.sha256(shipped.read_bytes()).hexdigest(), "not the shipped weights"
    return out


@dataclass
class ClipRun:
    """Outputs of one ``runtime.infer`` run over the whole real clip."""

    engines: Path
    overlay: Path
    labels_dir: Path
    stats: dict
    alpha: float
    interval: int


@pytest.fixture(scope="session")
def shipped_clip_run(shipped_engines, tmp_path_factory) -> ClipRun:
    """``python -m runtime.infer`` on every frame of the real clip with the shipped-weight engines
    (onnxruntime backend, so its labels can be held exactly to that backend)."""
    import json

    clip = shared_data(CLIP, "real clip")
    folder = tmp_path_factory.mktemp("shipped-run")
    run = ClipRun(shipped_engines, folder / "overlay.mp4", folder / "labels", {}, alpha=0.5, interval=4)
    stats = folder / "stats.json"
    proc = run_module("runtime.infer", "--video", str(clip), "--engines", str(shipped_engines), "--out", str(run.overlay),
                      "--labels-dir", str(run.labels_dir), "--stats", str(stats), "--interval", str(run.interval),
                      "--backend", "onnxruntime", "--no-progress", cwd=folder)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "RANDOM weights" not in proc.stderr
    run.stats = json.loads(stats.read_text())
    return run
