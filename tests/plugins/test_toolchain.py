"""Which compiler builds which architecture, which kernel image a driver can load, and
python -m plugins.build. The image rules are CUDA's compatibility rules (a cubin from CUDA X.y
loads on any driver for CUDA X.0 or newer; PTX from CUDA X.y needs a driver for CUDA X.y or
newer), applied here to hand-made toolchains so every case is checked without a GPU."""

from __future__ import annotations

import logging
import subprocess
from dataclasses import dataclass, field

import pytest

from plugins import build, nvcc, nvrtc, toolchain
from tests.conftest import run_module
from tests.requirements import require_cuda_compiler

CUDA13 = toolchain.Toolchain("nvcc", (13, 0), tuple(f"sm_{a}" for a in (75, 80, 86, 87, 89, 90, 100, 103, 110, 120, 121)))
CUDA12 = toolchain.Toolchain("nvrtc-cu12", (12, 8), tuple(f"sm_{a}" for a in (50, 52, 53, 60, 61, 62, 70, 72, 75, 80, 86,
                                                                                87, 89, 90, 100, 101, 120)))


@pytest.mark.parametrize("arch,driver,tools,expected", [
    ("sm_61", (12, 8), [CUDA13, CUDA12], ("cubin", "sm_61", "nvrtc-cu12")),  # GTX 1080 Ti, r570: CUDA 13 dropped Pascal
    ("sm_61", (12, 2), [CUDA12], ("cubin", "sm_61", "nvrtc-cu12")),  # r535: a 12.8 cubin loads on any CUDA 12 driver
    ("sm_86", (13, 0), [CUDA13, CUDA12], ("cubin", "sm_86", "nvcc")),  # the newest toolchain the driver supports
    ("sm_86", (12, 8), [CUDA13, CUDA12], ("cubin", "sm_86", "nvrtc-cu12")),  # r570 cannot load CUDA 13 cubins
    ("sm_103", (12, 9), [CUDA12], ("ptx", "compute_101", "nvrtc-cu12")),  # no sm_103 cubin: PTX of the newest lower arch
])
def test_the_image_a_driver_can_load(arch, driver, tools, expected):
    image = toolchain.choose_image(arch, driver, tools)
    assert (image.kind, image.target, image.toolchain.name) == expected


def test_ptx_for_tensorrt_needs_a_driver_at_least_as_new_as_the_compiler():
    image = toolchain.choose_image("sm_90", (12, 8), [CUDA13, CUDA12], kind="ptx", ptx_target="compute_75")
    assert (image.kind, image.target, image.toolchain.name) == ("ptx", "compute_75", "nvrtc-cu12")
    with pytest.raises(toolchain.ToolchainError):  # PTX from CUDA 12.8 is too new for a CUDA 12.4 driver
        toolchain.choose_image("sm_90", (12, 4), [CUDA13, CUDA12], kind="ptx", ptx_target="compute_75")


@pytest.mark.parametrize("arch,driver,tools,says", [
    ("sm_86", (12, 8), [CUDA13], [nvrtc.INSTALL_HINT, "r580"]),  # CUDA 13 only, driver too old: install the cu12 wheels
    ("sm_61", (12, 8), [CUDA13], [nvrtc.INSTALL_HINT, "sm_61"]),  # nothing targets Pascal
    ("sm_86", (12, 8), [], [nvrtc.INSTALL_HINT, "no CUDA compiler"]),
    ("sm_86", (11, 8), [CUDA12], ["update the NVIDIA driver"]),  # a CUDA 11 driver loads no CUDA 12 kernels
])
def test_what_to_install_when_nothing_loads(arch, driver, tools, says):
    with pytest.raises(toolchain.ToolchainError) as info:
        toolchain.choose_image(arch, driver, tools)
    message = str(info.value)
    assert all(s in message for s in says) and "\n" not in message, message


def test_build_plan_uses_nvcc_where_it_can_and_the_wheels_for_pascal():
    chosen = build.plan(["sm_61", "sm_75", "sm_86", "sm_90"], [CUDA13, CUDA12], "auto")
    assert {a: t.name for a, t in chosen.items()} == {"sm_61": "nvrtc-cu12", "sm_75": "nvcc", "sm_86": "nvcc", "sm_90": "nvcc"}
    assert {t.name for t in build.plan(["sm_61", "sm_90"], [CUDA12], "auto").values()} == {"nvrtc-cu12"}  # CI without nvcc
    with pytest.raises(ValueError, match="--toolchain nvcc .* does not target sm_61"):
        build.plan(["sm_61"], [CUDA13, CUDA12], "nvcc")
    with pytest.raises(ValueError, match="targets sm_61: pip install nvidia-cuda-nvrtc-cu12"):
        build.plan(["sm_61"], [CUDA13], "auto")


def test_arch_list_parsing():
    assert build.parse_archs("sm_61,75, sm_120") == ["sm_61", "sm_75", "sm_120"]
    with pytest.raises(Exception, match="not like sm_86"):
        build.parse_archs("sm_6x")


def test_ptx_target_parsing(capsys):
    assert build.parse_ptx("compute_61") == "compute_61" and build.parse_ptx("75") == "compute_75"  # as --arch 75
    assert build.parse_ptx("none") is None and build.build_parser().parse_args([]).ptx == "compute_75"
    for bad in ("sm_75", "compute75", "7.5", ""):  # used to reach the build as a name it then split on "_"
        with pytest.raises(SystemExit) as info:
            build.build_parser().parse_args(["--ptx", bad])
        assert info.value.code == 2
        assert f"argument --ptx: PTX target {bad!r} is not like compute_75" in capsys.readouterr().err


def test_plugins_build_compiles_the_pascal_path(tmp_path):
    require_cuda_compiler("sm_61")  # the dev extra's CUDA 12 wheels
    proc = run_module("plugins.build", "--arch", "sm_61", "--ptx", "compute_61", "--table", timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "sm_61: ok (nvrtc-cu12" in proc.stdout and "compute_61 PTX: ok" in proc.stdout
    assert "| `gsvnet_chunk_filter_r1_f16` |" in proc.stdout  # the register table
    bad = run_module("plugins.build", "--arch", "sm_6x")
    assert bad.returncode == 2 and "not like sm_86" in bad.stderr


# ---- strict builds only in plugins.build / CI; run-time builds log warnings and fall back --------

def test_strict_flags_only_when_asked(monkeypatch, tmp_path):
    strict = nvcc.flags("cubin", strict=True)
    assert "-Werror" in strict and "-v,-warn-spills,-warn-lmem-usage,-Werror" in strict
    for kind in ("cubin", "obj", "ptx"):
        assert not any("Werror" in flag for flag in nvcc.flags(kind, strict=False)), kind
    assert "-v,-warn-spills,-warn-lmem-usage" in nvcc.flags("cubin", strict=False)  # spills still reported, as warnings
    assert not any("ptxas" in flag or "warn-spills" in flag for flag in nvcc.flags("ptx", strict=True))  # no ptxas for -ptx
    assert "-Werror" in nvrtc.ptxas_flags(True) and "-Werror" not in nvrtc.ptxas_flags(False)
    commands = []

    def run(command, **kwargs):
        commands.append(command)
        return subprocess.CompletedProcess(command, 1, "", "")

    monkeypatch.setattr(nvcc.subprocess, "run", run)
    nvcc.compile_source(nvcc.SOURCES["edge_map"], "sm_86", tmp_path, nvcc="/fake/nvcc")
    nvcc.compile_source(nvcc.SOURCES["edge_map"], "sm_86", tmp_path, nvcc="/fake/nvcc", strict=True)
    assert "-Werror" not in commands[0] and "-Werror" in commands[1]


@dataclass(frozen=True)
class _FakeToolchain(toolchain.Toolchain):
    """A toolchain that records how it was asked to compile and fails or warns as told."""

    fails: bool = False
    warning: str = ""
    calls: list = field(default_factory=list, compare=False, hash=False)

    def compile(self, source, arch, out_dir, kind="cubin", strict=False):
        self.calls.append((source.stem, arch, kind, strict))
        out_dir.mkdir(parents=True, exist_ok=True)
        output = out_dir / f"{source.stem}.{arch}.{kind}"
        if self.fails:
            return nvcc.CompileResult(["fake"], 1, "ptxas info: Used 40 registers\nptxas error : Entry function uses too "
                                      "much local data", None, [])
        output.write_bytes(f"{kind} of {source.stem} by {self.name}".encode())
        return nvcc.CompileResult(["fake"], 0, self.warning, output, [])


def test_run_time_builds_are_not_strict(tmp_path):
    tool = _FakeToolchain("nvrtc-cu12", (12, 8), ("sm_61", "sm_75"))
    toolchain.build("edge_map", "sm_61", "cubin", tool, root=tmp_path)
    assert tool.calls == [("edge_map", "sm_61", "cubin", False)]  # launcher / TensorRT plugins: warnings are not errors


def test_plugins_build_compiles_strictly(tmp_path, monkeypatch):
    tool = _FakeToolchain("nvrtc-cu12", (12, 8), ("sm_61", "sm_75"))
    monkeypatch.setattr(toolchain, "available", lambda: [tool])
    args = build.build_parser().parse_args(["--arch", "sm_61", "--ptx", "compute_75"])
    assert build.run(args, tmp_path / "out", log=lambda line: None) == 0
    assert tool.calls and all(strict for *_, strict in tool.calls)
    assert {kind for _, _, kind, _ in tool.calls} == {"cubin", "ptx"}


def test_run_time_warnings_are_logged_not_fatal(tmp_path, caplog):
    tool = _FakeToolchain("nvcc", (13, 0), ("sm_86",), warning="ptxas warning : Registers are spilled to local memory "
                                                               "in function 'gsvnet_chunk_filter_r3_f32', 8 bytes spill stores")
    with caplog.at_level(logging.WARNING, logger="plugins.toolchain"):
        image = toolchain.build("chunk_filter", "sm_86", "cubin", tool, root=tmp_path)
    assert image == b"cubin of chunk_filter by nvcc"
    assert [r.getMessage() for r in caplog.records] == [
        "gsvnet kernels: nvcc 13.0 built chunk_filter (sm_86) with 1 warning(s): ptxas warning : Registers are spilled "
        "to local memory in function 'gsvnet_chunk_filter_r3_f32', 8 bytes spill stores"]


def test_a_failing_toolchain_falls_back_to_the_other_one_in_one_line(tmp_path, caplog):
    broken = _FakeToolchain("nvcc", (13, 0), ("sm_75", "sm_86"), detail="13.0.88", fails=True)
    wheels = _FakeToolchain("nvrtc-cu12", (12, 8), ("sm_61", "sm_75", "sm_86"), detail="12.8 (ptxas 12.8.93)")
    with caplog.at_level(logging.WARNING, logger="plugins.toolchain"):
        image, built = toolchain.build_images(["warp_by_flow", "edge_map"], "sm_86", (13, 0), [broken, wheels],
                                              root=tmp_path)
    assert (image.kind, image.target, image.toolchain.name) == ("cubin", "sm_86", "nvrtc-cu12")
    assert built == {"warp_by_flow": b"cubin of warp_by_flow by nvrtc-cu12", "edge_map": b"cubin of edge_map by nvrtc-cu12"}
    assert [r.getMessage() for r in caplog.records] == [
        "gsvnet kernels: nvcc 13.0.88 failed for warp_by_flow (sm_86): ptxas error : Entry function uses too much "
        "local data; falling back to cubin sm_86 from nvrtc-cu12 12.8 (ptxas 12.8.93)"]
    # the other direction, for PTX (TensorRT AOT plugins): the wheels fail, nvcc builds it
    wheels_broken = _FakeToolchain("nvrtc-cu12", (12, 8), ("sm_75",), detail="12.8 (ptxas 12.8.93)", fails=True)
    nvcc13 = _FakeToolchain("nvcc", (13, 0), ("sm_75", "sm_86"), detail="13.0.88")
    image, built = toolchain.build_images(["edge_map"], "sm_86", (13, 0), [wheels_broken, nvcc13], kind="ptx",
                                          ptx_target="compute_75", root=tmp_path)
    assert image.describe() == "ptx compute_75 from nvcc 13.0.88" and built == {"edge_map": b"ptx of edge_map by nvcc"}
    # nothing left: one line naming every failure
    with pytest.raises(toolchain.ToolchainError) as info:
        toolchain.build_images(["edge_map"], "sm_86", (13, 0), [broken, wheels_broken], root=tmp_path)
    message = str(info.value)
    assert message.startswith("no installed CUDA compiler built the gsvnet kernels for sm_86: nvcc 13.0.88 failed")
    assert "nvrtc-cu12 12.8 (ptxas 12.8.93) failed" in message and "plugins.build --arch sm_86" in message
    assert "\n" not in message


@pytest.fixture
def fresh_toolchains():
    toolchain.refresh()
    yield
    toolchain.refresh()  # the real machine's toolchains for the tests that follow


def test_available_probes_the_compilers_once(monkeypatch, fresh_toolchains):
    spawned = []

    def run(command, **kwargs):
        spawned.append(command[1])
        out = {"--version": "Cuda compilation tools, release 13.0, V13.0.88", "--list-gpu-code": "sm_75\nsm_86\n"}
        return subprocess.CompletedProcess(command, 0, out[command[1]], "")

    monkeypatch.setattr(nvcc, "find_nvcc", lambda: "/opt/fake-cuda/bin/nvcc")
    monkeypatch.setattr(nvrtc, "find_wheel_tools", lambda: None)
    monkeypatch.setattr(nvcc.subprocess, "run", run)
    first = toolchain.available()
    assert [t.describe() for t in first] == ["nvcc 13.0.88"] and spawned == ["--version", "--list-gpu-code"]
    assert toolchain.available() == first and spawned == ["--version", "--list-gpu-code"]  # nothing spawned again
    first.clear()  # callers get their own list
    assert len(toolchain.available()) == 1
    toolchain.refresh()
    toolchain.available()
    assert len(spawned) == 4
