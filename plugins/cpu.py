"""CPU build of the kernels' arithmetic (``common/gsvnet_ops_cpu.cpp``), loaded with ctypes.

The library is compiled on first use with the system C++ compiler (``$CXX``, else g++ or
c++) into the plugin cache (``$GSVNET_PLUGIN_CACHE`` or ``~/.cache/gsvnet/plugins``), never
into the source tree. The functions take and return NumPy arrays (NCHW, float32 or float16;
flow always float32) and follow plugins/SPEC.md, like the CUDA kernels they mirror.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from plugins import geometry, nvcc

SOURCE = nvcc.PLUGINS / "common" / "gsvnet_ops_cpu.cpp"
CXXFLAGS = ("-O2", "-shared", "-fPIC", "-std=c++17", "-Wall", "-Wextra", "-Werror", "-ffp-contract=off")
_DTYPES = {np.dtype(np.float32): 0, np.dtype(np.float16): 1}


def find_cxx() -> str | None:
    """The host C++ compiler: ``$CXX``, else g++ or c++ on the PATH."""
    for candidate in (os.environ.get("CXX"), "g++", "c++"):
        if candidate and shutil.which(candidate):
            return shutil.which(candidate)
    return None


def build(root: Path | None = None) -> Path:
    """Compile the CPU library (if not cached) and return its path."""
    cxx = find_cxx()
    if cxx is None:
        raise FileNotFoundError("no C++ compiler found (set $CXX or install g++)")
    version = subprocess.run([cxx, "--version"], capture_output=True, text=True, check=True).stdout
    digest = hashlib.sha256()
    for part in (SOURCE.read_bytes(), *(h.read_bytes() for h in nvcc.HEADERS), version.encode(), " ".join(CXXFLAGS).encode()):
        digest.update(part)
    target = (root or nvcc.cache_dir()) / f"cpu-{digest.hexdigest()[:16]}" / "libgsvnet_ops_cpu.so"
    if not target.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
            out = Path(tmp) / target.name
            proc = subprocess.run([cxx, *CXXFLAGS, str(SOURCE), "-o", str(out)], capture_output=True, text=True)
            if proc.returncode != 0:
                raise RuntimeError(f"building {SOURCE.name} failed:\n{proc.stdout}{proc.stderr}")
            os.replace(out, target)
    return target


@functools.lru_cache(maxsize=None)
def library(path: str | None = None) -> ctypes.CDLL:
    """The loaded CPU library (built on first use); ``path`` loads a given build instead."""
    lib = ctypes.CDLL(path or str(build()))
    i32, ptr = ctypes.c_int32, ctypes.c_void_p
    lib.gsvnet_cpu_warp_by_flow.argtypes = [ptr, ptr, ptr, ptr, i32, i32, i32, i32, i32]
    lib.gsvnet_cpu_chunk_filter.argtypes = [ptr, ptr, ptr, ptr, i32, i32, i32, i32, i32, i32]
    lib.gsvnet_cpu_edge_map.argtypes = [ptr, ptr, i32, i32, i32, i32, i32]
    lib.gsvnet_cpu_edge_map_from_labels.argtypes = [ptr, ptr, i32, i32, i32]
    for name in ("gsvnet_cpu_warp_by_flow", "gsvnet_cpu_chunk_filter", "gsvnet_cpu_edge_map", "gsvnet_cpu_edge_map_from_labels"):
        getattr(lib, name).restype = ctypes.c_int
    lib.gsvnet_cpu_float_to_half.argtypes = [ptr, ptr, ctypes.c_int64]
    lib.gsvnet_cpu_half_to_float.argtypes = [ptr, ptr, ctypes.c_int64]
    return lib


def _ptr(a: np.ndarray) -> int:
    return a.ctypes.data


def _scores(x: np.ndarray, name: str) -> np.ndarray:
    x = np.ascontiguousarray(x)
    if x.ndim != 4 or x.dtype not in _DTYPES:
        raise ValueError(f"{name} must be a float32 or float16 [N,C,h,w] array, got {x.dtype} {x.shape}")
    return x


def _check(status: int, op: str, shape: tuple[int, ...]) -> None:
    if status != 0:
        raise ValueError(f"{op}: the CPU build rejected sizes {shape} (SPEC: N, C >= 1, h, w >= 2)")


def warp_by_flow(seg: np.ndarray, flow: np.ndarray, with_labels: bool = False) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """seg [N,C,h,w] warped by flow [N,2,h,w] (float32 pixels); with_labels also returns the
    int32 argmax over classes of the output [N,h,w]."""
    seg = _scores(seg, "seg")
    flow = np.ascontiguousarray(flow, dtype=np.float32)
    n, c, h, w = seg.shape
    if flow.shape != (n, 2, h, w):
        raise ValueError(f"warp_by_flow: flow must be [N,2,h,w]=({n},2,{h},{w}), got {flow.shape}")
    out = np.empty_like(seg)
    labels = np.empty((n, h, w), dtype=np.int32) if with_labels else None
    status = library().gsvnet_cpu_warp_by_flow(_ptr(seg), _ptr(flow), _ptr(out), _ptr(labels) if with_labels else None, n, c, h, w, _DTYPES[seg.dtype])
    _check(status, "warp_by_flow", seg.shape)
    return (out, labels) if with_labels else out


def chunk_filter(warped: np.ndarray, intra: np.ndarray, weights: np.ndarray, radius: int = 1) -> np.ndarray:
    """Guided chunk filter of warped/intra [N,C,h,w] by weights [N,K+2,h,w] (K = (2r+1)^2 shifts,
    intra, null), all of one dtype; sums and divides in float32 (SPEC.md: ChunkFilter)."""
    warped, intra, weights = _scores(warped, "warped"), _scores(intra, "intra"), _scores(weights, "weights")
    n, c, h, w = warped.shape
    k2 = geometry.num_weights(radius)
    if intra.shape != warped.shape or weights.shape != (n, k2, h, w) or not warped.dtype == intra.dtype == weights.dtype:
        raise ValueError(f"chunk_filter: got warped {warped.shape} {warped.dtype}, intra {intra.shape} {intra.dtype}, "
                         f"weights {weights.shape} {weights.dtype}; radius {radius} needs weights [N,{k2},h,w] "
                         "(K shifts, intra, null) of one dtype")
    out = np.empty_like(warped)
    status = library().gsvnet_cpu_chunk_filter(_ptr(warped), _ptr(intra), _ptr(weights), _ptr(out), n, c, h, w, radius, _DTYPES[warped.dtype])
    _check(status, "chunk_filter", warped.shape)
    return out


def edge_map(scores: np.ndarray) -> np.ndarray:
    """[zero-padded Laplacian(argmax_c scores) != 0]: [N,C,h,w] -> float32 [N,1,h,w] in {0, 1}."""
    scores = _scores(scores, "scores")
    n, c, h, w = scores.shape
    edge = np.empty((n, 1, h, w), dtype=np.float32)
    _check(library().gsvnet_cpu_edge_map(_ptr(scores), _ptr(edge), n, c, h, w, _DTYPES[scores.dtype]), "edge_map", scores.shape)
    return edge


def edge_map_from_labels(labels: np.ndarray) -> np.ndarray:
    """Edge map from int32 labels [N,h,w] (as written by ``warp_by_flow(..., with_labels=True)``)."""
    labels = np.ascontiguousarray(labels, dtype=np.int32)
    n, h, w = labels.shape
    edge = np.empty((n, 1, h, w), dtype=np.float32)
    _check(library().gsvnet_cpu_edge_map_from_labels(_ptr(labels), _ptr(edge), n, h, w), "edge_map_from_labels", labels.shape)
    return edge


def float_to_half(x: np.ndarray) -> np.ndarray:
    """float32 -> float16 with the header's conversion (round to nearest even)."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    out = np.empty(x.shape, dtype=np.float16)
    library().gsvnet_cpu_float_to_half(_ptr(x), _ptr(out), x.size)
    return out


def half_to_float(x: np.ndarray) -> np.ndarray:
    """float16 -> float32 with the header's conversion."""
    x = np.ascontiguousarray(x, dtype=np.float16)
    out = np.empty(x.shape, dtype=np.float32)
    library().gsvnet_cpu_half_to_float(_ptr(x), _ptr(out), x.size)
    return out
