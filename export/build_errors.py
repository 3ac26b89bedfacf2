"""The build's one-line, user-facing errors (shared by the ONNX and the TensorRT build)."""

from __future__ import annotations

from engine_format.errors import first_line  # noqa: F401  (re-exported for the build's modules)


class BuildError(RuntimeError):
    """A one-line, user-facing reason the build cannot go on."""


TENSORRT_MISSING = ("TensorRT is not importable: install it on a machine with an NVIDIA GPU and driver "
                    "(pip install tensorrt, which needs access to NVIDIA's package index), or use --backend onnx")
