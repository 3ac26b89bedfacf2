"""gsvnet::WarpByFlow and gsvnet::ChunkFilter as TensorRT quickly deployable plugins.

Call :func:`register` once before building or deserialising an engine. TensorRT's ONNX parser
maps a ``gsvnet::WarpByFlow`` / ``gsvnet::ChunkFilter`` node to these plugins because the node
carries ``plugin_namespace="gsvnet"`` (plugins.onnx_ops): without that attribute onnx-tensorrt
inlines the node's model-local function instead (NVIDIA/TensorRT
samples/python/quickly_deployable_plugins/README.md, "ONNX model with a plugin").

Written to the ``tensorrt.plugin`` API (NVIDIA/TensorRT
python/packaging/bindings_wheel/tensorrt/plugin/_lib.py and _validate.py, 10.9+):

- ``register``: tensors (annotated ``TensorDesc``), then attributes, no defaults; returns a
  ``TensorDesc``;
- ``autotune``: (tensors, attributes subset, outputs) -> list of ``AutoTuneCombination``;
- ``impl`` (JIT): (tensors, attributes subset, outputs, stream) -> None; launches our kernels on
  TensorRT's stream through plugins.launcher, on the device the tensors live on (a
  ``tensorrt.plugin.Tensor`` carries a data pointer, no device: cuPointerGetAttribute tells);
- ``aot_impl`` (>= 10.9): (tensors, attributes subset, outputs, tactic) with the return annotation
  ``Tuple[Union[str, bytes], Union[str, bytes], KernelLaunchParams, SymIntExprs]`` (the
  validator rejects a missing ``tactic`` or annotation); returns our PTX, the grid/block as shape
  expressions and N, C, h, w as int32 ``SymInt32`` arguments. AOT engines do not store plugin
  attributes, so the radius is part of the kernel name.

Each decorator is applied once per process: ``tensorrt.plugin.register`` refuses a second
definition of an id, so after a failure part-way a retry of :func:`register` applies only the
steps that did not complete. TensorRT is imported only inside :func:`register`.
"""

# No `from __future__ import annotations`: tensorrt.plugin inspects real annotation objects.

from typing import Any, Callable, List, Tuple, Union

from plugins import geometry, nvcc, toolchain

NAMESPACE = "gsvnet"
WARP, FILTER = f"{NAMESPACE}::WarpByFlow", f"{NAMESPACE}::ChunkFilter"
PLUGIN_IDS = (WARP, FILTER)

#: This process's registration: the (plugin id, decorator) pairs applied, and whether all were.
_registration: dict = {"applied": set(), "complete": False}


def aot_ptx(name: str) -> bytes:
    """PTX (``compute_75``) of kernel family ``name`` from a compiler the driver can load."""
    from plugins import launcher

    _image, built = toolchain.build_images([name], launcher.device_arch(), launcher.driver_version(), toolchain.available(),
                                           kind="ptx", ptx_target=nvcc.DEFAULT_PTX_ARCH)
    return built[name]


def _kernels_for(tensor: Any) -> Any:
    """plugins.launcher's kernels on the device that holds ``tensor`` (a ``tensorrt.plugin.Tensor``)."""
    from plugins import launcher

    return launcher.kernels(launcher.pointer_device(tensor.data_ptr))


def weight_channels_error(channels: Any, radius: int) -> str | None:
    """One line when a ChunkFilter's static weight channel count is not K+2 for ``radius``."""
    if getattr(channels, "is_fake", True) or not channels.is_constant:
        return None
    want = geometry.num_weights(radius)
    got = channels.constant_value()
    if got == want:
        return None
    return (f"gsvnet::ChunkFilter radius {radius} needs weights [N,{want},h,w] (K shifts, intra, null; plugins/SPEC.md), "
            f"got {got} channels: re-export the graphs with this package's export.build_engines")


def _definitions(trt: Any, trtp: Any) -> List[Tuple[str, str, Callable]]:
    """(plugin id, decorator name, function) for every step, in registration order."""

    def is_half(desc: Any) -> bool:
        return desc.dtype == trt.float16

    def launch_params(launch: geometry.Launch) -> Any:
        params = trtp.KernelLaunchParams()
        params.grid_x, params.grid_y, params.grid_z = launch.grid
        params.block_x, params.block_y, params.block_z = launch.block
        params.shared_mem = launch.shared_mem
        return params

    def size_args(launch: geometry.Launch) -> Any:
        return trtp.SymIntExprs.from_tuple([trtp.SymInt32(size) for size in launch.sizes])

    aot_result = Tuple[Union[str, bytes], Union[str, bytes], trtp.KernelLaunchParams, trtp.SymIntExprs]

    # ---- WarpByFlow: seg [N,C,h,w] FP32|FP16, flow [N,2,h,w] FP32 -> out like seg ----------

    def warp_desc(seg: trtp.TensorDesc, flow: trtp.TensorDesc) -> trtp.TensorDesc:
        return seg.like()

    def warp_autotune(seg, flow, outputs) -> List[trtp.AutoTuneCombination]:
        return [trtp.AutoTuneCombination("FP32|FP16, FP32|FP32, FP32|FP16", "LINEAR")]

    def warp_impl(seg, flow, outputs, stream) -> None:
        n, c, h, w = (int(d) for d in seg.shape)
        _kernels_for(seg).warp_by_flow(seg.data_ptr, flow.data_ptr, outputs[0].data_ptr, n, c, h, w, half=is_half(seg), stream=stream)

    def warp_aot(seg, flow, outputs, tactic: int) -> aot_result:
        dims = seg.shape_expr
        launch = geometry.warp_by_flow(dims[0], dims[1], dims[2], dims[3], is_half(seg), cdiv=trtp.cdiv)
        return launch.kernel.encode(), aot_ptx(launch.source), launch_params(launch), size_args(launch)

    # ---- ChunkFilter: warped, intra, weights [N,K+2,h,w] (one dtype) + radius -> out like warped

    def filter_desc(warped: trtp.TensorDesc, intra: trtp.TensorDesc, weights: trtp.TensorDesc, radius: int) -> trtp.TensorDesc:
        error = weight_channels_error(weights.shape_expr[1], int(radius))
        if error:
            raise ValueError(error)
        return warped.like()

    def filter_autotune(warped, intra, weights, outputs) -> List[trtp.AutoTuneCombination]:
        return [trtp.AutoTuneCombination("FP32|FP16, FP32|FP16, FP32|FP16, FP32|FP16", "LINEAR")]

    def filter_impl(warped, intra, weights, radius, outputs, stream) -> None:
        n, c, h, w = (int(d) for d in warped.shape)
        _kernels_for(warped).chunk_filter(warped.data_ptr, intra.data_ptr, weights.data_ptr, outputs[0].data_ptr, n, c, h, w,
                               int(radius), half=is_half(warped), stream=stream)

    def filter_aot(warped, intra, weights, radius, outputs, tactic: int) -> aot_result:
        dims = warped.shape_expr
        launch = geometry.chunk_filter(dims[0], dims[1], dims[2], dims[3], int(radius), is_half(warped), cdiv=trtp.cdiv)
        return launch.kernel.encode(), aot_ptx(launch.source), launch_params(launch), size_args(launch)

    steps = [(WARP, "register", warp_desc), (WARP, "autotune", warp_autotune), (WARP, "impl", warp_impl),
             (FILTER, "register", filter_desc), (FILTER, "autotune", filter_autotune), (FILTER, "impl", filter_impl)]
    if hasattr(trtp, "aot_impl"):
        steps += [(WARP, "aot_impl", warp_aot), (FILTER, "aot_impl", filter_aot)]
    return steps


def register(trt: Any = None, trtp: Any = None) -> None:
    """Register both plugins with ``tensorrt.plugin`` (``trt``/``trtp``: the modules, for tests).

    Idempotent, and safe to retry after an exception: decorators already applied are skipped.
    """
    if trt is None:
        import tensorrt as trt
    if trtp is None:
        import tensorrt.plugin as trtp
    applied = _registration["applied"]
    for plugin_id, decorator, function in _definitions(trt, trtp):
        if (plugin_id, decorator) in applied:
            continue
        getattr(trtp, decorator)(plugin_id)(function)
        applied.add((plugin_id, decorator))
    _registration["complete"] = True


def registered() -> bool:
    """True when :func:`register` has run to the end in this process."""
    return bool(_registration["complete"])


def tensorrt_unavailable_reason() -> str | None:
    """None when ``tensorrt.plugin`` imports here, else a one-line reason."""
    try:
        import tensorrt.plugin  # noqa: F401
    except Exception as exc:  # ImportError, or a missing shared library (OSError)
        return f"tensorrt not importable: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    return None
