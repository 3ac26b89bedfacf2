"""Device memory, pinned host memory, streams, events and CUDA graphs with cuda-python's runtime
API (``cuda.bindings.runtime``), for backends that do not use PyTorch (the tensorrt backend).

Pointers are ints; every call is checked and raises CudaError with the CUDA error name.
"""

from __future__ import annotations

import ctypes
from contextlib import contextmanager
from typing import Any, Callable, Iterator

import numpy as np


class CudaError(RuntimeError):
    """A CUDA runtime call failed."""


def cudart() -> Any:
    from cuda.bindings import runtime

    return runtime


def check(result: Any) -> Any:
    """Unpack a cuda-python ``(error, *values)`` result, raising CudaError on failure."""
    rt = cudart()
    err, *values = result if isinstance(result, tuple) else (result,)
    if err != rt.cudaError_t.cudaSuccess:
        name = rt.cudaGetErrorName(err)[1]
        raise CudaError(f"CUDA error {name.decode() if isinstance(name, bytes) else name} ({int(err)})")
    if not values:
        return None
    return values[0] if len(values) == 1 else tuple(values)


class Stream:
    """A non-blocking CUDA stream; ``handle`` is the int TensorRT's execute_async_v3 takes."""

    def __init__(self) -> None:
        rt = cudart()
        self.stream = check(rt.cudaStreamCreateWithFlags(rt.cudaStreamNonBlocking))
        self.handle = int(self.stream)

    def synchronize(self) -> None:
        check(cudart().cudaStreamSynchronize(self.stream))


class Event:
    """A CUDA event without timing, to know when an async copy has finished reading host memory."""

    def __init__(self) -> None:
        rt = cudart()
        self.event = check(rt.cudaEventCreateWithFlags(rt.cudaEventDisableTiming))
        self.recorded = False

    def record(self, stream: Stream) -> None:
        check(cudart().cudaEventRecord(self.event, stream.stream))
        self.recorded = True

    def synchronize(self) -> None:
        if self.recorded:
            check(cudart().cudaEventSynchronize(self.event))


class DeviceBuffer:
    """``nbytes`` of device memory (cudaMalloc, 256-byte aligned), freed with the object."""

    def __init__(self, nbytes: int) -> None:
        self.nbytes = int(nbytes)
        self.ptr = int(check(cudart().cudaMalloc(max(self.nbytes, 1))))

    def __del__(self) -> None:
        ptr, self.ptr = getattr(self, "ptr", 0), 0
        if ptr:
            try:
                cudart().cudaFree(ptr)
            except Exception:  # interpreter shutdown
                pass


class BufferPool:
    """Device buffers recycled by byte size, for tensors made and dropped every step (multi-stream
    concat/split, state copies): after the first steps nothing is allocated or freed any more
    (cudaFree synchronises the whole device). A buffer goes back to the pool when the last tensor
    viewing it is dropped; reusing it is safe because every user queues its work on the one
    stream of the backend, in order. ``allocate`` makes a new buffer (DeviceBuffer; tests pass a
    counting one)."""

    def __init__(self, allocate: Callable[[int], "DeviceBuffer"] | None = None) -> None:
        self._allocate = allocate or DeviceBuffer
        self._free: dict[int, list[DeviceBuffer]] = {}
        self.allocated = 0  # buffers ever allocated (the pool never frees them)

    def tensor(self, shape: tuple[int, ...], dtype: Any) -> "DeviceTensor":
        """A device tensor of ``shape``/``dtype`` in a recycled (or, the first time, new) buffer."""
        nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
        free = self._free.get(nbytes)
        if free:
            buffer = free.pop()
        else:
            buffer = self._allocate(nbytes)
            self.allocated += 1
        return DeviceTensor(buffer.ptr, shape, dtype, _Lease(self, nbytes, buffer))

    def _give_back(self, nbytes: int, buffer: "DeviceBuffer") -> None:
        self._free.setdefault(nbytes, []).append(buffer)


class _Lease:
    """Keeps a pooled buffer for the tensors that view it; returns it to the pool when dropped."""

    def __init__(self, pool: BufferPool, nbytes: int, buffer: "DeviceBuffer") -> None:
        self.pool, self.nbytes, self.buffer = pool, nbytes, buffer

    def __del__(self) -> None:
        self.pool._give_back(self.nbytes, self.buffer)


class DeviceTensor:
    """A typed view of device memory: ``ptr``, ``shape``, ``dtype``; ``base`` keeps the memory alive."""

    def __init__(self, ptr: int, shape: tuple[int, ...], dtype: Any, base: Any = None) -> None:
        self.ptr = int(ptr)
        self.shape = tuple(int(d) for d in shape)
        self.dtype = np.dtype(dtype)
        self.base = base

    @classmethod
    def empty(cls, shape: tuple[int, ...], dtype: Any) -> "DeviceTensor":
        nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
        return cls(0, shape, dtype, DeviceBuffer(nbytes)).rebase()

    def rebase(self) -> "DeviceTensor":
        self.ptr = self.base.ptr
        return self

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape)) * self.dtype.itemsize

    def rows(self, start: int, stop: int) -> "DeviceTensor":
        """Frames ``start:stop`` along the batch axis (a view, no copy)."""
        per = self.nbytes // self.shape[0]
        return DeviceTensor(self.ptr + start * per, (stop - start, *self.shape[1:]), self.dtype, self)

    def __repr__(self) -> str:
        return f"DeviceTensor({self.dtype}{list(self.shape)} @ {self.ptr:#x})"


class PinnedBuffer:
    """Page-locked host memory (cudaHostAlloc) exposed as a numpy array of ``shape``/``dtype``."""

    def __init__(self, shape: tuple[int, ...], dtype: Any) -> None:
        self.dtype = np.dtype(dtype)
        nbytes = int(np.prod(shape)) * self.dtype.itemsize
        rt = cudart()
        self.ptr = int(check(rt.cudaHostAlloc(max(nbytes, 1), rt.cudaHostAllocDefault)))
        raw = (ctypes.c_uint8 * max(nbytes, 1)).from_address(self.ptr)
        self.array = np.frombuffer(raw, dtype=np.uint8, count=nbytes).view(self.dtype).reshape(shape)

    def __del__(self) -> None:
        ptr, self.ptr = getattr(self, "ptr", 0), 0
        if ptr:
            try:
                cudart().cudaFreeHost(ptr)
            except Exception:
                pass


def copy_to_device(dst: DeviceTensor, src: np.ndarray, stream: Stream) -> None:
    """Async host -> device copy (asynchronous only when ``src`` is pinned)."""
    rt = cudart()
    check(rt.cudaMemcpyAsync(dst.ptr, src.ctypes.data, src.nbytes, rt.cudaMemcpyKind.cudaMemcpyHostToDevice, stream.stream))


def copy_to_host(dst: np.ndarray, src: DeviceTensor, stream: Stream) -> None:
    """Async device -> host copy into ``dst`` (pinned for a truly asynchronous copy)."""
    rt = cudart()
    check(rt.cudaMemcpyAsync(dst.ctypes.data, src.ptr, dst.nbytes, rt.cudaMemcpyKind.cudaMemcpyDeviceToHost, stream.stream))


def copy_on_device(dst: DeviceTensor, src: DeviceTensor, stream: Stream) -> None:
    """Async device -> device copy of ``src`` into ``dst`` (same byte size)."""
    if dst.nbytes != src.nbytes:
        raise ValueError(f"cannot copy {src!r} into {dst!r}: sizes differ")
    rt = cudart()
    check(rt.cudaMemcpyAsync(dst.ptr, src.ptr, src.nbytes, rt.cudaMemcpyKind.cudaMemcpyDeviceToDevice, stream.stream))


class CudaGraph:
    """A CUDA graph captured from the work a function queues on a stream, replayed with ``launch``."""

    def __init__(self) -> None:
        self.graph = None
        self.exec = None

    @contextmanager
    def capture(self, stream: Stream) -> Iterator[None]:
        """Record (not run) what is queued on ``stream`` inside the block (thread-local capture mode)."""
        rt = cudart()
        check(rt.cudaStreamBeginCapture(stream.stream, rt.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal))
        try:
            yield
        except BaseException:
            graph = rt.cudaStreamEndCapture(stream.stream)  # leave capture mode; drop the partial graph
            if graph[0] == rt.cudaError_t.cudaSuccess and graph[1] is not None:
                rt.cudaGraphDestroy(graph[1])
            raise
        self.graph = check(rt.cudaStreamEndCapture(stream.stream))
        self.exec = check(rt.cudaGraphInstantiate(self.graph, 0))

    def launch(self, stream: Stream) -> None:
        check(cudart().cudaGraphLaunch(self.exec, stream.stream))

    def __del__(self) -> None:
        try:
            rt = cudart()
            if self.exec is not None:
                rt.cudaGraphExecDestroy(self.exec)
            if self.graph is not None:
                rt.cudaGraphDestroy(self.graph)
        except Exception:
            pass


def gpu_name(device: int = 0) -> str:
    """The device's name, e.g. 'NVIDIA H100 80GB HBM3'."""
    props = check(cudart().cudaGetDeviceProperties(device))
    name = props.name
    return (name.split(b"\0")[0].decode() if isinstance(name, (bytes, bytearray)) else str(name)).strip()
