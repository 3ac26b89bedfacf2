"""The stage graphs GSVNet is cut into, each a method of the PyTorch
``GSVNet`` (``gsvnet.stages.stage_functions``).

Every backend runs the same stages with the same tensor names, so this table is the one place
that says what each graph computes, what goes in and what comes out:

==========  =========================================  ==============================
stage       inputs                                     outputs
==========  =========================================  ==============================
downsample  image u8 [N,H,W,3]                         small [N,3,h,w]
keyframe    image u8 [N,H,W,3]                         scores [N,C,h,w]
flow        small [N,3,h,w], prev_small [N,3,h,w]      flow [N,2,h,w]
warp        seg [N,C,h,w], flow [N,2,h,w]              out [N,C,h,w]   gsvnet::WarpByFlow
intra       small [N,3,h,w]                            intra [N,C,h,w]
guide       intra [N,C,h,w], warped [N,C,h,w]          weights [N,K+2,h,w]
filter      warped, intra [N,C,h,w], weights           out [N,C,h,w]   gsvnet::ChunkFilter
labels      scores [N,C,h,w]                           labels u8 [N,H,W]
==========  =========================================  ==============================

H x W is the engine frame size, h x w = H/8 x W/8, C classes, K = (2r+1)^2 (weights: K shifts,
intra, null; plugins/SPEC.md).

Plain Python and numpy (no torch): the exporter writes graphs to these specs and every backend
reads them back from the manifest.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gsvnet.shapes import grid_size, num_weights

from .manifest import STAGES

BATCH = "N"

ALL_STAGES = STAGES


@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: tuple[int | str, ...]  # "N" is the dynamic batch
    dtype: str  # numpy dtype name

    def concrete(self, batch: int) -> tuple[int, ...]:
        return tuple(batch if d == BATCH else int(d) for d in self.shape)

    def to_dict(self) -> dict:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}

    @classmethod
    def from_dict(cls, d: dict) -> "TensorSpec":
        return cls(d["name"], tuple(d["shape"]), d["dtype"])


@dataclass(frozen=True)
class Stage:
    name: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    custom_op: str | None = None  # gsvnet-domain op type this stage is, if any


PRECISIONS = {"fp32": "float32", "fp16": "float16"}


def stage_table(num_classes: int, radius: int, frame_size: tuple[int, int], precision: str = "fp32") -> dict[str, Stage]:
    """Input/output specs of every stage for one engine frame size.

    ``precision`` is the dtype of activations between stages; the flow is always float32.
    """
    height, width = frame_size
    h, w = grid_size(frame_size)
    c, k2 = num_classes, num_weights(radius)
    act = PRECISIONS[precision]

    def t(name: str, ch: int | None, dtype: str = act, hw: tuple[int, int] = (h, w)) -> TensorSpec:
        return TensorSpec(name, (BATCH, ch, *hw) if ch is not None else (BATCH, *hw), dtype)

    image = TensorSpec("image", (BATCH, height, width, 3), "uint8")
    return {
        "downsample": Stage("downsample", (image,), (t("small", 3),)),
        "keyframe": Stage("keyframe", (image,), (t("scores", c),)),
        "flow": Stage("flow", (t("small", 3), t("prev_small", 3)), (t("flow", 2, "float32"),)),
        "warp": Stage("warp", (t("seg", c), t("flow", 2, "float32")), (t("out", c),), custom_op="WarpByFlow"),
        "intra": Stage("intra", (t("small", 3),), (t("intra", c),)),
        "guide": Stage("guide", (t("intra", c), t("warped", c)), (t("weights", k2),)),
        "filter": Stage("filter", (t("warped", c), t("intra", c), t("weights", k2)), (t("out", c),), custom_op="ChunkFilter"),
        "labels": Stage("labels", (t("scores", c),), (t("labels", None, "uint8", (height, width)),)),
    }


def random_inputs(stage: Stage, batch: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Fresh random inputs in each tensor's realistic range (never all zeros). The guiding weights
    also get a few pixels where every weight is exactly 0 (a ReLU output can be), where the chunk
    filter must give 0 (plugins/SPEC.md), and one of tiny weights where the eps matters."""
    feeds = {}
    for spec in stage.inputs:
        shape = spec.concrete(batch)
        if spec.dtype == "uint8":
            feeds[spec.name] = rng.integers(0, 256, shape, dtype=np.uint8)
        elif spec.name == "flow":
            feeds[spec.name] = rng.uniform(-3.0, 3.0, shape).astype(spec.dtype)
        elif spec.name == "weights":
            weights = rng.uniform(0.0, 1.0, shape)
            h, w = shape[-2:]
            weights[..., int(rng.integers(0, h)), :] = 0.0  # a whole row of all-zero weights
            weights[..., int(rng.integers(0, h)), int(rng.integers(0, w))] *= 1e-7
            feeds[spec.name] = weights.astype(spec.dtype)
        elif spec.name in ("seg", "warped", "intra", "scores"):
            feeds[spec.name] = (3.0 * rng.standard_normal(shape)).astype(spec.dtype)
        else:
            feeds[spec.name] = rng.standard_normal(shape).astype(spec.dtype)
    return feeds
