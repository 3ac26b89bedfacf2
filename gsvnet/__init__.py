"""GSVNet (Lee et al., ICME 2021) in PyTorch: the single source of truth for every network and op.

Plain ``nn.Module``s and reference ops only; export, engines and runtime derive from these.

The names below are imported from their modules on first use, so ``import runtime.schedule.core`` (the
keyframe / propagation schedule, pure Python) does not import torch.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

#: public name -> the module of this package that defines it
_HOMES = {
    "CheckpointError": "checkpoint", "load_checkpoint": "checkpoint", "save_checkpoint": "checkpoint",
    "create_keyframe_net": "keyframe", "keyframe_net_names": "keyframe",
    "GSVNet": "model", "GSVNetConfig": "model", "key_size": "model",
    "chunk_filter": "ops", "edge_map": "ops", "warp_by_flow": "ops",
    "grid_size": "shapes", "num_weights": "shapes",
    "PropagationState": "state",
}

__all__ = sorted(_HOMES)


def __getattr__(name: str):
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_HOMES[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_HOMES))
