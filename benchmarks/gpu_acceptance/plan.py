"""Which acceptance checks run on this machine, in which order, with what time budget.

Pure: the machine is described by a :class:`Machine` (probed by ``checks.probe``) and what is
built by a :class:`builds.Ledger`, so the plan is tested on the CPU for any GPU the project
supports. A check's budget is its run time plus the estimated time of the engine builds it needs
that no earlier check builds (``builds``); it may run past its budget into the time that no later
check needs (``Check.limit_s``). The run re-plans before every check with the time actually left
and the build times measured so far.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace

from .builds import Build, Ledger

TOTAL_BUDGET_S = 480  # the whole run must finish within 8 minutes on one GPU
MIN_TENSORRT_CAPABILITY = (7, 5)
CLIP_SIZE = (544, 960)  # the real frames' engine size (the clip's 540x960 rounded up to multiples of 8)
FPS_SIZE = (1024, 2048)  # the benchmark's size
PYTEST_SIZE = (136, 240)  # tests/conftest.py ENGINE_SIZE: the GPU tests' own engines


@dataclass(frozen=True)
class Machine:
    """What the checks depend on."""

    gpu: str | None  # name, None without a usable CUDA GPU
    capability: tuple[int, int] | None = None
    driver_cuda: tuple[int, int] | None = None  # CUDA version the driver supports
    torch_cuda: bool = False  # PyTorch was built with CUDA and sees the GPU
    tensorrt: str | None = None  # version, None when not importable
    toolchains: tuple[str, ...] = ()  # installed CUDA compilers (plugins.toolchain)
    frames: bool = False  # real frames are readable (the shipped sample, or the --clip video)
    pytest: bool = True
    torch_version: str | None = None  # torch.__version__ as installed, None when torch does not import

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Check:
    """One planned check and, when it cannot run here, why.

    budget_s: seconds planned for it (its run time + ``build_s``, the estimated building);
    limit_s: the most it may take (its budget + the time no later check needs): a check past it
    stops and reports 'timeout'; 0: its budget.
    """

    name: str
    what: str
    budget_s: int
    skip: str | None = None
    limit_s: int = 0
    build_s: int = 0
    build_basis: str = ""

    @property
    def limit(self) -> int:
        return self.limit_s or self.budget_s


#: name, what it proves, seconds to run it once its engines are built; in run order
CHECKS = (
    ("environment", "device, driver, compute capability, library versions", 10),
    ("kernels-build", "python -m plugins.build for this GPU's architecture (strict, no spills)", 40),
    ("kernels-vs-cpu", "CUDA kernels vs the CPU build on real intermediates of real frames (FP32 and FP16)", 30),
    ("torch-cuda-clip", "torch-cuda end to end on real frames: labels agree with the FP32 CPU reference on >= 99%", 40),
    ("tensorrt", "TensorRT engines with PLUGIN layers for warp and filter; labels agree with onnxruntime on >= 99%", 40),
    ("pytest-gpu", "python -m pytest -m gpu (plugins and GPU backends)", 100),
    ("fps", "benchmarks.fps on the GPU: 1024x2048, l = 1..5, batches 1, 2, 4", 120),
)
#: checks that must run and pass for the verdict PASS
REQUIRED = ("kernels-vs-cpu", "torch-cuda-clip")


def tensorrt_usable(m: Machine) -> bool:
    return m.tensorrt is not None and m.capability is not None and m.capability >= MIN_TENSORRT_CAPABILITY


def needs(name: str, m: Machine) -> tuple[Build, ...]:
    """The engines folders check ``name`` builds (or reuses) before it runs."""
    clip = Build(f"{CLIP_SIZE[0]}x{CLIP_SIZE[1]}", CLIP_SIZE)
    trt = tensorrt_usable(m)
    return {
        "kernels-vs-cpu": (clip,),
        "torch-cuda-clip": (clip,),
        # the same folder: its FP32 graphs are reused, the engines are added
        "tensorrt": (Build(clip.folder, CLIP_SIZE, tensorrt=True, opt_level=1, max_batch=4, backend="tensorrt"),),
        # the session fixtures of tests/runtime/test_gpu_backends.py, in pytest's own temporary folders
        "pytest-gpu": (Build("", PYTEST_SIZE, tensorrt=trt, opt_level=1, max_batch=2, backend="tensorrt" if trt else "onnx"),),
        # what benchmarks.fps builds into its cache (GSVNET_BENCH_CACHE=OUT/engines): built first, measured, then reused
        "fps": (Build(f"{FPS_SIZE[0]}x{FPS_SIZE[1]}", FPS_SIZE, tensorrt=trt, opt_level=3, max_batch=4, backend="auto"),),
    }.get(name, ())


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
        if m.torch_version is None:
            return "PyTorch does not import here (install a CUDA build of torch)"
        release = m.torch_version.split("+")[0]
        return f"PyTorch {m.torch_version} has no CUDA here (install the CUDA build of torch {release})"
    if name in ("kernels-vs-cpu", "torch-cuda-clip", "tensorrt") and not m.frames:
        return "no real frames: gsvnet/samples/road.npz is missing from this tree (restore it, or pass --clip VIDEO)"
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


def plan(machine: Machine, budget_s: int = TOTAL_BUDGET_S, only: tuple[str, ...] = (), ledger: Ledger | None = None,
         done: tuple[str, ...] = ()) -> list[Check]:
    """The checks not in ``done``, in run order; those that cannot run here or do not fit
    ``budget_s`` seconds say why.

    only: names to run (the others are skipped as not requested); empty: all. ledger: what is
    built and the build times measured so far (default: nothing built, documented estimates).
    """
    ledger = ledger if ledger is not None else Ledger()
    checks, left, counted = [], budget_s, set()
    for name, what, run_s in CHECKS:
        if name in done:
            continue
        why = _skip(name, machine)
        if why is None and only and name not in only and name != "environment":
            why = "not requested (--only)"
        charged = set(counted)
        build_s = math.ceil(sum(ledger.estimate(b, charged) for b in needs(name, machine))) if why is None else 0
        need = run_s + build_s
        if why is None and need > left:
            building = f" + {build_s} s to build its engines ({ledger.basis()})" if build_s else ""
            why = (f"does not fit the time budget ({left} s left of {budget_s} s, needs {run_s} s to run{building}; "
                   "--budget raises it)")
        if why is None:
            left, counted = left - need, charged
        checks.append(Check(name, what, need, why, build_s=build_s if why is None else 0,
                            build_basis=ledger.basis() if build_s and why is None else ""))
    # what no check needs is spare: any check may run into it (the first to need it gets it)
    return [replace(c, limit_s=c.budget_s + left) if c.skip is None else c for c in checks]


@dataclass
class Outcome:
    """What a check found: 'pass', 'fail', 'timeout' (it ran out of time: no verdict on the code)
    or 'skip', one line, and its figures."""

    name: str
    status: str
    summary: str
    seconds: float = 0.0
    figures: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)
