"""What every benchmark shares: where the real data and results live, the record of the machine a
run measured on, the dated result files, and the engines folders built once into a cache."""

from __future__ import annotations

import json
import os
import platform
import sys
from datetime import date
from pathlib import Path
from typing import Callable

from gsvnet.provenance import cpu_model

REPO = Path(__file__).resolve().parents[1]
CLIP = REPO.parent / "shared" / "data" / "videos" / "solidWhiteRight.mp4"
CAMVID_TRAIN = REPO.parent / "shared" / "data" / "camvid" / "train"
RESULTS = REPO / "benchmarks" / "results"
CACHE = Path(os.environ.get("GSVNET_BENCH_CACHE", Path.home() / ".cache" / "gsvnet" / "bench-engines"))

# ---- environment -----------------------------------------------------------------------------

def cpu_flags() -> list[str]:
    """The CPU's instruction-set flags from /proc/cpuinfo (sorted; empty where it cannot be read):
    which kernels onnxruntime and PyTorch pick (AVX2, AVX-512, VNNI, AMX) depends on them."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("flags", "Features"):
                return sorted(value.split())
    except OSError:
        pass
    return []


def environment(threads: int) -> dict:
    """The machine a benchmark measured on: CPU model, flags and cores, GPU, library versions."""
    import onnx
    import onnxruntime
    import torch

    import gsvnet

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {"cpu": cpu_model(), "cpu_flags": cpu_flags(), "cores": os.cpu_count(), "threads": threads, "gpu": gpu,
            "python": platform.python_version(), "platform": platform.platform(), "torch": torch.__version__,
            "onnxruntime": onnxruntime.__version__, "onnx": onnx.__version__, "gsvnet": gsvnet.__version__,
            "command": " ".join(["python", "-m", "benchmarks.fps", *sys.argv[1:]])}


def device_slug(env: dict) -> str:
    name = env["gpu"] or env["cpu"]
    keep = "".join(c.lower() if c.isalnum() else "-" for c in name)
    return ("gpu-" if env["gpu"] else "cpu-") + "-".join(filter(None, keep.split("-")))[:40]


def write_result(result: dict, out_dir: Path, env: dict, quick: bool, kind: str = "") -> Path:
    """Write ``OUT_DIR/<date>-[KIND-]<device>[-quick].json`` and return its path (the plot goes
    beside it, same name with .png)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"{date.today().isoformat()}-{kind + '-' if kind else ''}{device_slug(env)}" + ("-quick" if quick else "")
    path = out_dir / f"{stem}.json"
    path.write_text(json.dumps(result, indent=1) + "\n")
    return path


def engines_for(size: tuple[int, int], checkpoint: Path | None, log: Callable[[str], None], precision: str = "fp32",
                calibration: Path | None = None) -> Path:
    """Engines at ``size`` in the benchmark cache (built once, reused while up to date)."""
    from export import BuildOptions, build

    out = CACHE / (f"{size[0]}x{size[1]}" + ("" if precision == "fp32" else f"-{precision}"))
    options = BuildOptions(out=out, size=size, backend="auto", checkpoint=checkpoint, precision=precision,
                           calibration=calibration if precision != "fp32" else None)
    build(options, log=lambda m: log("  " + m))
    return out
