"""Keyframe (image segmentation) networks behind a registry."""

from .base import IMAGENET, KeyframeNet, Normalization
from .registry import create_keyframe_net, keyframe_net_names, register

__all__ = ["IMAGENET", "KeyframeNet", "Normalization", "create_keyframe_net", "keyframe_net_names", "register"]
