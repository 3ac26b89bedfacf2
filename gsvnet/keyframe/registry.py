"""Name -> constructor registry for keyframe networks.

Adding a network is a one-file change: put a module in ``gsvnet/keyframe/`` that decorates its
constructor with ``@register("name")``; every module of the package is imported on first use.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Callable

from .base import KeyframeNet

_REGISTRY: dict[str, Callable[..., KeyframeNet]] = {}
_loaded = False


def register(name: str) -> Callable[[Callable[..., KeyframeNet]], Callable[..., KeyframeNet]]:
    """Decorator: make ``fn(num_classes=..., **kw) -> KeyframeNet`` available as ``name``."""

    def deco(fn: Callable[..., KeyframeNet]) -> Callable[..., KeyframeNet]:
        if name in _REGISTRY and _REGISTRY[name] is not fn:
            raise ValueError(f"keyframe net {name!r} is registered twice")
        _REGISTRY[name] = fn
        return fn

    return deco


def _load_all() -> None:
    global _loaded
    if _loaded:
        return
    package = importlib.import_module(__package__)
    for info in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"{__package__}.{info.name}")
    _loaded = True


HIDDEN = {"onnx"}  # registered for checkpoints, not a choice: made by build_engines --keyframe-onnx


def keyframe_net_names() -> list[str]:
    """Sorted names of the keyframe networks one can choose (``--keyframe-net``)."""
    _load_all()
    return sorted(set(_REGISTRY) - HIDDEN)


def create_keyframe_net(name: str, num_classes: int = 19, **kwargs) -> KeyframeNet:
    """Build the keyframe network registered as ``name``."""
    _load_all()
    if name not in _REGISTRY:
        raise KeyError(f"unknown keyframe net {name!r}; choose one of: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name](num_classes=num_classes, **kwargs)
