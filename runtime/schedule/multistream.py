"""Several videos through one backend: at every tick, the keyframe steps of all streams that
need one run as one batch and the propagation steps of the others as another batch.

Streams' keyframes are staggered (stream s of S uses phase floor(s * l / S)), so each tick mixes
keyframes and propagations and the per-tick cost stays even, as in a data-centre deployment.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np

from ..backends.base import Backend
from .core import FrameInfo, KeyframeScheduler, PropagationState, StepResult


class MultiStreamScheduler:
    def __init__(self, backend: Backend, interval: int, label_sizes: list[tuple[int, int]], stagger: bool = True,
                 scores: bool = False) -> None:
        """``scores``: each StepResult also carries its stream's host scores [1,C,h,w]."""
        count = len(label_sizes)
        self.backend, self.scores = backend, scores
        self.streams = [KeyframeScheduler(backend, interval, size, phase=(s * interval) // count if stagger else 0)
                        for s, size in enumerate(label_sizes)]

    def run(self, sources: list[Iterator[np.ndarray]], info: FrameInfo | None = None) -> Iterator[list[tuple[int, StepResult]]]:
        """Each source yields uint8 [1,H,W,3] frames; yields, per tick, (stream, result) pairs.
        ``info(stream)``, called after each frame is taken from that stream, says whether the frame
        restarts its schedule and the size of its labels (None: the stream's label size)."""
        backend = self.backend
        info = info or (lambda stream: (False, None))
        states: list[PropagationState | None] = [None] * len(sources)
        indices = [0] * len(sources)
        active = list(range(len(sources)))
        while active:
            frames: dict[int, np.ndarray] = {}
            sizes: dict[int, tuple[int, int]] = {}
            for s in active:
                frame = next(sources[s], None)
                if frame is not None:
                    frames[s] = frame
                    restart, size = info(s)
                    if restart:
                        self.streams[s].restart(indices[s])
                    sizes[s] = tuple(size or self.streams[s].label_size)  # type: ignore[arg-type]
            active = list(frames)
            if not active:
                return
            keys = [s for s in active if states[s] is None or self.streams[s].is_keyframe(indices[s])]
            props = [s for s in active if s not in keys]
            if keys:
                new = backend.keyframe_step(np.concatenate([frames[s] for s in keys]))
                for s, state in zip(keys, backend.split_state(new, [1] * len(keys))):
                    states[s] = state
            if props:
                batched = backend.concat_states([states[s] for s in props])
                new = backend.propagation_step(batched, np.concatenate([frames[s] for s in props]))
                for s, state in zip(props, backend.split_state(new, [1] * len(props))):
                    states[s] = state
            results = []
            for size, group in _group_by_label_size(active, sizes).items():
                state = states[group[0]] if len(group) == 1 else backend.concat_states([states[s] for s in group])
                labels = backend.labels(state, size)
                for s, lab in zip(group, np.split(labels, len(group))):
                    scores = backend.host_scores(states[s]) if self.scores else None
                    results.append((s, StepResult(indices[s], s in keys, lab, scores)))
            for s in active:
                indices[s] += 1
            yield sorted(results, key=lambda r: r[0])


def _group_by_label_size(active: list[int], sizes: dict[int, tuple[int, int]]) -> dict[tuple[int, int], list[int]]:
    groups: dict[tuple[int, int], list[int]] = {}
    for s in active:
        groups.setdefault(sizes[s], []).append(s)
    return groups
