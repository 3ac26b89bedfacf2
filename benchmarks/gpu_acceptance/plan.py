"""Which acceptance checks run on this machine, in which order, with what time budget.

Pure: the machine is described by a :class:`Machine` (probed by ``checks.probe``), so the plan
is tested on the CPU for any GPU the project supports.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

TOTAL_BUDGET_S = 480  # the whole run must finish within 8 minutes on one GPU
MIN_TENSORRT_CAPABILITY = (7, 5)


@dataclass(frozen=True)
class Machine:
    """What the checks depend on."""

    gpu: str | None  # name, None without a usable CUDA GPU
    capability: tuple[int, int] | None = None
    driver_cuda: tuple[int, int] | None = None  # CUDA version the driver supports
    torch_cuda: bool = False  # PyTorch was built with CUDA and sees the GPU
    tensorrt: str | None = None  # version, None when not importable
    toolchains: tuple[str, ...] = ()  # installed CUDA compilers (plugins.toolchain)
    clip: bool = False  # the real clip is readable
    pytest: bool = True

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Check:
    """One planned check: its budget (seconds; a timeout for the checks run as subprocesses)
    and, when it cannot run here, why."""

    name: str
    what: str
    budget_s: int
    skip: str | None = None


#: name, what it proves, budget (s); in run order (later checks reuse earlier builds)
CHECKS = (
    ("environment", "device, driver, compute capability, library versions", 10),
    ("kernels-build", "python -m plugins.build for this GPU's architecture (strict, no spills)", 40),
    ("kernels-vs-cpu", "CUDA kernels vs the CPU build on real intermediates of the clip (FP32 and FP16)", 60),
    ("torch-cuda-clip", "torch-cuda end to end on the real clip: labels agree with the FP32 CPU reference on >= 99%", 40),
    ("tensorrt", "TensorRT engines with PLUGIN layers for warp and filter; labels agree with onnxruntime on >= 99%", 100),
    ("pytest-gpu", "python -m pytest -m gpu (plugins and GPU backends)", 100),
    ("fps", "benchmarks.fps on the GPU: 1024x2048, l = 1..5, batches 1, 2, 4", 120),
)


def _skip(name: str, m: Machine) -> str | None:
    """Why check ``name`` cannot run on ``m`` (None: it can)."""
    if name == "environment":
        return None
    if m.gpu is None:
        return "no usable CUDA GPU"
    if name == "kernels-build":
        return None if m.toolchains else "no CUDA compiler (pip install nvidia-cuda-nvrtc-cu12 nvidia-cuda-nvcc-cu12)"
    needs_torch = name in ("kernels-vs-cpu", "torch-cuda-clip", "fps")
    if needs_torch and not m.torch_cuda:
        return "PyTorch has no CUDA here (install the CUDA build of torch 2.13)"
    if name in ("kernels-vs-cpu", "torch-cuda-clip", "tensorrt") and not m.clip:
        return "the real clip is missing (../shared/data/videos/solidWhiteRight.mp4, or pass --clip)"
    if name in ("kernels-vs-cpu", "torch-cuda-clip", "tensorrt", "fps") and not m.toolchains:
        return "no CUDA compiler for the gsvnet kernels (pip install nvidia-cuda-nvrtc-cu12 nvidia-cuda-nvcc-cu12)"
    if name == "tensorrt":
        if m.tensorrt is None:
            return "TensorRT is not installed"
        if m.capability is not None and m.capability < MIN_TENSORRT_CAPABILITY:
            return f"TensorRT 10 needs compute capability 7.5+, this GPU is {m.capability[0]}.{m.capability[1]}"
    if name == "pytest-gpu" and not m.pytest:
        return "pytest is not installed"
    return None


def plan(machine: Machine, budget_s: int = TOTAL_BUDGET_S, only: tuple[str, ...] = ()) -> list[Check]:
    """The checks in run order; those that cannot run here or do not fit ``budget_s`` say why.

    only: names to run (the others are skipped as not requested); empty: all.
    """
    checks, left = [], budget_s
    for name, what, budget in CHECKS:
        why = _skip(name, machine)
        if why is None and only and name not in only and name != "environment":
            why = "not requested (--only)"
        if why is None and budget > left:
            why = f"does not fit the time budget ({left} s left of {budget_s} s, needs {budget} s)"
        if why is None:
            left -= budget
        checks.append(Check(name, what, budget, why))
    runnable = [i for i, c in enumerate(checks) if c.skip is None]
    if runnable and left > 0:  # the last check (the benchmark, which builds the most) gets what is left
        last = checks[runnable[-1]]
        checks[runnable[-1]] = Check(last.name, last.what, last.budget_s + left, None)
    return checks


@dataclass
class Outcome:
    """What a check found: 'pass', 'fail' or 'skip', one line, and its figures."""

    name: str
    status: str
    summary: str
    seconds: float = 0.0
    figures: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)
