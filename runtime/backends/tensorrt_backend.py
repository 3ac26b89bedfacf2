"""tensorrt backend: the FP16 engines listed in the manifest, our plugins, one CUDA stream.

- Engines are refused (one line, ManifestError) unless built for this TensorRT version, GPU and
  plugin code (``export.engine_compat``); the plugins are registered before deserialising.
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

from export.engine_compat import ENGINE_STAGES, check_engines, current_environment, rebuild_hint
from export.manifest import Manifest, ManifestError

from ..errors import first_line
from .base import Array, Backend, State, resize_labels_nearest
from .buffer_plan import KEYFRAME_PROGRAM, PROPAGATION_PROGRAM, BufferPlan, plan_buffers
from .cuda_memory import (BufferPool, CudaGraph, DeviceBuffer, DeviceTensor, Event, PinnedBuffer, Stream, check,
                          copy_on_device, copy_to_device, copy_to_host, cudart)
from .state_slots import StateSlots


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


class _Batch:
    """Everything allocated for one batch size: plan, device regions, pinned mirrors, slots, graphs."""

    def __init__(self, plan: BufferPlan, slots_copy: Any, clone: Any) -> None:
        self.plan = plan
        self.regions = {name: DeviceBuffer(nbytes) for name, nbytes in plan.regions.items()}
        self.tensors = {name: DeviceTensor(self.regions[buf.region].ptr, buf.shape, buf.dtype, self.regions[buf.region])
                        for name, buf in plan.buffers.items()}
        self.image_host = PinnedBuffer(plan.buffers["image"].shape, np.uint8)
        self.labels_host = PinnedBuffer(plan.buffers["labels"].shape, np.uint8)
        self.uploaded = Event()  # the last upload has finished reading image_host
        slot = [State(self.tensors[f"scores.{i}"], self.tensors[f"small.{i}"]) for i in (0, 1)]
        self.slots = StateSlots((slot[0], slot[1]), slots_copy, clone)
        self.graphs: dict[int, CudaGraph] = {}


class TensorRTBackend(Backend):
    name = "tensorrt"
    is_async = True

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
        super().__init__(manifest, profile)
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
        self.use_graphs = use_graphs
        self.graph_error: str | None = None
        self._batches: dict[int, _Batch] = {}

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
        if n not in self._batches:
            plan = plan_buffers({s: self.manifest.engines[s] for s in ENGINE_STAGES}, n)
            self._batches[n] = _Batch(plan, lambda dst, src: copy_on_device(dst, src, self.stream), self._clone)
        return self._batches[n]

    def _clone(self, src: DeviceTensor) -> DeviceTensor:
        out = self.pool.tensor(src.shape, src.dtype)
        copy_on_device(out, src, self.stream)
        return out

    def _execute(self, b: _Batch, stage: str, read: int) -> None:
        """Run ``stage`` wired to the state slots (read ``read``, write the other)."""
        engine = self.engines[stage]
        binding = b.plan.binding(stage, read)
        addresses = {tensor: b.tensors[buf].ptr for tensor, buf in binding.items()}
        engine.execute(engine.context((b.plan.batch, read), b.plan.batch, self.workspace, addresses), self.stream)

    def _upload(self, b: _Batch, frames: np.ndarray) -> None:
        with self.timer("upload"):
            b.uploaded.synchronize()  # the previous copy has finished reading the pinned buffer
            np.copyto(b.image_host.array, frames)
            copy_to_device(b.tensors["image"], b.image_host.array, self.stream)
            b.uploaded.record(self.stream)

    # ---- the steps -----------------------------------------------------------------------------
    def keyframe_step(self, frames: np.ndarray) -> State:
        self.check_frames(frames)
        b = self._batch(len(frames))
        self._upload(b, frames)
        q = b.slots.output_slot()
        for stage in KEYFRAME_PROGRAM:
            with self.timer(stage):
                self._execute(b, stage, read=1 - q)
        return b.slots.hand_out(q)

    def propagation_step(self, state: State, frames: np.ndarray) -> State:
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
                graph.launch(self.stream)
        else:
            for stage in PROPAGATION_PROGRAM:
                with self.timer(stage):
                    self._execute(b, stage, read=p)
            if self.use_graphs and self.graph_error is None:
                self._capture(b, p)  # the eager run above flushed TensorRT's deferred updates
        return b.slots.hand_out(q)

    def _capture(self, b: _Batch, p: int) -> None:
        graph = CudaGraph()
        try:
            with graph.capture(self.stream):
                for stage in PROPAGATION_PROGRAM:
                    self._execute(b, stage, read=p)
        except Exception as e:  # e.g. a plugin that cannot be captured: stay eager, say why in describe()
            self.graph_error = first_line(e)
            return
        b.graphs[p] = graph

    def labels(self, state: State, size: tuple[int, int]) -> np.ndarray:
        n = state.scores.shape[0]
        b = self._batch(n)
        s = b.slots.holding(state)
        with self.timer("labels"):
            if s is not None:
                self._execute(b, "labels", read=s)
            else:  # a state outside the slots (e.g. concatenated streams): bind its address per call
                engine = self.engines["labels"]
                ctx = engine.context((n, "loose"), n, self.workspace)
                bind_address(ctx, "scores", state.scores.ptr)
                bind_address(ctx, "labels", b.tensors["labels"].ptr)
                engine.execute(ctx, self.stream)
        with self.timer("download"):
            copy_to_host(b.labels_host.array, b.tensors["labels"], self.stream)
            self.stream.synchronize()
            labels = b.labels_host.array.copy()
        with self.timer("resize_labels"):
            return resize_labels_nearest(labels, size)

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

    def split(self, array: Array, sizes: list[int]) -> list[Array]:
        """Copies, not views: pieces must outlive the slot the array may live in."""
        bounds = np.cumsum([0, *sizes])
        return [self._clone(array.rows(int(a), int(b))) for a, b in zip(bounds[:-1], bounds[1:])]

    def synchronize(self) -> None:
        self.stream.synchronize()

    def describe(self) -> str:
        graphs = "CUDA graphs on" if self.use_graphs and self.graph_error is None else \
            f"CUDA graphs off{f' ({self.graph_error})' if self.graph_error else ''}"
        return f"{self.env.describe()}, FP16 engines, max batch {self.max_batch}, {graphs}"
