"""Turn a standard-op ONNX graph of one GSVNet op into a single ``gsvnet`` custom-op node.

The exporter exports the PyTorch reference of an op (e.g. ``warp_by_flow`` with inputs
``seg``, ``flow`` and output ``out``) and calls :func:`as_custom_op`. The result's main graph is
one node ``gsvnet::<op_type>`` with the original inputs and outputs; with ``with_function`` the
model also carries a model-local ONNX function of the same name and domain whose body is the
original graph, so onnxruntime runs it as is.

Every node carries the string attribute ``plugin_namespace="gsvnet"``: TensorRT's ONNX parser
(onnx-tensorrt) imports a node as a plugin only when it has that attribute, and otherwise inlines
a model-local function of the same name (NVIDIA/TensorRT samples/python/quickly_deployable_plugins
README, "ONNX model with a plugin"). onnxruntime ignores the attribute. Node signatures and
attributes: plugins/SPEC.md, "ONNX nodes".
"""

from __future__ import annotations

import onnx
from onnx import helper

from plugins import geometry

DOMAIN = "gsvnet"
DOMAIN_VERSION = 1
#: The node attribute that makes TensorRT's ONNX parser use the plugin (its value: the plugins'
#: namespace in plugins.tensorrt_plugins, which is the domain).
PLUGIN_NAMESPACE_ATTRIBUTE = "plugin_namespace"

#: op_type -> (number of inputs, number of outputs, {attribute: default}) from SPEC.md.
OPS: dict[str, tuple[int, int, dict[str, int]]] = {
    "WarpByFlow": (2, 1, {}),
    "ChunkFilter": (3, 1, {"radius": 1}),
}


def _attributes(op_type: str, given: dict[str, int] | None) -> dict[str, int]:
    defaults = OPS[op_type][2]
    unknown = set(given or {}) - set(defaults)
    if unknown:
        raise ValueError(f"{DOMAIN}::{op_type} has no attribute(s) {sorted(unknown)}; allowed: {sorted(defaults) or 'none'}")
    attrs = {**defaults, **{k: int(v) for k, v in (given or {}).items()}}
    if op_type == "ChunkFilter" and attrs["radius"] < 1:
        raise ValueError(f"ChunkFilter radius must be >= 1, got {attrs['radius']}")
    return attrs


def _static_dim(value: onnx.ValueInfoProto, axis: int) -> int | None:
    dims = value.type.tensor_type.shape.dim
    return dims[axis].dim_value if len(dims) > axis and dims[axis].HasField("dim_value") else None


def _check_radius(graph: onnx.GraphProto, inputs: list[onnx.ValueInfoProto], radius: int) -> None:
    """The weights' channel count, where static, must be (2r+1)^2 + 2 (K shifts, intra, null)."""
    channels, want = _static_dim(inputs[2], 1), geometry.num_weights(radius)
    if channels is not None and channels != want:
        raise ValueError(f"ChunkFilter radius {radius} needs {want} weight channels, "
                         f"but {graph.name or 'the graph'}'s input {inputs[2].name!r} has {channels}")


def _constant_nodes(graph: onnx.GraphProto) -> list[onnx.NodeProto]:
    """The graph's initializers as Constant nodes (a function body cannot hold initializers)."""
    nodes = [helper.make_node("Constant", [], [init.name], name=f"{init.name}_const", value=init) for init in graph.initializer]
    nodes += [helper.make_node("Constant", [], [sp.values.name], name=f"{sp.values.name}_const", sparse_value=sp)
              for sp in graph.sparse_initializer]
    return nodes


def as_custom_op(model: onnx.ModelProto, op_type: str, attributes: dict[str, int] | None = None,
                 with_function: bool = True) -> onnx.ModelProto:
    """A copy of ``model`` whose main graph is the single node ``gsvnet::op_type``.

    model: a graph computing one op with standard ONNX ops (graph inputs/outputs as in
        SPEC.md, e.g. ``seg, flow -> out``; dims may be symbolic).
    op_type: 'WarpByFlow' or 'ChunkFilter'.
    attributes: node attributes (ints), defaults from SPEC.md filled in (ChunkFilter radius=1).
        The function body is not rewritten: the attributes must describe what the graph
        computes (checked for the radius where the weights' channel count is static). The node
        also gets ``plugin_namespace="gsvnet"`` (not a function attribute).
    with_function: attach the original graph as a model-local function ``gsvnet::op_type``
        (initializers become Constant nodes), so runtimes without the custom op run the body.
    Keeps the graph inputs, outputs and their shapes, the opset imports (plus ``gsvnet`` 1)
    and any existing model-local functions. Raises ValueError on an unknown op, attribute or
    an input/output count that does not match the spec.
    """
    if op_type not in OPS:
        raise ValueError(f"unknown op {op_type!r}; the {DOMAIN} domain has {sorted(OPS)}")
    n_in, n_out, _ = OPS[op_type]
    attrs = _attributes(op_type, attributes)
    graph = model.graph
    initializer_names = {init.name for init in graph.initializer}
    inputs = [value for value in graph.input if value.name not in initializer_names]
    if len(inputs) != n_in or len(graph.output) != n_out:
        raise ValueError(f"{DOMAIN}::{op_type} takes {n_in} inputs and {n_out} outputs; the graph has "
                         f"{[v.name for v in inputs]} -> {[v.name for v in graph.output]}")
    if op_type == "ChunkFilter":
        _check_radius(graph, inputs, attrs["radius"])

    opsets = {op.domain: op.version for op in model.opset_import}
    if opsets.get(DOMAIN, DOMAIN_VERSION) != DOMAIN_VERSION:
        raise ValueError(f"model already imports domain {DOMAIN!r} at version {opsets[DOMAIN]}")
    in_names = [value.name for value in inputs]
    out_names = [value.name for value in graph.output]

    node = helper.make_node(op_type, in_names, out_names, name=op_type, domain=DOMAIN, **attrs,
                            **{PLUGIN_NAMESPACE_ATTRIBUTE: DOMAIN})
    new_graph = helper.make_graph([node], graph.name or op_type, list(inputs), list(graph.output), doc_string=graph.doc_string)
    opset_imports = [helper.make_opsetid(domain, version) for domain, version in opsets.items() if domain != DOMAIN]
    opset_imports.append(helper.make_opsetid(DOMAIN, DOMAIN_VERSION))

    functions = list(model.functions)
    if with_function:
        body_opsets = [helper.make_opsetid(domain, version) for domain, version in opsets.items() if domain != DOMAIN]
        functions.append(helper.make_function(
            DOMAIN, op_type, in_names, out_names, _constant_nodes(graph) + list(graph.node), body_opsets,
            attributes=sorted(attrs), doc_string=f"Standard-op decomposition of {DOMAIN}::{op_type} (plugins/SPEC.md)",
        ))

    out = helper.make_model(new_graph, opset_imports=opset_imports, functions=functions,
                            producer_name=model.producer_name, producer_version=model.producer_version,
                            doc_string=model.doc_string)
    out.ir_version = max(model.ir_version, 8)  # model-local functions need IR >= 8
    out.model_version = model.model_version
    for prop in model.metadata_props:
        out.metadata_props.add().CopyFrom(prop)
    return out
