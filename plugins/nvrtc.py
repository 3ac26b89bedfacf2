"""Build the kernels without a CUDA toolkit: NVRTC (CUDA C++ -> PTX) and ptxas (PTX -> cubin) from
NVIDIA's CUDA 12 PyPI wheels ``nvidia-cuda-nvrtc-cu12`` and ``nvidia-cuda-nvcc-cu12``.

This is how the kernels are built for Pascal (sm_61, e.g. GTX 1080 Ti), which CUDA 13 no longer
targets, and for any architecture on a machine without nvcc (CI). NVRTC compiles device code only,
so the sources are compiled with ``GSVNET_KERNELS_ONLY`` (no host launchers, no CUDA headers).
NVRTC has no warnings-as-errors switch: with ``strict=True`` (plugins.build, CI) every warning in
its log fails the build here, except its notice that architectures before sm_75 are deprecated
(expected for sm_61, said once in the log), and ptxas runs with ``-Werror -warn-spills
-warn-lmem-usage -v`` like nvcc's ptxas; at run time the warnings stay in the log.

Any CUDA 12 release from 12.6 on works (PyTorch's cu126 wheels pin 12.6, cu128 12.8): the library
is ``libnvrtc.so.12`` in every 12.x wheel and its version comes from ``nvrtcVersion``. PTX from
NVRTC 12.x needs a driver for CUDA 12.x (12.6: r560+, 12.8: r570+, 12.9: r575+); cubins load on
any CUDA 12 driver. ptxas must be at least as new as NVRTC (it refuses a newer PTX ISA), which
the two wheels' separate version ranges do not guarantee, so that is checked before assembling.
"""

from __future__ import annotations

import ctypes
import functools
import importlib.util
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from plugins import nvcc

NVRTC_FLAGS = ("-std=c++17", "-DGSVNET_KERNELS_ONLY")
PTXAS_FLAGS = ("-v", "-warn-spills", "-warn-lmem-usage", "-Werror")  # strict (plugins.build, CI)
RUNTIME_PTXAS_FLAGS = ("-v", "-warn-spills", "-warn-lmem-usage")  # run time: warnings in the log
#: NVRTC 12.x says this for compute_5x..7x targets; it is the only warning accepted.
DEPRECATED_ARCH_NOTICE = "Architectures prior to '<compute/sm>_75' are deprecated"
INSTALL_HINT = "pip install nvidia-cuda-nvrtc-cu12 nvidia-cuda-nvcc-cu12"


@dataclass(frozen=True)
class WheelTools:
    """Paths of the CUDA 12 wheels' NVRTC library and ptxas binary."""

    nvrtc: Path  # libnvrtc.so.12
    ptxas: Path

    @functools.cached_property
    def version(self) -> tuple[int, int]:
        """(major, minor) of NVRTC, e.g. (12, 9)."""
        lib = _library(str(self.nvrtc))
        major, minor = ctypes.c_int(), ctypes.c_int()
        lib.nvrtcVersion(ctypes.byref(major), ctypes.byref(minor))
        return major.value, minor.value

    @functools.cached_property
    def ptxas_version(self) -> str:
        """'12.8.93' from ``ptxas --version``."""
        return nvcc.parse_version(subprocess.run([str(self.ptxas), "--version"], capture_output=True, text=True,
                                                 check=True).stdout)

    @functools.cached_property
    def archs(self) -> tuple[str, ...]:
        """Real architectures NVRTC compiles for, e.g. ('sm_50', ..., 'sm_120')."""
        lib = _library(str(self.nvrtc))
        count = ctypes.c_int()
        lib.nvrtcGetNumSupportedArchs(ctypes.byref(count))
        values = (ctypes.c_int * count.value)()
        lib.nvrtcGetSupportedArchs(values)
        return tuple(f"sm_{v}" for v in values)


def cuda_version(text: str) -> tuple[int, int] | None:
    """'12.6.85' -> (12, 6); None when ``text`` does not start with major.minor."""
    match = re.match(r"(\d+)\.(\d+)", text.strip())
    return (int(match.group(1)), int(match.group(2))) if match else None


def ptxas_too_old_reason(nvrtc_version: tuple[int, int], ptxas_version: str) -> str | None:
    """One line when ptxas (nvidia-cuda-nvcc-cu12) is older than NVRTC (nvidia-cuda-nvrtc-cu12) and
    so refuses NVRTC's PTX ISA version; None when it can assemble it."""
    ptxas = cuda_version(ptxas_version)
    if ptxas is None or ptxas >= tuple(nvrtc_version):
        return None
    want = ".".join(map(str, nvrtc_version))
    return (f"ptxas {ptxas_version} (nvidia-cuda-nvcc-cu12) is older than NVRTC {want} (nvidia-cuda-nvrtc-cu12) and "
            f"cannot assemble its PTX: pip install 'nvidia-cuda-nvcc-cu12=={want}.*'")


def _package_dir(name: str) -> Path | None:
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    locations = list(spec.submodule_search_locations or []) if spec else []
    return Path(locations[0]) if locations else None


def find_wheel_tools() -> WheelTools | None:
    """The CUDA 12 wheels' NVRTC and ptxas, or None when either wheel is missing."""
    nvrtc_dir, nvcc_dir = _package_dir("nvidia.cuda_nvrtc"), _package_dir("nvidia.cuda_nvcc")
    if nvrtc_dir is None or nvcc_dir is None:
        return None
    lib, ptxas = nvrtc_dir / "lib" / "libnvrtc.so.12", nvcc_dir / "bin" / "ptxas"
    return WheelTools(lib, ptxas) if lib.is_file() and ptxas.is_file() else None


@functools.lru_cache(maxsize=None)
def _library(path: str) -> ctypes.CDLL:
    folder = Path(path).parent
    for builtins in sorted(folder.glob("libnvrtc-builtins.so.*")):  # NVRTC dlopens it by name
        if ".alt." not in builtins.name:
            ctypes.CDLL(str(builtins), mode=ctypes.RTLD_GLOBAL)
    lib = ctypes.CDLL(path)
    lib.nvrtcGetErrorString.restype = ctypes.c_char_p
    return lib


def unexpected_warnings(log: str) -> list[str]:
    """Warning lines of an NVRTC log other than the deprecated-architecture notice."""
    return [line for line in log.splitlines() if "warning" in line.lower() and DEPRECATED_ARCH_NOTICE not in line]


def compile_ptx(tools: WheelTools, source: Path, arch: str, strict: bool = False) -> tuple[bytes | None, str]:
    """(PTX, log) of ``source`` for ``arch`` ('compute_XY'); PTX is None on an error, and with
    ``strict`` also on a warning."""
    lib = _library(str(tools.nvrtc))
    program = ctypes.c_void_p()
    # the name carries the path, so NVRTC resolves "../common/gsvnet_ops.h" next to the source
    status = lib.nvrtcCreateProgram(ctypes.byref(program), source.read_bytes(), str(source).encode(), 0, None, None)
    if status != 0:
        return None, f"nvrtcCreateProgram: {lib.nvrtcGetErrorString(status).decode()}"
    try:
        options = [f"-arch={arch}".encode(), *(flag.encode() for flag in NVRTC_FLAGS)]
        status = lib.nvrtcCompileProgram(program, len(options), (ctypes.c_char_p * len(options))(*options))
        size = ctypes.c_size_t()
        lib.nvrtcGetProgramLogSize(program, ctypes.byref(size))
        buffer = ctypes.create_string_buffer(size.value)
        lib.nvrtcGetProgramLog(program, buffer)
        log = buffer.value.decode(errors="replace")
        if status != 0 or (strict and unexpected_warnings(log)):
            return None, log or lib.nvrtcGetErrorString(status).decode()
        lib.nvrtcGetPTXSize(program, ctypes.byref(size))
        buffer = ctypes.create_string_buffer(size.value)
        lib.nvrtcGetPTX(program, buffer)
        return buffer.value, log
    finally:
        lib.nvrtcDestroyProgram(ctypes.byref(program))


def ptxas_flags(strict: bool) -> tuple[str, ...]:
    """ptxas flags: every warning an error when ``strict`` (plugins.build, CI), else warnings only."""
    return PTXAS_FLAGS if strict else RUNTIME_PTXAS_FLAGS


def compile_source(tools: WheelTools, source: Path, arch: str, out_dir: Path, kind: str = "cubin",
                   strict: bool = False) -> nvcc.CompileResult:
    """nvcc.compile_source's counterpart: kind 'ptx' (arch 'compute_XY') or 'cubin' (arch 'sm_XY',
    NVRTC to PTX for compute_XY, then ptxas with the resource report). ``strict``: every warning is
    an error. Never raises on a compile error."""
    if kind not in ("ptx", "cubin"):
        raise ValueError(f"NVRTC builds device code only ('ptx' or 'cubin'), not {kind!r}")
    out_dir.mkdir(parents=True, exist_ok=True)
    target = arch if kind == "ptx" else "compute_" + arch.split("_")[1]
    command = [f"nvrtc {'.'.join(map(str, tools.version))}", f"-arch={target}", *NVRTC_FLAGS, str(source)]
    if kind == "cubin" and (too_old := ptxas_too_old_reason(tools.version, tools.ptxas_version)):
        return nvcc.CompileResult(command, 1, too_old, None, [])
    ptx, log = compile_ptx(tools, source, target, strict)
    ptx_path = out_dir / f"{source.stem}.{target}.ptx"
    if ptx is None:
        return nvcc.CompileResult(command, 1, log, None, [])
    ptx_path.write_bytes(ptx)
    if kind == "ptx":
        return nvcc.CompileResult(command, 0, log, ptx_path, [])
    output = out_dir / f"{source.stem}.{arch}.cubin"
    ptxas = [str(tools.ptxas), f"-arch={arch}", *ptxas_flags(strict), str(ptx_path), "-o", str(output)]
    proc = subprocess.run(ptxas, capture_output=True, text=True)
    full_log = log + proc.stdout + proc.stderr
    ok = proc.returncode == 0 and output.is_file()
    return nvcc.CompileResult(command + ["&&", *ptxas], proc.returncode, full_log, output if ok else None,
                              nvcc.parse_ptxas(full_log))
