"""What the GPU backends need from this machine, checked for real rather than assumed.

- onnxruntime lists CUDAExecutionProvider even when the CUDA/cuDNN libraries it needs are
  missing, and then silently runs a session on the CPU (microsoft/onnxruntime#21825): a probe
  session must report CUDA in ``get_providers()``.
- Precision on a GPU: FP16 where the GPU has fast FP16 arithmetic; FP32 where FP16 runs at a
  small fraction of the FP32 rate (consumer Pascal, sm_61, e.g. GTX 1080 Ti: 1/64) or has no
  FP16 arithmetic (Maxwell sm_50/52). Fast FP16: sm_53, sm_60, sm_62 and sm_70 and newer
  (NVIDIA CUDA C++ Programming Guide, "Arithmetic Instructions" throughput table).
"""

from __future__ import annotations

from ..errors import first_line

#: compute capabilities below 7.0 with full-rate (2x FP32) FP16: Tegra X1, P100, Tegra X2
FAST_FP16_BEFORE_VOLTA = {(5, 3), (6, 0), (6, 2)}


def _probe_model() -> bytes:
    """A one-node ONNX graph (Identity on float[1]) to open a session with."""
    import onnx
    from onnx import helper

    value = lambda name: helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, [1])  # noqa: E731
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "probe", [value("x")], [value("y")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]).SerializeToString()


def onnxruntime_cuda_reason() -> str | None:
    """None when an onnxruntime session really runs on CUDAExecutionProvider here, else why not."""
    import onnxruntime as ort

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        return "onnxruntime has no CUDAExecutionProvider (install onnxruntime-gpu)"
    options = ort.SessionOptions()
    options.log_severity_level = 4  # the fallback is reported here, in one line
    try:
        session = ort.InferenceSession(_probe_model(), options, providers=["CUDAExecutionProvider", "CPUExecutionProvider"])
    except Exception as e:
        return f"onnxruntime's CUDAExecutionProvider does not start ({first_line(e)})"
    if "CUDAExecutionProvider" not in session.get_providers():
        return ("onnxruntime lists CUDAExecutionProvider but its sessions fall back to the CPU (CUDA or cuDNN libraries "
                "missing or of another version; install the ones onnxruntime-gpu was built for)")
    return None


def fast_fp16(major: int, minor: int) -> bool:
    """True when a GPU of compute capability major.minor runs FP16 at least as fast as FP32."""
    return (major, minor) >= (7, 0) or (major, minor) in FAST_FP16_BEFORE_VOLTA


def gpu_precision(name: str, major: int, minor: int) -> tuple[str, str]:
    """('fp16' or 'fp32', why) for the torch-cuda backend on this GPU."""
    if fast_fp16(major, minor):
        return "fp16", f"{name} (compute capability {major}.{minor}) has fast FP16"
    return "fp32", (f"{name} (compute capability {major}.{minor}) runs FP16 at a small fraction of its FP32 rate, "
                    "so FP32 is faster")


def torch_gpu(device: int | None = None) -> tuple[str, int, int]:
    """(name, major, minor) of the CUDA device PyTorch uses (default: its current device)."""
    import torch

    index = torch.cuda.current_device() if device is None else device
    major, minor = torch.cuda.get_device_capability(index)
    return torch.cuda.get_device_name(index), int(major), int(minor)
