"""Export, verify and record the stage graphs of one precision (the loop both the ONNX build
and the TensorRT build's FP16 graphs run)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Callable, Mapping

import torch

from gsvnet import GSVNet

from engine_format.manifest import sha256_file
from .onnx_export import export_stage
from engine_format.stages import stage_table
from gsvnet.stages import stage_functions
from .verify import verify_stage


def export_graphs(model: GSVNet, frame_size: tuple[int, int], folder: Path, *, precision: str, opset: int,
                  custom_ops: str, build_key: str, stages: tuple[str, ...], reuse: Mapping[str, dict],
                  transform: Callable | None, log: Callable[[str], None]) -> tuple[dict[str, dict], list[str]]:
    """Export ``stages`` of ``model`` (the FP32 reference; an FP16 copy is exported for 'fp16') to
    ``folder/<stage>.onnx`` (``<stage>.fp16.onnx``), verify each in onnxruntime against the FP32
    model and describe it for the manifest. Entries in ``reuse`` are kept as they are.
    Returns (manifest entries, names of the graphs that failed verification; their files are removed).
    """
    config = model.config
    table = stage_table(config.num_classes, config.radius, frame_size, precision)
    fns = stage_functions(frame_size)
    exported = model if precision == "fp32" else copy.deepcopy(model).half().eval()
    suffix = "" if precision == "fp32" else f".{precision}"
    graphs: dict[str, dict] = {}
    failures: list[str] = []
    with torch.no_grad():
        for name in stages:
            if name in reuse:
                graphs[name] = dict(reuse[name])
                continue
            stage = table[name]
            path, tmp = folder / f"{name}{suffix}.onnx", folder / f".{name}{suffix}.onnx.tmp"
            try:
                export_stage(exported, stage, fns[name], tmp, opset, transform)
                check = verify_stage(model, stage, fns[name], tmp)
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
            log(f"  {'' if precision == 'fp32' else precision + ' '}{check.line()}")
            if not check.ok:
                tmp.unlink(missing_ok=True)
                failures.append(name)
                continue
            tmp.replace(path)
            graphs[name] = {
                "file": path.name, "sha256": sha256_file(path), "opset": opset, "precision": precision,
                "inputs": [s.to_dict() for s in stage.inputs], "outputs": [s.to_dict() for s in stage.outputs],
                "custom_op": stage.custom_op if custom_ops == "function" else None,
                "verification": check.to_dict(), "build_key": build_key,
            }
    return graphs, failures
