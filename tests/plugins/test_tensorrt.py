"""TensorRT plugins: the custom-op ONNX nodes against the plugin definitions they must reach (no
TensorRT needed: the documented ``tensorrt.plugin`` schema in fake_tensorrt.py), then with the real
library the registration and an engine built from the same custom-op graph against the PyTorch
reference. Only the tests that need the real TensorRT (and a GPU) skip, each with a one-line reason;
more TensorRT-free parts are tested in test_tensorrt_registration.py, test_geometry.py and test_nvcc.py."""

from __future__ import annotations

from types import ModuleType

import numpy as np
import onnx
import pytest
import torch

from plugins import launcher, tensorrt_plugins
from plugins.onnx_ops import as_custom_op
from tests.plugins import fake_tensorrt
from tests.plugins.helpers import (ChunkFilterModule, WarpModule, errors, export, filter_inputs, reference_filter,
                                   reference_warp, warp_inputs)

OPS = ("WarpByFlow", "ChunkFilter")
SHAPE = (2, 5, 12, 16)  # N, C, h, w of the engine test


def _custom_op_case(op: str, rng: np.random.Generator) -> tuple[onnx.ModelProto, dict[str, np.ndarray], np.ndarray]:
    """The custom-op graph of ``op`` (radius 1 for ChunkFilter) that the engine test hands TensorRT,
    its feeds by input name, and the PyTorch reference output."""
    if op == "WarpByFlow":
        seg, flow = warp_inputs(rng, SHAPE)
        model = as_custom_op(export(WarpModule(), (torch.from_numpy(seg), torch.from_numpy(flow)), ["seg", "flow"]), op)
        return model, {"seg": seg, "flow": flow}, reference_warp(seg, flow)
    arrays = filter_inputs(rng, SHAPE, 1)
    names = ["warped", "intra", "weights"]
    model = as_custom_op(export(ChunkFilterModule(1), tuple(torch.from_numpy(a) for a in arrays), names), op)
    return model, dict(zip(names, arrays)), reference_filter(*arrays, 1)


def _real_tensorrt() -> ModuleType:
    """``tensorrt`` itself; skips with the reason where it does not import (no CI machine has it)."""
    reason = tensorrt_plugins.tensorrt_unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    import tensorrt

    return tensorrt


# ---- without TensorRT -------------------------------------------------------------------------------

@pytest.mark.parametrize("op", OPS)
def test_custom_op_node_names_a_registered_plugin_with_its_inputs_and_attributes(op, rng, monkeypatch):
    """What TensorRT's parser matches: the node's domain::op_type is a plugin id our register()
    defines, plugin_namespace is that namespace, the node's inputs and attributes are the plugin's
    tensors and attributes, and the plugin describes the output as the reference's shape."""
    monkeypatch.setattr(tensorrt_plugins, "_registration", {"applied": set(), "complete": False})
    trt, trtp = fake_tensorrt.modules()
    tensorrt_plugins.register(trt, trtp)
    model, feeds, reference = _custom_op_case(op, rng)
    (node,) = model.graph.node
    plugin_id = f"{node.domain}::{node.op_type}"
    assert plugin_id in tensorrt_plugins.PLUGIN_IDS and plugin_id in trtp.defined, plugin_id
    attributes = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    assert attributes.pop("plugin_namespace") == tensorrt_plugins.NAMESPACE.encode()
    definition = trtp.defined[plugin_id]
    assert list(node.input) == list(feeds) and len(node.input) == len(definition["tensors"]), list(node.input)
    assert sorted(attributes) == sorted(definition["attrs"]), attributes
    assert [o.name for o in model.graph.output] == ["out"]  # what the engine test reads back
    tensors = [fake_tensorrt.TensorDesc(feeds[name].shape, trt.float32) for name in node.input]
    described = definition["register"](*tensors, *(attributes[a] for a in definition["attrs"]))
    assert described.shape_expr == list(reference.shape) and described.dtype == trt.float32


# ---- with TensorRT ----------------------------------------------------------------------------------

def test_register_makes_both_plugins_known_and_is_idempotent():
    trt = _real_tensorrt()
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
@pytest.mark.parametrize("op", OPS)
def test_engine_from_custom_op_onnx_uses_the_plugin_and_matches_reference(op, rng, tmp_path):
    _real_tensorrt()
    reason = launcher.gpu_unavailable_reason()
    if reason:
        pytest.skip(reason)
    tensorrt_plugins.register()
    model, feeds, ref = _custom_op_case(op, rng)
    out, plugin_layers = _run_engine(model, feeds, tmp_path)
    assert plugin_layers, "the engine inspector shows no PLUGIN layer: TensorRT ran the standard-op decomposition"
    abs_err, rel_err = errors(out, ref)
    assert abs_err < 1e-5 and rel_err < 1e-5, (abs_err, rel_err)
