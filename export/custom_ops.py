"""The exporter hook that turns the warp / filter graphs into ``gsvnet`` custom-op nodes."""

from __future__ import annotations

from typing import Callable

from .build_errors import BuildError


def custom_op_transform(mode: str, radius: int) -> Callable | None:
    """For ``--custom-ops function``: proto, stage -> the stage's graph as one ``gsvnet::`` node
    with its standard-op body as a model-local function (plugins.onnx_ops); None for 'none'."""
    if mode == "none":
        return None
    try:
        from plugins.onnx_ops import as_custom_op
    except ImportError as e:
        raise BuildError(f"--custom-ops function needs plugins.onnx_ops ({e}); use --custom-ops none") from None

    def transform(proto, stage):
        if stage.custom_op is None:
            return proto
        attrs = {"radius": radius} if stage.custom_op == "ChunkFilter" else None
        return as_custom_op(proto, stage.custom_op, attrs, with_function=True)

    return transform
