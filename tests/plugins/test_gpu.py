"""The CUDA kernels on a GPU, launched through plugins.launcher, against the PyTorch reference.

Device memory comes from cuda-python, so a CPU build of torch is enough for the reference.
Skipped with a reason where a CUDA driver/GPU is missing; without a CUDA compiler (the dev extra's
CUDA 12 wheels) the tests fail.
"""

from __future__ import annotations

import numpy as np
import pytest

from plugins import launcher, toolchain
from tests.gsvnet.reference import chunk_filter_np
from tests.plugins.helpers import check_warp, errors, filter_inputs, reference_edge, reference_filter, warp_inputs
from tests.plugins.test_cpu_build import tiny_weights
from tests.requirements import DEV_EXTRA

pytestmark = pytest.mark.gpu

TOL = {np.float32: 1e-5, np.float16: 2e-3}
SHAPES = [(1, 1, 2, 2), (2, 3, 7, 9), (3, 11, 16, 13), (3, 11, 33, 40), (1, 19, 64, 70)]


@pytest.fixture(scope="module")
def gpu() -> launcher.GpuKernels:
    reason = launcher.gpu_unavailable_reason()
    if reason:
        pytest.skip(reason)
    if not toolchain.available():  # the dev extra's CUDA 12 wheels: a failure on a GPU machine, not a skip
        pytest.fail(f"{toolchain.missing_reason(launcher.device_arch(), [])}; {DEV_EXTRA}", pytrace=False)
    kernels = launcher.kernels()
    print(f"gsvnet kernels: {kernels.describe()}")
    return kernels


class Device:
    """Device copies of host arrays (freed on close), via the driver API."""

    def __init__(self) -> None:
        from cuda.bindings import driver

        self.driver = driver
        self.buffers: list = []

    def put(self, array: np.ndarray) -> int:
        ptr = launcher._check(self.driver.cuMemAlloc(max(array.nbytes, 1)))
        self.buffers.append(ptr)
        host = np.ascontiguousarray(array)
        launcher._check(self.driver.cuMemcpyHtoD(ptr, host.ctypes.data, host.nbytes))
        return int(ptr)

    def empty(self, shape: tuple[int, ...], dtype: type) -> int:
        return self.put(np.full(shape, np.nan if np.dtype(dtype).kind == "f" else -1, dtype=dtype))

    def get(self, ptr: int, shape: tuple[int, ...], dtype: type) -> np.ndarray:
        launcher._check(self.driver.cuCtxSynchronize())
        out = np.empty(shape, dtype=dtype)
        launcher._check(self.driver.cuMemcpyDtoH(out.ctypes.data, ptr, out.nbytes))
        return out

    def close(self) -> None:
        for ptr in self.buffers:
            launcher._check(self.driver.cuMemFree(ptr))


@pytest.fixture
def dev(gpu):
    device = Device()
    yield device
    device.close()


def _assert_close(got: np.ndarray, ref: np.ndarray, dtype: type) -> None:
    abs_err, rel_err = errors(got, ref)
    assert abs_err < TOL[dtype] and rel_err < TOL[dtype], (abs_err, rel_err)


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("shape", SHAPES)
def test_warp_by_flow(gpu, dev, shape, dtype, rng):
    seg, flow = warp_inputs(rng, shape)
    seg = seg.astype(dtype)
    n, c, h, w = shape
    out, labels = dev.empty(shape, dtype), dev.empty((n, h, w), np.int32)
    gpu.warp_by_flow(dev.put(seg), dev.put(flow), out, n, c, h, w, half=dtype == np.float16, labels=labels)
    got = dev.get(out, shape, dtype)
    check_warp(got, seg, flow, TOL[dtype])
    np.testing.assert_array_equal(dev.get(labels, (n, h, w), np.int32), got.astype(np.float32).argmax(axis=1))
    plain = dev.empty(shape, dtype)
    gpu.warp_by_flow(dev.put(seg), dev.put(flow), plain, n, c, h, w, half=dtype == np.float16)
    np.testing.assert_array_equal(dev.get(plain, shape, dtype), got)


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("radius", [1, 2, 3])
@pytest.mark.parametrize("shape", SHAPES)
def test_chunk_filter(gpu, dev, shape, radius, dtype, rng):
    warped, intra, weights = (a.astype(dtype) for a in filter_inputs(rng, shape, radius))
    n, c, h, w = shape
    out = dev.empty(shape, dtype)
    gpu.chunk_filter(dev.put(warped), dev.put(intra), dev.put(weights), out, n, c, h, w, radius, half=dtype == np.float16)
    _assert_close(dev.get(out, shape, dtype), reference_filter(warped, intra, weights, radius), dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("radius", [1, 3])
def test_chunk_filter_null_weight_and_eps(gpu, dev, radius, dtype, rng):
    shape = (2, 3, 33, 40)
    warped, intra, _ = (a.astype(dtype) for a in filter_inputs(rng, shape, radius))
    weights = tiny_weights(rng, warped, radius)
    out = dev.empty(shape, dtype)
    gpu.chunk_filter(dev.put(warped), dev.put(intra), dev.put(weights), out, *shape, radius, half=dtype == np.float16)
    _assert_close(dev.get(out, shape, dtype), chunk_filter_np(warped, intra, weights, radius), dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("shape", SHAPES)
def test_edge_map(gpu, dev, shape, dtype, rng):
    scores = rng.integers(0, 3, shape).astype(dtype)
    n, c, h, w = shape
    edge = dev.empty((n, 1, h, w), np.float32)
    gpu.edge_map(dev.put(scores), edge, n, c, h, w, half=dtype == np.float16)
    got = dev.get(edge, (n, 1, h, w), np.float32)
    np.testing.assert_array_equal(got, reference_edge(scores))
    labels = dev.put(scores.astype(np.float32).argmax(axis=1).astype(np.int32))
    from_labels = dev.empty((n, 1, h, w), np.float32)
    gpu.edge_map_from_labels(labels, from_labels, n, h, w)
    np.testing.assert_array_equal(dev.get(from_labels, (n, 1, h, w), np.float32), got)


def test_launch_on_a_stream(gpu, dev, rng):
    from cuda.bindings import driver

    stream = launcher._check(driver.cuStreamCreate(0))
    try:
        warped, intra, weights = filter_inputs(rng, (2, 5, 16, 20), 1)
        out = dev.empty(warped.shape, np.float32)
        gpu.chunk_filter(dev.put(warped), dev.put(intra), dev.put(weights), out, 2, 5, 16, 20, 1, stream=int(stream))
        launcher._check(driver.cuStreamSynchronize(stream))
        _assert_close(dev.get(out, warped.shape, np.float32), reference_filter(warped, intra, weights, 1), np.float32)
    finally:
        launcher._check(driver.cuStreamDestroy(stream))
