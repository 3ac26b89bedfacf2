"""The one interface every execution backend implements.

A backend loads the stage graphs described by an engines manifest (the four networks, the two
custom ops, downsample and labels) and runs them on its own array type. The keyframe step, the
propagation step and the labels step are written once, here, in terms of ``run(stage, *inputs)``;
``runtime.schedule.KeyframeScheduler`` drives any backend without knowing which one it is.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import numpy as np

from engine_format.manifest import STAGES, Manifest
from gsvnet.state import PropagationState

from ..labels import upsample_argmax_x8
from ..threads import ThreadPlan
from ..timing import StageTimer

Array = Any  # the backend's array type (numpy array, torch tensor, device buffer)

#: precisions a CPU run can ask for (``--precision``): float32, bfloat16, the INT8 keyframe graph
PRECISIONS = ("f32", "bf16", "int8")


def folder_precision(manifest: Manifest) -> str:
    """The run precision an engines folder implies: 'int8' for an INT8 keyframe graph, else 'f32'."""
    return "int8" if manifest.graphs.get("keyframe", {}).get("precision") == "int8" else "f32"


def cpu_identity() -> dict:
    """The CPU model and a digest of its feature flags (kernels differ with AVX2/AVX-512/AMX)."""
    import hashlib
    import platform

    model, flags = platform.processor() or platform.machine(), ""
    try:
        for line in open("/proc/cpuinfo", encoding="utf-8", errors="replace"):
            key, _, value = line.partition(":")
            if key.strip() == "model name" and model in ("", platform.machine(), platform.processor()):
                model = value.strip()
            elif key.strip() in ("flags", "Features") and not flags:
                flags = " ".join(sorted(value.split()))
    except OSError:
        pass
    return {"cpu": model, "flags_sha256": hashlib.sha256(flags.encode()).hexdigest()[:16]}


def resize_labels_nearest(labels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """uint8 [N,h,w] -> [N,size] by nearest neighbour (pixel-centre aligned)."""
    n, h, w = labels.shape
    if (h, w) == tuple(size):
        return labels
    rows = np.minimum(((np.arange(size[0]) + 0.5) * h / size[0]).astype(np.int64), h - 1)
    cols = np.minimum(((np.arange(size[1]) + 0.5) * w / size[1]).astype(np.int64), w - 1)
    # one axis at a time with np.take (an axis of the same length is kept as it is): the same
    # pixels as labels[:, rows[:, None], cols[None, :]], several times faster
    out = labels if h == size[0] else np.take(labels, rows, axis=1)
    return out if w == size[1] else np.take(out, cols, axis=2)


class Backend(ABC):
    """Runs GSVNet's stages. Subclasses implement ``run``, ``upload`` and ``download``."""

    #: short name used by --backend
    name: str = "?"

    def __init__(self, manifest: Manifest, profile: bool = True, plan: ThreadPlan | None = None) -> None:
        self.manifest = manifest
        #: the CPU budget this backend was loaded for (runtime/threads.py); None: sequential use
        self.plan = plan
        self.frame_size: tuple[int, int] = manifest.frame_size
        self.num_classes: int = manifest.model["num_classes"]
        self.timer = StageTimer(self.synchronize if self.is_async else None, enabled=profile)

    # ---- what a backend provides -----------------------------------------------------------
    is_async = False
    #: keyframe steps may run on other threads while propagation steps run (independent CPU work,
    #: no shared buffers); GPU backends reuse device buffers between steps, so they do not
    concurrent_steps = False

    @abstractmethod
    def run(self, stage: str, *inputs: Array) -> Array:
        """Run one stage graph on backend arrays; returns its single output."""

    @abstractmethod
    def upload(self, frames: np.ndarray) -> Array:
        """uint8 frames [N,H,W,3] (host) -> backend array."""

    @abstractmethod
    def download(self, labels: Array) -> np.ndarray:
        """Backend uint8 labels -> host numpy array."""

    def synchronize(self) -> None:
        """Wait for queued work (asynchronous backends)."""

    def concat(self, arrays: list[Array]) -> Array:
        """Join backend arrays along the batch axis (multi-stream batching)."""
        return np.concatenate(arrays, axis=0)

    def split(self, array: Array, sizes: list[int]) -> list[Array]:
        """Split a backend array along the batch axis into pieces of ``sizes``."""
        return np.split(array, np.cumsum(sizes)[:-1], axis=0)

    def describe(self) -> str:
        """One line: what executes the graphs (device, providers, threads)."""
        return self.name

    # ---- what the first-use verification keys its verdict on (runtime/verification.py) -------
    #: how this backend computes ('fp32', 'fp16', 'int8-keyframe'); part of the verdict's key
    precision: str = "fp32"

    def exercised_files(self) -> dict[str, str]:
        """The engines folder's files this backend executes: relative name -> sha256 (from the
        manifest, which the backend checked every file against when it loaded)."""
        return {self.manifest.graphs[s]["file"]: self.manifest.graphs[s]["sha256"] for s in STAGES}

    def device_identity(self) -> dict:
        """What computes: the CPU model and its instruction-set flags (GPU backends: the GPU)."""
        return cpu_identity()

    def library_versions(self) -> dict:
        """Versions of the libraries whose kernels compute the results."""
        return {"numpy": np.__version__}

    def kernel_checks(self, frames: np.ndarray) -> list[str]:
        """Our own kernels (where a backend launches them itself) on real intermediates of
        ``frames`` (uint8 [F,H,W,3] at the engine size, frame 1 propagated from frame 0), held to
        the reference ops; one clause per kernel that disagrees (empty: all agree, or none)."""
        return []

    def cancel(self) -> None:
        """Abandon the step in flight if the backend can (called from a signal handler)."""

    def close(self) -> None:
        """Release what the backend holds (sessions, device memory); it is not used afterwards."""

    # ---- the steps (written once for every backend) -----------------------------------------
    def _stage(self, name: str, *inputs: Array) -> Array:
        with self.timer(name):
            return self.run(name, *inputs)

    def check_frames(self, frames: np.ndarray) -> None:
        if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[3] != 3:
            raise ValueError(f"frames must be uint8 [N,H,W,3], got {frames.dtype} {frames.shape}")
        if tuple(frames.shape[1:3]) != self.frame_size:
            raise ValueError(f"frames are {frames.shape[1]}x{frames.shape[2]} but the engines were built for "
                             f"{self.frame_size[0]}x{self.frame_size[1]}; resize frames to the engine size")

    def keyframe_step(self, frames: np.ndarray) -> PropagationState:
        self.check_frames(frames)
        image = self.upload(frames)
        return PropagationState(scores=self._stage("keyframe", image), small=self._stage("downsample", image))

    def propagation_step(self, state: PropagationState, frames: np.ndarray) -> PropagationState:
        self.check_frames(frames)
        image = self.upload(frames)
        small = self._stage("downsample", image)
        flow = self._stage("flow", small, state.small)
        warped = self._stage("warp", state.scores, flow)
        intra = self._stage("intra", small)
        weights = self._stage("guide", intra, warped)
        return PropagationState(scores=self._stage("filter", warped, intra, weights), small=small)

    def concat_states(self, states: list[PropagationState]) -> PropagationState:
        return PropagationState(self.concat([s.scores for s in states]), self.concat([s.small for s in states]))

    def split_state(self, state: PropagationState, sizes: list[int]) -> list[PropagationState]:
        return [PropagationState(a, b) for a, b in zip(self.split(state.scores, sizes), self.split(state.small, sizes))]

    def host_scores(self, state: PropagationState) -> np.ndarray:
        """float32 [N,C,h,w] on the host: the 1/8-grid class scores of ``state``."""
        with self.timer("download_scores"):
            return np.asarray(self.download(state.scores), dtype=np.float32)

    def engine_labels(self, scores: Array) -> np.ndarray:
        """uint8 labels [N,H,W] at the engine size on the host (the ``labels`` stage)."""
        return self.download(self._stage("labels", scores))

    def labels(self, state: PropagationState, size: tuple[int, int]) -> np.ndarray:
        """uint8 [N,size]: labels at the engine size, resized (nearest) to ``size`` if it differs."""
        labels = self.engine_labels(state.scores)
        with self.timer("resize_labels"):
            return resize_labels_nearest(labels, size)


class HostArrays:
    """For CPU backends whose arrays are numpy arrays (mixed in before ``Backend``): frames go in
    as they are, and the labels of half-pixel models come from NumPy (runtime/labels.py, the same
    labels up to exact ties) instead of upsampling every class; the official align_corners
    convention keeps the ``labels`` graph."""

    def upload(self, frames: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(frames)

    def download(self, labels: np.ndarray) -> np.ndarray:
        return labels

    def engine_labels(self, scores: np.ndarray) -> np.ndarray:
        if self.manifest.model.get("resampling", "half_pixel") != "half_pixel":
            return super().engine_labels(scores)
        with self.timer("labels"):
            return upsample_argmax_x8(scores)
