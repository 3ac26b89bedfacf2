"""What the GPU backends need from this machine, checked for real rather than assumed.

- onnxruntime lists CUDAExecutionProvider even when the CUDA/cuDNN libraries it needs are
  missing, and then silently runs a session on the CPU (microsoft/onnxruntime#21825): a probe
  session must report CUDA in ``get_providers()``.
- Precision on a GPU: FP16 where the GPU has fast FP16 arithmetic; FP32 where FP16 runs at a
  small fraction of the FP32 rate (consumer Pascal, sm_61, e.g. GTX 1080 Ti: 1/64) or has no
  FP16 arithmetic (Maxwell sm_50/52). Fast FP16: sm_53, sm_60, sm_62 and sm_70 and newer
  (NVIDIA CUDA C++ Programming Guide, "Arithmetic Instructions" throughput table).
- PyTorch's kernels: a wheel runs on a GPU only if ``torch.cuda.get_arch_list()`` has a cubin of
  the same major architecture and a lower or equal minor one, or PTX for an architecture <= the
  GPU's. PyTorch's cu128, cu129 and cu130 wheels have none for Pascal (sm_6x): torch.cuda still
  reports the GPU, and the first convolution fails with "no kernel image is available". cu126 is
  the last CUDA build with sm_50, sm_60 (which also runs on sm_61) and sm_70.
"""

from __future__ import annotations

import re

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


#: the PyTorch wheel index of the last CUDA build with kernels for GPUs before Turing (sm_5x..sm_70)
PRE_TURING_TORCH_INDEX = "https://download.pytorch.org/whl/cu126"


def runs_on(arch_list: list[str], major: int, minor: int) -> bool:
    """True when kernels built for ``arch_list`` (``torch.cuda.get_arch_list()``: 'sm_61',
    'sm_90a', 'compute_90') run on a GPU of compute capability major.minor: a cubin of the same
    major and a minor <= the GPU's (an arch-specific 'a'/'f' cubin only on its own capability), or
    PTX for an architecture <= the GPU's (JIT-compiled by the driver)."""
    for arch in arch_list:
        match = re.fullmatch(r"(sm|compute)_(\d+)([a-z]?)", arch.strip())
        if not match:
            continue
        number, suffix = int(match.group(2)), match.group(3)
        cap = (number // 10, number % 10)
        if match.group(1) == "compute" and not suffix and cap <= (major, minor):
            return True
        if match.group(1) == "sm" and cap[0] == major and (cap[1] == minor if suffix else cap[1] <= minor):
            return True
    return False


def torch_arch_reason(arch_list: list[str], name: str, major: int, minor: int, torch_version: str) -> str | None:
    """One line when PyTorch ``torch_version`` (built for ``arch_list``) has no kernels for GPU
    ``name`` of compute capability major.minor, naming the wheel that has them; None when it runs."""
    if not arch_list or runs_on(arch_list, major, minor):
        return None  # an empty list: a build that does not say (then the kernels' own check decides)
    release = torch_version.split("+")[0]
    built = ", ".join(arch_list)
    if (major, minor) < (7, 5):
        fix = (f"pip install torch=={release} --index-url {PRE_TURING_TORCH_INDEX} (cu126, the last CUDA build with "
               "kernels for GPUs before Turing)")
    else:
        fix = "install a PyTorch CUDA build that lists this architecture in torch.cuda.get_arch_list()"
    return (f"PyTorch {torch_version} has no kernels for {name} (compute capability {major}.{minor}; it is built for "
            f"{built}): {fix}")


def torch_kernels_reason(device: int | None = None) -> str | None:
    """``torch_arch_reason`` for the CUDA device PyTorch uses (default: its current device)."""
    import torch

    name, major, minor = torch_gpu(device)
    return torch_arch_reason(list(torch.cuda.get_arch_list()), name, major, minor, torch.__version__)


def torch_gpu(device: int | None = None) -> tuple[str, int, int]:
    """(name, major, minor) of the CUDA device PyTorch uses (default: its current device)."""
    import torch

    index = torch.cuda.current_device() if device is None else device
    major, minor = torch.cuda.get_device_capability(index)
    return torch.cuda.get_device_name(index), int(major), int(minor)


def gpu_driver() -> str:
    """The CUDA version the installed driver supports ('12.8'), or why it is unknown."""
    try:
        from plugins.launcher import driver_version

        major, minor = driver_version()
        return f"{major}.{minor}"
    except Exception as e:  # no driver library: the verdict is then keyed on that
        return f"unknown ({type(e).__name__})"
