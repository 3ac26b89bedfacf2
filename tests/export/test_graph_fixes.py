"""Resize nodes get constant scales where the frame size makes the ratio exact, and nothing else changes."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from export.graph_fixes import static_resize_scales
from export.onnx_export import _quiet
from gsvnet.propagation import GuidingNet


class Upsampler(nn.Module):
    """Conv, x2 (exact) and 5 -> 9 (inexact) bilinear resizes by size, as the guiding net does them."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(8, 8, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        up = F.interpolate(y, size=(2 * x.shape[2], 2 * x.shape[3]), mode="bilinear", align_corners=True)
        odd = F.interpolate(y, size=(9, 9), mode="bilinear", align_corners=False)
        return self.conv(up)[..., :9, :9] + odd


def export(module: nn.Module, *example: torch.Tensor) -> onnx.ModelProto:
    batch = torch.export.Dim("N", min=1, max=8)
    with _quiet(), torch.no_grad():
        program = torch.onnx.export(module.eval(), example, dynamo=True, opset_version=18, optimize=True,
                                    dynamic_shapes=tuple({0: batch} for _ in example))
    return program.model_proto


def run(model: onnx.ModelProto, feeds: dict) -> np.ndarray:
    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"]).run(None, feeds)[0]


def test_exact_ratios_get_constant_scales_and_the_result_stays():
    x, module = torch.randn(2, 8, 5, 6), Upsampler()
    model = export(module, x)
    fixed = static_resize_scales(model)
    onnx.checker.check_model(fixed, full_check=True)
    resizes = [n for n in fixed.graph.node if n.op_type == "Resize"]
    assert len(resizes) == 2
    exact = [n for n in resizes if len(n.input) == 3]  # (X, roi, scales)
    assert len(exact) == 1
    scales = next(i for i in fixed.graph.initializer if i.name == exact[0].input[2])
    assert onnx.numpy_helper.to_array(scales).tolist() == [1.0, 1.0, 2.0, 2.0]
    assert len(next(n for n in resizes if n not in exact).input) == 4  # 5 -> 9 keeps its sizes
    feeds = {fixed.graph.input[0].name: x.numpy()}
    np.testing.assert_allclose(run(fixed, feeds), run(model, feeds), rtol=0, atol=1e-5)
    with torch.no_grad():
        np.testing.assert_allclose(run(fixed, feeds), module(x).numpy(), rtol=0, atol=1e-5)


def test_guiding_net_upsamplings_run_in_onnxruntimes_blocked_layout(tmp_path):
    """At 544x960 (grid 68x120) both x2 upsamplings of the guiding net become NCHWc Upsample nodes:
    no layout conversion is left around them (the point of the rewrite)."""
    net = GuidingNet(11, 11).eval()
    intra, edge = torch.randn(1, 11, 68, 120), torch.rand(1, 1, 68, 120).round()
    fixed = static_resize_scales(export(net, intra, edge))
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    session = ort.InferenceSession(fixed.SerializeToString(), options, providers=["CPUExecutionProvider"])
    optimized = onnx.load(str(tmp_path / "optimized.onnx"))
    ops = [(n.domain, n.op_type) for n in optimized.graph.node]
    assert ops.count(("com.microsoft.nchwc", "Upsample")) == 2 and ("", "Resize") not in ops
    assert [op for op in ops if op[1] == "ReorderOutput"] == [("com.microsoft.nchwc", "ReorderOutput")]  # the output only
    with torch.no_grad():
        expected = net(intra, edge).numpy()
    got = session.run(None, {fixed.graph.input[0].name: intra.numpy(), fixed.graph.input[1].name: edge.numpy()})[0]
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("size_in,size_out,scale", [(17, 34, 2.0), (17, 68, 4.0), (68, 17, 0.25), (68, 34, 0.5),
                                                    (23, 45, None), (12, 23, None), (102, 68, None), (60, 20, None)])
def test_only_exact_ratios_count(size_in, size_out, scale):
    from export.graph_fixes import _exact_scale

    assert _exact_scale(size_in, size_out) == scale
