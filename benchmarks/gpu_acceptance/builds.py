"""The engines folders the acceptance checks need, built once under ``OUT/engines`` and shared,
and how long building them is expected to take.

A check's time budget is its own run time plus the estimated time of the builds it needs that are
not done yet (``plan.plan``). Estimates start from the documented figures below and give way to
build times measured on this machine as soon as there are any: this run's builds, and the
``build_seconds`` of engines that an earlier run left under ``OUT/engines``. A measured time is
carried to another size or optimisation level by ``export_scale`` / ``engine_scale``.

Pure (reads manifests, runs nothing), so the estimates are tested on the CPU.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from engine_format.manifest import MANIFEST_NAME, STAGES

REF_SIZE = (544, 960)
#: seconds for the FP32 ONNX export + onnxruntime check + verification set at 544x960 (shipped
#: weights), MEASURED on a 2-core CPU: 31 s when idle, 81 s while shared with other work (then 97 s
#: at 1024x2048 and 95 s at 136x240: mostly a fixed cost). The FP16 graphs of a TensorRT build cost
#: about the same again.
EXPORT_S = 90.0
#: TensorRT build seconds per engine at 544x960, optimisation level 3 (TensorRT's default): an
#: ESTIMATE, not a measurement (no GPU has run this code); measured times replace it
ENGINE_BUILD_S = {"downsample": 5.0, "keyframe": 60.0, "flow": 30.0, "warp": 10.0, "intra": 20.0, "guide": 15.0,
                  "filter": 10.0, "labels": 5.0}
#: builder time at each optimisation level relative to level 3, also an estimate
OPT_FACTOR = {0: 0.3, 1: 0.5, 2: 0.75, 3: 1.0, 4: 2.0, 5: 4.0}
#: checking an engines folder that is already up to date (loading the weights, hashing the files)
REUSE_S = 10.0
DOCUMENTED = "documented estimates, benchmarks/gpu_acceptance/builds.py"


def _pixels(size: tuple[int, int]) -> float:
    return size[0] * size[1] / (REF_SIZE[0] * REF_SIZE[1])


def export_scale(size: tuple[int, int]) -> float:
    """Export time at ``size`` relative to 544x960 (mostly fixed: tracing, onnxruntime sessions)."""
    return 0.9 + 0.1 * _pixels(size)


def engine_scale(size: tuple[int, int], opt_level: int) -> float:
    """TensorRT build time at ``size`` and ``opt_level`` relative to 544x960 at level 3: half of it
    fixed (parsing, tactic selection), half the tactic timing, which grows with the pixels."""
    return (0.5 + 0.5 * _pixels(size)) * OPT_FACTOR[opt_level]


@dataclass(frozen=True)
class Build:
    """An engines folder: FP32 ONNX graphs at ``size``, plus TensorRT engines with these settings
    when ``tensorrt``; built by ``python -m export.build_engines --backend BACKEND``."""

    folder: str  # under OUT/engines; '' when a check builds it elsewhere itself (pytest's session fixtures)
    size: tuple[int, int]
    tensorrt: bool = False
    opt_level: int = 3
    max_batch: int = 4
    backend: str = "onnx"  # onnx, tensorrt, or auto (what benchmarks.fps builds with)

    def describe(self) -> str:
        what = f"{self.size[0]}x{self.size[1]} ONNX graphs"
        engines = f" + TensorRT engines (opt level {self.opt_level}, max batch {self.max_batch})"
        return what + (engines if self.tensorrt else "")

    def argv(self, out: Path) -> list[str]:
        """``python`` arguments that build it into ``out``."""
        args = ["-m", "export.build_engines", "--out", str(out), "--size", f"{self.size[0]}x{self.size[1]}",
                "--backend", self.backend]
        return args + (["--opt-level", str(self.opt_level), "--max-batch", str(self.max_batch)] if self.tensorrt else [])


def read_manifest(folder: Path) -> dict | None:
    """The manifest of an engines folder as JSON, None where there is none (or it is unreadable)."""
    try:
        data = json.loads((folder / MANIFEST_NAME).read_text())
        return data if isinstance(data, dict) else None
    except (OSError, ValueError):
        return None


def _complete(data: dict, key: str) -> bool:
    """The manifest section ``key`` (graphs, graphs_fp16) lists every stage."""
    return set(data.get(key) or {}) >= set(STAGES)


@dataclass
class Ledger:
    """What is built under ``root`` (OUT/engines; None: nothing) and the build times measured on
    this machine.

    tensorrt / gpu: this machine's TensorRT version and GPU name (engines built for others would be rebuilt).
    """

    root: Path | None = None
    tensorrt: str | None = None
    gpu: str | None = None
    #: measured (seconds, size) of one ONNX export (FP32 graphs, or a TensorRT build's FP16 graphs)
    exports: list[tuple[float, tuple[int, int]]] = field(default_factory=list)
    #: measured (stage, seconds, size, opt level) of one TensorRT engine
    engines: list[tuple[str, float, tuple[int, int], int]] = field(default_factory=list)
    #: this run's builds, for the report
    records: list[dict] = field(default_factory=list)

    @classmethod
    def scan(cls, root: Path, tensorrt: str | None = None, gpu: str | None = None) -> Ledger:
        """The ledger with the engine build times that manifests under ``root`` record (an earlier run's)."""
        ledger = cls(root, tensorrt, gpu)
        for path in sorted(root.glob(f"*/{MANIFEST_NAME}")) if root.is_dir() else ():
            data = read_manifest(path.parent) or {}
            size = tuple(data.get("frame_size") or ())
            for stage, entry in (data.get("engines") or {}).items():
                if len(size) == 2 and ledger._for_this_machine(entry) and entry.get("build_seconds") is not None:
                    ledger.engines.append((stage, float(entry["build_seconds"]), size, int(entry["settings"]["opt_level"])))
        return ledger

    def folder(self, build: Build) -> Path:
        if self.root is None or not build.folder:
            raise ValueError(f"{build.describe()} has no folder under OUT/engines")
        return self.root / build.folder

    def _for_this_machine(self, entry: dict) -> bool:
        return entry.get("tensorrt") == self.tensorrt and entry.get("gpu") == self.gpu and "settings" in entry

    def ready(self, build: Build) -> tuple[bool, bool, set[str]]:
        """(FP32 graphs there, FP16 graphs there, stages whose engines have ``build``'s settings for
        this machine): what the build would reuse, as far as the manifest tells (the build itself
        also compares hashes and versions)."""
        data = read_manifest(self.folder(build)) if build.folder and self.root is not None else None
        if not data or tuple(data.get("frame_size") or ()) != tuple(build.size):
            return False, False, set()
        fp32, fp16 = _complete(data, "graphs"), _complete(data, "graphs_fp16")
        engines = {stage for stage, e in (data.get("engines") or {}).items() if self._for_this_machine(e)
                   and e["settings"].get("opt_level") == build.opt_level and e["settings"].get("max_batch") == build.max_batch}
        return fp32, fp16, engines

    def _export_s(self, size: tuple[int, int]) -> float:
        if self.exports:
            seconds, measured_at = self.exports[-1]
            return seconds * export_scale(size) / export_scale(measured_at)
        return EXPORT_S * export_scale(size)

    def _engine_s(self, stage: str, size: tuple[int, int], opt_level: int) -> float:
        own = [e for e in self.engines if e[0] == stage]
        if own:
            _, seconds, at, opt = own[-1]
            return seconds * engine_scale(size, opt_level) / engine_scale(at, opt)
        # a stage not built yet: the documented figure, corrected by how this machine did on the others
        documented = sum(ENGINE_BUILD_S[s] * engine_scale(at, opt) for s, _, at, opt in self.engines)
        ratio = sum(e[1] for e in self.engines) / documented if documented else 1.0
        return ENGINE_BUILD_S[stage] * engine_scale(size, opt_level) * ratio

    def basis(self) -> str:
        """On what the estimates rest now."""
        measured = len(self.exports) + len(self.engines)
        return DOCUMENTED if not measured else f"scaled from {measured} build time(s) measured on this machine"

    def estimate(self, build: Build, counted: set | None = None) -> float:
        """Seconds that building ``build`` takes now; ``counted``: parts an earlier check will already
        have built in the same plan (updated with this build's parts)."""
        counted = set() if counted is None else counted
        fp32, fp16, engines = self.ready(build)
        where = build.folder or build  # a folder the check makes for itself is never shared
        parts = {("fp32", where)}
        if build.tensorrt:
            parts.add(("tensorrt", where, build.opt_level, build.max_batch))
        todo = parts - counted
        counted |= parts
        if not todo:
            return 0.0
        seconds = REUSE_S
        if any(p[0] == "fp32" for p in todo) and not fp32:
            seconds += self._export_s(build.size)
        if any(p[0] == "tensorrt" for p in todo):
            seconds += 0.0 if fp16 else self._export_s(build.size)
            seconds += sum(self._engine_s(s, build.size, build.opt_level) for s in STAGES if s not in engines)
        return seconds

    def record(self, build: Build, seconds: float, estimate_s: float, basis: str, before: dict | None,
               exit_status: int | None) -> dict:
        """Note a finished (or stopped) build of ``build`` that took ``seconds``: its engines' build
        times and its export time become measurements; returns the report's entry."""
        after = read_manifest(self.folder(build)) or {}
        old = (before or {}).get("engines") or {}
        built = {s: float(e["build_seconds"]) for s, e in (after.get("engines") or {}).items()
                 if e.get("sha256") != (old.get(s) or {}).get("sha256") and e.get("build_seconds") is not None}
        for stage, s in built.items():
            self.engines.append((stage, s, tuple(build.size), build.opt_level))
        kinds = ("graphs", "graphs_fp16") if build.tensorrt else ("graphs",)
        exports = sum(_complete(after, k) and not _complete(before or {}, k) for k in kinds)
        if exports and exit_status == 0:
            self.exports.append((max(seconds - sum(built.values()) - REUSE_S, 1.0) / exports, tuple(build.size)))
        entry = {"build": build.describe(), "folder": str(self.folder(build)), "seconds": round(seconds, 1),
                 "estimate_s": round(estimate_s), "estimate_basis": basis, "exit": exit_status,
                 "engines_built_s": built, "reused": exit_status == 0 and not built and not exports}
        self.records.append(entry)
        return entry
