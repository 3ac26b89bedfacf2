"""Launch the CUDA kernels from Python with cuda-python's driver API (``cuda.bindings.driver``).

Chosen over CuPy because cuda-bindings is a small binary wheel that imports without a GPU
and is what NVIDIA's TensorRT samples use. Every op takes raw device pointers (ints, e.g.
``torch.Tensor.data_ptr()``, ``trtp.Tensor.data_ptr``) and a stream handle (int, e.g.
``torch.cuda.current_stream().cuda_stream``; 0 is the legacy default stream), so a torch-cuda
backend, the TensorRT JIT plugin and tests share one path. Launches are asynchronous on that
stream; nothing here allocates or synchronises.

Kernels come from ``plugins.toolchain``: a cubin for the device's architecture, or PTX the driver
JIT-compiles, from whichever installed compiler (nvcc, or the CUDA 12 wheels' NVRTC + ptxas) the
driver can load (driver version from cuDriverGetVersion); a compiler that fails hands over to the
other one; otherwise one line says what to install.

cuda-bindings 13.x needs a driver for CUDA 13 (r580+); on the r525-r575 drivers of CUDA 12
machines it cannot drive the GPU. The bindings' major version is compared with the driver's CUDA
version (read from the driver library itself) before the first driver call, and a mismatch is
one line saying which cuda-bindings to install.
"""

from __future__ import annotations

import ctypes
import functools
import sys
from typing import Any

from plugins import geometry, nvcc, toolchain

#: cuda-bindings for every driver from r525 on (CUDA 12); 13.x only for r580+ drivers (CUDA 13).
#: 12.9.0 does not run on CUDA 13 drivers (fixed in 12.9.1, NVIDIA/cccl#5442).
BINDINGS_HINT = "pip install 'cuda-bindings>=12.6,<13,!=12.9.0'"


class CudaError(RuntimeError):
    """A CUDA driver call failed."""


class CudaBindingsError(ImportError):
    """cuda-bindings is missing, or was built for a newer CUDA than the driver supports (one line)."""


def _cuda_version(text: str) -> tuple[int, int] | None:
    parts = str(text).split(".")
    try:
        return int(parts[0]), int(parts[1]) if len(parts) > 1 else 0
    except ValueError:
        return None


def bindings_driver_reason(bindings: str, driver: int) -> str | None:
    """One line when cuda-bindings version ``bindings`` (e.g. '13.0.1') cannot drive a driver for
    CUDA ``driver`` (cuDriverGetVersion's value, e.g. 12080 for 12.8), naming what to install;
    None when they fit."""
    version = _cuda_version(bindings)
    if version is None or driver <= 0:
        return None
    cuda = (driver // 1000, (driver % 1000) // 10)
    if version[0] > cuda[0]:
        needs = " (r580+)" if version[0] == 13 else ""
        return (f"cuda-bindings {bindings} needs an NVIDIA driver for CUDA {version[0]}{needs}, this driver supports "
                f"CUDA {cuda[0]}.{cuda[1]}: {BINDINGS_HINT} (or update the driver)")
    if bindings == "12.9.0" and cuda[0] >= 13:
        return (f"cuda-bindings 12.9.0 does not run on CUDA {cuda[0]} drivers (fixed in 12.9.1): {BINDINGS_HINT}")
    return None


def installed_bindings_version() -> str | None:
    """The installed cuda-bindings version, e.g. '12.9.4'; None when not installed."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("cuda-bindings")
    except PackageNotFoundError:
        try:
            from cuda import bindings
        except ImportError:
            return None
        return getattr(bindings, "__version__", None)


def library_driver_version() -> int | None:
    """cuDriverGetVersion called on the driver library itself (no cuda-bindings, no cuInit needed),
    e.g. 12080; None without an NVIDIA driver."""
    for name in (("nvcuda.dll",) if sys.platform == "win32" else ("libcuda.so.1", "libcuda.so")):
        try:
            lib = ctypes.CDLL(name)
        except OSError:
            continue
        value = ctypes.c_int(0)
        if lib.cuDriverGetVersion(ctypes.byref(value)) == 0:
            return value.value
    return None


@functools.cache
def cuda_bindings_reason() -> str | None:
    """One line when the installed cuda-bindings cannot drive this machine's driver; None when they
    fit, or when either is missing (said elsewhere)."""
    bindings, driver = installed_bindings_version(), library_driver_version()
    if bindings is None or driver is None:
        return None
    return bindings_driver_reason(bindings, driver)


def _driver() -> Any:
    try:
        from cuda.bindings import driver
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise CudaBindingsError(f"the GPU launcher needs cuda-python: {BINDINGS_HINT}") from exc
    if (why := cuda_bindings_reason()) is not None:
        raise CudaBindingsError(why)
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


def pointer_device(pointer: int) -> int:
    """Ordinal of the CUDA device that device pointer ``pointer`` belongs to
    (cuPointerGetAttribute, CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL)."""
    driver = _driver()
    return int(_check(driver.cuPointerGetAttribute(driver.CUpointer_attribute.CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL,
                                                   int(pointer))))


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
        if int(_check(driver.cuCtxGetDevice())) != int(dev):  # modules load into the current context, and launch only there
            raise CudaError(f"the current CUDA context belongs to another device than device {device}: make device "
                            f"{device} current (e.g. torch.cuda.set_device({device})) before loading its kernels")
        self.driver = driver_version()
        self.image: toolchain.Image | None = None
        built: dict[str, bytes] = {}
        missing = [name for name in nvcc.SOURCES if name not in (images or {})]
        if missing:
            self.image, built = toolchain.build_images(missing, self.arch, self.driver, toolchain.available())
        self._modules = {}
        for name in nvcc.SOURCES:
            image = (images or {}).get(name) or built[name]
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
