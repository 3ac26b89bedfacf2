"""plugins.launcher without a GPU: which cuda-bindings fits which driver (the bindings' CUDA major
against the driver's cuDriverGetVersion), and the one line a user sees when they do not fit."""

from __future__ import annotations

import pytest

from plugins import launcher


@pytest.fixture
def fresh_probe():
    launcher.cuda_bindings_reason.cache_clear()
    yield
    launcher.cuda_bindings_reason.cache_clear()


@pytest.mark.parametrize("bindings,driver,fits", [
    ("13.0.1", 12080, False),  # r570 (CUDA 12.8): the 13.x bindings need r580+
    ("13.5.0", 12020, False),  # r535 (CUDA 12.2)
    ("12.9.4", 12020, True),  # CUDA 12 bindings run on every CUDA 12 driver
    ("12.6.2", 12080, True),
    ("12.9.4", 13000, True),  # and on r580+ drivers
    ("13.0.1", 13000, True),
    ("13.5.0", 13020, True),
    ("12.9.0", 13000, False),  # 12.9.0 does not run on CUDA 13 drivers (fixed in 12.9.1)
    ("12.9.0", 12080, True),
])
def test_which_bindings_fit_which_driver(bindings, driver, fits):
    why = launcher.bindings_driver_reason(bindings, driver)
    assert (why is None) is fits, why
    if not fits:
        assert "pip install 'cuda-bindings>=12.6,<13,!=12.9.0'" in why and "\n" not in why


def test_bindings_13_on_an_r570_driver_say_what_to_install():
    assert launcher.bindings_driver_reason("13.0.1", 12080) == (
        "cuda-bindings 13.0.1 needs an NVIDIA driver for CUDA 13 (r580+), this driver supports CUDA 12.8: "
        "pip install 'cuda-bindings>=12.6,<13,!=12.9.0' (or update the driver)")


def test_a_mismatch_is_the_reason_the_gpu_backends_give(monkeypatch, fresh_probe):
    from engine_format import compat as engine_compat

    monkeypatch.setattr(launcher, "installed_bindings_version", lambda: "13.0.1")
    monkeypatch.setattr(launcher, "library_driver_version", lambda: 12080)
    why = launcher.gpu_unavailable_reason()
    assert why == launcher.bindings_driver_reason("13.0.1", 12080)  # not "no usable CUDA driver/GPU"
    with pytest.raises(launcher.CudaBindingsError, match="needs an NVIDIA driver for CUDA 13"):
        launcher.driver_version()
    with pytest.raises(RuntimeError, match=r"cuda-bindings>=12.6,<13"):
        engine_compat.gpu_identity()


def test_no_driver_or_no_bindings_is_not_a_mismatch(monkeypatch, fresh_probe):
    monkeypatch.setattr(launcher, "installed_bindings_version", lambda: "13.0.1")
    monkeypatch.setattr(launcher, "library_driver_version", lambda: None)  # a machine without an NVIDIA driver
    assert launcher.cuda_bindings_reason() is None
    launcher.cuda_bindings_reason.cache_clear()
    monkeypatch.setattr(launcher, "installed_bindings_version", lambda: None)
    monkeypatch.setattr(launcher, "library_driver_version", lambda: 12080)
    assert launcher.cuda_bindings_reason() is None
