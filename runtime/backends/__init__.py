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
from .base import Backend, PropagationState

def _cuda_gpu() -> str | None:
    """None if a CUDA GPU is usable from torch, else why not."""
    import torch

    if not torch.cuda.is_available():
        return "no CUDA GPU is visible to PyTorch"
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


def precision_note(name: str, manifest: Manifest | None = None) -> str:
    """How backend ``name`` computes on this machine, e.g. 'FP32: NVIDIA GeForce GTX 1080 Ti
    (compute capability 6.1) runs FP16 at a small fraction of its FP32 rate, so FP32 is faster'."""
    int8 = manifest is not None and manifest.graphs.get("keyframe", {}).get("precision") == "int8"
    if int8 and name in ("onnxruntime", "onnxruntime-cuda"):
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


def select_backend(requested: str, manifest: Manifest) -> tuple[str, str]:
    """(backend name, why) for ``--backend requested``; raises UserError if it cannot run.
    ``why`` names the precision and, for ``auto``, why each preferred backend was skipped."""
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
                   plan: ThreadPlan | None = None) -> Backend:
    """Instantiate backend ``name`` (runtime.loading.load_backend resolves ``auto`` and verifies it).

    threads: CPU threads of every graph (0: the library's default); ``plan`` (the CPU backends;
    runtime.calibration.thread_plan) instead gives each graph its own count for a pipelined run.
    """
    if name not in REGISTRY:
        raise UserError(f"backend {name} is not implemented in this build; choose one of: {', '.join(REGISTRY)}")
    return REGISTRY[name].factory(manifest, threads, profile, plan)


def _onnxruntime(manifest: Manifest, threads: int, profile: bool, plan: ThreadPlan | None) -> Backend:
    from .onnxruntime_backend import OnnxRuntimeBackend

    return OnnxRuntimeBackend(manifest, ["CPUExecutionProvider"], threads, profile, plan)


def _onnxruntime_device(manifest: Manifest, threads: int, profile: bool, plan: ThreadPlan | None) -> Backend:
    from .onnxruntime_device_backend import OnnxRuntimeDeviceBackend

    return OnnxRuntimeDeviceBackend(manifest, ["CUDAExecutionProvider", "CPUExecutionProvider"], threads, profile)


def _torch_cuda(manifest: Manifest, threads: int, profile: bool, plan: ThreadPlan | None) -> Backend:
    from .torch_cuda_backend import TorchCudaBackend

    return TorchCudaBackend(manifest, profile)


def _tensorrt(manifest: Manifest, threads: int, profile: bool, plan: ThreadPlan | None) -> Backend:
    from .tensorrt_backend import TensorRTBackend

    return TensorRTBackend(manifest, profile)


def _torch(manifest: Manifest, threads: int, profile: bool, plan: ThreadPlan | None) -> Backend:
    from .torch_backend import TorchBackend

    return TorchBackend(manifest, "cpu", threads, profile, plan)


@dataclass(frozen=True)
class BackendEntry:
    """One backend: its name, whether it can run here (None, or why not) and how to make it."""

    name: str
    unavailable: Callable[[Manifest], str | None]
    factory: Callable[[Manifest, int, bool, ThreadPlan | None], Backend]
    gpu: bool  # asynchronous on a GPU: per-stage timing would synchronise it


def _always(manifest: Manifest) -> str | None:
    return None


#: every backend, most preferred first: ``auto`` takes the first that is available and passes
#: the first-use verification (the PyTorch reference last, when nothing faster can be trusted)
REGISTRY: dict[str, BackendEntry] = {e.name: e for e in (
    BackendEntry("tensorrt", _tensorrt_reason, _tensorrt, gpu=True),
    BackendEntry("torch-cuda", lambda m: _torch_cuda_reason(), _torch_cuda, gpu=True),
    BackendEntry("onnxruntime-cuda", lambda m: gpu_checks.onnxruntime_cuda_reason(), _onnxruntime_device, gpu=True),
    BackendEntry("onnxruntime", _always, _onnxruntime, gpu=False),
    BackendEntry("torch", _always, _torch, gpu=False),
)}
PREFERENCE = tuple(REGISTRY)
CHOICES = ("auto", *REGISTRY)
GPU_BACKENDS = tuple(name for name, entry in REGISTRY.items() if entry.gpu)


__all__ = ["Backend", "BackendEntry", "CHOICES", "GPU_BACKENDS", "PREFERENCE", "REGISTRY", "PropagationState", "create_backend",
           "select_backend", "unavailable_reason"]
