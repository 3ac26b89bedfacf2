"""Tuning: a short measurement of each stage graph at a few thread counts on each CPU engine, made the
first time an engines folder is used on a machine and kept beside the engines (``tuning.json``).

Each graph runs alone, on fresh random inputs of its real shapes (engine_format.stages.random_inputs),
as in the runtime (onnxruntime with spinning off, OpenVINO unpinned): 1 warm-up run, then the median
of ``RUNS``. At 544x960 on a 2-core CPU this takes about 3 s for onnxruntime (OpenVINO also compiles
each graph once per precision, kept in its model cache). Timings are kept per engine and precision
("onnxruntime f32", "openvino bf16", ...) and reused while the machine (CPU model, usable cores),
the graphs (their sha256) and the engine's version are the same; ``runtime.infer --tune``
measures again (do so on an idle machine: the numbers decide the threads, runtime/threads.py).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np

from engine_format.manifest import STAGES, Manifest, ManifestError, verify_file, write_json_atomic
from engine_format.sessions import make_session
from engine_format.stages import Stage, TensorSpec, random_inputs
from gsvnet.provenance import cpu_model

from .errors import UserError, first_line
from .threads import ThreadPlan, candidate_counts, plan_threads, usable_cores

FILE = "tuning.json"
RUNS = 3
#: the engines tuned for a pipelined CPU run (the torch backend follows the core-count rule)
ENGINES = ("onnxruntime", "openvino")


def machine_key(manifest: Manifest) -> dict:
    """What every tuning in the file depends on besides the engine and the thread counts."""
    from .backends.base import cpu_identity

    return {"cpu": cpu_model(), "flags": cpu_identity()["flags_sha256"], "cores": usable_cores(),
            "graphs": {s: manifest.graphs[s]["sha256"] for s in tuned_stages(manifest)}}


def engine_version(engine: str) -> str:
    if engine == "openvino":
        import openvino

        return openvino.__version__
    import onnxruntime

    return onnxruntime.__version__


def tuned_stages(manifest: Manifest) -> list[str]:
    """The graphs the CPU backends run (their labels come from NumPy for half-pixel models)."""
    half_pixel = manifest.model.get("resampling", "half_pixel") == "half_pixel"
    return [s for s in STAGES if not (half_pixel and s == "labels")]


def open_graph(engine: str, manifest: Manifest, stage: str, threads: int, precision: str) -> Callable[[dict], Any]:
    """``stage``'s graph loaded as ``engine`` loads it for a run at ``precision`` with ``threads``
    threads: a callable on a feed dict (input name -> array)."""
    path = verify_file(manifest, manifest.graphs[stage], f"'{stage}' graph")
    if engine == "openvino":
        from .backends.openvino_backend import compile_graph, make_core, read_graph, stage_precision

        core, _ = make_core(manifest.folder)
        return compile_graph(core, read_graph(core, path), threads, stage_precision(stage, precision))
    session = make_session(path, threads=threads, spinning=False, precision=manifest.graphs[stage].get("precision", "fp32"))
    return lambda feeds: session.run(None, feeds)


def measure_stage(manifest: Manifest, stage: str, threads: int, runs: int = RUNS, seed: int = 0,
                  engine: str = "onnxruntime", precision: str = "f32") -> float:
    """Median milliseconds of one run of ``stage``'s graph on ``engine`` with ``threads`` threads."""
    entry = manifest.graphs[stage]
    spec = Stage(stage, tuple(TensorSpec.from_dict(d) for d in entry["inputs"]), ())
    feeds = random_inputs(spec, 1, np.random.default_rng(seed))
    graph = open_graph(engine, manifest, stage, threads, precision)
    graph(feeds)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        graph(feeds)
        times.append((time.perf_counter() - start) * 1e3)
    return float(np.median(times))


def _read(path: Path) -> dict:
    import json

    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def stage_timings(manifest: Manifest, budget: int, remeasure: bool = False, log: Callable[[str], None] = print,
                  engine: str = "onnxruntime", precision: str | None = None) -> tuple[dict[str, dict[int, float]], str]:
    """stage -> {threads: median ms} of ``engine`` at ``precision`` (None: the folder's) for the
    counts worth trying within ``budget`` (read from ``tuning.json`` where it matches this
    machine, these graphs and the engine's version, measured otherwise and written back), and a
    line saying where they came from."""
    from .backends.base import folder_precision

    precision = precision or folder_precision(manifest)
    path = manifest.folder / FILE
    key, name, version = machine_key(manifest), f"{engine} {precision}", engine_version(engine)
    stored = _read(path)
    stored = stored if stored.get("machine") == key else {}
    engines: dict[str, dict] = stored.get("engines", {})
    entry = engines.get(name, {}) if not remeasure else {}
    known: dict[str, dict[str, float]] = entry.get("stages", {}) if entry.get("version") == version else {}
    counts = candidate_counts(budget)
    missing = [(s, t) for s in tuned_stages(manifest) for t in counts if str(t) not in known.get(s, {})]
    if not missing:
        return _as_ints(known, counts), f"tuning of {entry.get('created', '?')} in {path} ({name})"
    started = time.perf_counter()
    log(f"tuning the threads for the graphs in {manifest.folder} on this machine ({name}, threads {', '.join(map(str, counts))}; "
        "once per machine, kept in tuning.json) ...")
    for stage, threads in missing:
        ms = measure_stage(manifest, stage, threads, engine=engine, precision=precision)
        known.setdefault(stage, {})[str(threads)] = round(ms, 3)
    seconds = round(time.perf_counter() - started, 1)
    engines[name] = {"version": version, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "seconds": seconds,
                     "runs": RUNS, "stages": known}
    where = f"measured now ({name}, {seconds} s)"
    try:
        write_json_atomic(path, {**stored, "machine": key, "engines": engines})
        where += f", kept in {path}"
    except OSError as e:
        where += f"; not kept ({path} is not writable: {e.strerror})"
    return _as_ints(known, counts), where


def _as_ints(known: dict[str, dict[str, float]], counts: list[int]) -> dict[str, dict[int, float]]:
    return {s: {int(t): ms for t, ms in v.items() if int(t) in counts} for s, v in known.items()}


#: an OpenVINO run's float32 graph runs in onnxruntime instead where onnxruntime's best time for it
#: is at least this much lower (on the 2-core EPYC of docs/cpu.md: downsample 1.3 vs 7.7 ms)
BORROW_GAIN = 0.1


def borrowed_stages(own: dict[str, dict[int, float]], other: dict[str, dict[int, float]],
                    eligible: list[str]) -> dict[str, str]:
    """stage -> 'onnxruntime' for each ``eligible`` stage whose best onnxruntime time (``other``)
    is BORROW_GAIN below its best time on the run's own engine (``own``)."""
    return {s: "onnxruntime" for s in eligible
            if own.get(s) and other.get(s) and min(other[s].values()) < (1 - BORROW_GAIN) * min(own[s].values())}


def borrow_eligible(manifest: Manifest, precision: str | None) -> list[str]:
    """The stages an OpenVINO run at ``precision`` computes in float32 as onnxruntime does (the
    keyframe graph of an INT8 run is quantised differently by each engine, so it stays)."""
    from .backends.base import folder_precision
    from .backends.openvino_backend import stage_precision

    precision = precision or folder_precision(manifest)
    return [s for s in tuned_stages(manifest)
            if stage_precision(s, precision) == "f32" and not (s == "keyframe" and precision == "int8")]


def engine_timings(manifest: Manifest, budget: int, remeasure: bool = False, log: Callable[[str], None] = print,
                   engine: str = "onnxruntime", precision: str | None = None, seen: dict | None = None
                   ) -> tuple[dict[str, dict[int, float]], dict[str, str], str]:
    """``stage_timings`` of a run on ``engine``, and the stages it hands to onnxruntime
    (``borrowed_stages``; only OpenVINO runs do), their timings being onnxruntime's. ``seen``
    keeps what was read or measured by (engine, precision), so that one choice among several
    candidates measures each once."""
    from .backends.base import folder_precision

    seen = {} if seen is None else seen

    def timed(e: str, p: str) -> tuple[dict[str, dict[int, float]], str]:
        if (e, p) not in seen:
            seen[e, p] = stage_timings(manifest, budget, remeasure, log, e, p)
        return seen[e, p]

    timings, where = timed(engine, precision or folder_precision(manifest))
    if engine != "openvino":
        return timings, {}, where
    other, _ = timed("onnxruntime", folder_precision(manifest))
    borrowed = borrowed_stages(timings, other, borrow_eligible(manifest, precision))
    return {**timings, **{s: other[s] for s in borrowed}}, borrowed, where


def thread_plan(backend: str, manifest: Manifest, budget: int, retune: bool = False,
                log: Callable[[str], None] = print, precision: str | None = None) -> ThreadPlan | None:
    """The CPU plan of a pipelined run on ``backend`` at ``precision`` (None for GPU backends,
    which run their steps one after the other): tuned for onnxruntime and OpenVINO (with the
    graphs an OpenVINO run hands to onnxruntime), the core-count rule for PyTorch."""
    if backend in ENGINES:
        timings, borrowed, where = engine_timings(manifest, budget, retune, log, backend, precision)
        return replace(plan_threads(budget, list(STAGES), timings, where), engines=borrowed)
    if backend == "torch":
        return plan_threads(budget, list(STAGES), None, "PyTorch: not tuned")
    return None


# ---- the CPU engine and precision ``--backend auto`` runs: the fastest that keeps the labels ----

#: a reduced precision (bf16, int8) is chosen only if, on the folder's real frames, its keyframe
#: net gives the FP32 reference's class on this share of the 1/8-grid cells ...
GRID_AGREEMENT = 0.99
#: ... and its labels over a keyframe interval (a keyframe, 3 propagated) equal the reference's
#: on this share of the pixels of every frame
LABEL_AGREEMENT = 0.985
#: a candidate whose CamVid accuracy with the shipped weights fell more than this many mIoU points
#: below onnxruntime FP32 at some distance (docs/cpu.md, "Accuracy per precision") ...
MIOU_BUDGET = 0.3
#: ... is never chosen by ``--backend auto``: candidate name -> what was measured (a test holds
#: this to the recorded table; ``--precision`` still runs it)
NOT_AUTOMATIC: dict[str, str] = {}
#: the stages of a propagation step (each frame between keyframes) and of a keyframe step
PROPAGATION = ("downsample", "flow", "warp", "intra", "guide", "filter")
KEYFRAME = ("keyframe", "downsample")


@dataclass(frozen=True)
class Candidate:
    """One way to run the graphs on this CPU: an engine (backend name) at a run precision."""

    engine: str
    precision: str

    @property
    def name(self) -> str:
        return f"{self.engine} {self.precision}"


@dataclass
class Guard:
    """How a candidate's results compare with the FP32 reference on the folder's real frames."""

    grid: float  # share of keyframe-grid cells with the reference class (all frames as keyframes)
    labels: list[float]  # per frame of the interval: share of pixels with the reference label
    why_not: str = ""  # set when there was nothing to measure against

    @property
    def passed(self) -> bool:
        return not self.why_not and self.grid >= GRID_AGREEMENT and min(self.labels) >= LABEL_AGREEMENT

    def describe(self) -> str:
        if self.why_not:
            return self.why_not
        return (f"{100 * self.grid:.2f}% of keyframe-grid cells (needs {100 * GRID_AGREEMENT:g}%), "
                f"{100 * min(self.labels):.2f}% of the pixels of the worst frame (needs {100 * LABEL_AGREEMENT:g}%)")


def frame_cost(timings: dict[str, dict[int, float]], plan: ThreadPlan, interval: int) -> float:
    """CPU milliseconds (ms x threads) per frame at keyframe interval ``interval``: a keyframe
    step every ``interval`` frames and a propagation step on the others, each graph at the
    thread count the plan gives it (the NumPy labels cost the same on every engine)."""
    def cost(stage: str) -> float:
        threads = plan.stage_threads[stage]
        return timings[stage][threads] * threads

    keyframe = sum(cost(s) for s in KEYFRAME)
    return (keyframe + (interval - 1) * sum(cost(s) for s in PROPAGATION)) / interval


def rank(costs: dict[Candidate, float], guards: dict[Candidate, Guard], fallback: str = "") -> tuple[list[Candidate], list[str]]:
    """The candidates worth trying, fastest first, and one clause per candidate left out: one in
    ``guards`` (a reduced precision) that fails its guard is never chosen, unless no candidate
    passes; then all are kept, fastest first, and the last clause says so with ``fallback`` (why
    there is nothing better)."""
    ordered = sorted(costs, key=lambda c: costs[c])
    passing = [c for c in ordered if c not in guards or guards[c].passed]
    failed = [f"{c.name} failed the accuracy guard ({guards[c].describe()})" for c in ordered if c not in passing]
    if passing:
        return passing, failed
    return ordered, [*failed, f"none passes, so the fastest runs anyway ({fallback})"]


def cpu_candidates(manifest: Manifest, precision: str | None) -> tuple[list[Candidate], list[str]]:
    """(engine, precision) pairs that can run this folder here (``precision``: only that one), and
    one clause per CPU engine that cannot."""
    from .backends import precision_unavailable, unavailable_reason
    from .backends.base import PRECISIONS

    found, skipped = [], []
    for engine in ENGINES:
        if (why := unavailable_reason(engine, manifest)) is not None:
            skipped.append(f"{engine}: {why}")
            continue
        runs = [p for p in ((precision,) if precision else PRECISIONS) if precision_unavailable(engine, manifest, p) is None]
        found += [Candidate(engine, p) for p in runs]
        if not runs:
            wanted = precision or "f32"
            skipped.append(f"{engine}: no {wanted} ({precision_unavailable(engine, manifest, wanted)})")
    return found, skipped


def measure_guard(manifest: Manifest, candidate: Candidate, reference: dict[str, np.ndarray]) -> Guard:
    """``candidate`` on the verification frames against ``reference`` (see ``reference_results``)."""
    from .backends import create_backend
    from .verification import check_labels

    frames = reference["frames"]
    backend = create_backend(candidate.engine, manifest, threads=1, profile=False, precision=candidate.precision)
    try:
        grid = backend.host_scores(backend.keyframe_step(frames)).argmax(axis=1)
        labels = check_labels(backend, frames, reference["labels"])
    finally:
        backend.close()
    return Guard(float(np.mean(grid == reference["grid"])), labels)


def reference_results(manifest: Manifest) -> dict[str, np.ndarray] | None:
    """The folder's verification frames at the engine size, the PyTorch FP32 reference's keyframe-grid
    classes for each of them and its labels over the interval; None without a verification set."""
    from engine_format.verification_set import engine_frames, read_verification_set

    from .backends import create_backend

    entry = manifest.data.get("verification")
    if not entry:
        return None
    data = read_verification_set(verify_file(manifest, entry, "verification set"))
    frames = engine_frames(data["frames"], manifest.frame_size)
    torch_backend = create_backend("torch", manifest, profile=False)
    grid = torch_backend.host_scores(torch_backend.keyframe_step(frames)).argmax(axis=1)
    return {"frames": frames, "grid": grid, "labels": data["labels_fp32"]}


def choose_cpu(manifest: Manifest, budget: int, interval: int, precision: str | None = None, remeasure: bool = False,
               log: Callable[[str], None] = print) -> tuple[list[Candidate], list[str]]:
    """The CPU candidates for ``--backend auto``, the one to use first, and one clause per CPU
    engine or precision left out. With more than one candidate, each is timed per graph and
    thread count (``stage_timings``), ranked by ``frame_cost`` at ``interval``, and every reduced
    precision held to the FP32 reference (``Guard``; kept in tuning.json with the choice);
    one line says which and why."""
    candidates, skipped = cpu_candidates(manifest, precision)
    if len(candidates) <= 1:
        return candidates, skipped
    costs, measured, broken, seen = {}, False, [], {}
    for c in candidates:
        try:
            timings, _, source = engine_timings(manifest, budget, remeasure, log, c.engine, c.precision, seen)
        except (UserError, ManifestError):
            raise
        except Exception as e:  # e.g. a graph this engine's version cannot compile
            broken.append(f"{c.name}: could not be timed ({first_line(e)})")
            continue
        costs[c] = frame_cost(timings, plan_threads(budget, list(STAGES), timings), interval)
        measured |= source.startswith("measured now")
    if len(costs) <= 1:
        return list(costs), skipped + broken
    # a precision asked for is run as asked; one chosen here must keep the FP32 results, and is
    # worth holding to them only where it is faster than every f32 candidate
    f32 = min((v for c, v in costs.items() if c.precision == "f32"), default=float("inf"))
    reduced = [c for c, v in costs.items() if c.precision != "f32" and v < f32] if precision is None else []
    not_automatic = [f"{c.name} is not chosen automatically ({NOT_AUTOMATIC[c.name]})" for c in reduced
                     if c.name in NOT_AUTOMATIC]
    reduced = [c for c in reduced if c.name not in NOT_AUTOMATIC]
    ranked = {c: v for c, v in costs.items() if c.precision == "f32" or precision is not None or c in reduced}
    guards = _guards(manifest, reduced, remeasure)
    order, left_out = rank(ranked, guards, f"{manifest.folder} holds only an INT8 keyframe graph; rebuild it without "
                                           "--precision int8 for FP32")
    left_out = not_automatic + left_out
    first = order[0]
    others = ", ".join(f"{c.name} {costs[c]:.1f}" for c in sorted(costs, key=costs.get) if c != first)
    passed = f"; its accuracy guard passed: {guards[first].describe()}" if first in guards and guards[first].passed else ""
    log(f"CPU choice: {first.name}, {costs[first]:.1f} CPU-ms per frame at interval {interval} (others: {others}){passed}"
        + (f"; {'; '.join(left_out)}" if left_out else "")
        + f" (timings {'measured now, kept' if measured else 'kept'} in {manifest.folder / FILE}; --tune measures again)")
    _keep(manifest, {"first": first.name, "interval": interval, "budget": budget,
                     "cpu_ms_per_frame": {c.name: round(v, 3) for c, v in costs.items()}, "left_out": left_out})
    return order, skipped + broken + left_out


def _guards(manifest: Manifest, needed: list[Candidate], remeasure: bool) -> dict[Candidate, Guard]:
    """Each candidate's guard, from tuning.json where this machine and engine version
    measured it, measured otherwise and kept."""
    path, key = manifest.folder / FILE, machine_key(manifest)
    stored = _read(path)
    kept = stored.get("guards", {}) if stored.get("machine") == key and not remeasure else {}
    guards, reference = {}, None
    for c in needed:
        entry = kept.get(c.name, {})
        if entry.get("version") == engine_version(c.engine):
            guards[c] = Guard(entry["grid"], entry["labels"], entry.get("why_not", ""))
            continue
        if reference is None:
            reference = reference_results(manifest)
        if reference is None:
            guards[c] = Guard(0.0, [0.0], f"{manifest.folder} has no verification set to hold {c.precision} to "
                                          f"(rebuild with `python -m export.build_engines --out {manifest.folder}`)")
        else:
            try:
                guards[c] = measure_guard(manifest, c, reference)
            except (UserError, ManifestError):
                raise
            except Exception as e:
                guards[c] = Guard(0.0, [0.0], f"running it failed ({first_line(e)})")
        kept[c.name] = {"version": engine_version(c.engine), "grid": guards[c].grid, "labels": guards[c].labels,
                        "why_not": guards[c].why_not, "passed": guards[c].passed}
    if needed:
        _keep(manifest, None, kept)
    return guards


def _keep(manifest: Manifest, choice: dict | None, guards: dict | None = None) -> None:
    """Write the choice and/or the guards into tuning.json (nothing if it is not writable)."""
    path, key = manifest.folder / FILE, machine_key(manifest)
    stored = _read(path)
    stored = stored if stored.get("machine") == key else {"machine": key}
    if choice is not None:
        stored["choice"] = {**choice, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    if guards is not None:
        stored["guards"] = guards
    try:
        write_json_atomic(path, stored)
    except OSError:
        pass
