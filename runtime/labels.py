"""Labels from scores on the CPU without upsampling every class: argmax(bilinear x8 upsample).

The labels stage is ``argmax_c bilinear_upsample(scores)`` to the engine size (8 x the grid,
half-pixel centres, as ``gsvnet.ops.scores_to_labels``). Every output pixel is a convex
combination of its four nearest grid cells. Where those four cells have the same (first-maximum)
argmax c, the combination's argmax is c too: for k < c every corner has s[k] < s[c] strictly and
for k > c s[k] <= s[c], and a convex combination keeps both. So only the 8x8 output blocks
between cells of different classes need the C-channel interpolation; on real video that is
10-20% of the blocks, and the rest is a block copy. Results equal the reference up to float
rounding at exact ties.
"""

from __future__ import annotations

import numpy as np

SCALE = 8
# bilinear weights of the 8 output rows/columns between two cell centres: (j + 0.5) / 8 for j = 0..7
_W = (np.arange(SCALE, dtype=np.float32) + 0.5) / SCALE


def upsample_argmax_x8(scores: np.ndarray) -> np.ndarray:
    """scores [N,C,h,w] float -> uint8 labels [N,8h,8w]."""
    n, c, h, w = scores.shape
    # cells padded by one replicated cell: interpolating towards the padding equals the border clamp
    padded = np.pad(scores, ((0, 0), (0, 0), (1, 1), (1, 1)), mode="edge")
    arg = padded.argmax(axis=1).astype(np.uint8)  # [N,h+2,w+2]
    tl, tr, bl, br = arg[:, :-1, :-1], arg[:, :-1, 1:], arg[:, 1:, :-1], arg[:, 1:, 1:]
    uniform = (tl == tr) & (tl == bl) & (tl == br)  # [N,h+1,w+1] quads between cell centres
    # every quad covers 8x8 output pixels; the outer quads are half outside the frame (cropped below)
    blocks = np.broadcast_to(tl[:, :, None, :, None], (n, h + 1, SCALE, w + 1, SCALE)).copy()
    b, qy, qx = np.nonzero(~uniform)
    if b.size:
        corner = lambda dy, dx: padded[b, :, qy + dy, qx + dx]  # noqa: E731  [K,C]
        wy = _W[None, :, None, None]  # [1,8,1,1]
        wx = _W[None, None, :, None]  # [1,1,8,1]
        top = corner(0, 0)[:, None, None, :] * (1 - wx) + corner(0, 1)[:, None, None, :] * wx
        bottom = corner(1, 0)[:, None, None, :] * (1 - wx) + corner(1, 1)[:, None, None, :] * wx
        mixed = (top * (1 - wy) + bottom * wy).argmax(axis=-1)  # [K,8,8]
        blocks[b, qy, :, qx, :] = mixed
    full = blocks.reshape(n, (h + 1) * SCALE, (w + 1) * SCALE)
    half = SCALE // 2
    return np.ascontiguousarray(full[:, half : half + h * SCALE, half : half + w * SCALE])
