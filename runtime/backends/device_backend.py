"""What the GPU backends that keep their state on the device (tensorrt, torch-cuda) share.

Per batch size N one ``DeviceBatch``: the device image, its pinned host mirror, a pinned mirror
for the labels, two state slots (``state_slots``) and one CUDA graph per slot direction. The
steps are written once here on top of it:

- upload: frames -> pinned image -> device image (one async copy; an event says when the pinned
  buffer may be written again);
- keyframe: -> slot q; propagation: slot p -> slot q = 1 - p, eagerly, or with CUDA graphs on
  the first step of each direction runs and captures the sequence and later ones replay it;
- labels: uint8 [N,H,W] on the device -> pinned memory (1 byte per pixel crosses back) -> host.

A subclass says only what differs: its array type (how to copy, clone and slice it, how the
pinned mirrors are read and copied, which stream queues the work) and how a step, a capture and
the labels are executed on the device.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any

import numpy as np

from .base import Array, Backend, PropagationState, resize_labels_nearest
from .state_slots import StateSlots


class DeviceBatch:
    """Everything allocated once for one batch size N.

    image: device uint8 [N,H,W,3]; image_host, labels_host: the backend's pinned host memory,
    uint8 [N,H,W,3] and [N,H,W]; uploaded: an event recorded after the last upload (it has then
    finished reading image_host); states: the two slots' static States (slot 0, slot 1), handed
    out through ``slots``; graphs: the captured propagation graph per slot it reads.
    """

    def __init__(self, image: Array, image_host: Any, labels_host: Any, uploaded: Any, states: tuple[PropagationState, PropagationState],
                 copy: Any, clone: Any) -> None:
        self.image = image
        self.image_host = image_host
        self.labels_host = labels_host
        self.uploaded = uploaded
        self.states = states
        self.slots = StateSlots(states, copy, clone)
        self.graphs: dict[int, Any] = {}


class DeviceBackend(Backend):
    """The steps of a GPU backend on per-batch-size device buffers (module docstring).

    use_graphs: capture each propagation direction in a CUDA graph and replay it; ``graph_error``
    says why propagation stays eager although graphs were asked for (None: it does not).
    """

    is_async = True

    def __init__(self, *args: Any, use_graphs: bool = True, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.use_graphs = use_graphs
        self.graph_error: str | None = None
        self._batches: dict[int, DeviceBatch] = {}

    # ---- the array type ------------------------------------------------------------------------
    @abstractmethod
    def _stream(self) -> Any:
        """The stream the steps queue on (``synchronize()``; events ``record`` on it)."""

    @abstractmethod
    def _copy(self, dst: Array, src: Array) -> None:
        """Queue a device copy of ``src`` into the static array ``dst`` (same shape and dtype)."""

    @abstractmethod
    def _clone(self, src: Array) -> Array:
        """A fresh device array holding a copy of ``src``."""

    @abstractmethod
    def _rows(self, array: Array, start: int, stop: int) -> Array:
        """Frames ``start:stop`` of ``array`` along the batch axis (a view, no copy)."""

    @abstractmethod
    def _host_array(self, pinned: Any) -> np.ndarray:
        """The numpy array viewing pinned host memory ``pinned``."""

    @abstractmethod
    def _copy_to_device(self, dst: Array, pinned: Any) -> None:
        """Queue an async copy of pinned host memory into the device array ``dst``."""

    @abstractmethod
    def _copy_to_host(self, pinned: Any, src: Array) -> None:
        """Queue an async copy of the device array ``src`` into pinned host memory."""

    # ---- how the work is executed --------------------------------------------------------------
    @abstractmethod
    def _new_batch(self, n: int) -> DeviceBatch:
        """Allocate the buffers of batch size ``n``."""

    @abstractmethod
    def _keyframe_into(self, b: DeviceBatch, q: int) -> None:
        """The keyframe sequence on ``b.image`` into slot ``q`` (timed)."""

    @abstractmethod
    def _propagate_eagerly(self, b: DeviceBatch, p: int, q: int) -> None:
        """The propagation sequence slot ``p`` -> slot ``q``, without a graph (timed)."""

    @abstractmethod
    def _first_propagation(self, b: DeviceBatch, p: int, q: int) -> Any:
        """The first propagation from slot ``p`` with graphs on: compute slot ``q`` and return
        the captured graph (None: capturing failed, ``graph_error`` says why) (timed)."""

    @abstractmethod
    def _replay(self, graph: Any) -> None:
        """Queue a captured propagation graph."""

    @abstractmethod
    def _labels_on_device(self, b: DeviceBatch, state: PropagationState) -> Array:
        """uint8 labels [N,H,W] of ``state`` at the engine size, on the device."""

    # ---- the buffers -----------------------------------------------------------------------------
    def _batch(self, n: int) -> DeviceBatch:
        if n not in self._batches:
            self._batches[n] = self._new_batch(n)
        return self._batches[n]

    def _upload(self, b: DeviceBatch, frames: np.ndarray) -> None:
        with self.timer("upload"):
            b.uploaded.synchronize()  # the previous copy has finished reading the pinned buffer
            np.copyto(self._host_array(b.image_host), frames)
            self._copy_to_device(b.image, b.image_host)
            b.uploaded.record(self._stream())

    # ---- the steps -----------------------------------------------------------------------------
    def keyframe_step(self, frames: np.ndarray) -> PropagationState:
        self.check_frames(frames)
        b = self._batch(len(frames))
        self._upload(b, frames)
        q = b.slots.output_slot()
        self._keyframe_into(b, q)
        return b.slots.hand_out(q)

    def propagation_step(self, state: PropagationState, frames: np.ndarray) -> PropagationState:
        self.check_frames(frames)
        if state.scores.shape[0] != len(frames):
            raise ValueError(f"state holds {state.scores.shape[0]} frames, got {len(frames)} new frames")
        b = self._batch(len(frames))
        self._upload(b, frames)
        p = b.slots.input_slot(state)
        q = b.slots.output_slot(avoid=p)
        graph = b.graphs.get(p) if self.use_graphs else None
        if graph is not None:
            with self.timer("propagation_graph"):
                self._replay(graph)
        elif self.use_graphs and self.graph_error is None:
            graph = self._first_propagation(b, p, q)
            if graph is not None:
                b.graphs[p] = graph
        else:
            self._propagate_eagerly(b, p, q)
        return b.slots.hand_out(q)

    def labels(self, state: PropagationState, size: tuple[int, int]) -> np.ndarray:
        b = self._batch(state.scores.shape[0])
        with self.timer("labels"):
            labels = self._labels_on_device(b, state)
        with self.timer("download"):
            self._copy_to_host(b.labels_host, labels)
            self._stream().synchronize()
            out = self._host_array(b.labels_host).copy()
        with self.timer("resize_labels"):
            return resize_labels_nearest(out, size)

    def close(self) -> None:
        """Drop every batch's device buffers, slots and CUDA graphs (freed with their last reference)."""
        self._batches.clear()

    def split(self, array: Array, sizes: list[int]) -> list[Array]:
        """Copies, not views: pieces must outlive the slot the array may live in."""
        bounds = np.cumsum([0, *sizes])
        return [self._clone(self._rows(array, int(a), int(b))) for a, b in zip(bounds[:-1], bounds[1:])]
