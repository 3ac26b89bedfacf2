"""Every .cu compiles warning-free (compiler front end, host compiler where there is host code,
ptxas) and without spills, for every architecture this project targets, with whichever toolchain
plugins.toolchain picks for it: nvcc (CUDA 13: sm_75 and newer, host launchers too) or the CUDA 12
wheels' NVRTC + ptxas (sm_61, the paper's GTX 1080 Ti, and any architecture where nvcc is missing).
The dev extra's CUDA 12 wheels target every architecture here, so a test without a compiler fails
(tests/requirements.py); only the nvcc-specific test skips where the CUDA toolkit is absent.
Log parsing and the strictness rules are tested everywhere.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from plugins import geometry, nvcc, nvrtc, toolchain
from tests.requirements import DEV_EXTRA, require_cuda_compiler

NVCC = nvcc.find_nvcc()
needs_nvcc = pytest.mark.skipif(NVCC is None, reason="nvcc not found (set $NVCC or install the CUDA toolkit; not in the dev extra)")

#: one architecture per toolchain (CUDA 12 wheels for Pascal, nvcc or the wheels for Hopper): .ci/run's
#: `python -m plugins.build --arch sm_61,sm_75,sm_86,sm_90` compiles every kernel strictly for the others
ARCHS = ["sm_61", "sm_90"]


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("name", sorted(nvcc.SOURCES))
def test_compiles_without_warnings_or_spills(name, arch, tmp_path):
    tool = require_cuda_compiler(arch)
    result = tool.compile(nvcc.SOURCES[name], arch, tmp_path, kind="obj" if tool.name == "nvcc" else "cubin", strict=True)
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
    tool = require_cuda_compiler(nvcc.DEFAULT_PTX_ARCH)
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
    tool = require_cuda_compiler("sm_80")
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
    result = nvcc.compile_source(bad, "sm_80", tmp_path, kind="obj", nvcc=NVCC, strict=True)
    assert not result.ok and "unused" in result.log  # the warning became an error
    lenient = nvcc.compile_source(bad, "sm_80", tmp_path / "run-time", kind="obj", nvcc=NVCC)
    assert lenient.ok and "unused" in lenient.log  # at run time it stays a warning in the log


def test_nvrtc_warnings_fail_the_build(tmp_path):
    tools = nvrtc.find_wheel_tools()
    if tools is None:
        pytest.fail(f"the CUDA 12 wheels are not installed ({nvrtc.INSTALL_HINT}); the dev extra has them: {DEV_EXTRA}",
                    pytrace=False)
    bad = tmp_path / "bad.cu"
    bad.write_text('extern "C" __global__ void k(float* p) { int unused; p[0] = 1.0f; }\n')
    result = nvrtc.compile_source(tools, bad, "sm_61", tmp_path / "out", strict=True)
    assert not result.ok and "unused" in result.log  # NVRTC only warns; plugins.nvrtc refuses in strict builds
    lenient = nvrtc.compile_source(tools, bad, "sm_61", tmp_path / "run-time")
    assert lenient.ok and "unused" in lenient.log  # at run time the warning is kept in the log
    bad.write_text('extern "C" __global__ void k(float* p) { p[0] = 1.0f; }\n')
    assert nvrtc.compile_source(tools, bad, "sm_61", tmp_path / "out", strict=True).ok  # the sm_61 deprecation notice alone is fine


def test_nvrtc_log_rules():
    log = ("nvrtc: warning: Architectures prior to '<compute/sm>_75' are deprecated and may be removed in a future release\n"
           "k.cu(1): warning #177-D: variable \"unused\" was declared but never referenced\n")
    assert nvrtc.unexpected_warnings(log) == [log.splitlines()[1]]
    assert nvrtc.unexpected_warnings(log.splitlines()[0]) == []


@pytest.mark.parametrize("output,version", [
    ("ptxas: NVIDIA (R) Ptx optimizing assembler\nCopyright (c) 2005-2024 NVIDIA Corporation\nBuilt on Tue_Oct_29\n"
     "Cuda compilation tools, release 12.6, V12.6.85\nBuild cuda_12.6.r12.6/compiler.35059454_0\n", "12.6.85"),
    ("Cuda compilation tools, release 12.8, V12.8.93\nBuild cuda_12.8.r12.8/compiler.35583870_0\n", "12.8.93"),
    ("nvcc: NVIDIA (R) Cuda compiler driver\nCuda compilation tools, release 13.0, V13.0.88\n", "13.0.88"),
])
def test_compiler_versions_of_every_cuda_12_wheel_and_nvcc(output, version):
    assert nvcc.parse_version(output) == version
    assert nvrtc.cuda_version(version) == tuple(int(v) for v in version.split(".")[:2])


def test_ptxas_older_than_nvrtc_is_refused_before_it_runs(tmp_path, monkeypatch):
    # the wheels' separate ranges (>=12.6,<13) allow NVRTC 12.8 with ptxas 12.6, which refuses PTX ISA 8.7
    assert nvrtc.ptxas_too_old_reason((12, 6), "12.8.93") is None and nvrtc.ptxas_too_old_reason((12, 8), "12.8.61") is None
    why = nvrtc.ptxas_too_old_reason((12, 8), "12.6.85")
    assert why == ("ptxas 12.6.85 (nvidia-cuda-nvcc-cu12) is older than NVRTC 12.8 (nvidia-cuda-nvrtc-cu12) and cannot "
                   "assemble its PTX: pip install 'nvidia-cuda-nvcc-cu12==12.8.*'")
    tools = nvrtc.WheelTools(tmp_path / "libnvrtc.so.12", tmp_path / "ptxas")
    tools.__dict__.update(version=(12, 8), ptxas_version="12.6.85")  # the cached properties, as the wheels report them
    monkeypatch.setattr(nvrtc, "compile_ptx", lambda *a, **k: pytest.fail("NVRTC ran although ptxas cannot take its PTX"))
    result = nvrtc.compile_source(tools, nvcc.SOURCES["edge_map"], "sm_61", tmp_path / "out")
    assert not result.ok and result.log == why
