"""Backend selection on GPU machines, without one: what each check sees is replaced by what the
machine would report (a provider list, a session's providers, a GPU's name and compute
capability), and the selection must decide and explain as a user needs it to."""

from __future__ import annotations

import importlib.machinery
import sys
import types

import onnxruntime as ort
import pytest

import runtime.backends as backends
from runtime.backends import gpu_checks, select_backend, unavailable_reason
from runtime.errors import UserError
from tests.export.helpers import make_manifest


class _FallbackSession:
    """What onnxruntime hands back when the CUDA provider is listed but its libraries do not load."""

    def __init__(self, model, options=None, providers=None) -> None:
        self.requested = providers

    def get_providers(self) -> list[str]:
        return ["CPUExecutionProvider"]


def test_onnxruntime_cuda_needs_a_session_that_really_runs_on_cuda(tmp_path, monkeypatch):
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    monkeypatch.setattr(ort, "InferenceSession", _FallbackSession)
    why = unavailable_reason("onnxruntime-cuda", make_manifest(tmp_path / "eng"))
    assert why is not None and "fall back to the CPU" in why and "\n" not in why
    with pytest.raises(UserError, match="backend onnxruntime-cuda is not available here: onnxruntime lists"):
        select_backend("onnxruntime-cuda", make_manifest(tmp_path / "eng2"))


def test_onnxruntime_cuda_is_taken_when_a_session_runs_on_cuda(tmp_path, monkeypatch):
    class CudaSession(_FallbackSession):
        def get_providers(self) -> list[str]:
            return ["CUDAExecutionProvider", "CPUExecutionProvider"]

    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    monkeypatch.setattr(ort, "InferenceSession", CudaSession)
    assert unavailable_reason("onnxruntime-cuda", make_manifest(tmp_path / "eng")) is None


@pytest.mark.parametrize("capability,fast", [((6, 1), False), ((5, 2), False), ((6, 0), True), ((5, 3), True),
                                             ((7, 0), True), ((7, 5), True), ((8, 6), True), ((12, 0), True)])
def test_fast_fp16_by_compute_capability(capability, fast):
    # GTX 1080 Ti / P40 (6.1): FP16 at 1/64 of FP32; GTX 980 (5.2): no FP16 arithmetic; P100 (6.0),
    # Jetson TX1 (5.3), V100 (7.0), T4 (7.5), RTX 3090 (8.6), RTX 5090 (12.0): fast FP16
    assert gpu_checks.fast_fp16(*capability) is fast
    assert gpu_checks.gpu_precision("GPU", *capability)[0] == ("fp16" if fast else "fp32")


def _pascal_machine(monkeypatch, name: str = "NVIDIA GeForce GTX 1080 Ti", capability: tuple[int, int] = (6, 1)) -> None:
    """TensorRT importable, a CUDA GPU of ``capability``, our kernels loading (torch-cuda possible)."""
    from plugins import launcher

    trt = types.ModuleType("tensorrt")
    trt.__spec__ = importlib.machinery.ModuleSpec("tensorrt", None)
    trt.__version__ = "10.13.0.35"
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    monkeypatch.setattr(launcher, "gpu_unavailable_reason", lambda: None)
    monkeypatch.setattr(backends, "gpu_identity", lambda device=0: (name, f"{capability[0]}.{capability[1]}"), raising=False)
    monkeypatch.setattr(backends, "_torch_cuda_reason", lambda: None)
    monkeypatch.setattr(gpu_checks, "torch_gpu", lambda device=None: (name, *capability))


def test_tensorrt_on_a_gpu_older_than_turing_is_refused_in_one_line(tmp_path, monkeypatch):
    _pascal_machine(monkeypatch)
    with pytest.raises(UserError) as info:
        select_backend("tensorrt", make_manifest(tmp_path / "eng"))
    message = str(info.value)
    assert message.startswith("backend tensorrt is not available here: TensorRT 10 needs compute capability 7.5 or newer; "
                              "NVIDIA GeForce GTX 1080 Ti is 6.1")
    assert "--backend torch-cuda" in message and "\n" not in message


def test_auto_on_pascal_picks_torch_cuda_in_fp32_and_says_why(tmp_path, monkeypatch):
    _pascal_machine(monkeypatch)
    name, why = select_backend("auto", make_manifest(tmp_path / "eng"))
    assert name == "torch-cuda"
    assert "FP32: NVIDIA GeForce GTX 1080 Ti (compute capability 6.1) runs FP16 at a small fraction" in why
    assert "tensorrt: TensorRT 10 needs compute capability 7.5" in why and "\n" not in why


def test_auto_on_a_turing_gpu_without_engines_picks_torch_cuda_in_fp16(tmp_path, monkeypatch):
    _pascal_machine(monkeypatch, "Tesla T4", (7, 5))
    monkeypatch.setattr(backends, "check_engines", lambda *a, **k: {})
    monkeypatch.setattr(backends, "current_environment", lambda: None)
    manifest = make_manifest(tmp_path / "eng")
    manifest.data["engines"] = {}
    name, why = select_backend("auto", manifest)
    assert name == "torch-cuda" and "FP16: Tesla T4 (compute capability 7.5) has fast FP16" in why
    assert "tensorrt: the engines folder has no TensorRT engines" in why
