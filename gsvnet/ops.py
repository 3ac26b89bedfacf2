"""Reference implementations of GSVNet's custom operations.

These functions are the contract that every backend (ONNX decomposition, CUDA kernels,
TensorRT plugins) is tested against. Their exact semantics are written down in
``plugins/SPEC.md``; the docstrings here repeat the essentials.

All ops work on NCHW tensors on the 1/8 grid (``h = H/8``, ``w = W/8`` of the engine frame).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .shapes import num_shifts, num_weights  # noqa: F401  (re-exported: gsvnet.ops.num_weights)

#: Added to the sum of the guiding weights before dividing (see ``chunk_filter``); the official
#: GSVNet's value. Representable in float32 only: the sum is always taken in float32.
WEIGHT_EPS = 1e-9


def shift_offsets(radius: int) -> list[tuple[int, int]]:
    """(dy, dx) of candidate k, row-major over dy, dx in [-r, r]; index K//2 is (0, 0)."""
    return [(dy, dx) for dy in range(-radius, radius + 1) for dx in range(-radius, radius + 1)]


def pixel_grid(flow: torch.Tensor) -> torch.Tensor:
    """Normalised GridSample grid [N,h,w,2] for sampling at (x + flow_x, y + flow_y).

    Uses the ``align_corners=True`` convention, where -1 and +1 are the centres of the first
    and last pixel. Always computed in float32 (an FP16 grid loses ~1e-2 of a pixel).
    """
    _, _, h, w = flow.shape
    flow = flow.float()
    ys = torch.arange(h, dtype=torch.float32, device=flow.device).view(1, h, 1)
    xs = torch.arange(w, dtype=torch.float32, device=flow.device).view(1, 1, w)
    gx = (xs + flow[:, 0]) * (2.0 / (w - 1)) - 1.0
    gy = (ys + flow[:, 1]) * (2.0 / (h - 1)) - 1.0
    return torch.stack((gx, gy), dim=-1)


def warp_by_flow(seg: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Backward-warp ``seg`` by ``flow`` (the paper's equation 1), bilinear, zeros outside.

    seg:  [N,C,h,w] scores of the previous frame on the 1/8 grid.
    flow: [N,2,h,w] backward motion in pixels of the 1/8 grid; channel 0 is x (columns),
          channel 1 is y (rows). out[n,c,y,x] = seg[n,c] sampled bilinearly at
          (y + flow[n,1,y,x], x + flow[n,0,y,x]); each of the four taps that falls outside
          the frame contributes zero. Returns [N,C,h,w] in ``seg``'s dtype.
    """
    if seg.dim() != 4 or flow.dim() != 4 or flow.shape[1] != 2:
        raise ValueError(f"warp_by_flow expects seg [N,C,h,w] and flow [N,2,h,w], got {tuple(seg.shape)} and {tuple(flow.shape)}")
    if seg.shape[0] != flow.shape[0] or seg.shape[2:] != flow.shape[2:]:
        raise ValueError(f"warp_by_flow: seg {tuple(seg.shape)} and flow {tuple(flow.shape)} differ in batch or size")
    if seg.shape[2] < 2 or seg.shape[3] < 2:
        raise ValueError(f"warp_by_flow needs h, w >= 2, got {tuple(seg.shape[2:])}")
    grid = pixel_grid(flow)
    out = F.grid_sample(seg.float(), grid, mode="bilinear", padding_mode="zeros", align_corners=True)
    return out.to(seg.dtype)


def shift(x: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """Ideal-delay shift: out[..., y, x] = x[..., y+dy, x+dx], zero where that is outside."""
    h, w = x.shape[-2:]
    out = torch.zeros_like(x)
    ys, ye = max(0, -dy), min(h, h - dy)
    xs, xe = max(0, -dx), min(w, w - dx)
    if ys < ye and xs < xe:
        out[..., ys:ye, xs:xe] = x[..., ys + dy : ye + dy, xs + dx : xe + dx]
    return out


def chunk_filter(warped: torch.Tensor, intra: torch.Tensor, weights: torch.Tensor, radius: int) -> torch.Tensor:
    """Guided spatially-varying convolution (the paper's equation 2, as the official code computes it).

    warped:  [N,C,h,w] warped scores of the previous frame.
    intra:   [N,C,h,w] intra-frame scores of the current frame.
    weights: [N,K+2,h,w], K = (2r+1)^2, non-negative. Channel k < K weighs the candidate
             ``warped[n,c,y+dy_k,x+dx_k]`` (zero outside the frame, offsets from
             ``shift_offsets``); channel K weighs ``intra[n,c,y,x]``; channel K+1 is the null
             candidate (an all-zero delay kernel): it adds nothing to the numerator but counts in
             the normalising sum, so the filter can lower its confidence without blurring.
             The same weights serve every class c.
    Returns [N,C,h,w]: sum_{k<=K} w_k * cand_k / (sum_{k<=K+1} w_k + WEIGHT_EPS), accumulated in
    float32 and cast to ``warped``'s dtype. Never materialises the K-fold shifted tensor.
    """
    k = num_shifts(radius)
    if warped.shape != intra.shape:
        raise ValueError(f"chunk_filter: warped {tuple(warped.shape)} and intra {tuple(intra.shape)} differ")
    n, _, h, w = warped.shape
    if weights.shape != (n, k + 2, h, w):
        raise ValueError(f"chunk_filter: weights must be [N,K+2,h,w]=({n},{k + 2},{h},{w}) for radius {radius} "
                         f"(K shifts, intra, null), got {tuple(weights.shape)}")
    wf = weights.float()
    warped_f = F.pad(warped.float(), (radius, radius, radius, radius))
    acc = wf[:, k : k + 1] * intra.float()
    for idx, (dy, dx) in enumerate(shift_offsets(radius)):
        cand = warped_f[:, :, radius + dy : radius + dy + h, radius + dx : radius + dx + w]
        acc = acc + wf[:, idx : idx + 1] * cand
    denom = wf.sum(dim=1, keepdim=True) + WEIGHT_EPS
    return (acc / denom).to(warped.dtype)


def laplacian_kernel(dtype: torch.dtype = torch.float32, device: torch.device | None = None) -> torch.Tensor:
    """The 3x3 Laplacian [[1,1,1],[1,-8,1],[1,1,1]] as a conv weight [1,1,3,3]."""
    k = torch.ones(1, 1, 3, 3, dtype=dtype, device=device)
    k[0, 0, 1, 1] = -8.0
    return k


def edge_map(scores: torch.Tensor) -> torch.Tensor:
    """E = [Laplacian(argmax_c scores) != 0], [N,C,h,w] -> [N,1,h,w] float32 in {0, 1}.

    The official GSVNet edge map: the class index map (first maximum on ties) is taken as float,
    convolved with the 3x3 Laplacian with ZERO padding (so the frame border is an edge wherever
    the label there is not class 0), and every non-zero response becomes 1. The sums are of
    small integers, exact in float32 and float16 alike.
    """
    labels = scores.argmax(dim=1, keepdim=True).float()
    response = F.conv2d(labels, laplacian_kernel(device=scores.device), padding=1)
    return (response != 0).float()


def downsample8(image: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """uint8 RGB frames [N,H,W,3] -> normalised [N,3,H/8,W/8] float32 by 8x8 averaging.

    H and W must be multiples of 8 (the runtime resizes frames to the engine size, which is).
    mean/std: [3] in 0..255 units, RGB order.
    """
    if image.dim() != 4 or image.shape[-1] != 3:
        raise ValueError(f"expected uint8 frames [N,H,W,3], got {tuple(image.shape)}")
    height, width = image.shape[1:3]
    if height % 8 or width % 8:
        raise ValueError(f"frame size {height}x{width} is not a multiple of 8; resize frames to the engine size first")
    x = image.permute(0, 3, 1, 2).float()
    x = F.avg_pool2d(x, kernel_size=8, stride=8)
    return (x - mean.view(1, 3, 1, 1)) / std.view(1, 3, 1, 1)


def normalize(image: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """uint8 RGB frames [N,H,W,3] -> normalised float32 [N,3,H,W]."""
    if image.dim() != 4 or image.shape[-1] != 3:
        raise ValueError(f"expected uint8 frames [N,H,W,3], got {tuple(image.shape)}")
    x = image.permute(0, 3, 1, 2).float()
    return (x - mean.view(1, 3, 1, 1)) / std.view(1, 3, 1, 1)


def downsample8_bilinear(image: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """The official GSVNet's 1/8 frame: bilinear resize with align_corners=True (point samples at
    i (H-1)/(h-1), no averaging) of the normalised frame, uint8 [N,H,W,3] -> [N,3,H/8,W/8] float32."""
    height, width = image.shape[1:3]
    if height % 8 or width % 8:
        raise ValueError(f"frame size {height}x{width} is not a multiple of 8; resize frames to the engine size first")
    return resize(normalize(image, mean, std), (height // 8, width // 8), align_corners=True)


def resize(x: torch.Tensor, size: tuple[int, int], align_corners: bool = False) -> torch.Tensor:
    """Bilinear resize (no antialiasing) of [N,C,h,w] to ``size``: half-pixel centres, or corner
    pixels aligned (``align_corners``, the official GSVNet's convention)."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=align_corners)


def scores_to_labels(scores: torch.Tensor, size: tuple[int, int], align_corners: bool = False) -> torch.Tensor:
    """Upsample scores [N,C,h,w] bilinearly to ``size`` and take argmax: uint8 [N,H,W]."""
    return resize(scores.float(), size, align_corners).argmax(dim=1).to(torch.uint8)
