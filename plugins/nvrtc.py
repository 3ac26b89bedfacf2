"""Build the kernels without a CUDA toolkit: NVRTC (CUDA C++ -> PTX) and ptxas (PTX -> cubin) from
NVIDIA's CUDA 12 PyPI wheels ``nvidia-cuda-nvrtc-cu12`` and ``nvidia-cuda-nvcc-cu12``.

This is how the kernels are built for Pascal (sm_61, e.g. GTX 1080 Ti), which CUDA 13 no longer
targets, and for any architecture on a machine without nvcc (CI). NVRTC compiles device code only,
so the sources are compiled with ``GSVNET_KERNELS_ONLY`` (no host launchers, no CUDA headers).
NVRTC has no warnings-as-errors switch: every warning in its log fails the build here, except
its notice that architectures before sm_75 are deprecated (expected for sm_61, said once in the
log); ptxas runs with ``-Werror -warn-spills -warn-lmem-usage -v`` like nvcc's ptxas.
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
PTXAS_FLAGS = ("-v", "-warn-spills", "-warn-lmem-usage", "-Werror")
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
        text = subprocess.run([str(self.ptxas), "--version"], capture_output=True, text=True, check=True).stdout
        match = re.search(r"V(\d+\.\d+\.\d+)", text)
        return match.group(1) if match else text.strip().splitlines()[-1]

    @functools.cached_property
    def archs(self) -> tuple[str, ...]:
        """Real architectures NVRTC compiles for, e.g. ('sm_50', ..., 'sm_120')."""
        lib = _library(str(self.nvrtc))
        count = ctypes.c_int()
        lib.nvrtcGetNumSupportedArchs(ctypes.byref(count))
        values = (ctypes.c_int * count.value)()
        lib.nvrtcGetSupportedArchs(values)
        return tuple(f"sm_{v}" for v in values)


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


def compile_ptx(tools: WheelTools, source: Path, arch: str) -> tuple[bytes | None, str]:
    """(PTX, log) of ``source`` for ``arch`` ('compute_XY'); PTX is None on an error or a warning."""
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
        if status != 0 or unexpected_warnings(log):
            return None, log or lib.nvrtcGetErrorString(status).decode()
        lib.nvrtcGetPTXSize(program, ctypes.byref(size))
        buffer = ctypes.create_string_buffer(size.value)
        lib.nvrtcGetPTX(program, buffer)
        return buffer.value, log
    finally:
        lib.nvrtcDestroyProgram(ctypes.byref(program))


def compile_source(tools: WheelTools, source: Path, arch: str, out_dir: Path, kind: str = "cubin") -> nvcc.CompileResult:
    """nvcc.compile_source's counterpart: kind 'ptx' (arch 'compute_XY') or 'cubin' (arch 'sm_XY',
    NVRTC to PTX for compute_XY, then ptxas with the resource report). Never raises on a compile error."""
    if kind not in ("ptx", "cubin"):
        raise ValueError(f"NVRTC builds device code only ('ptx' or 'cubin'), not {kind!r}")
    out_dir.mkdir(parents=True, exist_ok=True)
    target = arch if kind == "ptx" else "compute_" + arch.split("_")[1]
    command = [f"nvrtc {'.'.join(map(str, tools.version))}", f"-arch={target}", *NVRTC_FLAGS, str(source)]
    ptx, log = compile_ptx(tools, source, target)
    ptx_path = out_dir / f"{source.stem}.{target}.ptx"
    if ptx is None:
        return nvcc.CompileResult(command, 1, log, None, [])
    ptx_path.write_bytes(ptx)
    if kind == "ptx":
        return nvcc.CompileResult(command, 0, log, ptx_path, [])
    output = out_dir / f"{source.stem}.{arch}.cubin"
    ptxas = [str(tools.ptxas), f"-arch={arch}", *PTXAS_FLAGS, str(ptx_path), "-o", str(output)]
    proc = subprocess.run(ptxas, capture_output=True, text=True)
    full_log = log + proc.stdout + proc.stderr
    ok = proc.returncode == 0 and output.is_file()
    return nvcc.CompileResult(command + ["&&", *ptxas], proc.returncode, full_log, output if ok else None,
                              nvcc.parse_ptxas(full_log))
