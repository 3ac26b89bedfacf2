"""Can these TensorRT engines run here? Checks of the manifest's engine entries against the
machine, shared by the builder (what is stale) and the tensorrt backend (what it refuses).

A TensorRT engine is tied to the TensorRT version that built it (a later one too, for
version-compatible engines), to the GPU (name and compute capability) and, when it contains
our plugins, to the plugin code it was built with. Every refusal is one line that names the
engine file and the command that rebuilds it.

Neither torch nor TensorRT is imported here; ``current_environment`` imports TensorRT and
cuda-python lazily, so the checks themselves run (and are tested) on any machine.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Mapping

from .manifest import STAGES, Manifest, ManifestError, sha256_file

#: the stages that become engines, in the order the builder compiles them
ENGINE_STAGES = STAGES

PLUGINS_DIR = Path(__file__).resolve().parents[1] / "plugins"

#: What defines the plugins' behaviour inside an engine: kernels, launch geometry, plugin glue.
PLUGIN_SOURCES = (
    "common/gsvnet_ops.h",
    "warp_by_flow/warp_by_flow.cu",
    "chunk_filter/chunk_filter.cu",
    "edge_map/edge_map.cu",
    "geometry.py",
    "tensorrt_plugins.py",
)


#: TensorRT 10's oldest GPU generation (Turing); Pascal (6.x) and Volta (7.0) have no TensorRT 10.
MIN_TENSORRT_CAPABILITY = (7, 5)


def tensorrt_unsupported_reason(compute_capability: str, gpu: str) -> str | None:
    """One line when TensorRT 10 cannot run on this GPU (it needs compute capability 7.5+)."""
    major, minor = (int(v) for v in compute_capability.split(".")[:2])
    if (major, minor) >= MIN_TENSORRT_CAPABILITY:
        return None
    return (f"TensorRT 10 needs compute capability {MIN_TENSORRT_CAPABILITY[0]}.{MIN_TENSORRT_CAPABILITY[1]} or newer; "
            f"{gpu} is {compute_capability}: use --backend torch-cuda (FP32 on this GPU; "
            "`python -m export.build_engines --backend onnx` builds what it needs)")


def rebuild_hint(folder: Path | str) -> str:
    return f"rebuild with `python -m export.build_engines --backend tensorrt --out {folder}`"


@dataclass(frozen=True)
class TensorRTEnvironment:
    """What an engine must match: TensorRT version, GPU, and whether JIT plugins can build kernels."""

    tensorrt: str  # e.g. "10.13.0.35"
    gpu: str  # e.g. "NVIDIA H100 80GB HBM3"
    compute_capability: str  # e.g. "9.0"
    compiler: bool = True  # a CUDA compiler (nvcc or the CUDA 12 wheels): JIT plugins build their kernels at run time

    def to_dict(self) -> dict:
        return asdict(self)

    def describe(self) -> str:
        return f"TensorRT {self.tensorrt} on {self.gpu} (compute capability {self.compute_capability})"


def gpu_identity(device: int = 0) -> tuple[str, str]:
    """(GPU name, compute capability 'major.minor') of a CUDA device, via cuda-python's driver API;
    RuntimeError (one line) when the installed cuda-bindings cannot drive this driver."""
    from cuda.bindings import driver

    from plugins.launcher import cuda_bindings_reason

    if (why := cuda_bindings_reason()) is not None:
        raise RuntimeError(why)

    def check(result):
        err, *values = result if isinstance(result, tuple) else (result,)
        if err != driver.CUresult.CUDA_SUCCESS:
            raise RuntimeError(f"CUDA driver error {int(err)} while querying device {device}")
        return values[0] if len(values) == 1 else values

    check(driver.cuInit(0))
    dev = check(driver.cuDeviceGet(device))
    raw = check(driver.cuDeviceGetName(256, dev))
    name = raw.split(b"\0")[0].decode() if isinstance(raw, (bytes, bytearray)) else str(raw)
    attr = driver.CUdevice_attribute
    major = check(driver.cuDeviceGetAttribute(attr.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, dev))
    minor = check(driver.cuDeviceGetAttribute(attr.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, dev))
    return name.strip(), f"{major}.{minor}"


def current_environment(device: int = 0) -> TensorRTEnvironment:
    """This machine's TensorRT version and GPU (imports tensorrt and cuda-python)."""
    import tensorrt as trt

    from plugins import toolchain

    name, capability = gpu_identity(device)
    return TensorRTEnvironment(trt.__version__, name, capability, bool(toolchain.available()))


def plugin_sources_sha256(root: Path = PLUGINS_DIR) -> str:
    """sha256 over PLUGIN_SOURCES (names and bytes); FileNotFoundError names a missing file."""
    digest = hashlib.sha256()
    for relative in PLUGIN_SOURCES:
        path = root / relative
        if not path.is_file():
            raise FileNotFoundError(str(path))
        digest.update(relative.encode() + b"\0")
        digest.update(path.read_bytes())
    return digest.hexdigest()


def _version(text: str) -> tuple[int, ...]:
    parts = []
    for piece in str(text).split("."):
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts)


def tensorrt_version_mismatch(built: str, running: str, version_compatible: bool) -> bool:
    """True when TensorRT ``running`` cannot deserialise an engine built by ``built``.

    Plain engines need the same version; version-compatible ones run on the same or a later one.
    """
    if version_compatible:
        return _version(running) < _version(built)
    return str(built) != str(running)


def check_engine(manifest: Manifest, stage: str, entry: Mapping, env: TensorRTEnvironment,
                 plugin_root: Path = PLUGINS_DIR) -> Path:
    """The engine file of ``stage`` if it can run in ``env``; else ManifestError (one line)."""
    folder = manifest.folder
    fix = rebuild_hint(folder)
    path = manifest.file(entry["file"])
    if not path.is_file():
        raise ManifestError(f"engine file {path} listed in {manifest.path} is missing; {fix}")
    if sha256_file(path) != entry["sha256"]:
        raise ManifestError(f"engine file {path} does not match the sha256 in {manifest.path} (modified or corrupt); {fix}")
    vc = bool(entry.get("settings", {}).get("version_compatible", False))
    if tensorrt_version_mismatch(entry["tensorrt"], env.tensorrt, vc):
        need = f"TensorRT {entry['tensorrt']}" + (" or later" if vc else "")
        raise ManifestError(f"engine file {path} was built for {need}, this machine has TensorRT {env.tensorrt}; {fix}")
    if entry["compute_capability"] != env.compute_capability:
        raise ManifestError(f"engine file {path} was built for compute capability {entry['compute_capability']} "
                            f"({entry['gpu']}), this GPU is {env.gpu} with compute capability "
                            f"{env.compute_capability}; {fix}")
    if entry["gpu"] != env.gpu:
        raise ManifestError(f"engine file {path} was built on {entry['gpu']}, this GPU is {env.gpu}; {fix}")
    plugins = entry.get("plugins")
    if plugins:
        try:
            current = plugin_sources_sha256(plugin_root)
        except FileNotFoundError as e:
            raise ManifestError(f"engine file {path} needs the gsvnet TensorRT plugins, but {e} is missing "
                                f"(reinstall the package); then {fix}") from None
        if current != entry.get("plugin_sources_sha256"):
            raise ManifestError(f"engine file {path} was built with other gsvnet plugin code (plugin hash "
                                f"{str(entry.get('plugin_sources_sha256'))[:12]}, installed {current[:12]}); {fix}")
        if plugins.get("mode") == "jit" and not env.compiler:
            raise ManifestError(f"engine file {path} runs its plugins just-in-time, which builds the CUDA kernels, and "
                                "no CUDA compiler is installed here; pip install nvidia-cuda-nvrtc-cu12 "
                                f"nvidia-cuda-nvcc-cu12 (or install nvcc), or {fix}")
    return path


def check_engines(manifest: Manifest, env: TensorRTEnvironment, stages: tuple[str, ...],
                  plugin_root: Path = PLUGINS_DIR) -> dict[str, Path]:
    """Engine file of every stage in ``stages``, all checked with :func:`check_engine`."""
    missing = [s for s in stages if s not in manifest.engines]
    if missing:
        raise ManifestError(f"{manifest.path} has no TensorRT engine for {', '.join(missing)}; "
                            f"{rebuild_hint(manifest.folder)}")
    return {s: check_engine(manifest, s, manifest.engines[s], env, plugin_root) for s in stages}


def engine_stale_reason(folder: Path, entry: Mapping | None, request: Mapping) -> str | None:
    """Why the engine described by ``entry`` cannot be reused for ``request``, or None.

    ``request``: what the builder would build now: {"onnx_sha256", "environment": {...},
    "settings": {...}, "plugin_sources_sha256": str | None}.
    """
    if entry is None:
        return "not built yet"
    path = Path(folder) / entry.get("file", "")
    if not path.is_file():
        return "engine file missing"
    if sha256_file(path) != entry.get("sha256"):
        return "engine file modified or corrupt"
    if entry.get("onnx", {}).get("sha256") != request["onnx_sha256"]:
        return "FP16 ONNX graph changed"
    env = request["environment"]
    if entry.get("tensorrt") != env["tensorrt"]:
        return f"TensorRT {entry.get('tensorrt')} -> {env['tensorrt']}"
    if (entry.get("gpu"), entry.get("compute_capability")) != (env["gpu"], env["compute_capability"]):
        return f"GPU {entry.get('gpu')} (cc {entry.get('compute_capability')}) -> {env['gpu']} (cc {env['compute_capability']})"
    old, new = entry.get("settings", {}), request["settings"]
    changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    if changed:
        return "settings changed: " + ", ".join(f"{k} {old.get(k)} -> {new.get(k)}" for k in changed)
    if entry.get("plugin_sources_sha256") != request.get("plugin_sources_sha256"):
        return "plugin code changed"
    return None

