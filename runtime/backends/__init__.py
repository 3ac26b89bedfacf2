"""Backend selection: which implementations exist here, and which one ``auto`` picks and why."""

from __future__ import annotations

import importlib.util
from typing import Callable

from export.manifest import Manifest

from ..errors import UserError
from .base import Backend, State

#: most preferred first; ``auto`` takes the first available one
PREFERENCE = ("tensorrt", "torch-cuda", "onnxruntime-cuda", "onnxruntime")
CHOICES = ("auto", "tensorrt", "torch-cuda", "onnxruntime-cuda", "onnxruntime", "torch")


def _cuda_gpu() -> str | None:
    """None if a CUDA GPU is usable from torch, else why not."""
    import torch

    if not torch.cuda.is_available():
        return "no CUDA GPU is visible to PyTorch"
    return None


def unavailable_reason(name: str, manifest: Manifest) -> str | None:
    """None if ``name`` can run here with these engines, else a short reason why not."""
    if name in ("onnxruntime", "torch"):
        return None
    if name == "onnxruntime-cuda":
        import onnxruntime as ort

        if "CUDAExecutionProvider" not in ort.get_available_providers():
            return "onnxruntime has no CUDAExecutionProvider (install onnxruntime-gpu)"
        return None
    if name == "torch-cuda":
        return _cuda_gpu()
    if name == "tensorrt":
        if importlib.util.find_spec("tensorrt") is None:
            return "TensorRT is not installed"
        if (why := _cuda_gpu()) is not None:
            return why
        if not manifest.engines:
            return "the engines folder has no TensorRT engines (build with --backend tensorrt)"
        return None
    raise UserError(f"unknown backend {name!r}; choose one of: {', '.join(CHOICES)}")


def select_backend(requested: str, manifest: Manifest) -> tuple[str, str]:
    """(backend name, why) for ``--backend requested``; raises UserError if it cannot run."""
    if requested != "auto":
        why = unavailable_reason(requested, manifest)
        if why is not None:
            raise UserError(f"backend {requested} is not available here: {why}; try --backend auto")
        return requested, "asked for"
    skipped = []
    for name in PREFERENCE:
        why = unavailable_reason(name, manifest)
        if why is None:
            reason = "best available" + (f" ({'; '.join(skipped)})" if skipped else "")
            return name, reason
        skipped.append(f"{name}: {why}")
    raise UserError("no backend can run here: " + "; ".join(skipped))


def create_backend(name: str, manifest: Manifest, threads: int = 0, profile: bool = True) -> Backend:
    """Instantiate backend ``name`` (use ``select_backend`` first to resolve ``auto``)."""
    factories: dict[str, Callable[[], Backend]] = {
        "onnxruntime": lambda: _onnxruntime(manifest, ["CPUExecutionProvider"], threads, profile),
        "onnxruntime-cuda": lambda: _onnxruntime(manifest, ["CUDAExecutionProvider", "CPUExecutionProvider"], threads, profile),
        "torch": lambda: _torch(manifest, "cpu", threads, profile),
    }
    if name not in factories:
        raise UserError(f"backend {name} is not implemented in this build; choose one of: {', '.join(sorted(factories))}")
    return factories[name]()


def _onnxruntime(manifest: Manifest, providers: list[str], threads: int, profile: bool) -> Backend:
    from .onnxruntime_backend import OnnxRuntimeBackend

    return OnnxRuntimeBackend(manifest, providers, threads, profile)


def _torch(manifest: Manifest, device: str, threads: int, profile: bool) -> Backend:
    from .torch_backend import TorchBackend

    return TorchBackend(manifest, device, threads, profile)


__all__ = ["Backend", "CHOICES", "State", "create_backend", "select_backend", "unavailable_reason"]
