"""GSVNet variants for the ablation study, as subclasses that keep every stage signature.

- ``full``: GSVNet as in the paper.
- ``no_intra``: the paper's Table 4 "without intra features": the intra branch is removed, so
  the guiding net sees zeros instead of the intra scores (only the edge map of the warped
  scores guides it) and the intra candidate of the chunk filter has weight zero. Trained
  separately; its checkpoint has the same tensors as ``full`` (the intra net's stay unused).
- ``warp``: naive propagation, the previous scores warped by the flow net, no guided filter.
- ``hold``: no motion at all, the previous scores are reused (a lower bound).
"""

from __future__ import annotations

import torch

from . import ops
from .model import GSVNet, GSVNetConfig
from .model import PropagationState


class NoIntraGSVNet(GSVNet):
    def intra_scores(self, small: torch.Tensor) -> torch.Tensor:
        n, _, h, w = small.shape
        return small.new_zeros((n, self.num_classes, h, w))

    def guide_weights(self, intra: torch.Tensor, warped: torch.Tensor) -> torch.Tensor:
        weights = super().guide_weights(intra, warped)
        keep = torch.ones(weights.shape[1], dtype=weights.dtype, device=weights.device)
        keep[ops.num_shifts(self.config.radius)] = 0.0  # channel K weighs the intra candidate (K+1: null)
        return weights * keep.view(1, -1, 1, 1)


class WarpOnlyGSVNet(GSVNet):
    def propagate(self, prev_scores: torch.Tensor, prev_small: torch.Tensor, small: torch.Tensor) -> torch.Tensor:
        return self.warp(prev_scores, self.estimate_flow(small, prev_small))


class HoldGSVNet(GSVNet):
    def propagate(self, prev_scores: torch.Tensor, prev_small: torch.Tensor, small: torch.Tensor) -> torch.Tensor:
        return prev_scores  # also for callers of ``propagate`` on cached frames (training selection)

    def propagation_step(self, state: PropagationState, image: torch.Tensor) -> PropagationState:
        return PropagationState(state.scores, self.downsample(image))


VARIANTS: dict[str, type[GSVNet]] = {"full": GSVNet, "no_intra": NoIntraGSVNet, "warp": WarpOnlyGSVNet, "hold": HoldGSVNet}


def build_variant(name: str, config: GSVNetConfig, state_dict: dict | None = None) -> GSVNet:
    """A model of variant ``name`` (see module docstring), optionally loaded with ``state_dict``."""
    if name not in VARIANTS:
        raise KeyError(f"unknown variant {name!r}; choose one of: {', '.join(VARIANTS)}")
    model = VARIANTS[name](config)
    if state_dict is not None:
        model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state_dict.items()})
    return model.eval()
