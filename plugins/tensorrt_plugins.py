"""gsvnet::WarpByFlow and gsvnet::ChunkFilter as TensorRT quickly deployable plugins.

Call :func:`register` once before building or deserialising an engine; TensorRT's ONNX
parser then maps ``gsvnet::WarpByFlow`` / ``gsvnet::ChunkFilter`` nodes (plugins.onnx_ops)
to these plugins by op type and domain (TensorRT >= 10.10; older parsers also need a
``plugin_namespace="gsvnet"`` node attribute). Written to the documented ``tensorrt.plugin``
API: ``register`` (shape/type), ``autotune`` (FP32 or FP16 I/O, flow always FP32, linear
layout), ``impl`` (JIT: launches our kernels on TensorRT's stream through plugins.launcher)
and, where TensorRT has it (>= 10.9), ``aot_impl`` returning our nvcc-built PTX so engines
run without Python (add the ONNX node attribute ``aot=1``, or set the network flag
PREFER_AOT_PYTHON_PLUGINS).

AOT notes: plugin attributes are not stored in an AOT engine, so the radius is baked into
the kernel name (gsvnet_chunk_filter_r<r>_<dtype>); the kernels take input pointers, the
int32 sizes (N, C, h, w), then output pointers, which is the argument order TensorRT uses
for AOT kernels (inputs, extra scalar arguments, outputs).

TensorRT is imported lazily, only inside :func:`register`.
"""

# No `from __future__ import annotations`: tensorrt.plugin inspects real annotation objects.

from typing import Any

from plugins import geometry, nvcc

PLUGIN_IDS = ("gsvnet::WarpByFlow", "gsvnet::ChunkFilter")

_registered = False


def _ptx(name: str) -> bytes:
    return nvcc.build(name, nvcc.DEFAULT_PTX_ARCH, "ptx")


def register() -> None:
    """Register both plugins with ``tensorrt.plugin`` (idempotent)."""
    global _registered
    if _registered:
        return
    import tensorrt as trt
    import tensorrt.plugin as trtp

    def is_half(desc: Any) -> bool:
        return desc.dtype == trt.float16

    def aot_params(launch: geometry.Launch) -> Any:
        params = trtp.KernelLaunchParams()
        params.grid_x, params.grid_y, params.grid_z = launch.grid
        params.block_x, params.block_y, params.block_z = launch.block
        params.shared_mem = launch.shared_mem
        return params

    def aot_sizes(launch: geometry.Launch) -> Any:
        return trtp.SymIntExprs.from_tuple([trtp.SymInt32(size) for size in launch.sizes])

    # ---- WarpByFlow: seg [N,C,h,w] FP32|FP16, flow [N,2,h,w] FP32 -> out like seg ----------

    @trtp.register("gsvnet::WarpByFlow")
    def warp_desc(seg: trtp.TensorDesc, flow: trtp.TensorDesc) -> trtp.TensorDesc:
        return seg.like()

    @trtp.autotune("gsvnet::WarpByFlow")
    def warp_autotune(seg, flow, outputs):
        return [trtp.AutoTuneCombination("FP32|FP16, FP32|FP32, FP32|FP16", "LINEAR")]

    @trtp.impl("gsvnet::WarpByFlow")
    def warp_impl(seg, flow, outputs, stream):
        from plugins.launcher import kernels

        n, c, h, w = (int(d) for d in seg.shape)
        kernels().warp_by_flow(seg.data_ptr, flow.data_ptr, outputs[0].data_ptr, n, c, h, w, half=is_half(seg), stream=stream)

    # ---- ChunkFilter: warped, intra, weights (one dtype) + radius -> out like warped ------

    @trtp.register("gsvnet::ChunkFilter")
    def chunk_filter_desc(warped: trtp.TensorDesc, intra: trtp.TensorDesc, weights: trtp.TensorDesc, radius: int) -> trtp.TensorDesc:
        return warped.like()

    @trtp.autotune("gsvnet::ChunkFilter")
    def chunk_filter_autotune(warped, intra, weights, outputs):
        return [trtp.AutoTuneCombination("FP32|FP16, FP32|FP16, FP32|FP16, FP32|FP16", "LINEAR")]

    @trtp.impl("gsvnet::ChunkFilter")
    def chunk_filter_impl(warped, intra, weights, radius, outputs, stream):
        from plugins.launcher import kernels

        n, c, h, w = (int(d) for d in warped.shape)
        kernels().chunk_filter(warped.data_ptr, intra.data_ptr, weights.data_ptr, outputs[0].data_ptr, n, c, h, w,
                               int(radius), half=is_half(warped), stream=stream)

    if hasattr(trtp, "aot_impl"):

        @trtp.aot_impl("gsvnet::WarpByFlow")
        def warp_aot(seg, flow, outputs):
            dims = seg.shape_expr
            launch = geometry.warp_by_flow(dims[0], dims[1], dims[2], dims[3], is_half(seg), cdiv=trtp.cdiv)
            return launch.kernel.encode(), _ptx(launch.source), aot_params(launch), aot_sizes(launch)

        @trtp.aot_impl("gsvnet::ChunkFilter")
        def chunk_filter_aot(warped, intra, weights, radius, outputs):
            dims = warped.shape_expr
            launch = geometry.chunk_filter(dims[0], dims[1], dims[2], dims[3], int(radius), is_half(warped), cdiv=trtp.cdiv)
            return launch.kernel.encode(), _ptx(launch.source), aot_params(launch), aot_sizes(launch)

    _registered = True


def tensorrt_unavailable_reason() -> str | None:
    """None when ``tensorrt.plugin`` imports here, else a one-line reason."""
    try:
        import tensorrt.plugin  # noqa: F401
    except Exception as exc:  # ImportError, or a missing shared library (OSError)
        return f"tensorrt not importable: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    return None
