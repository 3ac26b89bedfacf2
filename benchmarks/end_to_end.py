"""End to end: frames per second of exactly what users run (``python -m benchmarks.fps --end-to-end``).

Every measurement is one ``python -m runtime.infer`` process on the real clip with its default
flags plus ``--backend``, ``--interval`` and ``--out``: decode, resize, the keyframe / propagation
schedule, labels, the colour overlay and its H.264 encoding, written to a temporary folder. Its
FPS is the one runtime.infer reports in ``--stats`` (frames / wall time from the first frame to
the finished overlay; loading the engines is not included). Configurations (backend x engines x
interval) are interleaved (A B C A B C ...) over the repeats, after one untimed warm-up run per
engines folder (which also makes the thread calibration). The load average is recorded before
and after every run: numbers from a busy machine say so.

Ratios are against PyTorch eager segmenting every frame (l = 1) of the same clip in the same run.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from statistics import median
from typing import Callable

from .fps_options import FpsOptions

REPO = Path(__file__).resolve().parents[1]
BASELINE = ("torch", 1)


@dataclass(frozen=True)
class Config:
    """One row of the table: a backend on an engines folder, at some intervals."""

    name: str  # e.g. "onnxruntime int8"
    backend: str
    engines: Path
    intervals: tuple[int, ...]


def load_average() -> list[float]:
    return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]


def busy_cpu_seconds() -> float:
    """CPU seconds the whole machine has spent busy since boot (/proc/stat: all but idle and iowait)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_infer(config: Config, interval: int, clip: Path, frames: int, folder: Path) -> dict:
    """One runtime.infer process; returns its stats with the load average around it."""
    out, stats = folder / "overlay.mp4", folder / "stats.json"
    for path in (out, stats):
        path.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "runtime.infer", "--video", str(clip), "--engines", str(config.engines),
           "--backend", config.backend, "--interval", str(interval), "--out", str(out), "--stats", str(stats),
           "--no-progress"] + (["--max-frames", str(frames)] if frames else [])
    before, busy, own, started = load_average(), busy_cpu_seconds(), children_cpu_seconds(), time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    # what other processes took from the machine while this run went on (0: it had the machine to itself)
    others = max(0.0, (busy_cpu_seconds() - busy) - (children_cpu_seconds() - own)) / (elapsed * (os.cpu_count() or 1))
    after = load_average()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.strip().splitlines()[-1:]}")
    data = json.loads(stats.read_text())
    return {"fps": data["fps"], "frames": data["frames"], "wall_seconds": data["wall_seconds"],
            "load_before": before, "load_after": after, "others_cpu_share": round(others, 4),
            "keyframe_workers": data.get("keyframe_workers"),
            "threads": data.get("threads"), "stages_ms": {k: v["median_ms"] for k, v in data["stages_ms"].items()},
            "backend_detail": data["backend_detail"]}


def measure(configs: list[Config], clip: Path, repeats: int, frames: int, log: Callable[[str], None]) -> dict:
    """Interleaved runs of every (config, interval); raw runs per config and interval."""
    raw: dict[str, dict[int, list[dict]]] = {c.name: {l: [] for l in c.intervals} for c in configs}
    with tempfile.TemporaryDirectory(prefix="gsvnet-e2e-") as tmp:
        folder = Path(tmp)
        warmed: set[tuple[str, Path]] = set()
        for c in configs:  # untimed: file cache, thread calibration
            if (c.backend, c.engines) not in warmed:
                run_infer(c, c.intervals[0], clip, min(frames or 30, 30), folder)
                warmed.add((c.backend, c.engines))
        for rep in range(repeats):
            for interval in sorted({l for c in configs for l in c.intervals}):
                for c in configs:
                    if interval in c.intervals:
                        run = run_infer(c, interval, clip, frames, folder)
                        raw[c.name][interval].append(run)
                        log(f"  {c.name:<22} l={interval}: {run['fps']:6.2f} FPS  (load {run['load_before'][0]:.2f} -> "
                            f"{run['load_after'][0]:.2f}; other processes {100 * run['others_cpu_share']:.0f}% of the CPU)")
            log(f"  repeat {rep + 1}/{repeats} done")
    return raw


def summarise(raw: dict[str, dict[int, list[dict]]]) -> dict:
    """Median FPS per config and interval, and its ratio to PyTorch eager at l = 1."""
    fps = {name: {str(l): median(r["fps"] for r in runs) for l, runs in per_l.items() if runs} for name, per_l in raw.items()}
    base = fps.get(BASELINE[0], {}).get(str(BASELINE[1]))
    ratios = {name: {l: v / base for l, v in per_l.items()} for name, per_l in fps.items()} if base else {}
    runs = [r for per_l in raw.values() for rs in per_l.values() for r in rs]
    loads = [x for r in runs for x in (r["load_before"][0], r["load_after"][0])]
    others = [r.get("others_cpu_share", 0.0) for r in runs]
    return {"fps": fps, "vs_eager_per_frame": ratios, "baseline": f"{BASELINE[0]} l={BASELINE[1]}",
            "load_average_1min": {"min": min(loads), "max": max(loads)} if loads else None,
            "others_cpu_share": {"max": max(others), "runs_over_5_percent": sum(o > 0.05 for o in others),
                                 "runs": len(others)} if others else None}


def report(summary: dict) -> str:
    intervals = sorted({int(l) for per_l in summary["fps"].values() for l in per_l})
    names = list(summary["fps"])
    header = ["interval l", *[f"{n} FPS" for n in names], *[f"{n} vs eager l=1" for n in names if n != BASELINE[0]]]
    rows = [header]
    for l in intervals:
        key = str(l)
        rows.append([key, *[f"{summary['fps'][n][key]:.2f}" if key in summary["fps"][n] else "-" for n in names],
                     *[f"{summary['vs_eager_per_frame'][n][key]:.2f}x" if key in summary["vs_eager_per_frame"].get(n, {})
                       else "-" for n in names if n != BASELINE[0]]])
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    load, others = summary["load_average_1min"], summary.get("others_cpu_share")
    if load:
        lines.append(f"1-minute load average around the runs: {load['min']:.2f} .. {load['max']:.2f}")
    if others:
        verdict = ("the machine was idle apart from the runs" if not others["runs_over_5_percent"] else
                   f"SHARED: other processes took over 5% of the CPU during {others['runs_over_5_percent']} of "
                   f"{others['runs']} runs")
        lines.append(f"other processes: at most {100 * others['max']:.1f}% of the CPU during a run; {verdict}")
    return "\n".join(lines)


def plot(summary: dict, title: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, per_l in summary["fps"].items():
        ls = sorted(int(l) for l in per_l)
        ax.plot(ls, [per_l[str(l)] for l in ls], marker="o", label=name)
    ax.set_xlabel("keyframe interval l")
    ax.set_ylabel("frames per second, end to end (median)")
    ax.set_title(title, fontsize=8)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run(options: FpsOptions, log: Callable[[str], None] = print) -> dict:
    """The --end-to-end benchmark (benchmarks/end_to_end.py); writes <date>-e2e-<device>.json / .png."""
    from .environment import CLIP, engines_for, environment, write_result

    options = options.quick_end_to_end()
    env = environment(0)  # runtime.infer's default CPU budget: every usable core
    if not CLIP.exists():
        raise SystemExit(f"error: the end-to-end benchmark runs on the real clip, which is missing: {CLIP}")
    intervals = tuple(options.intervals)
    configs = []
    for precision in options.precisions:
        if precision == "int8" and not (options.calibration and options.calibration.is_dir()):
            log(f"int8 left out: no calibration frames at {options.calibration}")
            continue
        log(f"engines at {options.size[0]}x{options.size[1]} ({precision}):")
        engines = engines_for(options.size, options.checkpoint, log, precision, options.calibration)
        configs.append(Config(f"onnxruntime {precision}", "onnxruntime", engines, intervals))
    eager = tuple(options.e2e_eager_intervals)
    configs.insert(0, Config("torch", "torch", configs[0].engines if configs else engines_for(options.size, options.checkpoint, log), eager))
    log(f"end to end on {CLIP.name} ({options.e2e_frames or 'all'} frames), {options.e2e_repeats} interleaved repeats; "
        f"load average now {load_average()}")
    raw = measure(configs, CLIP, options.e2e_repeats, options.e2e_frames, log)
    summary = summarise(raw)
    result = {"created": datetime.now(timezone.utc).isoformat(timespec="seconds"), "environment": env,
              "clip": str(CLIP), "frames": options.e2e_frames or "all", "size": list(options.size), "quick": options.quick,
              "configs": [{"name": c.name, "backend": c.backend, "engines": str(c.engines), "intervals": list(c.intervals)}
                          for c in configs],
              "runs": {n: {str(l): v for l, v in per_l.items()} for n, per_l in raw.items()}, **summary}
    log("")
    log(report(summary))
    json_path = write_result(result, options.out_dir, env, options.quick, kind="e2e")
    plot(summary, f"runtime.infer end to end (decode + overlay encode), {CLIP.name}, {env['cpu'][:40]}",
             json_path.with_suffix(".png"))
    log(f"\nwrote {json_path} and {json_path.with_suffix('.png')}")
    return result
