"""The keyframe / propagation schedule, independent of what executes the steps.

Anything with ``keyframe_step``, ``propagation_step`` and ``labels`` (the PyTorch ``GSVNet``, or a
runtime backend running ONNX graphs or TensorRT engines) can be driven by ``KeyframeScheduler``.
Frames go in one at a time and labels come out one at a time; only the previous step's state is
kept, so memory does not grow with the length of the video.

Pure Python: importing this module imports neither torch nor numpy (tests/runtime/schedule/test_core.py), so an
onnxruntime-only deployment runs the schedule without PyTorch. ``runtime.schedule.torch_stepper.segment_frames``
drives the PyTorch ``GSVNet`` with it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Generic, Iterable, Iterator, Protocol, TypeVar

from gsvnet.state import PropagationState  # noqa: F401  (one state for every stepper)

StateT = TypeVar("StateT")  # what a stepper hands from one step to the next (PropagationState for ours)
Frames = Any  # a batch of uint8 RGB frames [N,H,W,3] in the stepper's array type
Labels = Any  # uint8 [N,H,W] in the stepper's array type
#: what a scheduler learns of a frame from what came with it: (restart: make it a keyframe and
#: count the next ones from it; the size to give its labels, None for the scheduler's own)
FrameInfo = Callable[[Any], "tuple[bool, tuple[int, int] | None]"]


class Stepper(Protocol[StateT]):
    def keyframe_step(self, frames: Frames) -> StateT: ...
    def propagation_step(self, state: StateT, frames: Frames) -> StateT: ...
    def labels(self, state: StateT, size: tuple[int, int]) -> Labels: ...


@dataclass
class StepResult:
    index: int
    keyframe: bool
    labels: Labels
    scores: Any = None  # float32 [N,C,h,w] on the host, where a scheduler was asked for them


class KeyframeScheduler(Generic[StateT]):
    """Keyframes at 0, l, 2l, ...; propagation on the frames between.

    ``phase`` shifts the keyframes of a stream to the frames i with (i + phase) % l == 0 (frame 0
    is always a keyframe); batched multi-stream runs stagger their streams' keyframes this way.
    """

    def __init__(self, stepper: Stepper[StateT], interval: int, label_size: tuple[int, int] | None = None,
                 phase: int = 0) -> None:
        if interval < 1:
            raise ValueError(f"keyframe interval must be >= 1, got {interval}")
        self.stepper = stepper
        self.interval = interval
        self.label_size = label_size
        self.phase = phase % interval

    def is_keyframe(self, index: int) -> bool:
        return index == 0 or (index + self.phase) % self.interval == 0

    def restart(self, index: int) -> None:
        """Make frame ``index`` a keyframe and count the next ones from it (the frame after a
        change of frame size: nothing is propagated across it)."""
        self.phase = (-index) % self.interval

    def run(self, frames: Iterable[Frames]) -> Iterator[StepResult]:
        state: StateT | None = None
        for index, batch in enumerate(frames):
            key = state is None or self.is_keyframe(index)
            state = self.stepper.keyframe_step(batch) if key else self.stepper.propagation_step(state, batch)
            size = self.label_size or tuple(batch.shape[1:3])
            yield StepResult(index, key, self.stepper.labels(state, size))
