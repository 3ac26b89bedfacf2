"""What a test needs from the dev extra (pyproject.toml) or from .ci/run: a failure, never a skip.

CI installs ``pip install -e '.[dev]'`` and runs .ci/run, so a missing module, compiler or CUDA
toolchain there is a broken setup that must show up as a failing test with one line saying what to
install. Only what no CI machine has (a GPU, TensorRT, a CUDA driver) may skip, with its reason.
"""

from __future__ import annotations

import importlib
import shutil
from types import ModuleType
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from plugins.toolchain import Toolchain

DEV_EXTRA = "pip install -e '.[dev]'"


def require_module(name: str, why: str) -> ModuleType:
    """The imported module ``name``, or a test failure naming the dev extra (``why``: what needs it)."""
    try:
        return importlib.import_module(name)
    except ImportError as e:
        error = e
    pytest.fail(f"{name} is not importable ({type(error).__name__}: {error}) but {why}: {DEV_EXTRA}", pytrace=False)


def require_program(name: str, why: str, install: str) -> str:
    """The path of program ``name`` on the PATH, or a test failure saying how to get it (``install``)."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not on the PATH but {why}: {install}", pytrace=False)
    return path


def require_cuda_compiler(arch: str) -> Toolchain:
    """The first installed CUDA toolchain that targets ``arch`` ('sm_XY' or 'compute_XY'). The dev
    extra's CUDA 12 wheels (NVRTC + ptxas) target sm_50 to sm_120 without a CUDA toolkit, so none
    here is a failure."""
    from plugins import toolchain

    installed = toolchain.available()
    tool = toolchain.for_arch(arch, installed)
    if tool is None:
        pytest.fail(f"{toolchain.missing_reason(arch, installed)}; the dev extra installs the wheels: {DEV_EXTRA}",
                    pytrace=False)
    return tool
