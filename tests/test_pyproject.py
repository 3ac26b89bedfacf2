"""The GPU extras install beside what GPU machines already have: PyTorch's CUDA 12 wheels (cu126
pins nvidia-cuda-nvrtc-cu12 12.6.*, cu128 12.8.*) and r535-r575 drivers, for which cuda-bindings
13.x (r580+) does not work."""

from __future__ import annotations

import tomllib

import pytest
from packaging.requirements import Requirement

from tests.conftest import REPO


def _extra(name: str) -> dict[str, Requirement]:
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    return {r.name: r for r in map(Requirement, extras[name])}


@pytest.mark.parametrize("extra", ["gpu", "dev"])
def test_gpu_extras_take_any_cuda_12_compiler_wheel_from_12_6(extra):
    requirements = _extra(extra)
    for wheel in ("nvidia-cuda-nvrtc-cu12", "nvidia-cuda-nvcc-cu12"):
        allowed = requirements[wheel].specifier
        assert all(allowed.contains(v) for v in ("12.6.85", "12.6.77", "12.8.93", "12.9.86")), (wheel, allowed)
        assert not allowed.contains("12.4.127") and not allowed.contains("13.0.88"), (wheel, allowed)


@pytest.mark.parametrize("extra", ["gpu", "dev"])
def test_gpu_extras_take_cuda_12_bindings(extra):
    bindings = _extra(extra)["cuda-bindings"].specifier
    assert bindings.contains("12.6.2") and bindings.contains("12.9.4")
    assert not bindings.contains("13.0.1") and not bindings.contains("13.5.0")  # 13.x needs an r580+ driver
    assert not bindings.contains("12.9.0")  # does not run on r580+ drivers
    assert "cuda-python" not in _extra(extra)  # one name for the bindings the code imports (cuda.bindings)
