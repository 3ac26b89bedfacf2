"""Which compiler builds the kernels for an architecture, which image a CUDA driver can load,
and the build cache both the launcher and the TensorRT plugins use.

Two toolchains: the system CUDA toolkit's nvcc (``plugins.nvcc``; CUDA 13 builds sm_75 and newer,
host launchers included) and NVIDIA's CUDA 12 wheels (``plugins.nvrtc``; NVRTC + ptxas, device
code only, sm_50 and newer, so also Pascal's sm_61).

Driver compatibility (CUDA's minor-version compatibility rules, "CUDA Compatibility" in NVIDIA's
documentation): a cubin built by CUDA X.y loads on any driver that supports CUDA X.0 or newer;
PTX built by CUDA X.y needs a driver for CUDA X.y or newer (older drivers refuse its PTX ISA
version, e.g. nvcc 13.0's PTX 9.0 needs an r580 driver).

Run-time builds (:func:`build_images`) are not strict: compiler warnings are logged (logger
``plugins.toolchain``), and a toolchain that fails falls back to the other one with one line.
"""

from __future__ import annotations

import functools
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from plugins import nvcc, nvrtc

LOG = logging.getLogger(__name__)


class ToolchainError(RuntimeError):
    """No installed compiler can produce kernels this GPU and driver can run (one line)."""


class KernelBuildError(RuntimeError):
    """A toolchain failed to compile a kernel family; the message carries the compiler log."""

    def __init__(self, toolchain: "Toolchain", name: str, arch: str, log: str) -> None:
        super().__init__(f"{toolchain.describe()} failed for {name} ({arch}):\n{log}")
        self.toolchain, self.name, self.arch, self.log = toolchain, name, arch, log

    def summary(self) -> str:
        """One line: which compiler failed on what, and the log's first error line."""
        lines = [line.strip() for line in self.log.splitlines() if line.strip()]
        first = next((line for line in lines if "error" in line.lower()), lines[0] if lines else "no log")
        return f"{self.toolchain.describe()} failed for {self.name} ({self.arch}): {first}"


@dataclass(frozen=True)
class Toolchain:
    """A compiler that builds the kernel sources: 'nvcc' or 'nvrtc-cu12'."""

    name: str
    version: tuple[int, int]  # CUDA version of the compiler, e.g. (13, 0)
    archs: tuple[str, ...]  # real architectures it compiles for, 'sm_XY'
    detail: str = ""  # exact versions, for logs and cache keys

    def describe(self) -> str:
        return f"{self.name} {self.detail or '.'.join(map(str, self.version))}"

    def compile(self, source: Path, arch: str, out_dir: Path, kind: str = "cubin",
                strict: bool = False) -> nvcc.CompileResult:
        """Compile one .cu (see plugins.nvcc / plugins.nvrtc); ``strict``: every warning is an
        error (plugins.build, CI). Never raises on a compile error."""
        if self.name == "nvcc":
            return nvcc.compile_source(source, arch, out_dir, kind=kind, strict=strict)
        tools = nvrtc.find_wheel_tools()
        if tools is None:
            raise ToolchainError(f"the CUDA 12 wheels are gone ({nvrtc.INSTALL_HINT})")
        return nvrtc.compile_source(tools, source, arch, out_dir, kind=kind, strict=strict)


def available() -> list[Toolchain]:
    """The installed toolchains: nvcc first (it also builds host code), then the CUDA 12 wheels.

    Probed once per process (nvcc and ptxas are spawned for their versions); ``refresh()``
    probes again, e.g. after installing a compiler.
    """
    return list(_probe())


def refresh() -> None:
    """Forget the toolchains found so far; the next ``available()`` probes again."""
    _probe.cache_clear()


@functools.cache
def _probe() -> tuple[Toolchain, ...]:
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
    return tuple(found)


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
    """The build cache's folder name: sources, compiler, target and the run-time flags."""
    return nvcc.sources_digest(toolchain.describe(), kind, arch, *nvcc.flags(kind, strict=False),
                               *nvrtc.NVRTC_FLAGS, *nvrtc.ptxas_flags(strict=False))


def build(name: str, arch: str, kind: str = "cubin", toolchain: Toolchain | None = None, root: Path | None = None) -> bytes:
    """Bytes of kernel family ``name`` ('warp_by_flow', 'chunk_filter', 'edge_map') for ``arch``
    ('sm_XY' cubin or 'compute_XY' PTX), from the cache or freshly compiled by ``toolchain``
    (default: the first installed one that targets ``arch``) with the run-time flags; compiler
    warnings are logged. Raises KernelBuildError with the log."""
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
                raise KernelBuildError(toolchain, name, arch, result.log)
            if warnings := nvrtc.unexpected_warnings(result.log):
                LOG.warning("gsvnet kernels: %s built %s (%s) with %d warning(s): %s", toolchain.describe(), name, arch,
                            len(warnings), " | ".join(w.strip() for w in warnings))
            os.replace(result.output, target)
    return target.read_bytes()


def build_images(names: Iterable[str], arch: str, driver: tuple[int, int], toolchains: list[Toolchain],
                 kind: str | None = None, ptx_target: str | None = None,
                 root: Path | None = None) -> tuple[Image, dict[str, bytes]]:
    """(the image chosen, {name: bytes}) of kernel families ``names`` for a GPU of ``arch`` under a
    driver for CUDA ``driver`` (``choose_image``'s rules). A toolchain that fails to compile is
    dropped and the image chosen again from the others (nvcc <-> the CUDA 12 wheels), with one
    logged line; ToolchainError (one line) when no toolchain is left."""
    names, remaining = list(names), list(toolchains)
    image = choose_image(arch, driver, remaining, kind, ptx_target)
    failures: list[str] = []
    while True:
        try:
            return image, {name: build(name, image.target, image.kind, image.toolchain, root) for name in names}
        except KernelBuildError as e:
            failures.append(e.summary())
            LOG.debug("%s", e)
            remaining = [t for t in remaining if t != image.toolchain]
            try:
                image = choose_image(arch, driver, remaining, kind, ptx_target)
            except ToolchainError:
                raise ToolchainError(f"no installed CUDA compiler built the gsvnet kernels for {arch}: "
                                     f"{'; '.join(failures)} (the full log: python -m plugins.build --arch "
                                     f"sm_{arch_number(arch)})") from None
            LOG.warning("gsvnet kernels: %s; falling back to %s", failures[-1], image.describe())
