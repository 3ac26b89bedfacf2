"""Independent float64 NumPy implementations of the custom ops, written from plugins/SPEC.md."""

from __future__ import annotations

import numpy as np


def warp_by_flow_np(seg: np.ndarray, flow: np.ndarray) -> np.ndarray:
    n, c, h, w = seg.shape
    out = np.zeros((n, c, h, w), dtype=np.float64)
    for b in range(n):
        for y in range(h):
            for x in range(w):
                sx = x + float(flow[b, 0, y, x])
                sy = y + float(flow[b, 1, y, x])
                x0, y0 = int(np.floor(sx)), int(np.floor(sy))
                fx, fy = sx - x0, sy - y0
                for yy, wy in ((y0, 1 - fy), (y0 + 1, fy)):
                    for xx, wx in ((x0, 1 - fx), (x0 + 1, fx)):
                        if 0 <= yy < h and 0 <= xx < w:
                            out[b, :, y, x] += wy * wx * seg[b, :, yy, xx].astype(np.float64)
    return out


def chunk_filter_np(warped: np.ndarray, intra: np.ndarray, weights: np.ndarray, radius: int, eps: float = 1e-9) -> np.ndarray:
    """weights [N,K+2,h,w]: K shifts, intra, null (in the denominator only)."""
    n, c, h, w = warped.shape
    k = (2 * radius + 1) ** 2
    offsets = [(dy, dx) for dy in range(-radius, radius + 1) for dx in range(-radius, radius + 1)]
    out = np.zeros((n, c, h, w), dtype=np.float64)
    for b in range(n):
        for y in range(h):
            for x in range(w):
                wts = weights[b, :, y, x].astype(np.float64)
                assert wts.shape == (k + 2,)
                acc = wts[k] * intra[b, :, y, x].astype(np.float64)
                for idx, (dy, dx) in enumerate(offsets):
                    yy, xx = y + dy, x + dx
                    if 0 <= yy < h and 0 <= xx < w:
                        acc = acc + wts[idx] * warped[b, :, yy, xx].astype(np.float64)
                out[b, :, y, x] = acc / (wts.sum() + eps)
    return out


def edge_map_np(scores: np.ndarray) -> np.ndarray:
    """1.0 where the zero-padded 3x3 Laplacian of the argmax index map is non-zero, else 0.0."""
    labels = scores.argmax(axis=1).astype(np.float64)  # [N,h,w]
    n, h, w = labels.shape
    out = np.zeros((n, 1, h, w))
    for b in range(n):
        for y in range(h):
            for x in range(w):
                s = -8.0 * labels[b, y, x]
                for dy in (-1, 0, 1):
                    for dx in (-1, 0, 1):
                        yy, xx = y + dy, x + dx
                        if (dy, dx) != (0, 0) and 0 <= yy < h and 0 <= xx < w:
                            s += labels[b, yy, xx]
                out[b, 0, y, x] = 1.0 if s != 0 else 0.0
    return out
