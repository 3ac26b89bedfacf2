"""Inputs and error measures shared by the plugin tests."""

from __future__ import annotations

import io
import warnings

import numpy as np
import onnx
import torch

from gsvnet import ops


def errors(got: np.ndarray, ref: np.ndarray) -> tuple[float, float]:
    """(max abs error, max abs error / max |ref|) in float64; ref must not be all zeros."""
    got = np.asarray(got, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    scale = np.abs(ref).max()
    assert scale > 0, "reference is all zeros: the comparison would prove nothing"
    diff = np.abs(got - ref).max()
    return float(diff), float(diff / scale)


def warp_inputs(rng: np.random.Generator, shape: tuple[int, int, int, int], max_flow: float = 3.0) -> tuple[np.ndarray, np.ndarray]:
    """Random scores and a flow up to ``max_flow`` px, so many taps fall outside the frame."""
    n, _, h, w = shape
    seg = rng.standard_normal(shape).astype(np.float32)
    flow = rng.uniform(-max_flow, max_flow, (n, 2, h, w)).astype(np.float32)
    return seg, flow


def filter_inputs(rng: np.random.Generator, shape: tuple[int, int, int, int], radius: int,
                  scale: float = 1.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Random warped/intra scores and non-negative weights [N,K+2,h,w] (K = (2r+1)^2 shifts,
    intra, null), uniform in [0, scale): a small ``scale`` makes the 1e-9 eps matter."""
    n, _, h, w = shape
    warped = rng.standard_normal(shape).astype(np.float32)
    intra = rng.standard_normal(shape).astype(np.float32)
    weights = (rng.uniform(0.0, 1.0, (n, (2 * radius + 1) ** 2 + 2, h, w)) * scale).astype(np.float32)
    return warped, intra, weights


def reference_warp(seg: np.ndarray, flow: np.ndarray) -> np.ndarray:
    return ops.warp_by_flow(torch.from_numpy(seg), torch.from_numpy(flow)).numpy()


def exact_warp(seg: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """SPEC's warp in float64 from float32 sample coordinates x + flow_x, y + flow_y.

    The PyTorch reference goes through GridSample's normalised grid, whose float32 round trip
    moves samples by up to ~1e-5 px on a 64-wide grid (~1e-5 in the output for white-noise
    scores); this one has no such error, so it holds the kernels to ~1e-6 at any size.
    """
    n, c, h, w = seg.shape
    ys, xs = np.meshgrid(np.arange(h, dtype=np.float32), np.arange(w, dtype=np.float32), indexing="ij")
    sx = (xs + flow[:, 0]).astype(np.float64)  # [N,h,w], rounded in float32 first
    sy = (ys + flow[:, 1]).astype(np.float64)
    x0, y0 = np.floor(sx), np.floor(sy)
    ax, ay = sx - x0, sy - y0
    src = seg.astype(np.float64)
    out = np.zeros((n, c, h, w))
    b = np.arange(n)[:, None, None]
    for dy, wy in ((0, 1 - ay), (1, ay)):
        for dx, wx in ((0, 1 - ax), (1, ax)):
            yy, xx = (y0 + dy).astype(np.int64), (x0 + dx).astype(np.int64)
            inside = (yy >= 0) & (yy < h) & (xx >= 0) & (xx < w)
            taps = src[b, :, np.clip(yy, 0, h - 1), np.clip(xx, 0, w - 1)]  # [N,h,w,C]
            out += np.moveaxis(taps * (wy * wx * inside)[..., None], -1, 1)
    return out


def check_warp(got: np.ndarray, seg: np.ndarray, flow: np.ndarray, tol: float) -> None:
    """``got`` within ``tol`` (max abs and relative) of the exact warp, and of the PyTorch
    reference where the grid is small enough (<= 16 px) for the reference's own round-trip
    error to stay well under 1e-5 (measured on white noise: 8e-6 at 24 px, 1.4e-5 at 40 px)."""
    abs_err, rel_err = errors(got, exact_warp(seg, flow))
    assert abs_err < tol and rel_err < tol, ("exact", abs_err, rel_err)
    if max(seg.shape[-2:]) <= 16:
        abs_err, rel_err = errors(got, reference_warp(seg, flow))
        assert abs_err < tol and rel_err < tol, ("pytorch", abs_err, rel_err)


def reference_filter(warped: np.ndarray, intra: np.ndarray, weights: np.ndarray, radius: int) -> np.ndarray:
    return ops.chunk_filter(torch.from_numpy(warped), torch.from_numpy(intra), torch.from_numpy(weights), radius).numpy()


def reference_edge(scores: np.ndarray) -> np.ndarray:
    return ops.edge_map(torch.from_numpy(scores)).numpy()


class WarpModule(torch.nn.Module):
    def forward(self, seg: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
        return ops.warp_by_flow(seg, flow)


class ChunkFilterModule(torch.nn.Module):
    def __init__(self, radius: int) -> None:
        super().__init__()
        self.radius = radius

    def forward(self, warped: torch.Tensor, intra: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        return ops.chunk_filter(warped, intra, weights, self.radius)


def export(module: torch.nn.Module, args: tuple[torch.Tensor, ...], input_names: list[str]) -> onnx.ModelProto:
    """The exporter's settings: opset 18, TorchScript exporter, dynamic batch axis N."""
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, args, buffer, opset_version=18, dynamo=False, input_names=input_names,
                          output_names=["out"], dynamic_axes={name: {0: "N"} for name in [*input_names, "out"]})
    return onnx.load_from_string(buffer.getvalue())
