"""OpenVINO backend (CPU): the manifest's ONNX stage graphs compiled by OpenVINO's CPU plugin.

Each graph is read from the engines folder with its ``gsvnet::`` custom-op nodes replaced by the
model-local functions they carry (OpenVINO refuses a custom-domain node), compiled once with its
own thread count (runtime/threads.py) and precision, and run on numpy arrays. Precisions of a run:

- ``f32``: every graph in float32 (the hint is explicit: OpenVINO defaults to bf16 where it can);
- ``bf16``: the four networks (keyframe, flow, intra, guide) in bfloat16 on CPUs with AVX512_BF16
  or AMX; downsample, warp, filter and labels stay float32 (no matrix products to gain on);
- ``int8``: the INT8 QDQ keyframe graph of a ``--precision int8`` build, the rest float32.

Compiled graphs are kept in ``ENGINES/openvino_cache`` (OpenVINO's CACHE_DIR, keyed by the graph
and its precision), so a later run loads them instead of compiling again. A float32 graph that
onnxruntime runs faster here (the tuning measures both; runtime/tuning.py ``borrowed_stages``)
is run by an onnxruntime session instead, as the thread plan's ``engines`` says.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Callable

import numpy as np

from engine_format.manifest import STAGES, Manifest, verify_file

from ..errors import UserError, first_line
from ..threads import ThreadPlan
from .base import PRECISIONS, Array, Backend, HostArrays, cpu_identity, folder_precision

#: the graphs a bf16 run computes in bfloat16
BF16_STAGES = ("keyframe", "flow", "intra", "guide")
CACHE = "openvino_cache"
INSTALL = "pip install openvino"


def unavailable_reason() -> str | None:
    """None if OpenVINO imports and has its CPU device here, else why not (one line)."""
    try:
        import openvino as ov
    except ImportError:
        return f"OpenVINO is not installed ({INSTALL})"
    except Exception as e:  # a wheel that does not load on this system
        return f"OpenVINO does not import ({first_line(e)}; reinstall it: {INSTALL})"
    if "CPU" not in ov.Core().available_devices:
        return "OpenVINO has no CPU device here"
    return None


def cpu_capabilities() -> tuple[str, ...]:
    """What OpenVINO's CPU plugin computes natively here, e.g. ('FP32', 'BF16', 'INT8', ...)."""
    import openvino as ov

    return tuple(ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))


def precision_reason(manifest: Manifest, precision: str) -> str | None:
    """None if a run at ``precision`` can use this folder on this CPU, else why not and the fix."""
    if precision not in PRECISIONS:
        return f"unknown precision {precision!r}; choose one of: {', '.join(PRECISIONS)}"
    folder = folder_precision(manifest)
    if folder == "int8" and precision != "int8":
        return (f"{manifest.folder} holds an INT8 keyframe graph and no FP32 one; use --precision int8, or rebuild "
                f"without --precision int8 for {precision}")
    if precision == "int8" and folder != "int8":
        return (f"{manifest.folder} has no INT8 keyframe graph; build one with `python -m export.build_engines "
                f"--out {manifest.folder} --precision int8 --calibration DIR`")
    if precision == "bf16" and "BF16" not in cpu_capabilities():
        return (f"this CPU ({cpu_identity()['cpu']}) has neither AVX512_BF16 nor AMX, so OpenVINO would run bf16 "
                "as f32; use --precision f32")
    return None


def read_graph(core, path: Path):
    """An ONNX file as an OpenVINO model of ``core``, its ``gsvnet::`` nodes inlined from their
    local functions."""
    import onnx
    from onnx.inliner import inline_local_functions

    model = onnx.load(str(path))
    if model.functions:
        model = inline_local_functions(model)
    return core.read_model(model.SerializeToString(), b"")


def compile_graph(core, model, threads: int, precision: str, streams: int = 1):
    """``model`` compiled for the CPU: ``streams`` requests may run at once, each on ``threads``
    threads (0: OpenVINO's default), with ``precision`` 'f32' or 'bf16'; threads are not pinned
    to cores, which they share with the decoder, the encoder and the other graphs."""
    config = {"INFERENCE_PRECISION_HINT": precision, "NUM_STREAMS": streams, "ENABLE_CPU_PINNING": False}
    if threads:
        config["INFERENCE_NUM_THREADS"] = threads * streams
    return core.compile_model(model, "CPU", config)


def stage_precision(stage: str, precision: str) -> str:
    """The precision hint stage ``stage`` is compiled with in a run at ``precision``."""
    return "bf16" if precision == "bf16" and stage in BF16_STAGES else "f32"


def make_core(folder: Path):
    """An OpenVINO core whose model cache is ``folder``/openvino_cache (none if it cannot be made)."""
    import openvino as ov

    core = ov.Core()
    cache = folder / CACHE
    try:
        cache.mkdir(exist_ok=True)
    except OSError:
        return core, None
    core.set_property({"CACHE_DIR": str(cache)})
    return core, cache


class OpenVinoBackend(HostArrays, Backend):
    """One compiled OpenVINO graph per stage; each thread runs them through its own requests."""

    name = "openvino"
    concurrent_steps = True  # every calling thread has its own infer requests; outputs are copies

    def __init__(self, manifest: Manifest, threads: int = 0, profile: bool = True, plan: ThreadPlan | None = None,
                 precision: str | None = None) -> None:
        """threads: threads of every graph (0: OpenVINO's default), unless ``plan`` gives each
        graph its own count; precision: 'f32', 'bf16' or 'int8' (None: the folder's, f32 or int8)."""
        import openvino as ov

        super().__init__(manifest, profile, plan)
        self.run_precision = precision or folder_precision(manifest)
        if (why := precision_reason(manifest, self.run_precision)) is not None:
            raise UserError(f"openvino cannot run --precision {self.run_precision}: {why}")
        self.precision = {"f32": "fp32", "bf16": "bf16", "int8": "int8-keyframe"}[self.run_precision]
        self.version = ov.__version__
        core, self.cache = make_core(manifest.folder)
        workers = plan.keyframe_workers if plan is not None else 0
        # requests that may run at once: keyframe steps on the workers; downsample there and inline
        streams = {"keyframe": max(1, workers), "downsample": workers + 1}
        self.compiled = {}
        #: stages the plan hands to onnxruntime (float32 graphs it runs faster here): stage -> run
        self.borrowed: dict[str, Callable[..., np.ndarray]] = {}
        for stage in STAGES:
            path = verify_file(manifest, manifest.graphs[stage], f"'{stage}' graph")
            count = plan.stage_threads.get(stage, 1) if plan is not None else threads
            if plan is not None and plan.engines.get(stage) == "onnxruntime":
                self.borrowed[stage] = onnxruntime_graph(manifest, stage, path, count)
                continue
            self.compiled[stage] = compile_graph(core, read_graph(core, path), count,
                                                 stage_precision(stage, self.run_precision), streams.get(stage, 1))
        self._local = threading.local()
        self._requests: list = []
        self._lock = threading.Lock()
        self._cancelled = False

    def _request(self, stage: str):
        """This thread's infer request of ``stage`` (made on first use)."""
        mine = getattr(self._local, "requests", None)
        if mine is None:
            mine = self._local.requests = {}
        if stage not in mine:
            mine[stage] = self.compiled[stage].create_infer_request()
            with self._lock:
                self._requests.append(mine[stage])
        return mine[stage]

    def run(self, stage: str, *inputs: Array) -> Array:
        if self._cancelled:
            raise RuntimeError("the openvino backend was cancelled")
        if stage in self.borrowed:
            return self.borrowed[stage](*inputs)
        result = self._request(stage).infer([np.ascontiguousarray(x) for x in inputs], share_inputs=True)
        return result.to_tuple()[0]

    def cancel(self) -> None:
        self._cancelled = True
        with self._lock:
            for request in self._requests:
                request.cancel()

    def close(self) -> None:
        self._requests.clear()
        self.compiled.clear()
        self.borrowed.clear()

    def library_versions(self) -> dict:
        versions = {**super().library_versions(), "openvino": self.version}
        if self.borrowed:
            import onnxruntime

            versions["onnxruntime"] = onnxruntime.__version__
        return versions

    def describe(self) -> str:
        threads = self.plan.describe() if self.plan is not None else "default threads"
        cache = f"model cache {self.cache}" if self.cache is not None else "no model cache (folder not writable)"
        return f"openvino {self.version} (CPU, {self.run_precision}, {threads}; {cache})"


def onnxruntime_graph(manifest: Manifest, stage: str, path: Path, threads: int) -> Callable[..., np.ndarray]:
    """``stage``'s graph as an onnxruntime session (spinning off, as in a tuned onnxruntime run):
    a callable on its inputs in order, returning its output."""
    from engine_format.sessions import make_session

    entry = manifest.graphs[stage]
    session = make_session(path, threads=threads, spinning=False, precision=entry.get("precision", "fp32"))
    names, output = [spec["name"] for spec in entry["inputs"]], entry["outputs"][0]["name"]
    return lambda *inputs: session.run([output], dict(zip(names, inputs)))[0]
