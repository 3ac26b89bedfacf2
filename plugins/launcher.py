"""Launch the CUDA kernels from Python with cuda-python's driver API (``cuda.bindings.driver``).

Chosen over CuPy because cuda-bindings is a small binary wheel that imports without a GPU
and is what NVIDIA's TensorRT samples use. Every op takes raw device pointers (ints, e.g.
``torch.Tensor.data_ptr()``, ``trtp.Tensor.data_ptr``) and a stream handle (int, e.g.
``torch.cuda.current_stream().cuda_stream``; 0 is the legacy default stream), so a torch-cuda
backend, the TensorRT JIT plugin and tests share one path. Launches are asynchronous on that
stream; nothing here allocates or synchronises.

Kernels come from ``plugins.toolchain``: a cubin for the device's architecture, or PTX the driver
JIT-compiles, from whichever installed compiler (nvcc, or the CUDA 12 wheels' NVRTC + ptxas) the
driver can load (driver version from cuDriverGetVersion); otherwise one line says what to install.
"""

from __future__ import annotations

import ctypes
from typing import Any

from plugins import geometry, nvcc, toolchain


class CudaError(RuntimeError):
    """A CUDA driver call failed."""


def _driver() -> Any:
    try:
        from cuda.bindings import driver
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("the GPU launcher needs cuda-python: pip install 'cuda-bindings>=12.6'") from exc
    return driver


def _check(result: Any) -> Any:
    """Unpack a cuda-python result tuple, raising CudaError on a non-success code."""
    driver = _driver()
    err, *values = result if isinstance(result, tuple) else (result,)
    if err != driver.CUresult.CUDA_SUCCESS:
        name = driver.cuGetErrorName(err)[1]
        raise CudaError(f"CUDA driver error {name.decode() if isinstance(name, bytes) else name} ({int(err)})")
    if not values:
        return None
    return values[0] if len(values) == 1 else tuple(values)


def is_ptx(image: bytes) -> bool:
    """True for PTX text, False for a cubin (ELF) or fatbinary."""
    return not image.startswith(b"\x7fELF") and b".version" in image[:4096]


def pack_launch_args(inputs: list[int], sizes: tuple[int, ...], outputs: list[int]) -> tuple[list[Any], ctypes.Array]:
    """void** parameter array in the kernels' order: input pointers, int32 sizes, output pointers."""
    if not all(0 < int(s) < 2**31 for s in sizes):
        raise ValueError(f"kernel sizes must be positive int32, got {sizes}")
    values: list[Any] = [ctypes.c_void_p(p) for p in inputs] + [ctypes.c_int32(int(s)) for s in sizes] + [ctypes.c_void_p(p) for p in outputs]
    array = (ctypes.c_void_p * len(values))(*[ctypes.addressof(v) for v in values])
    return values, array


def driver_version() -> tuple[int, int]:
    """The CUDA version the installed driver supports, e.g. (12, 8), from cuDriverGetVersion."""
    value = int(_check(_driver().cuDriverGetVersion()))
    return value // 1000, (value % 1000) // 10


def device_arch(device: int = 0) -> str:
    """'sm_XY' of a CUDA device (initialises the driver)."""
    driver = _driver()
    _check(driver.cuInit(0))
    dev = _check(driver.cuDeviceGet(device))
    attr = driver.CUdevice_attribute
    major = _check(driver.cuDeviceGetAttribute(attr.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, dev))
    minor = _check(driver.cuDeviceGetAttribute(attr.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, dev))
    return f"sm_{major}{minor}"


class GpuKernels:
    """The three kernel modules loaded on one device, with one method per op.

    images: optional {source name: cubin or PTX bytes} to load instead of building them.
    The device's primary context is made current if the thread has no current context (PyTorch
    uses the same primary context, so its pointers are valid here). Raises
    ``toolchain.ToolchainError`` (one line, what to install) when no installed compiler yields
    kernels this driver can load.
    """

    def __init__(self, device: int = 0, images: dict[str, bytes] | None = None) -> None:
        driver = _driver()
        self.arch = device_arch(device)
        dev = _check(driver.cuDeviceGet(device))
        if int(_check(driver.cuCtxGetCurrent())) == 0:
            _check(driver.cuCtxSetCurrent(_check(driver.cuDevicePrimaryCtxRetain(dev))))
        self.driver = driver_version()
        self.image: toolchain.Image | None = None
        if not all(name in (images or {}) for name in nvcc.SOURCES):
            self.image = toolchain.choose_image(self.arch, self.driver, toolchain.available())
        self._modules = {}
        for name in nvcc.SOURCES:
            image = (images or {}).get(name) or toolchain.build(name, self.image.target, self.image.kind, self.image.toolchain)
            if is_ptx(image):
                image = image.rstrip(b"\0") + b"\0"  # PTX is loaded as a NUL-terminated string
            self._modules[name] = _check(driver.cuModuleLoadData(image))
        self._functions: dict[str, Any] = {}

    def describe(self) -> str:
        """Which kernels were loaded, e.g. 'cubin sm_61 from nvrtc-cu12 12.9 (ptxas 12.9.86), driver CUDA 12.8'."""
        what = self.image.describe() if self.image else "images passed in"
        return f"{what}, driver CUDA {self.driver[0]}.{self.driver[1]}"

    def function(self, launch: geometry.Launch) -> Any:
        if launch.kernel not in self._functions:
            self._functions[launch.kernel] = _check(_driver().cuModuleGetFunction(self._modules[launch.source], launch.kernel.encode()))
        return self._functions[launch.kernel]

    def launch(self, launch: geometry.Launch, inputs: list[int], outputs: list[int], stream: int = 0) -> None:
        """Launch one kernel: input pointers, ``launch.sizes`` as int32, output pointers."""
        driver = _driver()
        _keep, params = pack_launch_args(inputs, launch.sizes, outputs)
        grid = tuple(int(g) for g in launch.grid)
        if grid[1] > 65535 or grid[2] > 65535:
            raise ValueError(f"grid {grid} exceeds CUDA's 65535 limit in y/z (batch too large)")
        _check(driver.cuLaunchKernel(self.function(launch), *grid, *launch.block, launch.shared_mem,
                                     driver.CUstream(int(stream)), ctypes.addressof(params), 0))

    # ---- ops: pointers are ints (device addresses), sizes ints, stream an int handle --------

    def warp_by_flow(self, seg: int, flow: int, out: int, n: int, c: int, h: int, w: int, *, half: bool = False,
                     labels: int = 0, stream: int = 0) -> None:
        """out[N,C,h,w] = seg warped by flow[N,2,h,w] (FP32); labels (int32 [N,h,w]) if non-zero."""
        launch = geometry.warp_by_flow(n, c, h, w, half, labels=bool(labels))
        self.launch(launch, [seg, flow], [out, labels] if labels else [out], stream)

    def chunk_filter(self, warped: int, intra: int, weights: int, out: int, n: int, c: int, h: int, w: int,
                     radius: int = 1, *, half: bool = False, stream: int = 0) -> None:
        """out[N,C,h,w] = the guided chunk filter of warped/intra by weights[N,K+2,h,w] (K shifts, intra, null)."""
        self.launch(geometry.chunk_filter(n, c, h, w, radius, half), [warped, intra, weights], [out], stream)

    def edge_map(self, scores: int, edge: int, n: int, c: int, h: int, w: int, *, half: bool = False, stream: int = 0) -> None:
        """edge[N,1,h,w] (FP32, 0 or 1) = [zero-padded Laplacian(argmax_c scores) != 0]."""
        self.launch(geometry.edge_map(n, c, h, w, half), [scores], [edge], stream)

    def edge_map_from_labels(self, labels: int, edge: int, n: int, h: int, w: int, *, stream: int = 0) -> None:
        """edge[N,1,h,w] from the int32 labels written by ``warp_by_flow(..., labels=...)``."""
        self.launch(geometry.edge_map_from_labels(n, h, w), [labels], [edge], stream)


_KERNELS: dict[int, GpuKernels] = {}


def kernels(device: int = 0) -> GpuKernels:
    """The process-wide :class:`GpuKernels` of ``device`` (built and loaded on first use)."""
    if device not in _KERNELS:
        _KERNELS[device] = GpuKernels(device)
    return _KERNELS[device]


def gpu_unavailable_reason() -> str | None:
    """None when a CUDA GPU can be driven from here, else a one-line reason."""
    try:
        driver = _driver()
    except ImportError as exc:
        return str(exc)
    try:
        _check(driver.cuInit(0))
        count = _check(driver.cuDeviceGetCount())
    except Exception as exc:  # no driver library, no device, ...
        return f"no usable CUDA driver/GPU: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    return None if count > 0 else "CUDA driver found but no GPU"
