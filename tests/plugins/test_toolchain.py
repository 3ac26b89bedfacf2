"""Which compiler builds which architecture, which kernel image a driver can load, and
python -m plugins.build. The image rules are CUDA's compatibility rules (a cubin from CUDA X.y
loads on any driver for CUDA X.0 or newer; PTX from CUDA X.y needs a driver for CUDA X.y or
newer), applied here to hand-made toolchains so every case is checked without a GPU."""

from __future__ import annotations

import pytest

from plugins import build, nvrtc, toolchain
from tests.conftest import run_module

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
    if toolchain.for_arch("sm_61", toolchain.available()) is None:
        pytest.skip(toolchain.missing_reason("sm_61", toolchain.available()))
    proc = run_module("plugins.build", "--arch", "sm_61", "--ptx", "compute_61", "--table", timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "sm_61: ok (nvrtc-cu12" in proc.stdout and "compute_61 PTX: ok" in proc.stdout
    assert "| `gsvnet_chunk_filter_r1_f16` |" in proc.stdout  # the register table
    bad = run_module("plugins.build", "--arch", "sm_6x")
    assert bad.returncode == 2 and "not like sm_86" in bad.stderr
