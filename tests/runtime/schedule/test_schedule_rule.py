"""Every scheduler places keyframes by the written rule (tests/independent.py
``documented_keyframes``: frame 0, then every l-th frame, stream s of S staggered earlier by
floor(s*l/S)), checked against that rule and not against another scheduler."""

from __future__ import annotations

import itertools
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from engine_format.manifest import STAGES, load_manifest
from runtime.schedule import KeyframeScheduler
from runtime.backends import create_backend
from runtime.schedule.multistream import MultiStreamScheduler
from runtime.schedule.dispatch import schedule
from runtime.schedule.lookahead import LookaheadScheduler
from runtime.threads import plan_threads
from runtime.video import DecodedFrame
from tests.conftest import ENGINE_SIZE
from tests.independent import documented_keyframes

REPO = Path(__file__).resolve().parents[3]
FRAMES = 14
SIZE = (16, 24)  # label size: small, the labels are not what is checked here


def rule(count: int, interval: int, stream: int = 0, streams: int = 1) -> list[int]:
    return list(itertools.takewhile(lambda i: i < count, documented_keyframes(interval, stream, streams)))


@pytest.fixture(scope="module")
def backend(engines):
    return create_backend("onnxruntime", load_manifest(engines), plan=plan_threads(2, list(STAGES)))


def decoded(index: int, size: tuple[int, int], restart: bool = False) -> DecodedFrame:
    """A decoded frame as the video reader gives it (only its size and ``restart`` matter here)."""
    return DecodedFrame(index, np.zeros((*size, 3), np.uint8), None, None, restart)


def rule_with_restarts(count: int, interval: int, restarts: set[int], phase: int = 0) -> list[int]:
    """Frame 0, the frames i with (i + phase) % l == 0, and after a restart at r (a change of frame
    size) r itself and then r + l, r + 2l, ... instead."""
    anchor, keys = -phase, []
    for i in range(count):
        if i in restarts:
            anchor = i
        if i == 0 or (i - anchor) % interval == 0:
            keys.append(i)
    return keys


def frames(count: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (1, *ENGINE_SIZE, 3), dtype=np.uint8) for _ in range(count)]


@pytest.mark.parametrize("interval", [1, 2, 4, 5])
def test_single_stream_and_lookahead_follow_the_rule(backend, interval):
    source = frames(FRAMES, interval)
    single = [r.index for r in KeyframeScheduler(backend, interval, SIZE).run(iter(source)) if r.keyframe]
    ahead = [r.index for _, r in LookaheadScheduler(backend, interval, SIZE, 2).run(iter(enumerate(source)))
             if r.keyframe]
    assert single == rule(FRAMES, interval), "KeyframeScheduler"
    assert ahead == rule(FRAMES, interval), "LookaheadScheduler"


@pytest.mark.parametrize("streams,interval", [(2, 4), (3, 4), (4, 4), (3, 5)])
def test_multi_stream_staggers_by_the_rule(backend, streams, interval):
    sources = [iter(frames(FRAMES, s)) for s in range(streams)]
    keys: list[list[int]] = [[] for _ in range(streams)]
    for tick in MultiStreamScheduler(backend, interval, [SIZE] * streams).run(sources):
        for s, result in tick:
            if result.keyframe:
                keys[s].append(result.index)
    assert keys == [rule(FRAMES, interval, s, streams) for s in range(streams)]


@pytest.mark.parametrize("workers,streams", [(0, 1), (2, 1), (0, 3)])
def test_the_runtime_dispatch_follows_the_rule(backend, workers, streams):
    """``runtime.schedule.dispatch.schedule``, the one entry runtime.infer and the fleet workers call."""
    sources = [((decoded(i, SIZE), f) for i, f in enumerate(frames(FRAMES, s))) for s in range(streams)]
    keys: list[list[int]] = [[] for _ in range(streams)]
    for tick in schedule(backend, 4, [SIZE] * streams, sources, workers):
        for s, _decoded, result in tick:
            if result.keyframe:
                keys[s].append(result.index)
    assert keys == [rule(FRAMES, 4, s, streams) for s in range(streams)]


@pytest.mark.parametrize("workers,streams", [(0, 1), (2, 1), (0, 2)])
def test_a_change_of_frame_size_restarts_the_schedule_with_labels_at_each_frames_size(backend, workers, streams):
    """A frame marked ``restart`` (the video reader marks the first frame of a new size) is a
    keyframe and the next keyframes count from it; every label map has its own frame's size."""
    restarts = [{3, 9}, {6}][:streams]
    other = (20, 30)

    def source(s: int):
        for i, f in enumerate(frames(FRAMES, s)):
            yield decoded(i, other if i >= min(restarts[s]) else SIZE, i in restarts[s]), f

    sources = [source(s) for s in range(streams)]
    keys: list[list[int]] = [[] for _ in range(streams)]
    for tick in schedule(backend, 4, [SIZE] * streams, sources, workers):
        for s, frame, result in tick:
            assert result.labels.shape[1:] == frame.rgb.shape[:2], (s, result.index)
            if result.keyframe:
                keys[s].append(result.index)
    assert keys == [rule_with_restarts(FRAMES, 4, restarts[s], (s * 4) // streams) for s in range(streams)]
    if streams == 1:
        assert keys == [[0, 3, 7, 9, 13]]  # the rule itself, spelled out once


@pytest.mark.parametrize("module", ["runtime.schedule.multistream", "runtime.pipeline"])
def test_the_schedulers_import_without_torch(module):
    """The runtime's schedulers need no PyTorch (an onnxruntime- or OpenVINO-only deployment)."""
    code = f"import sys\nimport {module}\nassert 'torch' not in sys.modules, 'importing {module} imports torch'\n"
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
