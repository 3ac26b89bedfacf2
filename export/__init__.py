"""Turn the PyTorch GSVNet into ONNX graphs (and TensorRT engines) with a manifest.

``export.build(export.BuildOptions(out="engines", size=(544, 960)))`` is the Python API;
``python -m export.build_engines`` is the command line over it. ``build`` is imported on first
use, so ``import export`` loads neither torch nor onnx.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .options import BuildOptions

if TYPE_CHECKING:
    from .builder import build

__all__ = ["BuildOptions", "build"]


def __getattr__(name: str) -> Any:
    if name == "build":
        from .builder import build

        return build
    raise AttributeError(f"module 'export' has no attribute {name!r}")
