"""Every .cu compiles warning-free (compiler front end, host compiler where there is host code,
ptxas) and without spills, for every architecture this project targets, with whichever toolchain
plugins.toolchain picks for it: nvcc (CUDA 13: sm_75 and newer, host launchers too) or the CUDA 12
wheels' NVRTC + ptxas (sm_61, the paper's GTX 1080 Ti, and any architecture where nvcc is missing).
Only the tests that compile skip, with the reason, when no compiler targets an architecture;
log parsing and the strictness rules are tested everywhere.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from plugins import geometry, nvcc, nvrtc, toolchain

NVCC = nvcc.find_nvcc()
needs_nvcc = pytest.mark.skipif(NVCC is None, reason="nvcc not found (set $NVCC or install the CUDA toolkit)")

ARCHS = ["sm_61", "sm_75", "sm_80", "sm_86", "sm_90"]


def _toolchain_for(arch: str) -> toolchain.Toolchain:
    installed = toolchain.available()
    tool = toolchain.for_arch(arch, installed)
    if tool is None:
        pytest.skip(toolchain.missing_reason(arch, installed))
    return tool


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("name", sorted(nvcc.SOURCES))
def test_compiles_without_warnings_or_spills(name, arch, tmp_path):
    tool = _toolchain_for(arch)
    result = tool.compile(nvcc.SOURCES[name], arch, tmp_path, kind="obj" if tool.name == "nvcc" else "cubin")
    assert result.ok, f"{' '.join(result.command)}\n{result.log}"
    assert not [line for line in result.log.lower().splitlines()
                if "warning" in line and nvrtc.DEPRECATED_ARCH_NOTICE.lower() not in line], result.log
    kernels = {r.kernel for r in result.resources}
    source = nvcc.SOURCES[name].read_text()
    assert kernels and kernels == set(re.findall(r"\b(gsvnet_\w+_(?:f32|f16|labels))\b\s*\(", source)) | _macro_kernels(source)
    for res in result.resources:
        assert res.arch == arch
        assert res.spill_stores == 0 and res.spill_loads == 0 and res.stack_bytes == 0, res
        assert 0 < res.registers <= 255, res


def _macro_kernels(source: str) -> set[str]:
    """Entry points stamped out by GSVNET_CHUNK_FILTER_ENTRY(R, SUFFIX, T)."""
    return {f"gsvnet_chunk_filter_r{r}_{s}" for r, s in re.findall(r"^GSVNET_CHUNK_FILTER_ENTRY\((\d), (\w+), [\w:]+\)", source, re.M)}


def test_parse_ptxas_reads_registers_spills_and_shared_memory():
    log = """ptxas info    : Compiling entry function 'k_a' for 'sm_80'
ptxas info    : Function properties for k_a
    8 bytes stack frame, 4 bytes spill stores, 12 bytes spill loads
ptxas info    : Used 40 registers, used 1 barriers, 2720 bytes smem, 400 bytes cmem[0]
ptxas info    : Compiling entry function 'k_b' for 'sm_80'
ptxas info    : Function properties for k_b
    0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
ptxas info    : Used 32 registers, used 0 barriers, 392 bytes cmem[0]
"""
    assert nvcc.parse_ptxas(log) == [
        nvcc.KernelResources("k_a", "sm_80", 40, 4, 12, 8, 2720),
        nvcc.KernelResources("k_b", "sm_80", 32, 0, 0, 0, 0),
    ]


def _entry_params(ptx: str) -> dict[str, list[str]]:
    """PTX entry name -> its parameter types ('u64' pointer or 'u32' int)."""
    entries = {}
    for match in re.finditer(r"\.visible \.entry (\w+)\(([^)]*)\)", ptx):
        entries[match.group(1)] = re.findall(r"\.param \.(\w+)", match.group(2))
    return entries


def test_ptx_for_tensorrt_aot_has_every_kernel_with_the_aot_argument_order(tmp_path):
    """AOT kernels take input pointers, int32 sizes, output pointers: check each PTX entry."""
    tool = _toolchain_for(nvcc.DEFAULT_PTX_ARCH)
    launches = [geometry.warp_by_flow(1, 1, 2, 2, half, labels) for half in (False, True) for labels in (False, True)]
    launches += [geometry.chunk_filter(1, 1, 2, 2, r, half) for r in (1, 2, 3) for half in (False, True)]
    launches += [geometry.edge_map(1, 1, 2, 2, half) for half in (False, True)] + [geometry.edge_map_from_labels(1, 2, 2)]
    n_inputs = {"warp_by_flow": 2, "chunk_filter": 3, "edge_map": 1}
    ptx = {name: _entry_params(toolchain.build(name, nvcc.DEFAULT_PTX_ARCH, "ptx", tool, root=tmp_path).decode())
           for name in nvcc.SOURCES}
    assert sum(len(entries) for entries in ptx.values()) == len(launches)
    for launch in launches:
        params = ptx[launch.source][launch.kernel]
        inputs = n_inputs[launch.source]
        outputs = len(params) - inputs - len(launch.sizes)
        assert outputs in (1, 2)
        assert params == ["u64"] * inputs + ["u32"] * len(launch.sizes) + ["u64"] * outputs, (launch.kernel, params)
    text = next(iter((tmp_path).rglob("*.ptx"))).read_text()
    assert f".target {nvcc.DEFAULT_PTX_ARCH.replace('compute', 'sm')}" in text


def test_build_caches_outside_the_source_tree(tmp_path):
    tool = _toolchain_for("sm_80")
    first = toolchain.build("edge_map", "sm_80", "cubin", tool, root=tmp_path)
    built = list(tmp_path.rglob("*.cubin"))
    assert len(built) == 1 and built[0].read_bytes() == first and first.startswith(b"\x7fELF")
    mtime = built[0].stat().st_mtime_ns
    assert toolchain.build("edge_map", "sm_80", "cubin", tool, root=tmp_path) == first
    assert built[0].stat().st_mtime_ns == mtime  # served from the cache
    assert not list(Path(nvcc.PLUGINS).rglob("*.cubin")) and not list(Path(nvcc.PLUGINS).rglob("*.o"))


@needs_nvcc
def test_nvcc_compile_errors_are_reported_not_raised(tmp_path):
    bad = tmp_path / "bad.cu"
    bad.write_text("__global__ void k(float* p) { int unused; p[0] = 1.0f; }\n")
    result = nvcc.compile_source(bad, "sm_80", tmp_path, kind="obj", nvcc=NVCC)
    assert not result.ok and "unused" in result.log  # the warning became an error


def test_nvrtc_warnings_fail_the_build(tmp_path):
    tools = nvrtc.find_wheel_tools()
    if tools is None:
        pytest.skip(f"the CUDA 12 wheels are not installed ({nvrtc.INSTALL_HINT})")
    bad = tmp_path / "bad.cu"
    bad.write_text('extern "C" __global__ void k(float* p) { int unused; p[0] = 1.0f; }\n')
    result = nvrtc.compile_source(tools, bad, "sm_61", tmp_path / "out")
    assert not result.ok and "unused" in result.log  # NVRTC only warns; plugins.nvrtc refuses
    bad.write_text('extern "C" __global__ void k(float* p) { p[0] = 1.0f; }\n')
    assert nvrtc.compile_source(tools, bad, "sm_61", tmp_path / "out").ok  # the sm_61 deprecation notice alone is fine


def test_nvrtc_log_rules():
    log = ("nvrtc: warning: Architectures prior to '<compute/sm>_75' are deprecated and may be removed in a future release\n"
           "k.cu(1): warning #177-D: variable \"unused\" was declared but never referenced\n")
    assert nvrtc.unexpected_warnings(log) == [log.splitlines()[1]]
    assert nvrtc.unexpected_warnings(log.splitlines()[0]) == []
