"""What one step of the schedule hands to the next, in any array type (plain Python, no torch).

The PyTorch ``GSVNet`` fills it with tensors, the runtime backends with numpy arrays, device
buffers or torch CUDA tensors; the schedule (``runtime.schedule``) only passes it along.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class PropagationState:
    """scores: [N,C,h,w] class scores on the 1/8 grid; small: [N,3,h,w] the normalised 1/8 frame
    (the flow net's input at the next step)."""

    scores: Any
    small: Any
