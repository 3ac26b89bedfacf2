"""Which compiler builds the kernels for an architecture, which image a CUDA driver can load,
and the build cache both the launcher and the TensorRT plugins use.

Two toolchains: the system CUDA toolkit's nvcc (``plugins.nvcc``; CUDA 13 builds sm_75 and newer,
host launchers included) and NVIDIA's CUDA 12 wheels (``plugins.nvrtc``; NVRTC + ptxas, device
code only, sm_50 and newer, so also Pascal's sm_61).

Driver compatibility (CUDA's minor-version compatibility rules, "CUDA Compatibility" in NVIDIA's
documentation): a cubin built by CUDA X.y loads on any driver that supports CUDA X.0 or newer;
PTX built by CUDA X.y needs a driver for CUDA X.y or newer (older drivers refuse its PTX ISA
version, e.g. nvcc 13.0's PTX 9.0 needs an r580 driver).
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from plugins import nvcc, nvrtc


class ToolchainError(RuntimeError):
    """No installed compiler can produce kernels this GPU and driver can run (one line)."""


@dataclass(frozen=True)
class Toolchain:
    """A compiler that builds the kernel sources: 'nvcc' or 'nvrtc-cu12'."""

    name: str
    version: tuple[int, int]  # CUDA version of the compiler, e.g. (13, 0)
    archs: tuple[str, ...]  # real architectures it compiles for, 'sm_XY'
    detail: str = ""  # exact versions, for logs and cache keys

    def describe(self) -> str:
        return f"{self.name} {self.detail or '.'.join(map(str, self.version))}"

    def compile(self, source: Path, arch: str, out_dir: Path, kind: str = "cubin") -> nvcc.CompileResult:
        """Compile one .cu strictly (see plugins.nvcc / plugins.nvrtc); never raises on a compile error."""
        if self.name == "nvcc":
            return nvcc.compile_source(source, arch, out_dir, kind=kind)
        tools = nvrtc.find_wheel_tools()
        if tools is None:
            raise ToolchainError(f"the CUDA 12 wheels are gone ({nvrtc.INSTALL_HINT})")
        return nvrtc.compile_source(tools, source, arch, out_dir, kind=kind)


def available() -> list[Toolchain]:
    """The installed toolchains: nvcc first (it also builds host code), then the CUDA 12 wheels."""
    found = []
    binary = nvcc.find_nvcc()
    if binary is not None:
        full = nvcc.nvcc_version(binary)
        major, minor = (int(v) for v in full.split(".")[:2])
        found.append(Toolchain("nvcc", (major, minor), tuple(nvcc.supported_archs(binary)), full))
    tools = nvrtc.find_wheel_tools()
    if tools is not None:
        found.append(Toolchain("nvrtc-cu12", tools.version, tools.archs, f"{'.'.join(map(str, tools.version))} "
                               f"(ptxas {tools.ptxas_version})"))
    return found


def arch_number(arch: str) -> int:
    """'sm_86' / 'compute_86' -> 86."""
    return int(arch.split("_")[1])


def for_arch(arch: str, toolchains: list[Toolchain]) -> Toolchain | None:
    """The first toolchain that compiles for ``arch`` ('sm_XY' or 'compute_XY')."""
    real = "sm_" + arch.split("_")[1]
    return next((t for t in toolchains if real in t.archs), None)


@dataclass(frozen=True)
class Image:
    """What to build for a device: ``kind`` 'cubin' (target 'sm_XY') or 'ptx' ('compute_XY')."""

    toolchain: Toolchain
    kind: str
    target: str

    def describe(self) -> str:
        return f"{self.kind} {self.target} from {self.toolchain.describe()}"


def _cuda(version: tuple[int, int]) -> str:
    return f"{version[0]}.{version[1]}"


def choose_image(arch: str, driver: tuple[int, int], toolchains: list[Toolchain], kind: str | None = None,
                 ptx_target: str | None = None) -> Image:
    """The kernel image for a GPU of ``arch`` ('sm_XY') under a driver for CUDA ``driver``.

    Prefers a cubin for the exact architecture from the newest toolchain whose major version the
    driver supports; else PTX (JIT-compiled by the driver) for ``ptx_target`` or the newest
    architecture <= ``arch`` from the newest toolchain not newer than the driver. ``kind`` 'ptx'
    skips cubins (TensorRT AOT plugins embed PTX). Raises ToolchainError with what to install.
    """
    number = arch_number(arch)
    if kind != "ptx":
        cubins = [t for t in toolchains if arch in t.archs and t.version[0] <= driver[0]]
        if cubins:
            return Image(max(cubins, key=lambda t: t.version), "cubin", arch)
    ptx = [t for t in toolchains if t.version <= driver]
    for tool in sorted(ptx, key=lambda t: t.version, reverse=True):
        lower = [arch_number(a) for a in tool.archs if arch_number(a) <= number]
        target = ptx_target or (f"compute_{max(lower)}" if lower else None)
        if target and arch_number(target) <= number and "sm_" + target.split("_")[1] in tool.archs:
            return Image(tool, "ptx", target)
    raise ToolchainError(unloadable_reason(arch, driver, toolchains))


def unloadable_reason(arch: str, driver: tuple[int, int], toolchains: list[Toolchain]) -> str:
    """One line: why no installed toolchain yields kernels for ``arch`` under this driver, and the fix."""
    if not toolchains or for_arch(arch, toolchains) is None:
        return missing_reason(arch, toolchains)
    names = ", ".join(t.describe() for t in toolchains)
    if not any(t.name == "nvrtc-cu12" for t in toolchains) and driver[0] >= 12:
        return (f"the NVIDIA driver supports CUDA {_cuda(driver)}, older than {names} that could build the gsvnet "
                f"kernels for {arch}: {nvrtc.INSTALL_HINT}, or update the driver (r580+ for CUDA 13)")
    return (f"no installed compiler ({names}) builds gsvnet kernels for {arch} that a driver for CUDA "
            f"{_cuda(driver)} can load: update the NVIDIA driver (r525+ runs CUDA 12 kernels, r580+ CUDA 13)")


def missing_reason(arch: str, toolchains: list[Toolchain]) -> str:
    """One line: no installed toolchain compiles for ``arch``, and what to install."""
    if not toolchains:
        return f"no CUDA compiler to build the gsvnet kernels for {arch}: {nvrtc.INSTALL_HINT} (or install nvcc)"
    names = ", ".join(t.describe() for t in toolchains)
    return f"none of the installed CUDA compilers ({names}) targets {arch}: {nvrtc.INSTALL_HINT} (CUDA 12 builds sm_50..sm_120)"


def cache_key(toolchain: Toolchain, arch: str, kind: str) -> str:
    return nvcc.sources_digest(toolchain.describe(), kind, arch, *nvcc.STRICT_FLAGS, *nvcc.PTXAS_FLAGS,
                               *nvrtc.NVRTC_FLAGS, *nvrtc.PTXAS_FLAGS)


def build(name: str, arch: str, kind: str = "cubin", toolchain: Toolchain | None = None, root: Path | None = None) -> bytes:
    """Bytes of kernel family ``name`` ('warp_by_flow', 'chunk_filter', 'edge_map') for ``arch``
    ('sm_XY' cubin or 'compute_XY' PTX), from the cache or freshly compiled by ``toolchain``
    (default: the first installed one that targets ``arch``). Raises RuntimeError with the log."""
    if toolchain is None:
        installed = available()
        toolchain = for_arch(arch, installed)
        if toolchain is None:
            raise ToolchainError(missing_reason(arch, installed))
    target = (root or nvcc.cache_dir()) / cache_key(toolchain, arch, kind) / f"{name}.{arch}.{kind}"
    if not target.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
            result = toolchain.compile(nvcc.SOURCES[name], arch, Path(tmp), kind=kind)
            if not result.ok:
                raise RuntimeError(f"{toolchain.describe()} failed for {name} ({arch}):\n{result.log}")
            os.replace(result.output, target)
    return target.read_bytes()
