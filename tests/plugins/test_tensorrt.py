"""TensorRT plugins: registration, and an engine built from the custom-op ONNX graph run
against the PyTorch reference. Skipped with a one-line reason where TensorRT (or a GPU) is
missing; the TensorRT-free parts (geometry, PTX, argument order) are tested in
test_geometry.py and test_nvcc.py."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from plugins import launcher, tensorrt_plugins
from plugins.onnx_ops import as_custom_op
from tests.plugins.helpers import (ChunkFilterModule, WarpModule, errors, export, filter_inputs, reference_filter,
                                   reference_warp, warp_inputs)

_REASON = tensorrt_plugins.tensorrt_unavailable_reason()
pytestmark = pytest.mark.skipif(_REASON is not None, reason=_REASON or "")


def test_register_makes_both_plugins_known_and_is_idempotent():
    import tensorrt as trt

    tensorrt_plugins.register()  # the real tensorrt.plugin validator accepts every decorator
    tensorrt_plugins.register()
    registry = trt.get_plugin_registry()
    for plugin_id in tensorrt_plugins.PLUGIN_IDS:
        namespace, name = plugin_id.split("::")
        assert registry.get_creator(name, "1", namespace) is not None, plugin_id


def _run_engine(model, feeds: dict[str, np.ndarray], tmp_path) -> tuple[np.ndarray, list[str]]:
    """Build an engine from ``model`` the way export.tensorrt_build does (plugin preference flag,
    detailed profiling) and run it; returns (output, plugin layers the engine inspector lists)."""
    import tensorrt as trt
    from polygraphy.backend.trt import CreateConfig, EngineBytesFromNetwork, EngineFromBytes, TrtRunner

    from export import tensorrt_build

    path = tmp_path / "op.onnx"
    path.write_bytes(model.SerializeToString())
    network = tensorrt_build._parse(trt, path, strongly_typed=False, plugin_mode=tensorrt_build._plugin_mode(trt))
    assert tensorrt_build._plugin_layers(network[1]), "the parser inlined the function body instead of using the plugin"
    blob = EngineBytesFromNetwork(network, config=CreateConfig(profiling_verbosity=trt.ProfilingVerbosity.DETAILED))()
    layers = tensorrt_build._engine_plugin_layers(trt, blob)
    with TrtRunner(EngineFromBytes(blob)) as runner:
        return runner.infer(feeds)["out"], layers


@pytest.mark.gpu
@pytest.mark.parametrize("op", ["WarpByFlow", "ChunkFilter"])
def test_engine_from_custom_op_onnx_uses_the_plugin_and_matches_reference(op, rng, tmp_path):
    reason = launcher.gpu_unavailable_reason()
    if reason:
        pytest.skip(reason)
    tensorrt_plugins.register()
    shape = (2, 5, 12, 16)
    if op == "WarpByFlow":
        seg, flow = warp_inputs(rng, shape)
        model = as_custom_op(export(WarpModule(), (torch.from_numpy(seg), torch.from_numpy(flow)), ["seg", "flow"]), op)
        feeds, ref = {"seg": seg, "flow": flow}, reference_warp(seg, flow)
    else:
        arrays = filter_inputs(rng, shape, 1)
        model = as_custom_op(export(ChunkFilterModule(1), tuple(torch.from_numpy(a) for a in arrays), ["warped", "intra", "weights"]), op)
        feeds, ref = dict(zip(["warped", "intra", "weights"], arrays)), reference_filter(*arrays, 1)
    out, plugin_layers = _run_engine(model, feeds, tmp_path)
    assert plugin_layers, "the engine inspector shows no PLUGIN layer: TensorRT ran the standard-op decomposition"
    abs_err, rel_err = errors(out, ref)
    assert abs_err < 1e-5 and rel_err < 1e-5, (abs_err, rel_err)
