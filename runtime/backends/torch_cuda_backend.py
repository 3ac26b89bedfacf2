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
- static image and state tensors per batch size, two state slots, uint8 labels back through
  pinned memory: ``DeviceBackend``'s, on torch tensors and torch's current stream;
- the propagation step of each slot direction is warmed up on a side stream, captured once with
  ``torch.cuda.CUDAGraph`` and replayed;
- labels (bilinear upsample + argmax) on the GPU.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from engine_format.manifest import Manifest
from gsvnet import ops

from .base import Array, PropagationState
from .device_backend import DeviceBackend, DeviceBatch
from .gpu_checks import gpu_driver, gpu_precision, torch_gpu
from .torch_backend import TorchBackend

WARMUP = 3  # eager runs on a side stream before a capture (cuDNN autotuning, kernel loading)


class _Static(DeviceBatch):
    """The fixed tensors of one batch size: ``DeviceBatch``'s and the propagation's intermediates."""

    def __init__(self, n: int, frame: tuple[int, int], grid: tuple[int, int], classes: int, device: torch.device,
                 dtype: torch.dtype, copy: Any, clone: Any) -> None:
        h, w = grid
        like = dict(dtype=dtype, device=device)
        image = torch.zeros((n, *frame, 3), dtype=torch.uint8, device=device)
        image_host = torch.empty((n, *frame, 3), dtype=torch.uint8).pin_memory()
        labels_host = torch.empty((n, *frame), dtype=torch.uint8).pin_memory()
        uploaded = torch.cuda.Event()
        states = tuple(PropagationState(torch.zeros((n, classes, h, w), **like), torch.zeros((n, 3, h, w), **like))
                       for _ in (0, 1))
        self.warped = torch.zeros((n, classes, h, w), **like)
        self.argmax = torch.zeros((n, h, w), dtype=torch.int32, device=device)
        self.edge = torch.zeros((n, 1, h, w), dtype=torch.float32, device=device)
        super().__init__(image, image_host, labels_host, uploaded, states, copy, clone)


class TorchCudaBackend(DeviceBackend, TorchBackend):
    """The eager ``TorchBackend`` on a GPU (FP16 or FP32), with our kernels and CUDA graphs for the steps
    (``DeviceBackend``'s, on torch tensors and torch's current stream).

    precision: 'fp16', 'fp32', or None to choose from the GPU (``gpu_checks.gpu_precision``).
    """

    name = "torch-cuda"

    def __init__(self, manifest: Manifest, profile: bool = True, use_graphs: bool = True, device: int | None = None,
                 precision: str | None = None) -> None:
        from plugins.launcher import kernels

        index = torch.cuda.current_device() if device is None else device
        super().__init__(manifest, device=f"cuda:{index}", profile=profile, use_graphs=use_graphs)
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

    # ---- the array type: torch tensors on torch's current stream -------------------------------
    def _stream(self) -> torch.cuda.Stream:
        return torch.cuda.current_stream(self.device)

    def _copy(self, dst: torch.Tensor, src: torch.Tensor) -> None:
        dst.copy_(src)

    def _clone(self, src: torch.Tensor) -> torch.Tensor:
        return src.clone()

    def _rows(self, array: torch.Tensor, start: int, stop: int) -> torch.Tensor:
        return array[start:stop]

    def _host_array(self, pinned: torch.Tensor) -> np.ndarray:
        return pinned.numpy()

    def _copy_to_device(self, dst: torch.Tensor, pinned: torch.Tensor) -> None:
        dst.copy_(pinned, non_blocking=True)

    def _copy_to_host(self, pinned: torch.Tensor, src: torch.Tensor) -> None:
        pinned.copy_(src, non_blocking=True)

    @staticmethod
    def _nhwc(x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last)

    # ---- the steps: the modules and our kernels ------------------------------------------------
    def _new_batch(self, n: int) -> _Static:
        return _Static(n, self.frame_size, self.grid, self.num_classes, self.device, self.dtype, self._copy,
                       self._clone)

    def _keyframe_into(self, b: _Static, q: int) -> None:
        with self.timer("keyframe"), torch.no_grad(), torch.cuda.device(self.device):
            model, out = self.model, b.states[q]
            out.scores.copy_(model.keyframe_scores(b.image))
            out.small.copy_(model.downsample(b.image))

    def _propagate_into(self, b: _Static, p: int, q: int) -> None:
        """slot p -> slot q: the whole non-keyframe sequence; only fixed tensors and kernels on the current stream."""
        model, k = self.model, self.kernels
        prev, new = b.states[p], b.states[q]
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

    def _propagate_eagerly(self, b: _Static, p: int, q: int) -> None:
        with self.timer("propagation"), torch.cuda.device(self.device), torch.no_grad():
            self._propagate_into(b, p, q)

    def _first_propagation(self, b: _Static, p: int, q: int) -> torch.cuda.CUDAGraph:
        with self.timer("propagation_graph"), torch.cuda.device(self.device):
            graph = self._capture(b, p, q)
            graph.replay()
        return graph

    def _capture(self, b: _Static, p: int, q: int) -> torch.cuda.CUDAGraph:
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

    def _replay(self, graph: torch.cuda.CUDAGraph) -> None:
        with torch.cuda.device(self.device):
            graph.replay()

    def _labels_on_device(self, b: _Static, state: PropagationState) -> torch.Tensor:
        with torch.no_grad():
            return self.model.scores_to_labels(state.scores, self.frame_size)

    # ---- the generic interface: TorchBackend's (the reference ops, for checks, not the hot path) ----
    def run(self, stage: str, *inputs: Array) -> Array:
        args = [x if isinstance(x, torch.Tensor) else self.upload(x) for x in inputs]
        return super().run(stage, *args)

    def kernel_checks(self, frames: np.ndarray) -> list[str]:
        """Our warp, edge-map and chunk-filter kernels on real intermediates (frame 1 propagated
        from frame 0 by this backend's own networks) against ``gsvnet.ops`` in float32 on the CPU."""
        model, k = self.model, self.kernels
        stream = torch.cuda.current_stream(self.device).cuda_stream
        with torch.inference_mode(), torch.cuda.device(self.device):
            image0, image1 = (torch.from_numpy(np.ascontiguousarray(frames[i:i + 1])).to(self.device) for i in (0, 1))
            scores = model.keyframe_scores(image0).contiguous()
            small0, small1 = self._nhwc(model.downsample(image0)), self._nhwc(model.downsample(image1))
            flow = model.estimate_flow(small1, small0).contiguous()
            n, c, h, w = scores.shape
            warped, out = torch.empty_like(scores), torch.empty_like(scores)
            labels = torch.empty((n, h, w), dtype=torch.int32, device=self.device)
            edge = torch.empty((n, 1, h, w), dtype=torch.float32, device=self.device)
            k.warp_by_flow(scores.data_ptr(), flow.data_ptr(), warped.data_ptr(), n, c, h, w, half=self.half,
                           labels=labels.data_ptr(), stream=stream)
            k.edge_map_from_labels(labels.data_ptr(), edge.data_ptr(), n, h, w, stream=stream)
            intra = model.intra_scores(small1).contiguous()
            weights = model.guide(intra, edge).contiguous()
            k.chunk_filter(warped.data_ptr(), intra.data_ptr(), weights.data_ptr(), out.data_ptr(), n, c, h, w,
                           self.radius, half=self.half, stream=stream)
            torch.cuda.synchronize(self.device)
        host = {name: t.float().cpu() for name, t in
                {"scores": scores, "flow": flow, "warped": warped, "intra": intra, "weights": weights, "out": out}.items()}
        checks = {"warp_by_flow": (warped, ops.warp_by_flow(host["scores"], host["flow"])),
                  "edge_map": (edge, ops.edge_map(host["warped"])),
                  "chunk_filter": (out, ops.chunk_filter(host["warped"], host["intra"], host["weights"], self.radius))}
        problems = []
        tolerance = 2e-2 if self.half else 1e-4
        for name, (got, want) in checks.items():
            got = got.float().cpu()
            diff = float((got - want).abs().max())
            limit = tolerance * (1.0 + float(want.abs().max()))
            if name == "edge_map":  # 0/1 maps: a few cells may flip where FP16 ties the argmax
                diff, limit = float((got != want).float().mean()), 1e-3
            if not diff <= limit:
                problems.append(f"our {name} kernel differs from gsvnet.ops by {diff:.3g} on real intermediates "
                                f"(limit {limit:.3g})")
        return problems

    def device_identity(self) -> dict:
        major, minor = torch.cuda.get_device_capability(self.device)
        return {"gpu": self.gpu_name, "compute_capability": f"{major}.{minor}", "cuda_runtime": torch.version.cuda,
                "driver": gpu_driver()}

    def library_versions(self) -> dict:
        from engine_format.compat import plugin_sources_sha256

        return {**super().library_versions(), "kernel_sources_sha256": plugin_sources_sha256()}

    def describe(self) -> str:
        graphs = "CUDA graphs on" if self.use_graphs else "eager"
        return (f"torch {torch.__version__} on {self.gpu_name}, {self.precision.upper()} channels-last "
                f"({self.precision_reason}) + gsvnet CUDA kernels ({self.kernels.describe()}), {graphs}")
