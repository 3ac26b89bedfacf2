"""A short measurement of each stage graph at a few onnxruntime thread counts, made the first time
an engines folder is used on a machine and kept beside the engines (``calibration.json``).

Each graph runs alone, on fresh random inputs of its real shapes (engine_format.stages.random_inputs),
spinning off as in the runtime: 1 warm-up run, then the median of ``RUNS``. At 544x960 on a
2-core CPU this takes about 3 s. An entry is reused while the machine (CPU model, usable cores,
onnxruntime version) and the graphs (their sha256) are the same; ``runtime.infer --calibrate``
measures again (do so on an idle machine: the numbers decide the threads, runtime/threads.py).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import numpy as np

from engine_format.manifest import STAGES, Manifest, verify_file, write_json_atomic
from engine_format.sessions import make_session
from engine_format.stages import Stage, TensorSpec, random_inputs
from gsvnet.provenance import cpu_model

from .threads import ThreadPlan, candidate_counts, plan_threads, usable_cores

FILE = "calibration.json"
RUNS = 3


def machine_key(manifest: Manifest) -> dict:
    """What a calibration depends on besides the thread counts."""
    import onnxruntime

    return {"cpu": cpu_model(), "cores": usable_cores(), "onnxruntime": onnxruntime.__version__,
            "graphs": {s: manifest.graphs[s]["sha256"] for s in calibrated_stages(manifest)}}


def calibrated_stages(manifest: Manifest) -> list[str]:
    """The graphs the onnxruntime CPU backend runs (its labels come from NumPy for half-pixel models)."""
    half_pixel = manifest.model.get("resampling", "half_pixel") == "half_pixel"
    return [s for s in STAGES if not (half_pixel and s == "labels")]


def measure_stage(manifest: Manifest, stage: str, threads: int, runs: int = RUNS, seed: int = 0) -> float:
    """Median milliseconds of one run of ``stage``'s graph with ``threads`` intra-op threads."""
    entry = manifest.graphs[stage]
    spec = Stage(stage, tuple(TensorSpec.from_dict(d) for d in entry["inputs"]), ())
    feeds = random_inputs(spec, 1, np.random.default_rng(seed))
    session = make_session(verify_file(manifest, entry, f"'{stage}' graph"), threads=threads, spinning=False,
                           precision=entry.get("precision", "fp32"))
    session.run(None, feeds)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        session.run(None, feeds)
        times.append((time.perf_counter() - start) * 1e3)
    return float(np.median(times))


def _read(path: Path) -> dict:
    import json

    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def stage_timings(manifest: Manifest, budget: int, remeasure: bool = False,
                  log: Callable[[str], None] = print) -> tuple[dict[str, dict[int, float]], str]:
    """stage -> {threads: median ms} for the counts worth trying within ``budget`` (read from
    ``calibration.json`` where it matches this machine and these graphs, measured otherwise and
    written back), and a line saying where they came from."""
    path = manifest.folder / FILE
    key = machine_key(manifest)
    stored = {} if remeasure else _read(path)
    known: dict[str, dict[str, float]] = stored.get("stages", {}) if stored.get("machine") == key else {}
    counts = candidate_counts(budget)
    missing = [(s, t) for s in calibrated_stages(manifest) for t in counts if str(t) not in known.get(s, {})]
    if not missing:
        created = stored.get("created", "?")
        return _as_ints(known, counts), f"calibration of {created} in {path}"
    started = time.perf_counter()
    log(f"calibrating the graphs in {manifest.folder} on this machine (threads {', '.join(map(str, counts))}; "
        "once per machine, kept in calibration.json) ...")
    for stage, threads in missing:
        known.setdefault(stage, {})[str(threads)] = round(measure_stage(manifest, stage, threads), 3)
    created = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    data = {"machine": key, "created": created, "seconds": round(time.perf_counter() - started, 1), "runs": RUNS,
            "stages": known}
    where = f"measured now ({data['seconds']} s)"
    try:
        write_json_atomic(path, data)
        where += f", kept in {path}"
    except OSError as e:
        where += f"; not kept ({path} is not writable: {e.strerror})"
    return _as_ints(known, counts), where


def _as_ints(known: dict[str, dict[str, float]], counts: list[int]) -> dict[str, dict[int, float]]:
    return {s: {int(t): ms for t, ms in v.items() if int(t) in counts} for s, v in known.items()}


def thread_plan(backend: str, manifest: Manifest, budget: int, recalibrate: bool = False,
                log: Callable[[str], None] = print) -> ThreadPlan | None:
    """The CPU plan of a pipelined run on ``backend`` (None for GPU backends, which run their steps
    one after the other): calibrated for onnxruntime, the core-count rule for PyTorch."""
    if backend == "onnxruntime":
        timings, where = stage_timings(manifest, budget, recalibrate, log)
        return plan_threads(budget, list(STAGES), timings, where)
    if backend == "torch":
        return plan_threads(budget, list(STAGES), None, "PyTorch: not calibrated")
    return None
