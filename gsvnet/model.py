"""GSVNet composition: keyframe step, propagation step and labels, on tensors.

Frames enter as uint8 RGB [N,H,W,3] (H, W multiples of 8); everything in between lives on the
1/8 grid (h = H/8, w = W/8). Each stage below is a method so that the exporter can turn each one
into its own graph and every backend runs exactly the same computation.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from . import ops
from .classes import default_label_set
from .keyframe import KeyframeNet, Normalization, create_keyframe_net
from .propagation import FlowNet, GuidingNet, IntraNet
from .shapes import grid_size  # noqa: F401  (re-exported: gsvnet.model.grid_size)
from .state import PropagationState


RESAMPLING = ("half_pixel", "official")


@dataclass
class GSVNetConfig:
    """Everything needed to rebuild a GSVNet (stored in checkpoints and manifests)."""

    keyframe_net: str = "swiftnet_r18"
    num_classes: int = 19
    radius: int = 1
    key_scale: float = 0.75
    flow_channels: int = 32
    intra_channels: int = 32
    guide_channels: int = 32
    class_names: list[str] = field(default_factory=list)
    palette: list[list[int]] = field(default_factory=list)
    normalization: dict | None = None  # None: the keyframe net's default
    #: "half_pixel": 8x8-average 1/8 frames, half-pixel bilinear resizes (this project's nets);
    #: "official": bilinear resizes with align_corners=True everywhere, as robert80203/GSVNet
    #: computes them (its 1/8 frame, keyframe input and output, and the final label upsampling)
    resampling: str = "half_pixel"
    #: the keyframe net is a user's ONNX model (keyframe_net "onnx"): gsvnet.imported.KeyframeImport
    keyframe_import: dict | None = None

    def __post_init__(self) -> None:
        if not 0.0 < self.key_scale <= 1.0:
            raise ValueError(f"key_scale must be in (0, 1], got {self.key_scale}")
        if self.resampling not in RESAMPLING:
            raise ValueError(f"resampling must be one of {RESAMPLING}, got {self.resampling!r}")
        if self.radius < 1:
            raise ValueError(f"radius must be >= 1, got {self.radius}")
        if not self.class_names:
            ls = default_label_set(self.num_classes)
            self.class_names = list(ls.class_names)
            self.palette = [list(c) for c in ls.palette]
        if len(self.class_names) != self.num_classes or len(self.palette) != self.num_classes:
            raise ValueError(f"config has {self.num_classes} classes but {len(self.class_names)} names and {len(self.palette)} colours")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "GSVNetConfig":
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown GSVNet config keys: {sorted(unknown)}")
        return cls(**d)


def key_size(frame_size: tuple[int, int], key_scale: float, resampling: str = "half_pixel") -> tuple[int, int]:
    """Keyframe input size: the frame scaled by ``key_scale``, rounded to a multiple of 8
    (``official`` resampling: floored, as the official code's ``height // 4 * 3``)."""
    if resampling == "official":
        return tuple(max(8, int(s * key_scale)) for s in frame_size)  # type: ignore[return-value]
    return tuple(max(8, int(round(s * key_scale / 8)) * 8) for s in frame_size)  # type: ignore[return-value]


class GSVNet(nn.Module):
    def __init__(self, config: GSVNetConfig, keyframe: KeyframeNet | None = None) -> None:
        super().__init__()
        self.config = config
        self.keyframe = keyframe if keyframe is not None else create_keyframe_net(config.keyframe_net, config.num_classes)
        if self.keyframe.num_classes != config.num_classes:
            raise ValueError(f"keyframe net has {self.keyframe.num_classes} classes, config says {config.num_classes}")
        if config.normalization is not None:
            self.keyframe.normalization = Normalization.from_dict(config.normalization)
        else:
            config.normalization = self.keyframe.normalization.to_dict()
        mean, std = self.keyframe.normalization.tensors()
        self.register_buffer("mean", mean, persistent=False)
        self.register_buffer("std", std, persistent=False)
        self.flow = FlowNet(config.flow_channels)
        self.intra = IntraNet(config.num_classes, config.intra_channels)
        self.guide = GuidingNet(config.num_classes, ops.num_weights(config.radius), config.guide_channels)

    @property
    def num_classes(self) -> int:
        return self.config.num_classes

    @property
    def dtype(self) -> torch.dtype:
        """Compute dtype of the networks (float32, or float16 after ``.half()``)."""
        return self.intra.intra_net[0].weight.dtype

    def _apply(self, fn, recurse=True):
        # .half() must not round the normalisation constants: they stay float32
        super()._apply(fn, recurse)
        self.mean, self.std = self.mean.float(), self.std.float()
        return self

    # ---- stages (each exported as its own graph) ------------------------------------------
    @property
    def align_corners(self) -> bool:
        """Whether resizes use the official code's align_corners=True convention."""
        return self.config.resampling == "official"

    def downsample(self, image: torch.Tensor) -> torch.Tensor:
        """uint8 [N,H,W,3] -> normalised 1/8 frame [N,3,h,w] in the compute dtype."""
        if self.align_corners:
            return ops.downsample8_bilinear(image, self.mean, self.std).to(self.dtype)
        return ops.downsample8(image, self.mean, self.std).to(self.dtype)

    def keyframe_scores(self, image: torch.Tensor) -> torch.Tensor:
        """uint8 [N,H,W,3] -> keyframe net scores resized to the 1/8 grid [N,C,h,w]."""
        frame = tuple(image.shape[1:3])
        size = key_size(frame, self.config.key_scale, self.config.resampling)
        x = ops.resize(ops.normalize(image, self.mean, self.std), size, self.align_corners)
        return ops.resize(self.keyframe(x.to(self.dtype)), grid_size(frame), self.align_corners)

    def estimate_flow(self, small: torch.Tensor, prev_small: torch.Tensor) -> torch.Tensor:
        """Flow [N,2,h,w], always float32 (an FP16 flow loses ~1e-2 px)."""
        return self.flow(small, prev_small).float()

    def warp(self, prev_scores: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
        return ops.warp_by_flow(prev_scores, flow)

    def intra_scores(self, small: torch.Tensor) -> torch.Tensor:
        return self.intra(small)

    def guide_weights(self, intra: torch.Tensor, warped: torch.Tensor) -> torch.Tensor:
        """Edge map of the warped scores, then the guiding net: [N,K+2,h,w] (K shifts, intra, null)."""
        return self.guide(intra, ops.edge_map(warped))

    def fuse(self, warped: torch.Tensor, intra: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        return ops.chunk_filter(warped, intra, weights, self.config.radius)

    # ---- composition ----------------------------------------------------------------------
    def propagate(self, prev_scores: torch.Tensor, prev_small: torch.Tensor, small: torch.Tensor) -> torch.Tensor:
        """Scores of the current frame from the previous frame's scores (1/8 grid throughout)."""
        warped = self.warp(prev_scores, self.estimate_flow(small, prev_small))
        intra = self.intra_scores(small)
        return self.fuse(warped, intra, self.guide_weights(intra, warped))

    def keyframe_step(self, image: torch.Tensor) -> PropagationState:
        return PropagationState(self.keyframe_scores(image), self.downsample(image))

    def propagation_step(self, state: PropagationState, image: torch.Tensor) -> PropagationState:
        small = self.downsample(image)
        return PropagationState(self.propagate(state.scores, state.small, small), small)

    def scores_to_labels(self, scores: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """uint8 [N,size] label map: bilinear upsampling of scores [N,C,h,w], then argmax."""
        return ops.scores_to_labels(scores, size, self.align_corners)

    def labels(self, state: PropagationState, size: tuple[int, int]) -> torch.Tensor:
        """uint8 [N,size] label map of a step's scores."""
        return self.scores_to_labels(state.scores, size)
