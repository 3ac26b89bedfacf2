"""The acceptance checks themselves (they need a GPU; planning and reporting are tested on the CPU).

Every check returns an :class:`Outcome`; an exception inside a check is a 'fail' with its first
line, never a crash of the whole run, and a check that runs past its time limit is a 'timeout'
(no verdict on the code). Builds and long checks run as subprocesses (``context.Context``).
"""

from __future__ import annotations

import json
import platform
import re
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np

from runtime.errors import first_line

from .context import Context, TimedOut
from .plan import CLIP_SIZE, FPS_SIZE, Check, Machine, Outcome, needs

INTERVAL = 4  # keyframe interval of the end-to-end checks
AGREEMENT = 0.99  # labels that must agree with the reference
TOL = {"float32": 1e-5, "float16": 2e-3}  # max |gpu - cpu| / max |cpu|, as tests/plugins


# ---- the machine ---------------------------------------------------------------------------------

def probe(clip: Path | None) -> Machine:
    """What this machine offers the checks (imports nothing that needs a GPU to succeed). clip: the
    --clip video, None for the frames shipped in gsvnet/samples."""
    from gsvnet.samples import SAMPLE
    from plugins import launcher, toolchain

    gpu = capability = driver = None
    if launcher.gpu_unavailable_reason() is None:
        from engine_format.compat import gpu_identity

        gpu, cc = gpu_identity()
        capability = tuple(int(v) for v in cc.split(".")[:2])
        driver = launcher.driver_version()
    try:
        import torch

        torch_cuda, torch_version = bool(torch.cuda.is_available()), str(torch.__version__)
    except Exception:
        torch_cuda, torch_version = False, None
    try:
        import tensorrt

        trt_version = tensorrt.__version__
    except Exception:
        trt_version = None
    import importlib.util

    return Machine(gpu, capability, driver, torch_cuda, trt_version, tuple(t.describe() for t in toolchain.available()),
                   (SAMPLE if clip is None else clip).is_file(), importlib.util.find_spec("pytest") is not None,
                   torch_version)


def _version(module: str) -> str | None:
    try:
        from importlib.metadata import version

        return version(module)
    except Exception:
        return None


def environment(machine: Machine) -> dict:
    """Device, driver and every library version the figures depend on."""
    driver = None
    if shutil.which("nvidia-smi"):
        proc = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                              capture_output=True, text=True, timeout=30)
        driver = proc.stdout.strip().splitlines()[0] if proc.returncode == 0 and proc.stdout.strip() else None
    torch_info = {}
    try:
        import torch

        torch_info = {"torch": torch.__version__, "torch_cuda": torch.version.cuda,
                      "cudnn": torch.backends.cudnn.version() if machine.torch_cuda else None}
    except Exception:
        pass
    return {**machine.to_dict(), "driver": driver, **torch_info, "onnxruntime": _version("onnxruntime"),
            "cuda_bindings": _version("cuda-bindings"), "polygraphy": _version("polygraphy"),
            "python": platform.python_version(), "platform": platform.platform()}


# ---- shared pieces ---------------------------------------------------------------------------------

def _labels(backend, frames: list[np.ndarray]) -> np.ndarray:
    from runtime.schedule import KeyframeScheduler

    return np.concatenate([r.labels for r in KeyframeScheduler(backend, INTERVAL, label_size=CLIP_SIZE).run(iter(frames))])


def _engines(ctx: Context, check: Check, machine: Machine, deadline: float) -> Path:
    """The engines folder the check needs, built (or reused) leaving the check its run time."""
    run_s = check.budget_s - check.build_s
    folders = [ctx.build(b, deadline - run_s) for b in needs(check.name, machine)]
    return folders[-1]


def _last_line(out: str) -> str:
    return next((l for l in reversed(out.strip().splitlines()) if l.strip()), "")


# ---- the checks --------------------------------------------------------------------------------------

def kernels_build(ctx: Context, check: Check, machine: Machine, deadline: float) -> Outcome:
    arch = f"sm_{machine.capability[0]}{machine.capability[1]}"
    rc, out = ctx.command(check.name, ["-m", "plugins.build", "--arch", arch, "--table"], deadline)
    line = next((l for l in out.splitlines() if l.startswith("plugins.build:")), _last_line(out))
    return Outcome(check.name, "pass" if rc == 0 else "fail", f"{arch}: {line}",
                   figures={"arch": arch, "exit": rc, "output": out})


def kernels_vs_cpu(ctx: Context, check: Check, machine: Machine, deadline: float) -> Outcome:
    """The CUDA kernels and the CPU build on the same real intermediates (warp + labels, edge map
    from labels, chunk filter), FP32 and FP16 storage."""
    import torch

    from engine_format.manifest import load_manifest
    from plugins import cpu
    from plugins.launcher import kernels
    from runtime.backends import create_backend

    manifest = load_manifest(_engines(ctx, check, machine, deadline))
    ref = create_backend("torch", manifest, profile=False)
    f0, f1 = ctx.frames()[:2]
    with torch.no_grad():
        state = ref.keyframe_step(f0)
        small = ref.run("downsample", torch.from_numpy(f1))
        flow = ref.run("flow", small, state.small)
        warped = ref.run("warp", state.scores, flow)
        intra = ref.run("intra", small)
        weights = ref.run("guide", intra, warped)
    arrays = {k: v.numpy().astype(np.float32) for k, v in
              {"scores": state.scores, "flow": flow, "warped": warped, "intra": intra, "weights": weights}.items()}
    n, c, h, w = arrays["scores"].shape
    radius = manifest.model["radius"]
    k = kernels()
    stream = torch.cuda.current_stream().cuda_stream
    figures, ok = {"shape": [n, c, h, w], "radius": radius, "kernels": k.describe(), "frames": ctx.frames_source}, True
    for dtype in ("float32", "float16"):
        half = dtype == "float16"
        host = {name: (a if name == "flow" else a.astype(dtype)) for name, a in arrays.items()}
        dev = {name: torch.from_numpy(a).cuda() for name, a in host.items()}
        out = torch.empty_like(dev["scores"])
        labels = torch.empty((n, h, w), dtype=torch.int32, device="cuda")
        edge = torch.empty((n, 1, h, w), dtype=torch.float32, device="cuda")
        filtered = torch.empty_like(dev["warped"])
        k.warp_by_flow(dev["scores"].data_ptr(), dev["flow"].data_ptr(), out.data_ptr(), n, c, h, w, half=half,
                       labels=labels.data_ptr(), stream=stream)
        k.edge_map_from_labels(labels.data_ptr(), edge.data_ptr(), n, h, w, stream=stream)
        k.chunk_filter(dev["warped"].data_ptr(), dev["intra"].data_ptr(), dev["weights"].data_ptr(), filtered.data_ptr(),
                       n, c, h, w, radius, half=half, stream=stream)
        torch.cuda.synchronize()
        cpu_out, cpu_labels = cpu.warp_by_flow(host["scores"], host["flow"], with_labels=True)
        cpu_filtered = cpu.chunk_filter(host["warped"], host["intra"], host["weights"], radius)
        got = {"warp": out.cpu().numpy(), "filter": filtered.cpu().numpy()}
        want = {"warp": cpu_out, "filter": cpu_filtered}
        for op in ("warp", "filter"):
            diff = np.abs(got[op].astype(np.float64) - want[op].astype(np.float64)).max()
            rel = float(diff / max(np.abs(want[op].astype(np.float64)).max(), 1e-12))
            figures[f"{op}_{dtype}"] = {"max_abs": float(diff), "rel": rel, "tolerance": TOL[dtype]}
            ok &= rel < TOL[dtype]
        label_agree = float(np.mean(labels.cpu().numpy() == cpu_labels))
        edge_agree = float(np.mean(edge.cpu().numpy() == cpu.edge_map_from_labels(labels.cpu().numpy())))
        figures[f"labels_{dtype}"] = {"agree_with_cpu_build": label_agree, "edge_from_same_labels_agree": edge_agree}
        ok &= label_agree >= 0.999 and edge_agree == 1.0
    summary = ", ".join(f"{op} {d[:-2].replace('float', 'f')} rel {figures[f'{op}_{d}']['rel']:.1e}"
                        for d in ("float32", "float16") for op in ("warp", "filter"))
    return Outcome(check.name, "pass" if ok else "fail", f"{summary}; labels {figures['labels_float16']['agree_with_cpu_build']:.4%}",
                   figures=figures)


def torch_cuda_clip(ctx: Context, check: Check, machine: Machine, deadline: float) -> Outcome:
    """torch-cuda's labels against the FP32 CPU reference on the real frames, and its first-use
    verification (runtime.verification) as a user's first run does it."""
    from engine_format.manifest import load_manifest
    from runtime.backends import create_backend
    from runtime.verification import verify_backend

    manifest = load_manifest(_engines(ctx, check, machine, deadline))
    frames = ctx.frames()
    reference = _labels(create_backend("torch", manifest, profile=False), frames)
    backend = create_backend("torch-cuda", manifest, profile=False)
    agreement = float(np.mean(_labels(backend, frames) == reference))
    verdict = verify_backend(backend, "force", log=ctx.log)
    figures = {"agreement": agreement, "frames": len(frames), "frames_source": ctx.frames_source, "interval": INTERVAL,
               "backend": backend.describe(), "precision": backend.precision, "first_use_verification": verdict.line()}
    ok = agreement >= AGREEMENT and verdict.status == "passed"
    return Outcome(check.name, "pass" if ok else "fail",
                   f"{agreement:.4%} of pixels agree with the FP32 CPU reference over {len(frames)} frames "
                   f"({backend.precision.upper()}); {verdict.line()}", figures=figures)


def tensorrt(ctx: Context, check: Check, machine: Machine, deadline: float) -> Outcome:
    from engine_format.manifest import load_manifest
    from runtime.backends import create_backend

    manifest = load_manifest(_engines(ctx, check, machine, deadline))
    plugins = {s: (manifest.engines[s].get("plugins") or {}) for s in ("warp", "filter")}
    layers = {s: p.get("engine_layers", []) for s, p in plugins.items()}
    frames = ctx.frames()
    backend = create_backend("tensorrt", manifest, profile=False)
    agreement = float(np.mean(_labels(backend, frames) == _labels(create_backend("onnxruntime", manifest, profile=False), frames)))
    ok = all(layers.values()) and agreement >= AGREEMENT and backend.graph_error is None
    figures = {"build_seconds": {s: e.get("build_seconds") for s, e in manifest.engines.items()}, "plugin_layers": layers,
               "plugin_mode": {s: p.get("mode") for s, p in plugins.items()}, "agreement_vs_onnxruntime": agreement,
               "backend": backend.describe(), "graph_error": backend.graph_error}
    return Outcome(check.name, "pass" if ok else "fail",
                   f"PLUGIN layers warp {layers['warp']}, filter {layers['filter']}; labels {agreement:.4%} vs onnxruntime",
                   figures=figures)


def pytest_gpu(ctx: Context, check: Check, machine: Machine, deadline: float) -> Outcome:
    rc, out = ctx.command(check.name, ["-m", "pytest", "-q", "-m", "gpu", "-p", "no:cacheprovider", "tests/plugins",
                                       "tests/runtime/test_gpu_backends.py"], deadline)
    counts = {k: int(v) for v, k in re.findall(r"(\d+) (passed|failed|skipped|error)", out)}
    ok = rc == 0 and counts.get("passed", 0) > 0
    summary = ", ".join(f"{v} {k}" for k, v in counts.items()) or f"exit {rc}"
    return Outcome(check.name, "pass" if ok else "fail", summary, figures={"exit": rc, "counts": counts, "output": out})


def fps(ctx: Context, check: Check, machine: Machine, deadline: float) -> Outcome:
    """benchmarks.fps at FPS_SIZE on the engines built (and timed) beforehand under OUT/engines."""
    _engines(ctx, check, machine, deadline)
    out_dir = ctx.out / "fps"
    size = f"{FPS_SIZE[0]}x{FPS_SIZE[1]}"
    rc, out = ctx.command(check.name, ["-m", "benchmarks.fps", "--size", size, "--backends", "auto", "--intervals", "1,2,3,4,5",
                                       "--iterations", "5", "--warmup", "2", "--frames", "20", "--repeats", "1",
                                       "--scaling-sizes", size, "--batches", "1,2,4", "--out-dir", str(out_dir)],
                          deadline, env={"GSVNET_BENCH_CACHE": str(ctx.engines_root)})
    written = sorted(out_dir.glob("*.json")) if out_dir.is_dir() else []
    if rc != 0 or not written:
        return Outcome(check.name, "fail", f"exit {rc}: {_last_line(out)}", figures={"output": out})
    result = json.loads(written[-1].read_text())
    e2e = {b: {l: v["median"] for l, v in per_l.items()} for b, per_l in result["end_to_end"].items()}
    scaling = [{"size": s["size"], "batch": s["batch"], "ms": {b: {k: v["median"] for k, v in m.items()} for b, m in s["ms"].items()}}
               for s in result.get("scaling", [])]
    best = max(((b, v) for b, per_l in e2e.items() for v in per_l.values()), key=lambda x: x[1])
    return Outcome(check.name, "pass", f"best {best[1]:.1f} FPS ({best[0]}) at {size}; baseline {result['baseline']}",
                   figures={"end_to_end_fps": e2e, "scaling_ms": scaling, "stages_ms": {b: {s: v["median"] for s, v in st.items()}
                            for b, st in result["stages"].items()}, "stages_caveats": result.get("stage_caveats", {}),
                            "precision": result.get("precision"), "frames_source": result.get("frames_source"),
                            "fps_json": str(written[-1])})


RUNNERS = {"kernels-build": kernels_build, "kernels-vs-cpu": kernels_vs_cpu, "torch-cuda-clip": torch_cuda_clip,
           "tensorrt": tensorrt, "pytest-gpu": pytest_gpu, "fps": fps}


def run(check: Check, ctx: Context, machine: Machine) -> Outcome:
    """Run one planned check within ``check.limit`` seconds, timing it; a skip, an exception or
    running out of time becomes its Outcome."""
    if check.skip:
        return Outcome(check.name, "skip", check.skip)
    started = time.monotonic()
    try:
        outcome = RUNNERS[check.name](ctx, check, machine, started + check.limit)
    except TimedOut as e:
        spare = check.limit - check.budget_s
        building = f" + {check.build_s} s to build ({check.build_basis})" if check.build_s else ""
        outcome = Outcome(check.name, "timeout",
                          f"{e}; the check had {check.limit} s ({check.budget_s - check.build_s} s to run{building} + "
                          f"{spare} s spare); a rerun with the same --out reuses what was built",
                          figures={"limit_s": check.limit, "budget_s": check.budget_s, "build_s": check.build_s,
                                   "build_basis": check.build_basis, "command_limit_s": round(e.limit_s)})
    except Exception as e:  # one check failing must not stop the others
        outcome = Outcome(check.name, "fail", first_line(e))
    outcome.seconds = round(time.monotonic() - started, 1)
    return outcome
