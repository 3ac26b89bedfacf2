"""Backend selection: which implementations exist here, and which one ``auto`` picks and why."""

from __future__ import annotations

import importlib.util
import sys
from dataclasses import dataclass
from typing import Callable

from engine_format.compat import (ENGINE_STAGES, check_engines, current_environment, gpu_identity, rebuild_hint,
                                  tensorrt_unsupported_reason)
from engine_format.manifest import Manifest, ManifestError

from ..errors import UserError, first_line
from ..threads import ThreadPlan
from . import gpu_checks
from .base import PRECISIONS, Backend, PropagationState, folder_precision

def _cuda_gpu() -> str | None:
    """None if a CUDA GPU is usable from torch, else why not."""
    import torch

    if not torch.cuda.is_available():
        return "no CUDA GPU is visible to PyTorch"
    return None


def _imported_reason(manifest: Manifest) -> str | None:
    """Why torch-cuda cannot run a folder whose keyframe net is an imported ONNX model (it runs the
    PyTorch modules on the GPU, and that model is only a graph)."""
    if manifest.model.get("keyframe_import"):
        return ("its keyframe net is an imported ONNX model, which torch-cuda does not run; use --backend tensorrt "
                "or onnxruntime-cuda")
    return None


def _torch_cuda_reason() -> str | None:
    """torch sees a GPU, has kernels for its architecture, and our CUDA kernels load on it."""
    if (why := _cuda_gpu()) is not None:
        return why
    if (why := gpu_checks.torch_kernels_reason()) is not None:
        return why
    try:
        import torch

        from plugins.launcher import kernels

        kernels(torch.cuda.current_device())
    except Exception as e:
        return f"the gsvnet CUDA kernels do not load ({first_line(e)})"
    return None


def _tensorrt_reason(manifest: Manifest) -> str | None:
    """TensorRT imports, a CUDA GPU TensorRT 10 supports is there, and the manifest's engines
    were built for both."""
    if "tensorrt" not in sys.modules and importlib.util.find_spec("tensorrt") is None:
        return "TensorRT is not installed"
    try:
        import tensorrt  # noqa: F401
    except Exception as e:  # the bindings wheel without its libraries
        return f"TensorRT does not import ({first_line(e)})"
    from plugins import launcher

    if (why := launcher.gpu_unavailable_reason()) is not None:
        return why
    try:
        gpu, capability = gpu_identity()
    except Exception as e:
        return f"cannot query the GPU ({first_line(e)})"
    if (why := tensorrt_unsupported_reason(capability, gpu)) is not None:
        return why
    if not manifest.engines:
        return f"the engines folder has no TensorRT engines ({rebuild_hint(manifest.folder)})"
    try:
        check_engines(manifest, current_environment(), ENGINE_STAGES)
    except ManifestError as e:
        return str(e)
    except Exception as e:  # the GPU could not be queried
        return f"cannot query the GPU ({first_line(e)})"
    return None


def unavailable_reason(name: str, manifest: Manifest) -> str | None:
    """None if ``name`` can run here with these engines, else a short reason why not."""
    if name not in REGISTRY:
        raise UserError(f"unknown backend {name!r}; choose one of: {', '.join(CHOICES)}")
    return REGISTRY[name].unavailable(manifest)


def precision_note(name: str, manifest: Manifest | None = None, precision: str | None = None) -> str:
    """How backend ``name`` computes on this machine, e.g. 'FP32: NVIDIA GeForce GTX 1080 Ti
    (compute capability 6.1) runs FP16 at a small fraction of its FP32 rate, so FP32 is faster'.
    ``precision``: the run's (--precision; None: the folder's)."""
    int8 = manifest is not None and folder_precision(manifest) == "int8"
    if name == "openvino" and (precision or "") == "bf16":
        from .openvino_backend import BF16_STAGES

        return f"BF16 {', '.join(BF16_STAGES)}, FP32 others"
    if int8 and name in ("onnxruntime", "onnxruntime-cuda", "openvino"):
        return "INT8 keyframe graph, FP32 others"
    if int8 and name == "torch":
        return "FP32 (the checkpoint; the INT8 keyframe graph is onnxruntime's)"
    if name == "torch-cuda":
        precision, why = gpu_checks.gpu_precision(*gpu_checks.torch_gpu())
        return f"{precision.upper()}: {why}"
    if name == "tensorrt":
        return "FP16 engines"
    if name == "onnxruntime-cuda":
        return "FP32 graphs"
    return "FP32"


def precision_unavailable(name: str, manifest: Manifest, precision: str | None) -> str | None:
    """None if backend ``name`` runs ``precision`` (--precision; None: its default) with this
    folder on this machine, else why not and what to do instead."""
    if precision is None:
        return None
    return REGISTRY[name].precision_reason(manifest, precision)


def select_backend(requested: str, manifest: Manifest) -> tuple[str, str]:
    """(backend name, why) for ``--backend requested``; raises UserError if it cannot run.
    ``why`` names the precision and, for ``auto``, why each preferred backend was skipped. This
    is the order of preference alone: ``runtime.loading.load_backend`` also measures the CPU
    engines against each other and verifies the one it takes."""
    if requested != "auto":
        why = unavailable_reason(requested, manifest)
        if why is not None:
            raise UserError(f"backend {requested} is not available here: {why}; try --backend auto")
        return requested, f"asked for; {precision_note(requested, manifest)}"
    skipped = []
    for name in PREFERENCE:
        why = unavailable_reason(name, manifest)
        if why is None:
            reason = f"best available; {precision_note(name, manifest)}" + (f" ({'; '.join(skipped)})" if skipped else "")
            return name, reason
        skipped.append(f"{name}: {why}")
    raise UserError("no backend can run here: " + "; ".join(skipped))


def create_backend(name: str, manifest: Manifest, threads: int = 0, profile: bool = True,
                   plan: ThreadPlan | None = None, precision: str | None = None) -> Backend:
    """Instantiate backend ``name`` (runtime.loading.load_backend resolves ``auto`` and verifies it).

    threads: CPU threads of every graph (0: the library's default); ``plan`` (the CPU backends;
    runtime.tuning.thread_plan) instead gives each graph its own count for a pipelined run;
    precision: 'f32', 'bf16' or 'int8' (None: the backend's default for the folder).
    """
    if name not in REGISTRY:
        raise UserError(f"backend {name} is not implemented in this build; choose one of: {', '.join(REGISTRY)}")
    if (why := precision_unavailable(name, manifest, precision)) is not None:
        raise UserError(f"backend {name} cannot run --precision {precision}: {why}")
    return REGISTRY[name].factory(manifest, threads, profile, plan, precision)


def _onnxruntime(manifest: Manifest, threads: int, profile: bool, plan: ThreadPlan | None,
                 precision: str | None) -> Backend:
    from .onnxruntime_backend import OnnxRuntimeBackend

    return OnnxRuntimeBackend(manifest, ["CPUExecutionProvider"], threads, profile, plan)


def _onnxruntime_device(manifest: Manifest, threads: int, profile: bool, plan: ThreadPlan | None,
                        precision: str | None) -> Backend:
    from .onnxruntime_device_backend import OnnxRuntimeDeviceBackend

    return OnnxRuntimeDeviceBackend(manifest, ["CUDAExecutionProvider", "CPUExecutionProvider"], threads, profile)


def _torch_cuda(manifest: Manifest, threads: int, profile: bool, plan: ThreadPlan | None,
                precision: str | None) -> Backend:
    from .torch_cuda_backend import TorchCudaBackend

    return TorchCudaBackend(manifest, profile)


def _tensorrt(manifest: Manifest, threads: int, profile: bool, plan: ThreadPlan | None,
              precision: str | None) -> Backend:
    from .tensorrt_backend import TensorRTBackend

    return TensorRTBackend(manifest, profile)


def _torch(manifest: Manifest, threads: int, profile: bool, plan: ThreadPlan | None,
           precision: str | None) -> Backend:
    from .torch_backend import TorchBackend

    return TorchBackend(manifest, "cpu", threads, profile, plan)


def _openvino(manifest: Manifest, threads: int, profile: bool, plan: ThreadPlan | None,
              precision: str | None) -> Backend:
    from .openvino_backend import OpenVinoBackend

    return OpenVinoBackend(manifest, threads, profile, plan, precision)


def _openvino_reason(manifest: Manifest) -> str | None:
    from .openvino_backend import unavailable_reason as why

    return why()


def _openvino_precision(manifest: Manifest, precision: str) -> str | None:
    from .openvino_backend import precision_reason

    return precision_reason(manifest, precision)


def folder_precision_only(manifest: Manifest, precision: str) -> str | None:
    """The rule of a backend that computes in the folder's precision (FP32, or an INT8 keyframe
    graph): anything else is refused with the way to get it."""
    if precision not in PRECISIONS:
        return f"unknown precision {precision!r}; choose one of: {', '.join(PRECISIONS)}"
    if precision == "bf16":
        return "it has no bf16 path on the CPU; OpenVINO has one: --backend openvino --precision bf16"
    if precision != folder_precision(manifest):
        return _openvino_precision(manifest, precision)
    return None


def _torch_precision(manifest: Manifest, precision: str) -> str | None:
    if precision == "f32":
        return None
    return ("PyTorch runs the checkpoint in FP32 whatever the graphs' precision; use --precision f32, or --backend "
            f"openvino for {precision}")


def _gpu_precision(manifest: Manifest, precision: str) -> str | None:
    return "a GPU backend picks its own precision for the GPU (docs/gpu.md); --precision is for the CPU backends"


@dataclass(frozen=True)
class BackendEntry:
    """One backend: its name, whether it can run here (None, or why not) and how to make it."""

    name: str
    unavailable: Callable[[Manifest], str | None]
    factory: Callable[[Manifest, int, bool, ThreadPlan | None, str | None], Backend]
    gpu: bool  # asynchronous on a GPU: per-stage timing would synchronise it
    #: None if it runs --precision P with this folder here, else why not
    precision_reason: Callable[[Manifest, str], str | None] = folder_precision_only


def _always(manifest: Manifest) -> str | None:
    return None


#: every backend, most preferred first: ``auto`` takes the first that is available and passes
#: the first-use verification (the PyTorch reference last, when nothing faster can be trusted)
REGISTRY: dict[str, BackendEntry] = {e.name: e for e in (
    BackendEntry("tensorrt", _tensorrt_reason, _tensorrt, gpu=True, precision_reason=_gpu_precision),
    BackendEntry("torch-cuda", lambda m: _imported_reason(m) or _torch_cuda_reason(), _torch_cuda, gpu=True, precision_reason=_gpu_precision),
    BackendEntry("onnxruntime-cuda", lambda m: gpu_checks.onnxruntime_cuda_reason(), _onnxruntime_device, gpu=True,
                 precision_reason=_gpu_precision),
    BackendEntry("onnxruntime", _always, _onnxruntime, gpu=False),
    BackendEntry("openvino", _openvino_reason, _openvino, gpu=False, precision_reason=_openvino_precision),
    BackendEntry("torch", _always, _torch, gpu=False, precision_reason=_torch_precision),
)}
PREFERENCE = tuple(REGISTRY)
CHOICES = ("auto", *REGISTRY)
GPU_BACKENDS = tuple(name for name, entry in REGISTRY.items() if entry.gpu)


__all__ = ["Backend", "BackendEntry", "CHOICES", "GPU_BACKENDS", "PREFERENCE", "REGISTRY", "PropagationState", "create_backend",
           "precision_unavailable", "select_backend", "unavailable_reason"]
