"""tensorrt backend: the FP16 engines listed in the manifest, our plugins, one CUDA stream.

The batch buffers, pinned upload, state slots, per-direction CUDA graphs and label download are
``DeviceBackend``'s; here: its array type (``cuda_memory.DeviceTensor`` on one cuda-python
stream) and one engine per stage.
- Engines are refused (one line, ManifestError) unless built for this TensorRT version, GPU and
  plugin code (``engine_format.compat``); the plugins are registered before deserialising.
- Device buffers come from ``buffer_plan`` and are allocated once per batch size; every
  execution context shares one workspace (the stages run one after another on one stream) and
  has its tensor addresses set once, so the addresses never change.
- The propagation sequence (downsample -> flow -> warp -> intra -> guide -> filter) runs eagerly
  the first time for each state-slot direction, is then captured in a CUDA graph and replayed.
- Frames go up from pinned host memory; labels (uint8 [N,H,W], argmax on the GPU) come back
  into pinned memory: 1 byte per pixel crosses back.
- Tensors made per step (multi-stream concat/split, state copies, checks) come from a
  ``BufferPool`` that recycles device buffers, so steady-state steps neither cudaMalloc nor
  cudaFree (which synchronises the device). Every ``set_tensor_address`` is checked.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np

from engine_format.compat import ENGINE_STAGES, check_engines, current_environment, gpu_identity, rebuild_hint
from engine_format.manifest import Manifest, ManifestError

from ..errors import first_line
from .base import Array, PropagationState
from .buffer_plan import KEYFRAME_PROGRAM, PROPAGATION_PROGRAM, BufferPlan, plan_buffers
from .cuda_memory import (BufferPool, CudaGraph, DeviceBuffer, DeviceTensor, Event, PinnedBuffer, Stream, check,
                          copy_on_device, copy_to_device, copy_to_host, cudart)
from .device_backend import DeviceBackend, DeviceBatch
from .gpu_checks import gpu_driver


def bind_address(ctx: Any, name: str, ptr: int) -> None:
    """``ctx.set_tensor_address`` that raises (one line) when TensorRT refuses the address
    (unknown tensor name, misaligned or null pointer) instead of running on a stale binding."""
    if not ctx.set_tensor_address(name, int(ptr)):
        raise RuntimeError(f"TensorRT refused address {int(ptr):#x} for tensor '{name}' (unknown name or misaligned "
                           "pointer); see TensorRT's message above")


class _Engine:
    """One deserialised engine and its execution contexts (keyed by how they are bound)."""

    def __init__(self, trt: Any, runtime: Any, path: Path, entry: dict, folder: Path) -> None:
        self.trt = trt
        self.engine = runtime.deserialize_cuda_engine(path.read_bytes())
        if self.engine is None:
            raise ManifestError(f"TensorRT could not deserialise engine file {path} (see its message above); "
                                f"{rebuild_hint(folder)}")
        self.inputs = [s["name"] for s in entry["inputs"]]
        self.outputs = [s["name"] for s in entry["outputs"]]
        names = {self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)}
        for spec in (*entry["inputs"], *entry["outputs"]):
            got = str(np.dtype(trt.nptype(self.engine.get_tensor_dtype(spec["name"])))) if spec["name"] in names else "missing"
            if got != str(np.dtype(spec["dtype"])):
                raise ManifestError(f"engine file {path}: tensor '{spec['name']}' is {got}, the manifest says "
                                    f"{spec['dtype']}; {rebuild_hint(folder)}")
        self.contexts: dict[Any, Any] = {}

    @property
    def memory_size(self) -> int:
        engine = self.engine
        return int(engine.device_memory_size_v2 if hasattr(engine, "device_memory_size_v2") else engine.device_memory_size)

    def context(self, key: Any, batch: int, workspace: DeviceBuffer, addresses: dict[str, int] | None = None) -> Any:
        """The context for ``key``: input shapes for ``batch``, the shared workspace, and the
        tensor addresses (set once here when given; they never change afterwards)."""
        if key in self.contexts:
            return self.contexts[key]
        engine = self.engine
        ctx = self._shared_memory_context(workspace)
        for name in self.inputs:
            shape = tuple(batch if d < 0 else d for d in engine.get_tensor_shape(name))
            if not ctx.set_input_shape(name, shape):
                raise ValueError(f"engine input '{name}' rejects shape {shape} (outside its optimisation profile)")
        for name, ptr in (addresses or {}).items():
            bind_address(ctx, name, ptr)
        self.contexts[key] = ctx
        return ctx

    def _shared_memory_context(self, workspace: DeviceBuffer) -> Any:
        """A context whose scratch memory is ``workspace`` (USER_MANAGED allocation; through an
        IRuntimeConfig where TensorRT has one), or one with its own memory where it has neither."""
        trt, engine = self.trt, self.engine
        strategy = getattr(trt, "ExecutionContextAllocationStrategy", None)
        if strategy is None:
            return engine.create_execution_context()
        if hasattr(engine, "create_runtime_config"):
            config = engine.create_runtime_config()
            config.set_execution_context_allocation_strategy(strategy.USER_MANAGED)
            ctx = engine.create_execution_context(config)
        else:
            ctx = engine.create_execution_context(strategy.USER_MANAGED)
        if hasattr(ctx, "set_device_memory"):
            ctx.set_device_memory(workspace.ptr, workspace.nbytes)
        else:
            ctx.device_memory = workspace.ptr
        return ctx

    def execute(self, ctx: Any, stream: Stream) -> None:
        if not ctx.execute_async_v3(stream.handle):
            raise RuntimeError("TensorRT execute_async_v3 failed (see TensorRT's message above)")


class _Batch(DeviceBatch):
    """One batch size's buffer plan and device regions (every tensor of the plan views one), its
    pinned mirrors and state slots (``DeviceBatch``)."""

    def __init__(self, plan: BufferPlan, copy: Any, clone: Any) -> None:
        self.plan = plan
        self.regions = {name: DeviceBuffer(nbytes) for name, nbytes in plan.regions.items()}
        self.tensors = {name: DeviceTensor(self.regions[buf.region].ptr, buf.shape, buf.dtype, self.regions[buf.region])
                        for name, buf in plan.buffers.items()}
        image_host = PinnedBuffer(plan.buffers["image"].shape, np.uint8)
        labels_host = PinnedBuffer(plan.buffers["labels"].shape, np.uint8)
        slot = [PropagationState(self.tensors[f"scores.{i}"], self.tensors[f"small.{i}"]) for i in (0, 1)]
        super().__init__(self.tensors["image"], image_host, labels_host, Event(), (slot[0], slot[1]), copy, clone)


class TensorRTBackend(DeviceBackend):
    name = "tensorrt"

    def __init__(self, manifest: Manifest, profile: bool = True, use_graphs: bool = True, device: int = 0) -> None:
        import tensorrt as trt

        self.device = device
        self._threads: set[int] = set()
        self._bind_thread()
        self.env = current_environment(device)
        paths = check_engines(manifest, self.env, ENGINE_STAGES)
        entries = {s: manifest.engines[s] for s in ENGINE_STAGES}
        if any(e.get("plugins") for e in entries.values()):
            from plugins import tensorrt_plugins

            tensorrt_plugins.register()
        super().__init__(manifest, profile, use_graphs=use_graphs)
        self.trt = trt
        self.logger = trt.Logger(trt.Logger.WARNING)
        self.runtime = trt.Runtime(self.logger)
        if any(e.get("settings", {}).get("version_compatible") for e in entries.values()):
            self.runtime.engine_host_code_allowed = True  # a version-compatible plan carries its lean runtime
        self.engines = {s: _Engine(trt, self.runtime, paths[s], entries[s], manifest.folder) for s in ENGINE_STAGES}
        self.max_batch = min(int(e["settings"]["max_batch"]) for e in entries.values())
        self.stream = Stream()
        self.workspace = DeviceBuffer(max(e.memory_size for e in self.engines.values()))
        self.pool = BufferPool()

    # ---- the array type: DeviceTensor on one cuda-python stream ----------------------------------
    def _stream(self) -> Stream:
        return self.stream

    def _copy(self, dst: DeviceTensor, src: DeviceTensor) -> None:
        copy_on_device(dst, src, self.stream)

    def _clone(self, src: DeviceTensor) -> DeviceTensor:
        out = self.pool.tensor(src.shape, src.dtype)
        copy_on_device(out, src, self.stream)
        return out

    def _rows(self, array: DeviceTensor, start: int, stop: int) -> DeviceTensor:
        return array.rows(start, stop)

    def _host_array(self, pinned: PinnedBuffer) -> np.ndarray:
        return pinned.array

    def _copy_to_device(self, dst: DeviceTensor, pinned: PinnedBuffer) -> None:
        copy_to_device(dst, pinned.array, self.stream)

    def _copy_to_host(self, pinned: PinnedBuffer, src: DeviceTensor) -> None:
        copy_to_host(pinned.array, src, self.stream)

    # ---- buffers and contexts ------------------------------------------------------------------
    def _bind_thread(self) -> None:
        """Make the device current in the calling thread (the runtime steps from a worker thread)."""
        thread = threading.get_ident()
        if thread not in self._threads:
            check(cudart().cudaSetDevice(self.device))
            self._threads.add(thread)

    def _batch(self, n: int) -> _Batch:
        self._bind_thread()
        if n > self.max_batch:
            raise ValueError(f"batch {n} exceeds the engines' largest batch {self.max_batch}; rebuild with "
                             f"`python -m export.build_engines --backend tensorrt --max-batch {n} --out {self.manifest.folder}`")
        return super()._batch(n)

    def _new_batch(self, n: int) -> _Batch:
        return _Batch(plan_buffers({s: self.manifest.engines[s] for s in ENGINE_STAGES}, n), self._copy, self._clone)

    def _execute(self, b: _Batch, stage: str, read: int) -> None:
        """Run ``stage`` wired to the state slots (read ``read``, write the other)."""
        engine = self.engines[stage]
        binding = b.plan.binding(stage, read)
        addresses = {tensor: b.tensors[buf].ptr for tensor, buf in binding.items()}
        engine.execute(engine.context((b.plan.batch, read), b.plan.batch, self.workspace, addresses), self.stream)

    # ---- the steps: one engine per stage -------------------------------------------------------
    def _keyframe_into(self, b: _Batch, q: int) -> None:
        for stage in KEYFRAME_PROGRAM:
            with self.timer(stage):
                self._execute(b, stage, read=1 - q)

    def _propagate_eagerly(self, b: _Batch, p: int, q: int) -> None:
        for stage in PROPAGATION_PROGRAM:
            with self.timer(stage):
                self._execute(b, stage, read=p)

    def _first_propagation(self, b: _Batch, p: int, q: int) -> CudaGraph | None:
        self._propagate_eagerly(b, p, q)  # this eager run flushes TensorRT's deferred updates before the capture
        return self._capture(b, p)

    def _capture(self, b: _Batch, p: int) -> CudaGraph | None:
        graph = CudaGraph()
        try:
            with graph.capture(self.stream):
                for stage in PROPAGATION_PROGRAM:
                    self._execute(b, stage, read=p)
        except Exception as e:  # e.g. a plugin that cannot be captured: stay eager, say why in describe()
            self.graph_error = first_line(e)
            return None
        return graph

    def _replay(self, graph: CudaGraph) -> None:
        graph.launch(self.stream)

    def _labels_on_device(self, b: _Batch, state: PropagationState) -> DeviceTensor:
        s = b.slots.holding(state)
        if s is not None:
            self._execute(b, "labels", read=s)
        else:  # a state outside the slots (e.g. concatenated streams): bind its address per call
            n = state.scores.shape[0]
            engine = self.engines["labels"]
            ctx = engine.context((n, "loose"), n, self.workspace)
            bind_address(ctx, "scores", state.scores.ptr)
            bind_address(ctx, "labels", b.tensors["labels"].ptr)
            engine.execute(ctx, self.stream)
        return b.tensors["labels"]

    # ---- the generic interface -----------------------------------------------------------------
    def run(self, stage: str, *inputs: Array) -> Array:
        """One engine on device (or host) inputs, output in fresh device memory (for checks, not the hot path)."""
        self._bind_thread()
        engine = self.engines[stage]
        args = [x if isinstance(x, DeviceTensor) else self._to_device(np.ascontiguousarray(x)) for x in inputs]
        batch = args[0].shape[0]
        ctx = engine.context((batch, "run"), batch, self.workspace)
        for name, arr in zip(engine.inputs, args):
            bind_address(ctx, name, arr.ptr)
        name = engine.outputs[0]
        out = self.pool.tensor(tuple(ctx.get_tensor_shape(name)), self.trt.nptype(engine.engine.get_tensor_dtype(name)))
        bind_address(ctx, name, out.ptr)
        engine.execute(ctx, self.stream)
        return out

    def _to_device(self, array: np.ndarray) -> DeviceTensor:
        out = self.pool.tensor(array.shape, array.dtype)
        copy_to_device(out, array, self.stream)
        self.stream.synchronize()  # pageable source: finish before the caller may reuse it
        return out

    def upload(self, frames: np.ndarray) -> Array:
        return self._to_device(np.ascontiguousarray(frames))

    def download(self, labels: Array) -> np.ndarray:
        out = np.empty(labels.shape, labels.dtype)
        copy_to_host(out, labels, self.stream)
        self.stream.synchronize()
        return out

    def concat(self, arrays: list[Array]) -> Array:
        out = self.pool.tensor((sum(a.shape[0] for a in arrays), *arrays[0].shape[1:]), arrays[0].dtype)
        start = 0
        for a in arrays:
            copy_on_device(out.rows(start, start + a.shape[0]), a, self.stream)
            start += a.shape[0]
        return out

    def synchronize(self) -> None:
        self.stream.synchronize()

    precision = "fp16"

    def exercised_files(self) -> dict[str, str]:
        engines = self.manifest.engines
        return {engines[stage]["file"]: engines[stage]["sha256"] for stage in ENGINE_STAGES}

    def device_identity(self) -> dict:
        gpu, capability = gpu_identity(self.device)
        return {"gpu": gpu, "compute_capability": capability, "driver": gpu_driver()}

    def library_versions(self) -> dict:
        return {**super().library_versions(), "tensorrt": self.trt.__version__}

    def describe(self) -> str:
        graphs = "CUDA graphs on" if self.use_graphs and self.graph_error is None else \
            f"CUDA graphs off{f' ({self.graph_error})' if self.graph_error else ''}"
        return f"{self.env.describe()}, FP16 engines, max batch {self.max_batch}, {graphs}"
