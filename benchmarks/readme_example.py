"""python -m benchmarks.readme_example: the README's Python example against runtime.infer, whole processes.

The README's example and ``python -m runtime.infer --labels-dir`` on the same video and engines.

Each measurement is one fresh Python process, timed from its start to its exit (interpreter start,
imports, loading the engines, decoding, segmenting, and the example's prints or runtime.infer's
label PNGs): (A) ``python -c`` on the example exactly as the README has it, its ``VIDEO`` and
``ENGINES`` lines pointed at the video and engines; (B) ``python -m runtime.infer --video VIDEO
--engines ENGINES --labels-dir DIR --no-progress`` (the example's backend, threads and interval are
runtime.infer's defaults). One untimed run of each first (it makes the thread timing and the
first-use verification the engines folder keeps), then A B A B ... for ``--rounds`` rounds. The
1-minute load average is recorded before and after every run, with the share of the CPU that
other processes took; the example's per-frame road shares are compared with those of
runtime.infer's PNGs, so both runs are known to have computed the same labels.

Without ``--engines`` it builds 544x960 FP32 engines from the shipped weights
(``python -m export.build_engines --size 544x960 --out DIR``, reused while up to date). ``--quick``
(for tests): the first 12 frames of the clip, 64x112 engines (unless ``--engines``).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from statistics import median
from typing import Callable

from .end_to_end import busy_cpu_seconds, children_cpu_seconds
from .environment import CACHE, CLIP, REPO, RESULTS, environment, write_result

ROAD = 3  # CamVid class id of road, as the README's example counts it
QUICK_FRAMES, QUICK_SIZE = 12, (64, 112)
FULL_SIZE = (544, 960)


# ---- the README's example --------------------------------------------------------------------

def readme_example(readme: str) -> str:
    """The Python code of the README's 'Use from Python' section (its first ```python block)."""
    if "## Use from Python" not in readme:
        raise ValueError("the README has no '## Use from Python' section")
    section = readme.split("## Use from Python", 1)[1].split("\n## ", 1)[0]
    found = re.search(r"```python\n(.*?)```", section, re.S)
    if found is None:
        raise ValueError("the README's 'Use from Python' section has no ```python block")
    return found.group(1)


def with_paths(code: str, video: Path, engines: Path) -> str:
    """``code`` with its ``VIDEO = "..."`` and ``ENGINES = "..."`` lines (one each) pointed at
    ``video`` and ``engines``; nothing else changes."""
    code, videos = re.subn(r'^VIDEO = ".*"$', f"VIDEO = {str(video)!r}", code, flags=re.M)
    code, engine_lines = re.subn(r'^ENGINES = ".*"$', f"ENGINES = {str(engines)!r}", code, flags=re.M)
    if videos != 1 or engine_lines != 1:
        raise ValueError('the example must define VIDEO = "..." and ENGINES = "..." on one line each '
                         f"(found {videos} and {engine_lines})")
    return code


def printed_road_shares(stdout: str) -> dict[int, str]:
    """frame index -> the example's printed road share ('37%') from its 'frame N: P% road' lines."""
    return {int(m.group(1)): m.group(2) for m in re.finditer(r"^frame (\d+): (\d+%) road", stdout, re.M)}


def png_road_shares(labels_dir: Path) -> dict[int, str]:
    """frame index -> road share of runtime.infer's label PNG, formatted as the example prints it."""
    import numpy as np
    from PIL import Image

    shares = {}
    for k, png in enumerate(sorted(labels_dir.glob("*.png"))):
        labels = np.asarray(Image.open(png))
        shares[k] = f"{100 * (labels == ROAD).mean():.0f}%"
    return shares


# ---- options ---------------------------------------------------------------------------------

@dataclass
class ReadmeExampleOptions:
    """What to measure: the clip, the engines (None: build them), how many rounds, where to write."""

    clip: Path = CLIP
    engines: Path | None = None
    rounds: int = 3
    frames: int = 0  # 0: the whole clip; otherwise its first ``frames`` frames, cut to a new file
    size: tuple[int, int] = FULL_SIZE  # of engines built when ``engines`` is None
    out_dir: Path = RESULTS
    quick: bool = False
    argv: list[str] = field(default_factory=list)  # the command line, for the record

    def __post_init__(self) -> None:
        if self.quick:
            self.frames, self.size = self.frames or QUICK_FRAMES, QUICK_SIZE
        if self.rounds < 3:
            raise ValueError(f"--rounds must be >= 3 (got {self.rounds})")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.readme_example", description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("clip", type=Path, nargs="?", default=CLIP, help="the real video both processes segment")
    p.add_argument("--engines", type=Path, default=None,
                   help="engines folder; without it, FP32 engines of the shipped weights (544x960, or 64x112 with "
                        f"--quick) are built into {CACHE}/readme-example-HxW and reused")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds (A B per round), at least 3")
    p.add_argument("--out-dir", type=Path, default=RESULTS, help="folder for <date>-readme-example-<device>.json")
    p.add_argument("--quick", action="store_true",
                   help=f"a short check: the first {QUICK_FRAMES} frames, {QUICK_SIZE[0]}x{QUICK_SIZE[1]} engines "
                        "(unless --engines); the file name ends in -quick")
    return p


# ---- measuring -------------------------------------------------------------------------------

def build_engines(size: tuple[int, int], log: Callable[[str], None]) -> Path:
    """FP32 engines from the shipped weights at ``size`` in the benchmark cache, through the command users run."""
    out = CACHE / f"readme-example-{size[0]}x{size[1]}"
    cmd = [sys.executable, "-m", "export.build_engines", "--size", f"{size[0]}x{size[1]}", "--out", str(out)]
    log("building (or reusing) engines: " + " ".join(cmd[1:]))
    proc = subprocess.run(cmd, cwd=REPO, env=_env(), capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"export.build_engines failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
    return out


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}


def timed_process(cmd: list[str], cwd: Path) -> tuple[dict, subprocess.CompletedProcess]:
    """Run ``cmd`` to its end; its wall seconds, the load average around it, and the share of the
    machine's CPU that other processes took meanwhile (0: it had the machine to itself)."""
    load_before, busy, own = os.getloadavg(), busy_cpu_seconds(), children_cpu_seconds()
    started = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=_env(), capture_output=True, text=True)
    wall = time.perf_counter() - started
    others = max(0.0, (busy_cpu_seconds() - busy) - (children_cpu_seconds() - own)) / (wall * (os.cpu_count() or 1))
    load_after = os.getloadavg()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:3])} ... failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
    return {"wall_seconds": round(wall, 3), "load_before": list(load_before), "load_after": list(load_after),
            "others_cpu_share": round(others, 4)}, proc


def measure(code: str, video: Path, engines: Path, rounds: int, folder: Path,
            log: Callable[[str], None]) -> tuple[list[dict], dict]:
    """Warm-up, then ``rounds`` x (example, runtime.infer); the runs in order, and the agreement check."""
    labels = folder / "labels"
    commands = {"example": [sys.executable, "-c", code],
                "infer": [sys.executable, "-m", "runtime.infer", "--video", str(video), "--engines", str(engines),
                          "--labels-dir", str(labels), "--no-progress"]}

    def run(which: str) -> tuple[dict, subprocess.CompletedProcess]:
        if which == "infer" and labels.exists():  # runtime.infer wants a new or empty labels folder
            for png in labels.iterdir():
                png.unlink()
            labels.rmdir()
        return timed_process(commands[which], folder)

    _, example = run("example")  # untimed: thread timing and first-use verification, file cache
    _, infer = run("infer")
    printed, written = printed_road_shares(example.stdout), png_road_shares(labels)
    agreement = {"frames_printed": len(printed), "frames_written": len(written), "same_road_shares": printed == written}
    if not printed or printed != written:
        raise RuntimeError(f"the example and runtime.infer disagree: {agreement}")
    runs = []
    for r in range(rounds):
        for which in ("example", "infer"):
            record, _ = run(which)
            runs.append({"which": which, "round": r + 1, **record})
            log(f"  round {r + 1}/{rounds} {which:<8} {record['wall_seconds']:7.2f} s  (load {record['load_before'][0]:.2f}"
                f" -> {record['load_after'][0]:.2f}; other processes {100 * record['others_cpu_share']:.0f}% of the CPU)")
    return runs, agreement


def summarise(runs: list[dict]) -> dict:
    """Median wall seconds of each, the example's over runtime.infer's, and the load around all runs."""
    walls = {w: [r["wall_seconds"] for r in runs if r["which"] == w] for w in ("example", "infer")}
    med = {w: median(v) for w, v in walls.items()}
    loads = [x for r in runs for x in (r["load_before"][0], r["load_after"][0])]
    others = [r["others_cpu_share"] for r in runs]
    ratio = med["example"] / med["infer"]
    return {"median_wall_seconds": med, "example_over_infer": round(ratio, 4), "within_5_percent": abs(ratio - 1) <= 0.05,
            "load_average_1min": {"min": min(loads), "max": max(loads)},
            "others_cpu_share": {"max": max(others), "runs_over_5_percent": sum(o > 0.05 for o in others),
                                 "runs": len(others)}}


def run(options: ReadmeExampleOptions, log: Callable[[str], None] = print) -> dict:
    """The whole benchmark; writes ``<date>-readme-example-<device>[-quick].json`` and returns its contents."""
    from engine_format.manifest import read_manifest

    from .clips import cut_clip, frame_count

    if not options.clip.is_file():
        raise SystemExit(f"error: the clip to segment does not exist: {options.clip}")
    env = {**environment(0), "command": " ".join(["python", "-m", "benchmarks.readme_example", *options.argv])}
    engines = options.engines or build_engines(options.size, log)
    manifest = read_manifest(engines)
    example = readme_example((REPO / "README.md").read_text())
    with tempfile.TemporaryDirectory(prefix="gsvnet-readme-example-") as tmp:
        folder = Path(tmp)
        video = cut_clip(options.clip, folder / "cut.mp4", 0, options.frames) if options.frames else options.clip
        frames = frame_count(video)
        size = "x".join(map(str, manifest.frame_size))
        log(f"{frames} frames of {video.name}, engines {engines} ({size}), {options.rounds} interleaved rounds; "
            f"load average now {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        runs, agreement = measure(with_paths(example, video, engines), video, engines, options.rounds, folder, log)
    summary = summarise(runs)
    result = {"created": datetime.now(timezone.utc).isoformat(timespec="seconds"), "environment": env,
              "clip": str(options.clip), "frames": frames, "quick": options.quick,
              "engines": {"path": str(engines), "frame_size": list(manifest.frame_size),
                          "checkpoint_sha256": manifest.data["checkpoint"].get("source_sha256"),
                          "random_weights": manifest.data["checkpoint"].get("random_weights")},
              "example": example, "infer_command": "python -m runtime.infer --video VIDEO --engines ENGINES "
                                                   "--labels-dir DIR --no-progress",
              "agreement": agreement, "rounds": options.rounds, "runs": runs, **summary}
    med = summary["median_wall_seconds"]
    log(f"\nREADME example {med['example']:.2f} s, runtime.infer --labels-dir {med['infer']:.2f} s (medians of "
        f"{options.rounds}): {summary['example_over_infer']:.3f}x; load average {summary['load_average_1min']['min']:.2f}"
        f" .. {summary['load_average_1min']['max']:.2f}, other processes at most "
        f"{100 * summary['others_cpu_share']['max']:.1f}% of the CPU")
    path = write_result(result, options.out_dir, env, options.quick, kind="readme-example")
    log(f"wrote {path}")
    return result


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    try:
        options = ReadmeExampleOptions(clip=args.clip, engines=args.engines, rounds=args.rounds, out_dir=args.out_dir,
                                       quick=args.quick, argv=list(argv))
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    run(options)
    return 0


if __name__ == "__main__":
    sys.exit(main())
