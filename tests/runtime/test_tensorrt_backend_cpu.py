"""The tensorrt backend's host-side code without a GPU: a stand-in for cuda-python's runtime API
counts allocations (multi-stream steps must reuse device memory) and stand-in TensorRT contexts
refuse addresses (the backend must say so, not run on a stale binding). TensorRT itself and the
numbers on a GPU: tests/runtime/test_gpu_backends.py."""

from __future__ import annotations

import ctypes
import types

import numpy as np
import pytest

from runtime.backends import cuda_memory
from runtime.backends.base import PropagationState
from runtime.backends.tensorrt_backend import TensorRTBackend
from tests.conftest import ENGINE_SIZE

SUCCESS = 0


class FakeCudart:
    """cuda.bindings.runtime's calls the backend makes, on host memory; counts malloc/free."""

    cudaError_t = types.SimpleNamespace(cudaSuccess=SUCCESS)
    cudaMemcpyKind = types.SimpleNamespace(cudaMemcpyHostToDevice=1, cudaMemcpyDeviceToHost=2, cudaMemcpyDeviceToDevice=3)
    cudaStreamNonBlocking = 1

    def __init__(self) -> None:
        self.mallocs = self.frees = self.copies = 0
        self.memory: dict[int, bytearray] = {}
        self.next = 0x10000

    def cudaMalloc(self, nbytes):
        self.mallocs += 1
        ptr, self.next = self.next, self.next + ((nbytes + 255) // 256 + 1) * 256
        self.memory[ptr] = bytearray(nbytes)
        return SUCCESS, ptr

    def cudaFree(self, ptr):
        self.frees += 1
        self.memory.pop(ptr, None)
        return (SUCCESS,)

    def cudaMemcpyAsync(self, dst, src, nbytes, kind, stream):
        self.copies += 1
        return (SUCCESS,)

    def cudaStreamCreateWithFlags(self, flags):
        return SUCCESS, 7

    def cudaStreamSynchronize(self, stream):
        return (SUCCESS,)

    def cudaSetDevice(self, device):
        return (SUCCESS,)

    def cudaGetErrorName(self, err):
        return SUCCESS, b"cudaErrorFake"

    # pinned memory, events and stream capture (the steps)
    cudaHostAllocDefault = 0
    cudaEventDisableTiming = 2
    cudaStreamCaptureMode = types.SimpleNamespace(cudaStreamCaptureModeThreadLocal=1)
    instantiate_fails = False

    def cudaHostAlloc(self, nbytes, flags):
        buffer = ctypes.create_string_buffer(nbytes)
        self.memory[ctypes.addressof(buffer)] = buffer
        return SUCCESS, ctypes.addressof(buffer)

    def cudaFreeHost(self, ptr):
        return (SUCCESS,)

    def cudaEventCreateWithFlags(self, flags):
        return SUCCESS, 11

    def cudaEventRecord(self, event, stream):
        return (SUCCESS,)

    def cudaEventSynchronize(self, event):
        return (SUCCESS,)

    def cudaStreamBeginCapture(self, stream, mode):
        self.capturing = True
        return (SUCCESS,)

    def cudaStreamEndCapture(self, stream):
        self.capturing = False
        return SUCCESS, 21

    def cudaGraphInstantiate(self, graph, flags):
        return (1, None) if self.instantiate_fails else (SUCCESS, 22)

    def cudaGraphLaunch(self, graph_exec, stream):
        self.launches = getattr(self, "launches", 0) + 1
        return (SUCCESS,)

    def cudaGraphExecDestroy(self, graph_exec):
        return (SUCCESS,)

    def cudaGraphDestroy(self, graph):
        return (SUCCESS,)


@pytest.fixture
def fake_cuda(monkeypatch) -> FakeCudart:
    from runtime.backends import tensorrt_backend

    fake = FakeCudart()
    monkeypatch.setattr(cuda_memory, "cudart", lambda: fake)
    monkeypatch.setattr(tensorrt_backend, "cudart", lambda: fake)
    return fake


def _backend() -> TensorRTBackend:
    """A TensorRTBackend with its host-side state only (no engines, no GPU)."""
    backend = TensorRTBackend.__new__(TensorRTBackend)
    backend.stream = cuda_memory.Stream()
    backend.pool = cuda_memory.BufferPool()
    backend.device = 0
    backend._threads = set()
    backend.workspace = None
    return backend


def _state(backend: TensorRTBackend, n: int = 1) -> PropagationState:
    return PropagationState(backend.pool.tensor((n, 11, 17, 30), np.float16), backend.pool.tensor((n, 3, 17, 30), np.float16))


def test_multistream_steps_reuse_device_memory(fake_cuda):
    backend = _backend()
    streams = [_state(backend), _state(backend), _state(backend)]
    per_step = []
    for _ in range(12):  # what runtime.schedule.multistream does around every batched step
        batch = backend.concat_states(streams)
        streams = backend.split_state(batch, [1, 1, 1])
        del batch
        per_step.append((fake_cuda.mallocs, fake_cuda.frees))
    # the first steps fill the pool; from then on no cudaMalloc and no (device-synchronising) cudaFree
    assert per_step[2:] == [per_step[2]] * 10, per_step
    assert per_step[-1][1] == 0  # nothing was ever freed
    assert fake_cuda.copies >= 12 * 2 * 6  # the copies still happen (concat + split of scores and small)
    assert all(p.shape == (1, 11, 17, 30) for p in (s.scores for s in streams))
    ptrs = {s.scores.ptr for s in streams}
    assert len(ptrs) == 3  # three live pieces, three distinct buffers: reuse never aliases a live tensor


class _Context:
    def __init__(self, refuse: set[str]) -> None:
        self.refuse, self.bound = refuse, {}

    def set_tensor_address(self, name, ptr):
        if name in self.refuse:
            return False
        self.bound[name] = ptr
        return True

    def get_tensor_shape(self, name):
        return (1, 11, 17, 30)


class _Engine:
    """What TensorRTBackend.run / labels use of its _Engine wrapper."""

    inputs, outputs = ["seg", "flow"], ["out"]

    def __init__(self, refuse: set[str]) -> None:
        self.ctx = _Context(refuse)
        self.executed = 0
        self.engine = types.SimpleNamespace(get_tensor_dtype=lambda name: "half")

    def context(self, key, batch, workspace, addresses=None):
        return self.ctx

    def execute(self, ctx, stream):
        self.executed += 1


@pytest.mark.parametrize("refused", ["seg", "out"])
def test_run_stops_when_tensorrt_refuses_an_address(fake_cuda, refused):
    backend = _backend()
    backend.trt = types.SimpleNamespace(nptype=lambda dtype: np.float16)
    backend.engines = {"warp": _Engine({refused})}
    seg = cuda_memory.DeviceTensor.empty((1, 11, 17, 30), np.float16)
    flow = cuda_memory.DeviceTensor.empty((1, 2, 17, 30), np.float32)
    with pytest.raises(RuntimeError, match=f"TensorRT refused address 0x[0-9a-f]+ for tensor '{refused}'"):
        backend.run("warp", seg, flow)
    assert backend.engines["warp"].executed == 0
    backend.engines = {"warp": _Engine(set())}
    out = backend.run("warp", seg, flow)  # all addresses accepted: it runs, output from the pool
    assert backend.engines["warp"].executed == 1 and backend.engines["warp"].ctx.bound["out"] == out.ptr


def test_labels_of_a_state_outside_the_slots_checks_its_addresses(fake_cuda):
    backend = _backend()
    backend.timer = lambda name: _NoTimer()
    engine = _Engine({"scores"})
    engine.inputs, engine.outputs = ["scores"], ["labels"]
    backend.engines = {"labels": engine}
    labels = cuda_memory.DeviceTensor.empty((2, 136, 240), np.uint8)
    batch = types.SimpleNamespace(slots=types.SimpleNamespace(holding=lambda state: None), tensors={"labels": labels},
                                  labels_host=types.SimpleNamespace(array=np.zeros((2, 136, 240), np.uint8)), plan=None)
    backend._batch = lambda n: batch
    with pytest.raises(RuntimeError, match="tensor 'scores'"):
        backend.labels(_state(backend, 2), (136, 240))
    assert engine.executed == 0


class _NoTimer:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


class _StageEngine:
    """One stand-in engine per stage for the steps: records every execution (eager or captured)."""

    def __init__(self, stage: str, cuda: FakeCudart, executed: list) -> None:
        self.stage, self.cuda, self.executed = stage, cuda, executed

    def context(self, key, batch, workspace, addresses=None):
        return _Context(set())

    def execute(self, ctx, stream):
        self.executed.append(("captured" if getattr(self.cuda, "capturing", False) else "eager", self.stage))


def _stepping_backend(cuda: FakeCudart) -> tuple[TensorRTBackend, list]:
    """A TensorRTBackend as _backend(), plus the engine entries of the real FP16 stage table and
    what DeviceBackend.__init__ sets up."""
    from engine_format.stages import stage_table

    backend = _backend()
    table = stage_table(11, 1, ENGINE_SIZE, precision="fp16")
    entries = {name: {"inputs": [s.to_dict() for s in st.inputs], "outputs": [s.to_dict() for s in st.outputs]}
               for name, st in table.items()}
    backend.manifest = types.SimpleNamespace(engines=entries, folder="eng")
    backend.frame_size, backend.max_batch = ENGINE_SIZE, 2
    backend.timer = lambda name: _NoTimer()
    backend.use_graphs, backend.graph_error, backend._batches = True, None, {}
    executed: list = []
    backend.engines = {stage: _StageEngine(stage, cuda, executed) for stage in entries}
    return backend, executed


@pytest.mark.parametrize("capture_fails", [False, True])
def test_each_direction_is_captured_after_one_eager_run_then_launched(fake_cuda, capture_fails):
    fake_cuda.instantiate_fails = capture_fails
    backend, executed = _stepping_backend(fake_cuda)
    frames = np.zeros((2, *ENGINE_SIZE, 3), np.uint8)
    state = backend.keyframe_step(frames)
    for _ in range(4):
        state = backend.propagation_step(state, frames)
    backend.labels(state, ENGINE_SIZE)
    eager = [stage for how, stage in executed if how == "eager"]
    captured = [stage for how, stage in executed if how == "captured"]
    program = ["downsample", "flow", "warp", "intra", "guide", "filter"]
    if capture_fails:  # one failed capture, then every step eager; describe() says why
        assert eager == ["keyframe", "downsample", *program * 4, "labels"] and captured == program
        assert backend.graph_error.startswith("CudaError") and backend._batches[2].graphs == {}
        assert getattr(fake_cuda, "launches", 0) == 0
    else:  # slot 0 -> 1 and 1 -> 0: eager once and captured each, then replayed
        assert eager == ["keyframe", "downsample", *program * 2, "labels"] and captured == program * 2
        assert backend.graph_error is None and set(backend._batches[2].graphs) == {0, 1}
        assert fake_cuda.launches == 2
