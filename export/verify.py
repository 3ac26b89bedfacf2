"""Check an exported graph in onnxruntime against the PyTorch stage on fresh random inputs.

Tolerances (documented in docs/architecture.md, "Engines folder and export checks"):
- float outputs: max|ort - torch| <= ATOL + RTOL * max|torch|, with ATOL = RTOL = 1e-4 for FP32
  graphs; FP16 graphs are held to the FP32 PyTorch model with ATOL = RTOL = FP16_TOL = 2e-2;
- label outputs (uint8 argmax): at most LABEL_MISMATCH = 0.1% of pixels may differ (ties after
  bilinear upsampling can flip between implementations).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from gsvnet import GSVNet
from engine_format.sessions import make_session
from engine_format.stages import Stage, random_inputs

ATOL = 1e-4
RTOL = 1e-4
FP16_TOL = 2e-2
LABEL_MISMATCH = 1e-3


@dataclass
class Verification:
    stage: str
    max_abs: float
    rel: float  # max_abs / max|reference| (for labels: fraction of differing pixels)
    tolerance: float
    ok: bool
    batch: int

    def to_dict(self) -> dict:
        return asdict(self)

    def line(self) -> str:
        verdict = "ok" if self.ok else "FAILED"
        if self.stage == "labels":
            return f"{self.stage:<10} differing pixels {self.rel:.2e} (limit {self.tolerance:.0e})  {verdict}"
        return f"{self.stage:<10} max abs {self.max_abs:.2e}  rel {self.rel:.2e}  (limit {self.tolerance:.2e})  {verdict}"


def verify_stage(model: GSVNet, stage: Stage, fn: Callable[..., torch.Tensor], path: Path,
                 batch: int = 2, seed: int = 0) -> Verification:
    """Run the graph at ``path`` and the torch stage on the same random inputs and compare.

    ``model`` is the float32 reference; an FP16 graph is compared with it in float32.
    """
    feeds = random_inputs(stage, batch, np.random.default_rng(seed))
    got = make_session(path).run([stage.outputs[0].name], feeds)[0]
    half = any(s.dtype == "float16" for s in (*stage.inputs, *stage.outputs))
    with torch.no_grad():
        args = (torch.from_numpy(v).float() if v.dtype == np.float16 else torch.from_numpy(v) for v in feeds.values())
        ref = fn(model, *args).numpy()
    if half and got.dtype == np.float16:
        got = got.astype(np.float32)
    if got.shape != ref.shape or got.dtype != ref.dtype:
        return Verification(stage.name, float("inf"), float("inf"), 0.0, False, batch)
    if ref.dtype == np.uint8:
        frac = float(np.mean(got != ref))
        return Verification(stage.name, float(np.abs(got.astype(int) - ref.astype(int)).max()), frac,
                            LABEL_MISMATCH, frac <= LABEL_MISMATCH, batch)
    max_abs = float(np.abs(got.astype(np.float64) - ref.astype(np.float64)).max())
    scale = float(np.abs(ref).max())
    limit = FP16_TOL * (1.0 + scale) if half else ATOL + RTOL * scale
    return Verification(stage.name, max_abs, max_abs / max(scale, 1e-12), limit, max_abs <= limit, batch)
