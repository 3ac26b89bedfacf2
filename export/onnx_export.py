"""Export one stage of a GSVNet to an ONNX file and check it."""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from pathlib import Path
from typing import Callable

import onnx
import torch
from torch import nn

from engine_format.stages import BATCH, Stage
from gsvnet import GSVNet

from .graph_fixes import static_resize_scales
# GridSample is called 'bilinear' up to opset 19; TensorRT maps opset >= 20 'linear' to nearest
# (NVIDIA/TensorRT#4646), so only SUPPORTED_OPSETS are exported (defined with the build options)
from .options import DEFAULT_OPSET, MAX_BATCH, SUPPORTED_OPSETS


class StageModule(nn.Module):
    """Wraps one GSVNet method as a module so it can be exported on its own."""

    def __init__(self, model: GSVNet, fn: Callable[..., torch.Tensor]) -> None:
        super().__init__()
        self.model = model
        self.fn = fn

    def forward(self, *args: torch.Tensor) -> torch.Tensor:
        return self.fn(self.model, *args)


class ExportError(RuntimeError):
    """An exported graph failed a structural check."""


def _example_inputs(stage: Stage, batch: int) -> tuple[torch.Tensor, ...]:
    gen = torch.Generator().manual_seed(0)
    out = []
    for spec in stage.inputs:
        shape = spec.concrete(batch)
        dtype = getattr(torch, spec.dtype)
        if spec.dtype == "uint8":
            out.append(torch.randint(0, 256, shape, dtype=torch.uint8, generator=gen))
        elif spec.name == "weights":
            out.append(torch.rand(shape, generator=gen).to(dtype))
        else:
            out.append(torch.randn(shape, generator=gen).to(dtype))
    return tuple(out)


@contextlib.contextmanager
def _quiet():
    """The exporter prints progress and warnings per graph; keep the CLI output readable."""
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch._dynamo", "torch.export", "onnxscript")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, lvl in zip(loggers, levels):
            lg.setLevel(lvl)


def export_stage(model: GSVNet, stage: Stage, fn: Callable[..., torch.Tensor], path: Path, opset: int = DEFAULT_OPSET,
                 transform: Callable[[onnx.ModelProto, Stage], onnx.ModelProto] | None = None) -> onnx.ModelProto:
    """Export ``fn(model, *inputs)`` as ``stage`` to ``path`` (dynamic batch) and check it.

    ``transform`` may rewrite the exported model (e.g. wrap a custom op) before it is checked.
    """
    if opset not in SUPPORTED_OPSETS:
        raise ExportError(f"opset {opset} is not supported; use one of {SUPPORTED_OPSETS} "
                          "(GridSample is 'bilinear' there; TensorRT misreads opset >= 20 'linear')")
    module = StageModule(model, fn).eval()
    example = _example_inputs(stage, batch=2)
    batch = torch.export.Dim(BATCH, min=1, max=MAX_BATCH)
    dynamic = tuple({0: batch} for _ in stage.inputs)
    # The custom-op stages stay as exported: onnxscript's optimizer takes the chunk filter's
    # `+ 1e-9` for an `x + 0` no-op and drops it (0/0 = NaN where every guiding weight is 0).
    optimize = stage.custom_op is None
    with _quiet(), torch.inference_mode(False), torch.no_grad():
        program = torch.onnx.export(
            module, example, dynamo=True, opset_version=opset, external_data=False,
            input_names=[s.name for s in stage.inputs], output_names=[s.name for s in stage.outputs],
            dynamic_shapes={"args": dynamic}, optimize=optimize, verbose=False,
        )
    proto = program.model_proto
    if stage.custom_op is None:  # custom-op bodies stay exactly as exported (see above)
        proto = static_resize_scales(proto)
    proto.producer_name = "gsvnet-export"
    proto.doc_string = f"GSVNet stage '{stage.name}'"
    if transform is not None:
        proto = transform(proto, stage)
    check_graph(proto, stage, opset)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save_model(proto, str(path))
    return proto


def _all_nodes(proto: onnx.ModelProto):
    yield from proto.graph.node
    for fn in proto.functions:
        yield from fn.node


def check_graph(proto: onnx.ModelProto, stage: Stage, opset: int) -> None:
    """onnx.checker with full shape inference, names as in the stage table, GridSample bilinear."""
    try:
        onnx.checker.check_model(proto, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as e:
        raise ExportError(f"{stage.name}: onnx.checker rejected the graph: {str(e).splitlines()[0]}") from None
    got_in = [i.name for i in proto.graph.input]
    got_out = [o.name for o in proto.graph.output]
    if got_in != [s.name for s in stage.inputs] or got_out != [s.name for s in stage.outputs]:
        raise ExportError(f"{stage.name}: graph I/O {got_in} -> {got_out} differs from the stage table")
    default = [o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")]
    if default != [opset]:
        raise ExportError(f"{stage.name}: exported at opset {default}, asked for {opset}")
    for node in _all_nodes(proto):
        if node.op_type == "GridSample":
            mode = next((onnx.helper.get_attribute_value(a) for a in node.attribute if a.name == "mode"), b"bilinear")
            if mode != b"bilinear":
                raise ExportError(f"{stage.name}: GridSample mode is {mode!r}, expected b'bilinear'")
