"""Segment videos with the graphs and engines that ``export`` wrote.

``from runtime import Segmenter`` is the Python API (runtime/segmenter.py); ``python -m runtime.infer``
is the command line over it. Imported lazily, so ``import runtime.<module>`` stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .options import InferOptions
    from .segmenter import FrameResult, Segmenter

__all__ = ["Segmenter", "FrameResult", "InferOptions"]


def __getattr__(name: str) -> Any:
    if name in ("Segmenter", "FrameResult"):
        from . import segmenter

        return getattr(segmenter, name)
    if name == "InferOptions":
        from .options import InferOptions

        return InferOptions
    raise AttributeError(f"module 'runtime' has no attribute {name!r}")
