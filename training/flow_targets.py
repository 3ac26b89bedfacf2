"""Classical optical flow (OpenCV DIS) as a pre-training target for GSVNet's flow net.

Convention (as ``gsvnet.ops.warp_by_flow`` and plugins/SPEC.md): backward flow from the current
frame to the previous one, in pixels of the 1/8 grid, channel 0 = x, channel 1 = y, so that
``warp_by_flow(previous, flow)`` approximates ``current``.
"""

from __future__ import annotations

import cv2
import numpy as np


def _grey(rgb: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)


def dis_flow(current: np.ndarray, previous: np.ndarray, grid: tuple[int, int],
             preset: int = cv2.DISOPTICAL_FLOW_PRESET_MEDIUM) -> np.ndarray:
    """current, previous: uint8 RGB [H,W,3] -> float32 flow [2,h,w] on ``grid`` = (h, w).

    DIS runs at full resolution (it is unreliable on tiny images); the flow field is then
    area-averaged onto the grid and rescaled from frame pixels to grid pixels.
    """
    dis = cv2.DISOpticalFlow_create(preset)
    # calc(I0, I1) returns f with I0(p) ~ I1(p + f(p)): current -> previous, i.e. backward flow
    flow = dis.calc(_grey(current), _grey(previous), None)
    height, width = current.shape[:2]
    h, w = grid
    small = cv2.resize(flow, (w, h), interpolation=cv2.INTER_AREA)
    small[..., 0] *= w / width
    small[..., 1] *= h / height
    return np.ascontiguousarray(small.transpose(2, 0, 1).astype(np.float32))
