"""The project's own trained checkpoints, shipped in ``gsvnet/weights/``.

A checkpoint for keyframe net NAME lives at ``gsvnet/weights/NAME-camvid.pt`` with its
provenance (data, command, commit, metrics) in ``NAME-camvid.json`` beside it.
"""

from __future__ import annotations

import json
from pathlib import Path

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"


def default_checkpoint(keyframe_net: str) -> Path | None:
    """Path of the shipped checkpoint for ``keyframe_net``, or None if none is shipped."""
    path = WEIGHTS_DIR / f"{keyframe_net}-camvid.pt"
    return path if path.is_file() else None


def provenance(checkpoint: Path) -> dict:
    """The metadata file written beside a shipped checkpoint ({} if absent)."""
    meta = checkpoint.with_suffix(".json")
    return json.loads(meta.read_text()) if meta.is_file() else {}
