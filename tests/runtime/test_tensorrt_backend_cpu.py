"""The tensorrt backend's host-side code without a GPU: a stand-in for cuda-python's runtime API
counts allocations (multi-stream steps must reuse device memory) and stand-in TensorRT contexts
refuse addresses (the backend must say so, not run on a stale binding). TensorRT itself and the
numbers on a GPU: tests/runtime/test_gpu_backends.py."""

from __future__ import annotations

import types

import numpy as np
import pytest

from runtime.backends import cuda_memory
from runtime.backends.base import State
from runtime.backends.tensorrt_backend import TensorRTBackend

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


def _state(backend: TensorRTBackend, n: int = 1) -> State:
    return State(backend.pool.tensor((n, 11, 17, 30), np.float16), backend.pool.tensor((n, 3, 17, 30), np.float16))


def test_multistream_steps_reuse_device_memory(fake_cuda):
    backend = _backend()
    streams = [_state(backend), _state(backend), _state(backend)]
    per_step = []
    for _ in range(12):  # what runtime.multistream does around every batched step
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
