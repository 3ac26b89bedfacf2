"""python -m benchmarks.fleet_scaling: frames/s of ``python -m runtime.fleet`` with 1 and 2 workers.

The real videos are cut into equal clips (a fleet of short videos), and each configuration
(workers x CPU cores per worker) segments all of them into a fresh output folder, as a user would
run it: its own local Ray cluster, labels and overlays written. Configurations are interleaved
over the repeats, and the load average is recorded before and after every run, because a shared
machine's other jobs change the result.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, fields
from datetime import datetime, timezone
from pathlib import Path
from statistics import median

from .clips import frame_count, split_video
from .environment import CLIP

VIDEOS = [CLIP, CLIP.parent / "project_video_short.mp4"]


def config(text: str) -> tuple[int, int]:
    """'2x1' -> (2 workers, 1 CPU core each)."""
    try:
        workers, cpus = (int(x) for x in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WORKERSxCPUS such as 2x1, got {text!r}") from None
    if workers < 1 or cpus < 1:
        raise argparse.ArgumentTypeError(f"workers and CPUs must be >= 1, got {text!r}")
    return workers, cpus


@dataclass
class FleetScalingOptions:
    """Every ``benchmarks.fleet_scaling`` flag with the command line's default (``--help`` says
    what each one means); ``configs``: (workers, CPU cores per worker) pairs. ``out`` is required.
    A value out of range raises a one-line ValueError."""

    out: Path
    engines: Path = Path("engines")
    videos: tuple[Path, ...] = tuple(VIDEOS)
    pieces: int = 4
    configs: tuple[tuple[int, int], ...] = ((1, 1), (1, 2), (2, 1))
    repeats: int = 2
    shared: bool = False
    note: str = ""

    def __post_init__(self) -> None:
        self.out, self.engines = Path(self.out), Path(self.engines)
        self.videos = tuple(Path(v) for v in self.videos)
        self.configs = tuple((int(w), int(c)) for w, c in self.configs)
        if not self.videos or not self.configs:
            raise ValueError("--videos and --configs need at least one value each")
        for name, value in (("pieces", self.pieces), ("repeats", self.repeats)):
            if value < 1:
                raise ValueError(f"--{name} must be >= 1, got {value}")
        for workers, cpus in self.configs:
            if workers < 1 or cpus < 1:
                raise ValueError(f"workers and CPUs must be >= 1, got {workers}x{cpus}")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.fleet_scaling", description=__doc__,
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--engines", type=Path, default=Path("engines"), help="engines folder")
    p.add_argument("--videos", type=Path, nargs="+", default=VIDEOS, help="long videos to cut into clips")
    p.add_argument("--pieces", type=int, default=4, help="clips cut from each video")
    p.add_argument("--configs", type=config, nargs="+", default=[(1, 1), (1, 2), (2, 1)],
                   help="WORKERSxCPUS configurations to compare (CPU backends use CPUS threads per worker)")
    p.add_argument("--repeats", type=int, default=2, help="runs of every configuration (interleaved)")
    p.add_argument("--out", type=Path, required=True, help="JSON file for the results")
    p.add_argument("--shared", action="store_true", help="record that other jobs used the machine during the measurement")
    p.add_argument("--note", default="", help="free text stored with the results (e.g. what else ran on the machine)")
    return p


def load_average() -> list[float]:
    return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _version(package: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return None


def run_fleet(clips: list[Path], engines: Path, out_dir: Path, workers: int, cpus: int) -> dict:
    """One ``python -m runtime.fleet`` run; returns its summary.json."""
    cmd = [sys.executable, "-m", "runtime.fleet", "--videos", *map(str, clips), "--engines", str(engines),
           "--out-dir", str(out_dir), "--workers", str(workers), "--cpus-per-worker", str(cpus), "--labels",
           "--overlay", "--no-progress"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"runtime.fleet failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return json.loads((out_dir / "summary.json").read_text())


def parse_options(argv: list[str] | None = None) -> FleetScalingOptions:
    """The command line as typed options (argparse exits with its usage line on a bad flag)."""
    args = build_parser().parse_args(argv)
    return FleetScalingOptions(**{f.name: getattr(args, f.name) for f in fields(FleetScalingOptions)})


def run(options: FleetScalingOptions) -> dict:
    """Cut the videos, time every configuration ``repeats`` times (interleaved), write ``options.out``
    and return what it holds."""
    from engine_format.manifest import load_manifest

    manifest = load_manifest(options.engines)
    runs = []
    with tempfile.TemporaryDirectory(prefix="fleet-scaling-") as tmp:
        clip_dir = Path(tmp) / "clips"
        clip_dir.mkdir()
        clips = [clip for video in options.videos for clip in split_video(video, clip_dir, options.pieces)]
        clip_info = [{"name": c.name, "frames": frame_count(c)} for c in clips]
        print(f"{len(clips)} clips, {sum(c['frames'] for c in clip_info)} frames", file=sys.stderr)
        for repeat in range(options.repeats):
            for workers, cpus in options.configs:
                out_dir = Path(tmp) / f"out-{workers}x{cpus}-{repeat}"
                before = load_average()
                started = time.perf_counter()
                summary = run_fleet(clips, options.engines, out_dir, workers, cpus)
                run = {"workers": workers, "cpus_per_worker": cpus, "repeat": repeat,
                       "frames": summary["frames_segmented"], "segment_seconds": summary["segment_seconds"],
                       "frames_per_second": summary["cluster_fps"], "job_seconds": summary["wall_seconds"],
                       "command_seconds": round(time.perf_counter() - started, 3),
                       "loadavg_before": before, "loadavg_after": load_average()}
                runs.append(run)
                print(f"{workers}x{cpus} #{repeat}: {run['frames_per_second']:.2f} frames/s "
                      f"(load {before[0]:.2f} -> {run['loadavg_after'][0]:.2f})", file=sys.stderr)
    table = {}
    for workers, cpus in options.configs:
        fps = [r["frames_per_second"] for r in runs if (r["workers"], r["cpus_per_worker"]) == (workers, cpus)]
        table[f"{workers}x{cpus}"] = {"median_frames_per_second": round(median(fps), 2), "runs": fps}
    base = table[f"{options.configs[0][0]}x{options.configs[0][1]}"]["median_frames_per_second"]
    for row in table.values():
        row["vs_first"] = round(row["median_frames_per_second"] / base, 2)
    result = {
        "what": "python -m runtime.fleet on a local Ray cluster: frames/s from the first video handed out to the "
                "last one finished (summary.json cluster_fps), labels PNGs and overlay mp4 written",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpu": cpu_model(), "cores": os.cpu_count(), "python": platform.python_version(),
                    "ray": _version("ray"), "onnxruntime": _version("onnxruntime"), "shared": options.shared},
        "note": options.note,
        "engines": {"size": list(manifest.frame_size), "keyframe_net": manifest.model["keyframe_net"],
                    "random_weights": bool(manifest.data["checkpoint"].get("random_weights"))},
        "interval": 4, "videos": [str(v) for v in options.videos], "clips": clip_info,
        "configs": table, "runs": runs,
    }
    options.out.parent.mkdir(parents=True, exist_ok=True)
    options.out.write_text(json.dumps(result, indent=2) + "\n")
    for name, row in table.items():
        print(f"{name}: {row['median_frames_per_second']:.2f} frames/s ({row['vs_first']:.2f}x)", file=sys.stderr)
    return result


def main(argv: list[str] | None = None) -> int:
    try:
        options = parse_options(argv)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    run(options)
    return 0


if __name__ == "__main__":
    sys.exit(main())
