from __future__ import annotations

import gc
import subprocess
import sys
import weakref
from pathlib import Path

import pytest
import torch

from gsvnet import GSVNet, GSVNetConfig, PropagationState, ops
from runtime.schedule import KeyframeScheduler
from runtime.schedule.torch_stepper import segment_frames

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def model() -> GSVNet:
    torch.manual_seed(0)
    return GSVNet(GSVNetConfig(keyframe_net="swiftnet_r18", num_classes=6)).eval()


def _frames(n: int, size=(64, 96)):
    g = torch.Generator().manual_seed(7)
    for _ in range(n):
        yield torch.randint(0, 256, (1, *size, 3), dtype=torch.uint8, generator=g)


def test_interval_one_equals_the_keyframe_net_on_every_frame(model):
    results = list(segment_frames(model, _frames(4), interval=1))
    assert all(r.keyframe for r in results)
    for r, frame in zip(results, _frames(4)):
        with torch.no_grad():
            expected = ops.scores_to_labels(model.keyframe_scores(frame), (64, 96))
        assert torch.equal(r.labels, expected)


@pytest.mark.parametrize("interval", [2, 3, 5])
def test_keyframes_fall_at_multiples_of_the_interval(model, interval):
    results = list(segment_frames(model, _frames(11), interval=interval))
    assert [r.index for r in results if r.keyframe] == list(range(0, 11, interval))
    assert [r.index for r in results] == list(range(11))


def test_non_keyframes_use_propagation(model):
    frames = list(_frames(2))
    results = list(segment_frames(model, iter(frames), interval=2))
    with torch.no_grad():
        key = model.keyframe_step(frames[0])
        expected = model.labels(model.propagation_step(key, frames[1]), (64, 96))
    assert torch.equal(results[1].labels, expected)


class RecordingStepper:
    """Runs ``model`` and keeps a weak reference to every tensor its steps return, so a test can
    see which of them are still alive (tracemalloc does not see tensor storage; weak references do)."""

    def __init__(self, model: GSVNet) -> None:
        self.model = model
        self.scores: list[weakref.ref] = []
        self.small: list[weakref.ref] = []
        self.labels_out: list[weakref.ref] = []

    def _record(self, state: PropagationState) -> PropagationState:
        self.scores.append(weakref.ref(state.scores))
        self.small.append(weakref.ref(state.small))
        return state

    def keyframe_step(self, frames: torch.Tensor) -> PropagationState:
        return self._record(self.model.keyframe_step(frames))

    def propagation_step(self, state: PropagationState, frames: torch.Tensor) -> PropagationState:
        return self._record(self.model.propagation_step(state, frames))

    def labels(self, state: PropagationState, size: tuple[int, int]) -> torch.Tensor:
        out = self.model.labels(state, size)
        self.labels_out.append(weakref.ref(out))
        return out


def _alive(refs: list[weakref.ref]) -> int:
    return sum(ref() is not None for ref in refs)


def test_loop_streams_and_keeps_only_the_latest_state(model, one_torch_thread):
    """One frame in, one result out, and every past state, frame and label map is freed: memory
    cannot grow with the video (a tensor kept per frame, e.g. through autograd history, fails)."""
    consumed: list[int] = []
    frames_seen: list[weakref.ref] = []

    def frames():
        for i, f in enumerate(_frames(16, size=(32, 48))):
            consumed.append(i)
            frames_seen.append(weakref.ref(f))
            yield f

    stepper = RecordingStepper(model)
    results = segment_frames(stepper, frames(), interval=4)
    for n in range(16):
        result = next(results)
        assert result.index == n and consumed == list(range(n + 1))  # streamed, not read ahead
        del result
        gc.collect()
        assert len(stepper.scores) == n + 1
        # the scheduler holds the latest state (for the next step), at most the latest frame and label map
        assert _alive(stepper.scores) == 1 and stepper.scores[-1]() is not None, f"after frame {n}"
        assert _alive(stepper.small) == 1, f"after frame {n}"
        assert _alive(frames_seen) <= 1 and _alive(stepper.labels_out) <= 1, f"after frame {n}"


def test_interval_must_be_positive(model):
    with pytest.raises(ValueError, match="interval"):
        KeyframeScheduler(model, 0)


def test_the_schedule_imports_without_torch():
    """An onnxruntime- or OpenVINO-only deployment runs the schedule without PyTorch installed."""
    code = ("import sys\nimport runtime.schedule\nfrom runtime.schedule import KeyframeScheduler, PropagationState\n"
            "assert 'torch' not in sys.modules and 'numpy' not in sys.modules, sorted(sys.modules)\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
