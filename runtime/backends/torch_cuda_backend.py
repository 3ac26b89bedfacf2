"""torch-cuda backend: the PyTorch modules channels-last on a CUDA GPU (FP16 where the GPU has
fast FP16, FP32 otherwise), our CUDA kernels for the warp, the chunk filter and the edge map, and
the propagation step in a CUDA graph.

For GPU machines without TensorRT (e.g. Pascal, which TensorRT 10 does not support), and the
honest "best PyTorch" point of the benchmarks:
- the GSVNet comes from the engines folder's checkpoint (model.pt, sha256-checked), ``.half()``
  on GPUs with fast FP16 (normalisation constants stay FP32; ``gpu_checks.gpu_precision``) and
  ``channels_last``; cuDNN autotuning on;
- warp / edge map / chunk filter: ``plugins.launcher`` kernels on the tensors' pointers and
  torch's current stream (the warp writes the argmax labels the edge map needs as an epilogue);
- static image and state tensors per batch size, two state slots (``state_slots``); the
  propagation step of each slot direction is warmed up on a side stream, captured once with
  ``torch.cuda.CUDAGraph`` and replayed;
- labels (bilinear upsample + argmax) on the GPU, uint8 back through pinned memory.
"""

from __future__ import annotations

import numpy as np
import torch

from export.manifest import Manifest
from gsvnet import ops

from .base import Array, State, resize_labels_nearest
from .gpu_checks import gpu_precision, torch_gpu
from .state_slots import StateSlots
from .torch_backend import TorchBackend

WARMUP = 3  # eager runs on a side stream before a capture (cuDNN autotuning, kernel loading)


class _Static:
    """The fixed tensors of one batch size."""

    def __init__(self, n: int, frame: tuple[int, int], grid: tuple[int, int], classes: int, device: torch.device,
                 dtype: torch.dtype) -> None:
        h, w = grid
        like = dict(dtype=dtype, device=device)
        self.image = torch.zeros((n, *frame, 3), dtype=torch.uint8, device=device)
        self.image_host = torch.empty((n, *frame, 3), dtype=torch.uint8).pin_memory()
        self.labels_host = torch.empty((n, *frame), dtype=torch.uint8).pin_memory()
        self.uploaded = torch.cuda.Event()  # the last upload has finished reading image_host
        self.slots_state = tuple(State(torch.zeros((n, classes, h, w), **like), torch.zeros((n, 3, h, w), **like))
                                 for _ in (0, 1))
        self.warped = torch.zeros((n, classes, h, w), **like)
        self.argmax = torch.zeros((n, h, w), dtype=torch.int32, device=device)
        self.edge = torch.zeros((n, 1, h, w), dtype=torch.float32, device=device)
        self.graphs: dict[int, torch.cuda.CUDAGraph] = {}
        self.slots = StateSlots(self.slots_state, lambda dst, src: dst.copy_(src), lambda src: src.clone())


class TorchCudaBackend(TorchBackend):
    """The eager ``TorchBackend`` on a GPU (FP16 or FP32), with our kernels and CUDA graphs for the steps.

    precision: 'fp16', 'fp32', or None to choose from the GPU (``gpu_checks.gpu_precision``).
    """

    name = "torch-cuda"

    def __init__(self, manifest: Manifest, profile: bool = True, use_graphs: bool = True, device: int | None = None,
                 precision: str | None = None) -> None:
        from plugins.launcher import kernels

        index = torch.cuda.current_device() if device is None else device
        super().__init__(manifest, device=f"cuda:{index}", profile=profile)
        torch.cuda.set_device(self.device)
        torch.backends.cudnn.benchmark = True
        self.gpu_name, major, minor = torch_gpu(index)
        chosen, self.precision_reason = gpu_precision(self.gpu_name, major, minor)
        self.precision = precision or chosen
        if self.precision not in ("fp16", "fp32"):
            raise ValueError(f"precision must be 'fp16' or 'fp32', got {self.precision!r}")
        self.half = self.precision == "fp16"
        self.dtype = torch.float16 if self.half else torch.float32
        self.model = (self.model.half() if self.half else self.model).to(memory_format=torch.channels_last).eval()
        self.radius = self.model.config.radius
        self.grid = (self.frame_size[0] // 8, self.frame_size[1] // 8)
        self.kernels = kernels(self.device.index)
        self.use_graphs = use_graphs
        self._static: dict[int, _Static] = {}

    # ---- pieces --------------------------------------------------------------------------------
    def _batch(self, n: int) -> _Static:
        if n not in self._static:
            self._static[n] = _Static(n, self.frame_size, self.grid, self.num_classes, self.device, self.dtype)
        return self._static[n]

    def _upload(self, b: _Static, frames: np.ndarray) -> None:
        with self.timer("upload"):
            b.uploaded.synchronize()
            np.copyto(b.image_host.numpy(), frames)
            b.image.copy_(b.image_host, non_blocking=True)
            b.uploaded.record(torch.cuda.current_stream(self.device))

    @staticmethod
    def _nhwc(x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last)

    def _keyframe_into(self, b: _Static, q: int) -> None:
        model, out = self.model, b.slots_state[q]
        out.scores.copy_(model.keyframe_scores(b.image))
        out.small.copy_(model.downsample(b.image))

    def _propagate_into(self, b: _Static, p: int, q: int) -> None:
        """slot p -> slot q: the whole non-keyframe sequence; only fixed tensors and kernels on the current stream."""
        model, k = self.model, self.kernels
        prev, new = b.slots_state[p], b.slots_state[q]
        n, c, h, w = prev.scores.shape
        stream = torch.cuda.current_stream().cuda_stream
        new.small.copy_(model.downsample(b.image))
        small = self._nhwc(new.small)
        flow = model.estimate_flow(small, self._nhwc(prev.small)).contiguous()
        k.warp_by_flow(prev.scores.data_ptr(), flow.data_ptr(), b.warped.data_ptr(), n, c, h, w, half=self.half,
                       labels=b.argmax.data_ptr(), stream=stream)
        k.edge_map_from_labels(b.argmax.data_ptr(), b.edge.data_ptr(), n, h, w, stream=stream)
        intra = model.intra_scores(small)
        weights = model.guide(intra, b.edge).contiguous()
        intra = intra.contiguous()
        k.chunk_filter(b.warped.data_ptr(), intra.data_ptr(), weights.data_ptr(), new.scores.data_ptr(), n, c, h, w,
                       self.radius, half=self.half, stream=stream)  # weights [N,K+2,h,w]

    def _capture(self, b: _Static, p: int) -> torch.cuda.CUDAGraph:
        q = 1 - p
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side), torch.no_grad():
            for _ in range(WARMUP):
                self._propagate_into(b, p, q)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph), torch.no_grad():
            self._propagate_into(b, p, q)
        return graph

    # ---- the steps -----------------------------------------------------------------------------
    def keyframe_step(self, frames: np.ndarray) -> State:
        self.check_frames(frames)
        b = self._batch(len(frames))
        self._upload(b, frames)
        q = b.slots.output_slot()
        with self.timer("keyframe"), torch.no_grad(), torch.cuda.device(self.device):
            self._keyframe_into(b, q)
        return b.slots.hand_out(q)

    def propagation_step(self, state: State, frames: np.ndarray) -> State:
        self.check_frames(frames)
        if state.scores.shape[0] != len(frames):
            raise ValueError(f"state holds {state.scores.shape[0]} frames, got {len(frames)} new frames")
        b = self._batch(len(frames))
        self._upload(b, frames)
        p = b.slots.input_slot(state)
        q = b.slots.output_slot(avoid=p)
        with self.timer("propagation_graph" if self.use_graphs else "propagation"), torch.cuda.device(self.device):
            if not self.use_graphs:
                with torch.no_grad():
                    self._propagate_into(b, p, q)
            else:
                if p not in b.graphs:
                    b.graphs[p] = self._capture(b, p)
                b.graphs[p].replay()
        return b.slots.hand_out(q)

    def labels(self, state: State, size: tuple[int, int]) -> np.ndarray:
        b = self._batch(state.scores.shape[0])
        with self.timer("labels"), torch.no_grad():
            labels = self.model.scores_to_labels(state.scores, self.frame_size)
        with self.timer("download"):
            b.labels_host.copy_(labels, non_blocking=True)
            torch.cuda.current_stream(self.device).synchronize()
            out = b.labels_host.numpy().copy()
        with self.timer("resize_labels"):
            return resize_labels_nearest(out, size)

    # ---- the generic interface: TorchBackend's (the reference ops, for checks, not the hot path) ----
    def run(self, stage: str, *inputs: Array) -> Array:
        args = [x if isinstance(x, torch.Tensor) else self.upload(x) for x in inputs]
        return super().run(stage, *args)

    def split(self, array: Array, sizes: list[int]) -> list[Array]:
        """Copies, not views: pieces must outlive the slot the array may live in."""
        return [piece.clone() for piece in torch.split(array, sizes, dim=0)]

    def describe(self) -> str:
        graphs = "CUDA graphs on" if self.use_graphs else "eager"
        return (f"torch {torch.__version__} on {self.gpu_name}, {self.precision.upper()} channels-last "
                f"({self.precision_reason}) + gsvnet CUDA kernels ({self.kernels.describe()}), {graphs}")
