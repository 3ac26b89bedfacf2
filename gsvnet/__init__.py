"""GSVNet (Lee et al., ICME 2021) in PyTorch: the single source of truth for every network and op.

Plain ``nn.Module``s and reference ops only; export, engines and runtime derive from these.
"""

from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from .keyframe import create_keyframe_net, keyframe_net_names
from .loop import KeyframeScheduler, StepResult, segment_frames
from .model import GSVNet, GSVNetConfig, PropagationState, grid_size, key_size
from .ops import chunk_filter, edge_map, warp_by_flow

__version__ = "0.1.0"

__all__ = [
    "CheckpointError", "GSVNet", "GSVNetConfig", "KeyframeScheduler", "PropagationState", "StepResult",
    "chunk_filter", "create_keyframe_net", "edge_map", "grid_size", "key_size", "keyframe_net_names",
    "load_checkpoint", "save_checkpoint", "segment_frames", "warp_by_flow",
]
