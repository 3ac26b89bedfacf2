"""The CUDA kernels' own code (plugins/*/*.cu) run on the CPU, against the PyTorch reference.

No GPU is needed: tests/plugins/emulation compiles the .cu files with g++ (a small shim maps
threadIdx/blockIdx/__shared__/__syncthreads to one OS thread per CUDA thread and a barrier)
and launches them with the launcher's own geometry and cuLaunchKernel-style argument packing.
This checks the tiling, halo staging, double buffering and label epilogue that the CPU build
of the arithmetic does not contain. It does not replace the GPU test (test_gpu.py).
"""

from __future__ import annotations

import ctypes
import subprocess
from pathlib import Path

import numpy as np
import pytest

from plugins import cpu, geometry
from plugins.launcher import pack_launch_args
from tests.gsvnet.reference import chunk_filter_np, edge_map_np
from tests.plugins.helpers import check_warp, errors, filter_inputs, reference_edge, reference_filter, warp_inputs
from tests.plugins.test_cpu_build import tiny_weights
from tests.requirements import require_program

HARNESS = Path(__file__).resolve().parent / "emulation" / "run_kernels.cpp"


@pytest.fixture(scope="module")
def emu(tmp_path_factory) -> ctypes.CDLL:
    """The harness and the .cu files built with g++ (.ci/run installs it; a failure here, never a skip)."""
    cxx = require_program("g++", "the emulation harness needs a C++20 compiler with <barrier>", "apt-get install -y g++")
    out = tmp_path_factory.mktemp("emulation") / "libemu.so"
    flags = ["-std=c++20", "-O1", "-ffp-contract=off", "-shared", "-fPIC", "-pthread", "-DGSVNET_KERNELS_ONLY", "-Wall", "-Wextra", "-Werror", "-Wno-unknown-pragmas"]
    proc = subprocess.run([cxx, *flags, str(HARNESS), "-o", str(out)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    lib = ctypes.CDLL(str(out))
    lib.emu_launch.argtypes = [ctypes.c_char_p, *[ctypes.c_uint] * 6, ctypes.c_void_p]
    lib.emu_launch.restype = ctypes.c_int
    return lib


def _launch(emu: ctypes.CDLL, launch: geometry.Launch, inputs: list[np.ndarray], outputs: list[np.ndarray]) -> None:
    _keep, params = pack_launch_args([a.ctypes.data for a in inputs], launch.sizes, [a.ctypes.data for a in outputs])
    status = emu.emu_launch(launch.kernel.encode(), *launch.grid, *launch.block, ctypes.addressof(params))
    assert status == 0, f"unknown kernel {launch.kernel}"


# shapes with several tiles in x and y (32x8 tiles), partial tiles and N > 1
SHAPES = [(1, 2, 2, 2), (2, 3, 9, 33), (1, 4, 17, 70)]
TOL = {np.float32: 1e-5, np.float16: 2e-3}


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("shape", SHAPES)
def test_warp_kernels(emu, shape, dtype, rng):
    seg, flow = warp_inputs(rng, shape)
    seg = seg.astype(dtype)
    n, c, h, w = shape
    out, labels = np.full(shape, np.nan, dtype), np.full((n, h, w), -1, np.int32)
    _launch(emu, geometry.warp_by_flow(n, c, h, w, dtype == np.float16, labels=True), [seg, flow], [out, labels])
    check_warp(out, seg, flow, TOL[dtype])
    np.testing.assert_array_equal(out, cpu.warp_by_flow(seg, flow))
    np.testing.assert_array_equal(labels, out.astype(np.float32).argmax(axis=1))
    plain = np.full(shape, np.nan, dtype)
    _launch(emu, geometry.warp_by_flow(n, c, h, w, dtype == np.float16), [seg, flow], [plain])
    np.testing.assert_array_equal(plain, out)


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("radius", [1, 2, 3])
@pytest.mark.parametrize("shape", SHAPES)
def test_chunk_filter_kernels(emu, shape, radius, dtype, rng):
    warped, intra, weights = (a.astype(dtype) for a in filter_inputs(rng, shape, radius))
    n, c, h, w = shape
    out = np.full(shape, np.nan, dtype)
    _launch(emu, geometry.chunk_filter(n, c, h, w, radius, dtype == np.float16), [warped, intra, weights], [out])
    abs_err, rel_err = errors(out, reference_filter(warped, intra, weights, radius))
    assert abs_err < TOL[dtype] and rel_err < TOL[dtype], (abs_err, rel_err)
    np.testing.assert_array_equal(out, cpu.chunk_filter(warped, intra, weights, radius))


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("radius", [1, 3])
def test_chunk_filter_kernels_null_weight_and_eps(emu, radius, dtype, rng):
    shape = (2, 3, 9, 33)  # two tiles in x, two in y
    warped, intra, _ = (a.astype(dtype) for a in filter_inputs(rng, shape, radius))
    weights = tiny_weights(rng, warped, radius)  # the null channel wins at ~1/(K+2) of the pixels
    out = np.full(shape, np.nan, dtype)
    _launch(emu, geometry.chunk_filter(*shape, radius, dtype == np.float16), [warped, intra, weights], [out])
    abs_err, rel_err = errors(out, chunk_filter_np(warped, intra, weights, radius))
    assert abs_err < TOL[dtype] and rel_err < TOL[dtype], (abs_err, rel_err)
    null = weights[:, -1] > 0
    assert null.any() and np.all(out.transpose(1, 0, 2, 3)[:, null] == 0)


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("shape", SHAPES)
def test_edge_map_kernels(emu, shape, dtype, rng):
    scores = rng.integers(0, 3, shape).astype(dtype)
    n, c, h, w = shape
    edge = np.full((n, 1, h, w), np.nan, np.float32)
    _launch(emu, geometry.edge_map(n, c, h, w, dtype == np.float16), [scores], [edge])
    np.testing.assert_array_equal(edge, reference_edge(scores))
    np.testing.assert_array_equal(edge, edge_map_np(scores))
    labels = np.ascontiguousarray(scores.astype(np.float32).argmax(axis=1).astype(np.int32))
    from_labels = np.full((n, 1, h, w), np.nan, np.float32)
    _launch(emu, geometry.edge_map_from_labels(n, h, w), [labels], [from_labels])
    np.testing.assert_array_equal(from_labels, edge)


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_warp_labels_feed_the_edge_map_of_the_warped_scores(emu, dtype, rng):
    shape = (2, 5, 9, 33)
    seg, flow = warp_inputs(rng, shape)
    seg = seg.astype(dtype)
    n, c, h, w = shape
    out, labels = np.full(shape, np.nan, dtype), np.full((n, h, w), -1, np.int32)
    _launch(emu, geometry.warp_by_flow(n, c, h, w, dtype == np.float16, labels=True), [seg, flow], [out, labels])
    edge = np.full((n, 1, h, w), np.nan, np.float32)
    _launch(emu, geometry.edge_map_from_labels(n, h, w), [labels], [edge])
    np.testing.assert_array_equal(edge, reference_edge(out))  # GSVNet.guide_weights: edge map of the warped scores
