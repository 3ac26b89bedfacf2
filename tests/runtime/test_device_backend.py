"""The steps the GPU backends share (runtime/backends/device_backend.py), on a stand-in device
whose arrays are numpy arrays and whose "CUDA graph" is the recorded step: per-batch buffers, the
pinned upload, state slots, one graph per slot direction, the pinned label download and split."""

from __future__ import annotations

import types
from contextlib import contextmanager

import numpy as np
import pytest

from runtime.backends.base import PropagationState
from runtime.backends.device_backend import DeviceBackend, DeviceBatch

FRAME, CLASSES = (16, 24), 3


class Recorder:
    """The stream and the upload event: each call is logged in order."""

    def __init__(self, log: list, name: str) -> None:
        self.log, self.name = log, name

    def synchronize(self) -> None:
        self.log.append(f"{self.name}.synchronize")

    def record(self, stream: "Recorder") -> None:
        self.log.append(f"{self.name}.record({stream.name})")


class NumpyDevice(DeviceBackend):
    """scores = the mean colour of each 8x8 block, plus half the previous scores on a propagation."""

    name = "numpy-device"

    def __init__(self, use_graphs: bool = True, capture_fails: bool = False) -> None:
        manifest = types.SimpleNamespace(frame_size=FRAME, model={"num_classes": CLASSES})
        self.log: list[str] = []
        super().__init__(manifest, True, use_graphs=use_graphs)
        self.timer = self._timer
        self.stream = Recorder(self.log, "stream")
        self.capture_fails = capture_fails
        self.batches_made: list[int] = []

    @contextmanager
    def _timer(self, name: str):
        self.log.append(f"timer {name}")
        yield

    # the array type
    def _stream(self) -> Recorder:
        return self.stream

    def _copy(self, dst, src) -> None:
        dst[...] = src

    def _clone(self, src):
        return src.copy()

    def _rows(self, array, start, stop):
        return array[start:stop]

    def _host_array(self, pinned):
        return pinned

    def _copy_to_device(self, dst, pinned) -> None:
        self.log.append("copy up")
        dst[...] = pinned

    def _copy_to_host(self, pinned, src) -> None:
        self.log.append("copy down")
        pinned[...] = src

    # the work
    def _new_batch(self, n: int) -> DeviceBatch:
        self.batches_made.append(n)
        h, w = FRAME[0] // 8, FRAME[1] // 8
        states = tuple(PropagationState(np.zeros((n, CLASSES, h, w), np.float32), np.zeros((n, 3, h, w), np.float32))
                       for _ in (0, 1))
        return DeviceBatch(np.zeros((n, *FRAME, 3), np.uint8), np.zeros((n, *FRAME, 3), np.uint8),
                           np.zeros((n, *FRAME), np.uint8), Recorder(self.log, "uploaded"), states, self._copy,
                           self._clone)

    def _small(self, b: DeviceBatch) -> np.ndarray:
        n = b.image.shape[0]
        return b.image.reshape(n, FRAME[0] // 8, 8, FRAME[1] // 8, 8, 3).mean(axis=(2, 4)).transpose(0, 3, 1, 2)

    def _keyframe_into(self, b: DeviceBatch, q: int) -> None:
        self.log.append(f"keyframe -> {q}")
        b.states[q].small[...] = self._small(b)
        b.states[q].scores[...] = b.states[q].small.mean(axis=1, keepdims=True) + np.arange(CLASSES)[:, None, None]

    def _propagate_into(self, b: DeviceBatch, p: int, q: int) -> None:
        b.states[q].small[...] = self._small(b)
        b.states[q].scores[...] = 0.5 * b.states[p].scores + b.states[q].small[:, ::-1]

    def _propagate_eagerly(self, b: DeviceBatch, p: int, q: int) -> None:
        self.log.append(f"eager {p} -> {q}")
        self._propagate_into(b, p, q)

    def _first_propagation(self, b: DeviceBatch, p: int, q: int):
        self.log.append(f"capture {p} -> {q}")
        self._propagate_into(b, p, q)
        if self.capture_fails:
            self.graph_error = "cannot capture"
            return None
        return lambda: self._propagate_into(b, p, q)

    def _replay(self, graph) -> None:
        self.log.append("replay")
        graph()

    def _labels_on_device(self, b: DeviceBatch, state: PropagationState) -> np.ndarray:
        return state.scores.argmax(axis=1).repeat(8, axis=1).repeat(8, axis=2).astype(np.uint8)

    def run(self, stage, *inputs):
        raise NotImplementedError

    def upload(self, frames):
        return frames

    def download(self, labels):
        return labels


def clip(n: int = 2, length: int = 6) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (n, *FRAME, 3), dtype=np.uint8) for _ in range(length)]


def run_clip(backend: NumpyDevice, frames: list[np.ndarray]) -> list[np.ndarray]:
    state = backend.keyframe_step(frames[0])
    labels = [backend.labels(state, FRAME)]
    for f in frames[1:]:
        state = backend.propagation_step(state, f)
        labels.append(backend.labels(state, FRAME))
    return labels


def test_one_graph_per_slot_direction_captured_once_then_replayed():
    frames = clip()
    eager, graphs = NumpyDevice(use_graphs=False), NumpyDevice()
    assert all(np.array_equal(a, b) for a, b in zip(run_clip(eager, frames), run_clip(graphs, frames)))
    steps = [line for line in graphs.log if line.split()[0] in ("capture", "eager", "replay", "keyframe")]
    assert steps == ["keyframe -> 0", "capture 0 -> 1", "capture 1 -> 0", "replay", "replay", "replay"]
    assert set(graphs._batches[2].graphs) == {0, 1} and graphs.graph_error is None
    assert graphs.log.count("timer propagation_graph") == 3  # the replays; a capture times itself
    assert graphs.batches_made == [2] and graphs._batches[2].slots.evictions == 0


def test_a_failed_capture_leaves_the_steps_eager():
    backend = NumpyDevice(capture_fails=True)
    assert all(np.array_equal(a, b) for a, b in zip(run_clip(NumpyDevice(use_graphs=False), clip()),
                                                      run_clip(backend, clip())))
    steps = [line.split()[0] for line in backend.log if line.split()[0] in ("capture", "eager", "replay")]
    assert steps == ["capture"] + ["eager"] * 4 and backend.graph_error == "cannot capture"
    assert backend._batches[2].graphs == {}


def test_upload_waits_for_the_previous_copy_before_writing_the_pinned_buffer():
    backend = NumpyDevice()
    frames = clip()
    backend.keyframe_step(frames[0])
    upload = backend.log[backend.log.index("timer upload"):][:4]
    assert upload == ["timer upload", "uploaded.synchronize", "copy up", "uploaded.record(stream)"]
    b = backend._batches[2]
    assert np.array_equal(b.image_host, frames[0]) and np.array_equal(b.image, frames[0])


def test_labels_come_back_through_the_pinned_buffer_and_are_resized():
    backend = NumpyDevice()
    state = backend.keyframe_step(clip()[0])
    labels = backend.labels(state, (8, 12))
    assert backend.log[-5:] == ["timer labels", "timer download", "copy down", "stream.synchronize",
                                "timer resize_labels"]
    assert labels.shape == (2, 8, 12) and labels.dtype == np.uint8
    full = backend.labels(state, FRAME)
    assert full is not backend._batches[2].labels_host and np.array_equal(full, backend._batches[2].labels_host)


def test_split_gives_copies_that_outlive_the_slot():
    backend = NumpyDevice()
    frames = clip(n=3)
    state = backend.keyframe_step(frames[0])
    pieces = backend.split_state(state, [1, 2])
    expected = state.scores.copy()
    backend.propagation_step(backend.keyframe_step(frames[1]), frames[2])  # overwrites both slots
    assert [p.scores.shape[0] for p in pieces] == [1, 2]
    assert np.array_equal(np.concatenate([p.scores for p in pieces]), expected)


def test_batches_are_allocated_once_per_batch_size_and_states_are_checked():
    backend = NumpyDevice()
    one, two = clip(n=1), clip(n=2)
    state1, state2 = backend.keyframe_step(one[0]), backend.keyframe_step(two[0])
    backend.propagation_step(state1, one[1])
    backend.propagation_step(state2, two[1])
    assert backend.batches_made == [1, 2]
    with pytest.raises(ValueError, match="state holds 1 frames, got 2 new frames"):
        backend.propagation_step(state1, two[2])
