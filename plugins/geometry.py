"""Kernel names and launch geometry, shared by the Python launcher and the TensorRT AOT plugins,
and the ChunkFilter's weight count that every implementation checks (``num_weights``).

The numbers mirror the constants in the .cu files (one thread per pixel for the warp; 32x8
tiles for the filter and the edge map). Sizes may be Python ints or symbolic shape
expressions: pass the matching ``cdiv`` (``tensorrt.plugin.cdiv`` for TensorRT's ShapeExprs).
Every kernel takes its arguments in the TensorRT AOT order: input pointers, the int32 sizes
in ``Launch.sizes`` order, output pointers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

WARP_BLOCK = 256  # warp_by_flow.cu: kWarpBlock
TILE_W, TILE_H = 32, 8  # chunk_filter.cu / edge_map.cu: kTileW, kTileH
MAX_RADIUS = 3  # chunk_filter.cu has entry points for r = 1..3


def num_shifts(radius: int) -> int:
    """K = (2r+1)^2 shift candidates of a ChunkFilter of ``radius`` r (SPEC.md; gsvnet.ops.num_shifts)."""
    return (2 * radius + 1) ** 2


def num_weights(radius: int) -> int:
    """Guiding-weight channels of a ChunkFilter: K shifts, the intra and the null candidate (K + 2)."""
    return num_shifts(radius) + 2


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


@dataclass(frozen=True)
class Launch:
    """One kernel launch: which kernel of which source, grid and block, int32 size arguments."""

    source: str  # key of plugins.nvcc.SOURCES
    kernel: str
    grid: tuple[Any, Any, Any]
    block: tuple[int, int, int]
    sizes: tuple[Any, ...]  # int32 kernel arguments between the inputs and the outputs
    shared_mem: int = 0  # dynamic shared memory (the kernels use static shared memory only)


def _suffix(half: bool) -> str:
    return "f16" if half else "f32"


def warp_by_flow(n: Any, c: Any, h: Any, w: Any, half: bool, labels: bool = False, cdiv: Callable = ceil_div) -> Launch:
    """WarpByFlow over [n,c,h,w]; ``labels`` picks the variant that also writes argmax labels."""
    name = f"gsvnet_warp_by_flow_{'labels_' if labels else ''}{_suffix(half)}"
    return Launch("warp_by_flow", name, (cdiv(h * w, WARP_BLOCK), n, 1), (WARP_BLOCK, 1, 1), (n, c, h, w))


def chunk_filter(n: Any, c: Any, h: Any, w: Any, radius: int, half: bool, cdiv: Callable = ceil_div) -> Launch:
    """ChunkFilter over [n,c,h,w] with an int radius (baked into the kernel name)."""
    if not 1 <= int(radius) <= MAX_RADIUS:
        raise ValueError(f"the CUDA chunk_filter supports radius 1..{MAX_RADIUS}, got {radius}")
    name = f"gsvnet_chunk_filter_r{int(radius)}_{_suffix(half)}"
    return Launch("chunk_filter", name, (cdiv(w, TILE_W), cdiv(h, TILE_H), n), (TILE_W, TILE_H, 1), (n, c, h, w))


def edge_map(n: Any, c: Any, h: Any, w: Any, half: bool, cdiv: Callable = ceil_div) -> Launch:
    """Edge map from [n,c,h,w] scores."""
    name = f"gsvnet_edge_map_{_suffix(half)}"
    return Launch("edge_map", name, (cdiv(w, TILE_W), cdiv(h, TILE_H), n), (TILE_W, TILE_H, 1), (n, c, h, w))


def edge_map_from_labels(n: Any, h: Any, w: Any, cdiv: Callable = ceil_div) -> Launch:
    """Edge map from int32 [n,h,w] labels written by the warp kernel."""
    return Launch("edge_map", "gsvnet_edge_map_from_labels", (cdiv(w, TILE_W), cdiv(h, TILE_H), n), (TILE_W, TILE_H, 1), (n, h, w))
