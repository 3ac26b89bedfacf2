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


CU126 = ["sm_50", "sm_60", "sm_70", "sm_75", "sm_80", "sm_86", "sm_90"]  # torch.cuda.get_arch_list() of the cu126 wheels
CU128 = ["sm_75", "sm_80", "sm_86", "sm_90", "sm_100", "sm_120"]
CU130 = ["sm_75", "sm_80", "sm_86", "sm_90", "sm_100", "sm_110", "sm_120", "compute_120"]


@pytest.mark.parametrize("arch_list,capability,runs", [
    (CU126, (6, 1), True),  # sm_60 cubins run on sm_61 (same major, lower minor)
    (CU128, (6, 1), False), (CU130, (6, 1), False),  # GTX 1080 Ti: no kernel image
    (CU128, (7, 0), False), (CU126, (7, 0), True),  # V100
    (CU128, (8, 9), True),  # RTX 4090: sm_86 cubins
    (CU130, (12, 1), True),  # sm_120 cubin
    (["sm_90a"], (9, 0), True), (["sm_90a"], (9, 1), False),  # arch-specific cubins run on their own capability only
    (["sm_80", "compute_80"], (9, 0), True),  # PTX is JIT-compiled for newer GPUs
    (["sm_80", "compute_80"], (7, 5), False),  # but never for older ones
])
def test_torch_kernels_for_a_gpu_by_arch_list(arch_list, capability, runs):
    assert gpu_checks.runs_on(arch_list, *capability) is runs
    why = gpu_checks.torch_arch_reason(arch_list, "GPU", *capability, "2.13.0+cu128")
    assert (why is None) is runs


def test_pascal_with_a_cu128_wheel_is_refused_naming_the_cu126_wheel():
    why = gpu_checks.torch_arch_reason(CU128, "NVIDIA GeForce GTX 1080 Ti", 6, 1, "2.13.0+cu128")
    assert why == ("PyTorch 2.13.0+cu128 has no kernels for NVIDIA GeForce GTX 1080 Ti (compute capability 6.1; it is "
                   "built for sm_75, sm_80, sm_86, sm_90, sm_100, sm_120): pip install torch==2.13.0 --index-url "
                   "https://download.pytorch.org/whl/cu126 (cu126, the last CUDA build with kernels for GPUs before Turing)")


def test_auto_on_pascal_with_a_cu128_torch_falls_back_to_the_cpu(tmp_path, monkeypatch):
    import torch

    from plugins import launcher

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_arch_list", lambda: list(CU128))
    monkeypatch.setattr(torch, "__version__", "2.13.0+cu128")
    monkeypatch.setattr(gpu_checks, "torch_gpu", lambda device=None: ("NVIDIA GeForce GTX 1080 Ti", 6, 1))
    loaded = []
    monkeypatch.setattr(launcher, "kernels", lambda device=0: loaded.append(device))  # never reached
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CPUExecutionProvider"])
    manifest = make_manifest(tmp_path / "eng")
    why = unavailable_reason("torch-cuda", manifest)
    assert why is not None and "--index-url https://download.pytorch.org/whl/cu126" in why and "\n" not in why
    name, reason = select_backend("auto", manifest)
    assert name == "onnxruntime" and f"torch-cuda: {why}" in reason and loaded == []
