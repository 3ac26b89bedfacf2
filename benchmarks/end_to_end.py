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
import shutil
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
    """One row of the table: a backend on an engines folder, at some intervals. ``backend`` None:
    runtime.infer's default (``auto``); ``args``: more runtime.infer flags (``--precision bf16``);
    ``labels_only``: ``--labels-dir`` instead of ``--out``; ``ceiling``: benchmarks.io_ceiling
    (decode + resize + overlay encode, no network) instead of runtime.infer."""

    name: str  # e.g. "onnxruntime int8"
    backend: str | None
    engines: Path
    intervals: tuple[int, ...]
    args: tuple[str, ...] = ()
    labels_only: bool = False
    ceiling: bool = False


def load_average() -> list[float]:
    return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]


def busy_cpu_seconds() -> float:
    """CPU seconds the whole machine has spent busy since boot (/proc/stat: all but idle and iowait)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


class Refused(RuntimeError):
    """runtime.infer refused a configuration on its first-use check (exit 2, 'error: verification: ...'):
    a user cannot run it without --no-verify, so the benchmark leaves it out and says why."""


def run_infer(config: Config, interval: int, clip: Path, frames: int, folder: Path) -> dict:
    """One runtime.infer (or io_ceiling) process; returns its stats with the load average around it."""
    out, stats, labels = folder / "overlay.mp4", folder / "stats.json", folder / "labels"
    for path in (out, stats):
        path.unlink(missing_ok=True)
    shutil.rmtree(labels, ignore_errors=True)
    limit = ["--max-frames", str(frames)] if frames else []
    if config.ceiling:
        from engine_format.manifest import load_manifest

        size = "x".join(map(str, load_manifest(config.engines).frame_size))
        cmd = [sys.executable, "-m", "benchmarks.io_ceiling", "--video", str(clip), "--size", size, "--out", str(out),
               "--stats", str(stats), *limit]
    else:
        cmd = [sys.executable, "-m", "runtime.infer", "--video", str(clip), "--engines", str(config.engines),
               *(["--backend", config.backend] if config.backend else []), *config.args,
               "--interval", str(interval), *(["--labels-dir", str(labels)] if config.labels_only else ["--out", str(out)]),
               "--stats", str(stats), "--no-progress", *limit]
    before, busy, own, started = load_average(), busy_cpu_seconds(), children_cpu_seconds(), time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    # what other processes took from the machine while this run went on (0: it had the machine to itself)
    others = max(0.0, (busy_cpu_seconds() - busy) - (children_cpu_seconds() - own)) / (elapsed * (os.cpu_count() or 1))
    after = load_average()
    if proc.returncode == 2 and "error: verification:" in proc.stderr:
        raise Refused(proc.stderr.strip().splitlines()[-1].removeprefix("error: "))
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.strip().splitlines()[-1:]}")
    data = json.loads(stats.read_text())
    return {"fps": data["fps"], "frames": data["frames"], "wall_seconds": data["wall_seconds"],
            "load_before": before, "load_after": after, "others_cpu_share": round(others, 4),
            "keyframe_workers": data.get("keyframe_workers"), "backend": data.get("backend"),
            "precision": data.get("precision"), "threads": data.get("threads"),
            "stages_ms": {k: v["median_ms"] for k, v in data.get("stages_ms", {}).items()},
            "backend_detail": data.get("backend_detail", "decode + resize + overlay encode, no network")}


def measure(configs: list[Config], clip: Path, repeats: int, frames: int, log: Callable[[str], None],
            refused: dict[str, str] | None = None) -> dict:
    """Interleaved runs of every (config, interval); raw runs per config and interval. A config
    runtime.infer refuses on its first-use check is left out, its reason put in ``refused``."""
    refused = {} if refused is None else refused
    with tempfile.TemporaryDirectory(prefix="gsvnet-e2e-") as tmp:
        folder = Path(tmp)
        warmed: dict[tuple, str | None] = {}
        for c in configs:  # untimed: file cache, thread tuning, the CPU choice, OpenVINO's model cache
            key = (c.backend, c.engines, c.args, c.ceiling)
            if key not in warmed:
                try:
                    run_infer(c, c.intervals[0], clip, min(frames or 30, 30), folder)
                    warmed[key] = None
                except Refused as e:
                    warmed[key] = str(e)
            if warmed[key]:
                refused[c.name] = warmed[key]
                log(f"  {c.name} left out: runtime.infer refuses it ({warmed[key]})")
        configs = [c for c in configs if c.name not in refused]
        raw: dict[str, dict[int, list[dict]]] = {c.name: {l: [] for l in c.intervals} for c in configs}
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


def target_interval(intervals: tuple[int, ...]) -> int:
    """The interval the targets are read at: 4 (the paper's and runtime.infer's default) if measured."""
    return 4 if 4 in intervals else max(intervals)


def cpu_configs(options: FpsOptions, log: Callable[[str], None]) -> list[Config]:
    """What the CPU end-to-end run compares, all from the same clip in one interleaved run:
    PyTorch eager (the ratios' baseline), runtime.infer's default (``auto``) on the default
    FP32 build, onnxruntime at each precision built, OpenVINO at each precision this CPU runs,
    per-frame OpenVINO (l = 1, bf16 where the CPU has it: what a user would run instead), the
    default and onnxruntime FP32 writing labels only, and the I/O ceiling."""
    from runtime.backends import unavailable_reason
    from runtime.backends.openvino_backend import precision_reason

    from .environment import engines_for

    intervals, target = tuple(options.intervals), target_interval(options.intervals)
    folders: dict[str, Path] = {}
    for precision in options.precisions:
        if precision == "int8" and not (options.calibration and options.calibration.is_dir()):
            log(f"int8 left out: no calibration frames at {options.calibration}")
            continue
        log(f"engines at {options.size[0]}x{options.size[1]} ({precision}):")
        folders[precision] = engines_for(options.size, options.checkpoint, log, precision, options.calibration)
    fp32 = folders.get("fp32") or engines_for(options.size, options.checkpoint, log)
    configs = [Config("torch", "torch", fp32, tuple(options.e2e_eager_intervals)),
               Config("default", None, fp32, intervals)]
    configs += [Config(f"onnxruntime {p}", "onnxruntime", folder, intervals) for p, folder in folders.items()]
    openvino = unavailable_reason("openvino", None) is None
    if not openvino:
        log(f"openvino left out: {unavailable_reason('openvino', None)}")
    runs: list[str] = []
    if openvino:
        from engine_format.manifest import load_manifest

        for run, folder in (("f32", fp32), ("bf16", fp32), ("int8", folders.get("int8"))):
            why = "no INT8 build" if folder is None else precision_reason(load_manifest(folder), run)
            if why:
                log(f"openvino {run} left out: {why}")
                continue
            runs.append(run)
            configs.append(Config(f"openvino {run}", "openvino", folder, intervals, ("--precision", run)))
        per_frame = "bf16" if "bf16" in runs else "f32"
        configs.append(Config(f"per-frame openvino {per_frame}", "openvino", fp32, (1,), ("--precision", per_frame)))
    configs += [Config("default labels-only", None, fp32, (target,), labels_only=True),
                Config("onnxruntime fp32 labels-only", "onnxruntime", fp32, (target,), labels_only=True),
                Config("I/O ceiling", None, fp32, (target,), ceiling=True)]
    return configs


def targets(fps: dict[str, dict[str, float]], interval: int) -> dict:
    """The ratios issue 28 asks for, from the medians of this run (None where a row is missing):
    the default run against onnxruntime FP32, per-frame OpenVINO and the I/O ceiling, and the
    labels-only runs against each other."""
    def at(name: str, l: int = interval) -> float | None:
        return fps.get(name, {}).get(str(l))

    def ratio(a: float | None, b: float | None) -> float | None:
        return round(a / b, 3) if a and b else None

    per_frame = next((n for n in fps if n.startswith("per-frame openvino")), "")
    default = at("default")
    return {"interval": interval,
            "default_vs_onnxruntime_fp32": ratio(default, at("onnxruntime fp32")),
            "default_vs_per_frame_openvino": ratio(default, at(per_frame, 1)),
            "default_share_of_io_ceiling": ratio(default, at("I/O ceiling")),
            "labels_only_default_vs_onnxruntime_fp32": ratio(at("default labels-only"), at("onnxruntime fp32 labels-only"))}


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
    from .environment import CLIP, environment, write_result

    options = options.quick_end_to_end()
    env = environment(0)  # runtime.infer's default CPU budget: every usable core
    if not CLIP.exists():
        raise SystemExit(f"error: the end-to-end benchmark runs on the real clip, which is missing: {CLIP}")
    configs = cpu_configs(options, log)
    log(f"end to end on {CLIP.name} ({options.e2e_frames or 'all'} frames), {options.e2e_repeats} interleaved repeats; "
        f"load average now {load_average()}")
    refused: dict[str, str] = {}
    raw = measure(configs, CLIP, options.e2e_repeats, options.e2e_frames, log, refused)
    summary = summarise(raw)
    summary["targets"] = targets(summary["fps"], target_interval(options.intervals))
    result = {"created": datetime.now(timezone.utc).isoformat(timespec="seconds"), "environment": env,
              "clip": str(CLIP), "frames": options.e2e_frames or "all", "size": list(options.size), "quick": options.quick,
              "configs": [{"name": c.name, "backend": c.backend, "engines": str(c.engines), "intervals": list(c.intervals)}
                          for c in configs], "refused": refused,
              "runs": {n: {str(l): v for l, v in per_l.items()} for n, per_l in raw.items()}, **summary}
    log("")
    log(report(summary))
    log("targets at l = {interval}: ".format(**summary["targets"]) + ", ".join(
        f"{k} {v}" for k, v in summary["targets"].items() if k != "interval"))
    json_path = write_result(result, options.out_dir, env, options.quick, kind="e2e")
    plot(summary, f"runtime.infer end to end (decode + overlay encode), {CLIP.name}, {env['cpu'][:40]}",
             json_path.with_suffix(".png"))
    log(f"\nwrote {json_path} and {json_path.with_suffix('.png')}")
    return result
