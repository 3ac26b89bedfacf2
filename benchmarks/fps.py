"""python -m benchmarks.fps: engine FPS against PyTorch eager, per stage and per keyframe interval.

Everything is measured in ONE run, interleaved across backends (A B A B ...), after warm-up:
- per stage: median / p90 milliseconds of each stage graph on real intermediates;
- end to end: FPS of the keyframe / propagation schedule for l = 1..5 on a fixed sequence of
  real frames (decoded and resized beforehand, so decoding and video encoding are excluded;
  labels are produced at the video's own size, as the runtime does);
- scaling: keyframe and propagation step time versus input resolution (and batch on GPUs);
- multiply-accumulates per graph (from the ONNX graphs) and parameters per network.
Ratios are always against PyTorch eager on the same device in the same run. Results go to
benchmarks/results/<date>-<device>.json (every raw sample + environment) and a PNG plot.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from engine_format.manifest import STAGES
from .environment import CAMVID_TRAIN, CLIP, RESULTS, engines_for, environment, write_result
from .fps_options import FpsOptions

NETWORKS = ("keyframe", "flow", "intra", "guide")
#: backends whose per-stage figures time something other than what their steps run: the stage
#: table calls ``backend.run(stage)``, which torch-cuda inherits from the eager TorchBackend
STAGE_CAVEATS = {
    "torch-cuda": "torch-cuda's per-stage figures time PyTorch ops, not the fused kernels the steps run: warp is "
                  "grid_sample (the steps: the gsvnet warp_by_flow kernel, labels as its epilogue), guide computes "
                  "its edge map in PyTorch (the steps: the edge_map_from_labels kernel), filter is the unfused "
                  "PyTorch chunk filter (the steps: the chunk_filter kernel); its end-to-end and step figures run "
                  "the kernels",
}


def parse_sizes(text: str) -> tuple[tuple[int, int], ...]:
    """argparse ``type``: '512x1024,768x1536' -> ((512, 1024), (768, 1536)); '' -> ()."""
    from engine_format.sizes import parse_size

    return tuple(parse_size(t) for t in text.split(",") if t.strip()) if text else ()


def parse_ints(text: str) -> tuple[int, ...]:
    """argparse ``type``: '1,2,4' -> (1, 2, 4)."""
    try:
        return tuple(int(t) for t in text.split(",") if t.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated whole numbers such as 1,2,4, got {text!r}") from None


def parse_names(text: str) -> tuple[str, ...]:
    """argparse ``type``: 'onnxruntime, torch' -> ('onnxruntime', 'torch')."""
    return tuple(t.strip() for t in text.split(",") if t.strip())


def build_parser() -> argparse.ArgumentParser:
    from engine_format.sizes import parse_size
    from runtime.backends import CHOICES

    defaults = FpsOptions()
    p = argparse.ArgumentParser(prog="python -m benchmarks.fps", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", type=parse_size, default=(544, 960), metavar="HxW",
                   help="engine size for the per-stage and per-interval tables (default 544x960: the real clip's size)")
    p.add_argument("--backends", type=parse_names, default=("auto",),
                   help=f"comma-separated backends from {', '.join(c for c in CHOICES if c != 'auto')}; 'auto': every "
                        "backend available here (PyTorch eager is always included as the baseline)")
    p.add_argument("--threads", type=int, default=defaults.threads, help="CPU threads for every backend (default: all cores)")
    p.add_argument("--iterations", type=int, default=20, help="timed iterations per stage and backend (default 20)")
    p.add_argument("--warmup", type=int, default=3, help="untimed iterations first (default 3)")
    p.add_argument("--frames", type=int, default=40, help="frames in the end-to-end sequence (default 40)")
    p.add_argument("--repeats", type=int, default=3, help="end-to-end repetitions per interval and backend (default 3)")
    p.add_argument("--intervals", type=parse_ints, default=(1, 2, 3, 4, 5),
                   help="keyframe intervals to measure (default 1,2,3,4,5)")
    p.add_argument("--scaling-sizes", type=parse_sizes, default=((512, 1024), (768, 1536), (1024, 2048)),
                   help="sizes for the resolution sweep ('' to skip; default 512x1024,768x1536,1024x2048)")
    p.add_argument("--batches", type=parse_ints, default=(1, 2, 4), help="batch sizes for the GPU batch sweep (default 1,2,4)")
    p.add_argument("--checkpoint", type=Path, default=None, help="checkpoint to export (default: shipped weights, else random)")
    p.add_argument("--out-dir", type=Path, default=RESULTS, help="where the JSON and PNG go (default benchmarks/results)")
    p.add_argument("--quick", action="store_true",
                   help="smoke test: 64x112 engines, 2 iterations, 6 frames, no sweeps (what CI runs)")
    e2e = p.add_argument_group("end to end (--end-to-end): runtime.infer as users run it, video decoding and "
                                "encoding included (benchmarks/end_to_end.py)")
    e2e.add_argument("--end-to-end", action="store_true",
                     help="instead of the tables above, time `python -m runtime.infer --out` on the real clip with its "
                          "default flags, onnxruntime at every --intervals and PyTorch eager at --e2e-eager-intervals, "
                          "interleaved; ratios against PyTorch eager at l = 1")
    e2e.add_argument("--precisions", type=parse_names, default=("fp32", "int8"),
                     help="onnxruntime engines to include (default fp32,int8; int8 needs --calibration)")
    e2e.add_argument("--calibration", type=Path, default=CAMVID_TRAIN,
                     help=f"real frames for the INT8 keyframe graph (default {CAMVID_TRAIN})")
    e2e.add_argument("--e2e-eager-intervals", type=parse_ints, default=(1, 4),
                     help="intervals for PyTorch eager (default 1,4; 1 is the baseline)")
    e2e.add_argument("--e2e-frames", type=int, default=0, help="frames of the clip per run (default 0: all 221)")
    e2e.add_argument("--e2e-repeats", type=int, default=2, help="runs of every configuration, interleaved (default 2)")
    return p


def parse_options(argv: list[str] | None = None) -> FpsOptions:
    """The command line as typed options (argparse exits with its usage line on a bad flag; a value
    out of range raises ValueError)."""
    args = build_parser().parse_args(argv)
    return FpsOptions(**{f.name: getattr(args, f.name) for f in fields(FpsOptions)})


# ---- inputs ----------------------------------------------------------------------------------

def clip_frames(size: tuple[int, int], count: int) -> tuple[list[np.ndarray], tuple[int, int], str]:
    """``count`` frames of the real clip resized to ``size`` (uint8 [1,H,W,3]), the clip's own
    size, and the source; random frames (documented fallback) if the clip is absent or PyAV (the
    video reader) is not installed, as on the lent GPU machines."""
    try:
        from runtime.video import VideoReader, resize_rgb
    except ImportError as e:
        reader_missing = f"the video reader does not import: {e}"
    else:
        reader_missing = None
    if CLIP.exists() and reader_missing is None:
        frames = []
        reader = VideoReader(CLIP)
        for decoded in reader:
            frames.append(resize_rgb(decoded.rgb, size)[None])
            if len(frames) == count:
                break
        reader.close()
        return frames, reader.size, str(CLIP)
    rng = np.random.default_rng(0)
    why = reader_missing if CLIP.exists() else "real clip not found"
    return ([rng.integers(0, 256, (1, *size, 3), dtype=np.uint8) for _ in range(count)], size,
            f"synthetic random frames ({why})")


# ---- measurements ----------------------------------------------------------------------------

def timed(backend, fn: Callable[[], object]) -> float:
    """Milliseconds of ``fn``; asynchronous (GPU) backends are synchronised before and after."""
    backend.synchronize()
    start = time.perf_counter()
    fn()
    backend.synchronize()
    return (time.perf_counter() - start) * 1e3


def stage_inputs(backend, frames: list[np.ndarray]) -> dict[str, tuple]:
    """Real intermediates for every stage, computed by ``backend`` itself from two frames."""
    f0, f1 = backend.upload(frames[0]), backend.upload(frames[1])
    state = backend.keyframe_step(frames[0])
    small = backend.run("downsample", f1)
    flow = backend.run("flow", small, state.small)
    warped = backend.run("warp", state.scores, flow)
    intra = backend.run("intra", small)
    weights = backend.run("guide", intra, warped)
    scores = backend.run("filter", warped, intra, weights)
    return {"downsample": (f1,), "keyframe": (f0,), "flow": (small, state.small), "warp": (state.scores, flow),
            "intra": (small,), "guide": (intra, warped), "filter": (warped, intra, weights), "labels": (scores,)}


def summarise(samples: list[float]) -> dict:
    a = np.asarray(samples, dtype=np.float64)
    return {"median": float(np.median(a)), "p90": float(np.percentile(a, 90)), "n": int(a.size)}


def measure_stages(backends: dict, frames, warmup: int, iterations: int) -> dict[str, dict[str, list[float]]]:
    inputs = {name: stage_inputs(b, frames) for name, b in backends.items()}
    raw: dict[str, dict[str, list[float]]] = {name: {s: [] for s in STAGES} for name in backends}
    for it in range(warmup + iterations):
        for stage in STAGES:
            for name, b in backends.items():  # interleaved: A B A B ...
                # labels: what the runtime runs (the CPU backends skip the per-class upsampling, runtime/labels.py)
                call = (lambda: b.engine_labels(*inputs[name][stage])) if stage == "labels" else \
                    (lambda: b.run(stage, *inputs[name][stage]))
                ms = timed(b, call)
                if it >= warmup:
                    raw[name][stage].append(ms)
    return raw


def measure_end_to_end(backends: dict, frames, label_size, intervals, repeats: int, log) -> dict[str, dict[int, list[float]]]:
    from runtime.schedule import KeyframeScheduler

    raw: dict[str, dict[int, list[float]]] = {name: {l: [] for l in intervals} for name in backends}
    for name, b in backends.items():  # warm-up pass
        list(KeyframeScheduler(b, 2, label_size).run(iter(frames[:3])))
    for rep in range(repeats):
        for l in intervals:
            for name, b in backends.items():
                start = time.perf_counter()
                for _ in KeyframeScheduler(b, l, label_size).run(iter(frames)):
                    pass
                b.synchronize()
                raw[name][l].append(len(frames) / (time.perf_counter() - start))
        log(f"  end-to-end repeat {rep + 1}/{repeats} done")
    return raw


def measure_steps(backends: dict, frames, warmup: int, iterations: int, batch: int = 1) -> dict[str, dict[str, list[float]]]:
    """Keyframe step and propagation step (labels included) at one size and batch."""
    raw = {name: {"keyframe_step": [], "propagation_step": []} for name in backends}
    batch_frames = np.concatenate([frames[i % len(frames)] for i in range(batch)])
    size = batch_frames.shape[1:3]
    states = {name: b.keyframe_step(batch_frames) for name, b in backends.items()}
    for it in range(warmup + iterations):
        for name, b in backends.items():
            key = timed(b, lambda: b.labels(b.keyframe_step(batch_frames), size))
            prop = timed(b, lambda: b.labels(b.propagation_step(states[name], batch_frames), size))
            if it >= warmup:
                raw[name]["keyframe_step"].append(key)
                raw[name]["propagation_step"].append(prop)
    return raw


def parameter_counts(engines: Path) -> dict[str, int]:
    from gsvnet import load_checkpoint

    model, _ = load_checkpoint(engines / "model.pt")
    return {net: sum(p.numel() for p in getattr(model, net).parameters()) for net in NETWORKS}


# ---- backends --------------------------------------------------------------------------------

def make_backends(spec: Sequence[str], engines: Path, threads: int, log) -> dict:
    """The backends ``spec`` names (('auto',): every one available here) and the PyTorch eager
    baseline first, each created directly: the benchmark times each backend as it is, with the
    same ``threads`` for every graph (no thread plan, no first-use verification)."""
    import torch

    from engine_format.manifest import load_manifest
    from runtime.backends import GPU_BACKENDS, PREFERENCE, create_backend, unavailable_reason

    torch.set_num_threads(threads)
    manifest = load_manifest(engines)
    if tuple(spec) == ("auto",):
        names = [n for n in PREFERENCE if unavailable_reason(n, manifest) is None]
    else:
        names = list(spec)
    gpu = any(n in GPU_BACKENDS for n in names)
    baseline = "torch-eager-cuda" if gpu else "torch"
    backends = {}
    if gpu:  # eager PyTorch on the GPU is the baseline for GPU backends
        from runtime.backends.torch_backend import TorchBackend

        backends[baseline] = TorchBackend(manifest, device="cuda", threads=threads, profile=False)
    else:
        backends["torch"] = create_backend("torch", manifest, threads=threads, profile=False)
    for name in names:
        if name not in backends:
            backends[name] = create_backend(name, manifest, threads=threads, profile=False)
    for name, b in backends.items():
        log(f"  {name}: {b.describe()}")
    return backends


# ---- reporting -------------------------------------------------------------------------------

def table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def report(result: dict) -> str:
    base = result["baseline"]
    names = list(result["stages"])
    caveats = {n: STAGE_CAVEATS[n] for n in names if n in STAGE_CAVEATS}
    marked = [f"{n}*" if n in caveats else n for n in names]  # * : the footnote under the table
    out = []
    rows = [["stage (ms, median / p90)", *marked, *[f"{m} vs {base}" for n, m in zip(names, marked) if n != base]]]
    for stage in STAGES:
        meds = {n: result["stages"][n][stage]["median"] for n in names}
        rows.append([stage, *[f"{result['stages'][n][stage]['median']:.2f} / {result['stages'][n][stage]['p90']:.2f}" for n in names],
                     *[f"{meds[base] / meds[n]:.2f}x" for n in names if n != base]])
    out.append(table(rows) + "".join(f"\n* {text}" for text in caveats.values()))
    rows = [["interval l (FPS, median)", *names, *[f"{n} vs {base}" for n in names if n != base]]]
    for l in result["intervals"]:
        fps = {n: result["end_to_end"][n][str(l)]["median"] for n in names}
        rows.append([str(l), *[f"{fps[n]:.2f}" for n in names], *[f"{fps[n] / fps[base]:.2f}x" for n in names if n != base]])
    out.append(table(rows))
    if result.get("scaling"):
        rows = [["size / batch", "step", *names]]
        for entry in result["scaling"]:
            for step in ("keyframe_step", "propagation_step"):
                rows.append([f"{entry['size']} / {entry['batch']}", step,
                             *[f"{entry['ms'][n][step]['median']:.1f} ms" if n in entry["ms"] else "-" for n in names]])
        out.append(table(rows))
    macs = result["macs"]
    out.append("GMACs at batch 1: " + ", ".join(f"{k} {v / 1e9:.3f}" for k, v in macs.items())
               + f"; non-keyframe total {result['non_keyframe_gmacs']:.3f}")
    out.append("parameters: " + ", ".join(f"{k} {v / 1e6:.3f} M" for k, v in result["parameters"].items()))
    return "\n\n".join(out)


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, per_l in result["end_to_end"].items():
        ls = [int(l) for l in per_l]
        ax.plot(ls, [per_l[str(l)]["median"] for l in ls], marker="o", label=name)
    ax.set_xlabel("keyframe interval l")
    ax.set_ylabel("frames per second (median)")
    size = result["size"]
    ax.set_title(f"GSVNet end to end, {size[0]}x{size[1]}, {result['environment']['gpu'] or result['environment']['cpu'][:40]}",
                 fontsize=8)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# ---- main ------------------------------------------------------------------------------------

def run(options: FpsOptions, log: Callable[[str], None] = print) -> dict:
    """The tables (per stage, per interval, the sweeps); writes ``<date>-<device>[-quick].json`` and
    its plot, and returns the result."""
    from benchmarks.flops import count_macs
    from engine_format.manifest import load_manifest

    options = options.quick_tables()
    intervals = list(options.intervals)
    env = environment(options.threads)
    log(f"environment: {env['cpu']} ({env['cores']} cores, {options.threads} threads), GPU: {env['gpu'] or 'none'}; "
        f"torch {env['torch']}, onnxruntime {env['onnxruntime']}")
    log(f"engines at {options.size[0]}x{options.size[1]}:")
    engines = engines_for(options.size, options.checkpoint, log)
    manifest = load_manifest(engines)
    frames, clip_size, source = clip_frames(options.size, max(options.frames, 2))
    log(f"frames: {len(frames)} from {source}, resized to {options.size[0]}x{options.size[1]}; labels at {clip_size[0]}x{clip_size[1]}")
    log("backends:")
    backends = make_backends(options.backends, engines, options.threads, log)
    baseline = next(iter(backends))

    log(f"per-stage timing ({options.warmup} warm-up + {options.iterations} iterations, interleaved) ...")
    stage_raw = measure_stages(backends, frames, options.warmup, options.iterations)
    log(f"end to end, l = {intervals}, {options.repeats} repeats of {len(frames)} frames ...")
    e2e_raw = measure_end_to_end(backends, frames, clip_size, intervals, options.repeats, log)

    scaling = []
    gpu = env["gpu"] is not None and baseline != "torch"
    for size in options.scaling_sizes:
        log(f"scaling: {size[0]}x{size[1]} ...")
        sized = engines_for(size, options.checkpoint, log)
        sized_backends = make_backends([n for n in backends if n != baseline] or ["torch"], sized, options.threads,
                                       lambda m: None)
        sized_frames, _, _ = clip_frames(size, 4)
        for batch in (options.batches if gpu else [1]):
            raw = measure_steps(sized_backends, sized_frames, 1, max(3, options.iterations // 4), batch)
            scaling.append({"size": f"{size[0]}x{size[1]}", "batch": batch, "raw_ms": raw,
                            "ms": {n: {k: summarise(v) for k, v in r.items()} for n, r in raw.items()}})

    macs = {name: count_macs(engines / entry["file"]) for name, entry in manifest.graphs.items()}
    result = {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"), "environment": env,
        "size": list(options.size), "key_size": manifest.data["key_size"], "clip_size": list(clip_size), "frames_source": source,
        "frames": len(frames), "precision": {n: getattr(b, "precision", "fp16" if n == "tensorrt" else "fp32") for n, b in backends.items()},
        "keyframe_net": manifest.model["keyframe_net"], "random_weights": manifest.data["checkpoint"]["random_weights"],
        "baseline": baseline, "intervals": intervals, "quick": options.quick,
        "stages_raw_ms": stage_raw,
        "stages": {n: {s: summarise(v) for s, v in r.items()} for n, r in stage_raw.items()},
        "stage_caveats": {n: STAGE_CAVEATS[n] for n in backends if n in STAGE_CAVEATS},
        "end_to_end_raw_fps": {n: {str(l): v for l, v in r.items()} for n, r in e2e_raw.items()},
        "end_to_end": {n: {str(l): summarise(v) for l, v in r.items()} for n, r in e2e_raw.items()},
        "scaling": scaling, "macs": macs,
        "non_keyframe_gmacs": sum(macs[s] for s in ("flow", "warp", "intra", "guide", "filter")) / 1e9,
        "parameters": parameter_counts(engines),
    }
    result["ratios_vs_baseline"] = {
        n: {str(l): result["end_to_end"][n][str(l)]["median"] / result["end_to_end"][baseline][str(l)]["median"] for l in intervals}
        for n in backends if n != baseline}
    log("")
    log(report(result))
    json_path = write_result(result, options.out_dir, env, options.quick)
    plot(result, json_path.with_suffix(".png"))
    log(f"\nwrote {json_path} and {json_path.with_suffix('.png')}")
    return result


def main(argv: list[str] | None = None) -> int:
    try:
        options = parse_options(argv)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if options.end_to_end:
        from benchmarks.end_to_end import run as run_end_to_end

        run_end_to_end(options)
    else:
        run(options)
    return 0


if __name__ == "__main__":
    sys.exit(main())
