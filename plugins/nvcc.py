"""Build the CUDA kernels with nvcc (the system CUDA toolkit): cubins, PTX, host objects.

Strict flags (``strict=True``: ``python -m plugins.build``, CI) turn every nvcc, host-compiler and
ptxas warning (spills and local memory included) into an error; run-time builds (the torch-cuda
backend, the TensorRT plugins) only report them, so a ptxas that spills a few bytes still yields
kernels. ``-Xptxas -v`` reports registers, spills and shared memory per kernel, parsed into
:class:`KernelResources`. Build outputs go to a cache directory outside
the source tree (``$GSVNET_PLUGIN_CACHE`` or ``~/.cache/gsvnet/plugins``), keyed by the
sources, flags and nvcc version.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

PLUGINS = Path(__file__).resolve().parent

#: The .cu file of each kernel family; each builds into its own module.
SOURCES: dict[str, Path] = {
    "warp_by_flow": PLUGINS / "warp_by_flow" / "warp_by_flow.cu",
    "chunk_filter": PLUGINS / "chunk_filter" / "chunk_filter.cu",
    "edge_map": PLUGINS / "edge_map" / "edge_map.cu",
}
HEADERS = (PLUGINS / "common" / "gsvnet_ops.h",)

#: Strict (plugins.build, CI): every warning is an error, nvcc's own and the host compiler's ...
STRICT_FLAGS = ("-std=c++17", "-Werror", "all-warnings", "-Xcompiler", "-Wall,-Wextra,-Werror")
#: ... and ptxas' (spills, local memory), with the per-kernel resource report.
PTXAS_FLAGS = ("-Xptxas", "-v,-warn-spills,-warn-lmem-usage,-Werror")
#: Run time: the same reports, as warnings in the log.
RUNTIME_FLAGS = ("-std=c++17",)
RUNTIME_PTXAS_FLAGS = ("-Xptxas", "-v,-warn-spills,-warn-lmem-usage")

#: PTX target of the TensorRT AOT plugins: the oldest architecture TensorRT 10 runs on,
#: JIT-compiled by the driver for the GPU at hand (needs a driver that reads the compiler's PTX).
DEFAULT_PTX_ARCH = "compute_75"


@dataclass(frozen=True)
class KernelResources:
    """What ``ptxas -v`` reported for one kernel on one architecture."""

    kernel: str
    arch: str
    registers: int
    spill_stores: int
    spill_loads: int
    stack_bytes: int
    shared_bytes: int


@dataclass
class CompileResult:
    """Outcome of one nvcc call; ``output`` is None when it failed."""

    command: list[str]
    returncode: int
    log: str
    output: Path | None
    resources: list[KernelResources]

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and self.output is not None


def flags(kind: str, strict: bool) -> tuple[str, ...]:
    """nvcc flags for ``kind`` ('cubin', 'ptx', 'obj'): every warning an error when ``strict``,
    else warnings only; ptxas flags except for 'ptx' (ptxas does not run for -ptx)."""
    front = STRICT_FLAGS if strict else RUNTIME_FLAGS
    if kind == "ptx":
        return front
    return front + (PTXAS_FLAGS if strict else RUNTIME_PTXAS_FLAGS)


def parse_version(text: str) -> str:
    """'12.6.85' from the output of ``nvcc --version`` / ``ptxas --version`` (the V-number), else
    the output's last line."""
    match = re.search(r"V(\d+\.\d+\.\d+)", text)
    return match.group(1) if match else (text.strip().splitlines() or [""])[-1]


def find_nvcc() -> str | None:
    """nvcc from ``$NVCC``, ``$PATH`` or ``/usr/local/cuda/bin``; None when absent."""
    for candidate in (os.environ.get("NVCC"), shutil.which("nvcc"), "/usr/local/cuda/bin/nvcc"):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


def nvcc_version(nvcc: str) -> str:
    """'13.0.88' from ``nvcc --version`` (the V-number of its last line)."""
    return parse_version(subprocess.run([nvcc, "--version"], capture_output=True, text=True, check=True).stdout)


def supported_archs(nvcc: str) -> list[str]:
    """Real architectures this nvcc compiles for, e.g. ['sm_75', 'sm_80', ...]."""
    text = subprocess.run([nvcc, "--list-gpu-code"], capture_output=True, text=True, check=True).stdout
    return [line.strip() for line in text.splitlines() if line.strip().startswith("sm_")]


_FUNC_RE = re.compile(r"Function properties for (\w+)\s*\n\s*(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")
_USED_RE = re.compile(r"Compiling entry function '(\w+)' for '(\w+)'.*?Used (\d+) registers(?:.*?(\d+) bytes smem)?", re.S)


def parse_ptxas(log: str) -> list[KernelResources]:
    """Per-kernel registers, spills, stack and static shared memory from a ``ptxas -v`` log."""
    frames = {m.group(1): tuple(int(g) for g in m.groups()[1:]) for m in _FUNC_RE.finditer(log)}
    out = []
    for chunk in re.split(r"(?=ptxas info\s+: Compiling entry function)", log):
        match = _USED_RE.search(chunk)
        if not match:
            continue
        kernel, arch, regs, smem = match.group(1), match.group(2), int(match.group(3)), int(match.group(4) or 0)
        stack, stores, loads = frames.get(kernel, (0, 0, 0))
        out.append(KernelResources(kernel, arch, regs, stores, loads, stack, smem))
    return out


def compile_source(source: Path, arch: str, out_dir: Path, kind: str = "cubin", nvcc: str | None = None,
                   extra_flags: tuple[str, ...] = (), strict: bool = False) -> CompileResult:
    """Compile one .cu; ``strict``: every warning is an error (plugins.build, CI), else warnings
    stay in the log (run time).

    kind: 'cubin' (arch 'sm_XY'), 'ptx' (arch 'compute_XY') or 'obj' (host + device code,
    arch 'sm_XY'). Never raises on a compile error: the result carries the log.
    """
    nvcc = nvcc or find_nvcc()
    if nvcc is None:
        raise FileNotFoundError("nvcc not found (set $NVCC or install the CUDA toolkit)")
    flag = {"cubin": "-cubin", "ptx": "-ptx", "obj": "-c"}[kind]
    suffix = {"cubin": ".cubin", "ptx": ".ptx", "obj": ".o"}[kind]
    out_dir.mkdir(parents=True, exist_ok=True)
    output = out_dir / f"{source.stem}.{arch}{suffix}"
    target = [f"-arch={arch}"] if kind == "ptx" else ["-gencode", f"arch=compute_{arch.split('_')[1]},code={arch}"]
    command = [nvcc, flag, *target, *flags(kind, strict), *extra_flags, str(source), "-o", str(output)]
    proc = subprocess.run(command, capture_output=True, text=True)
    log = proc.stdout + proc.stderr
    ok = proc.returncode == 0 and output.is_file()
    return CompileResult(command, proc.returncode, log, output if ok else None, parse_ptxas(log))


def cache_dir() -> Path:
    """Where built kernels are kept: ``$GSVNET_PLUGIN_CACHE`` or ``~/.cache/gsvnet/plugins``."""
    root = os.environ.get("GSVNET_PLUGIN_CACHE")
    return Path(root) if root else Path.home() / ".cache" / "gsvnet" / "plugins"


def sources_digest(*parts: str) -> str:
    """Hash of every kernel source, the header and ``parts`` (flags, compiler version)."""
    digest = hashlib.sha256()
    for path in (*HEADERS, *SOURCES.values()):
        digest.update(path.read_bytes())
    for part in parts:
        digest.update(part.encode())
    return digest.hexdigest()[:16]
