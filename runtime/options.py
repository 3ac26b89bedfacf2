"""Typed options of a segmentation run: what ``python -m runtime.infer`` parses its flags into, and
what ``runtime.Segmenter`` and the fleet worker fill in directly (no argv, no Namespace)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from .backends.base import PRECISIONS
from .errors import UserError
from .live import DEFAULT_RECONNECT
from .sources import Source, as_source
from .outputs import DEFAULT_CRF, DEFAULT_PRESET, X264_PRESETS

VerifyMode = Literal["auto", "force", "skip"]  # runtime.verification.Mode
DEFAULT_ENGINES = Path("engines")


@dataclass
class InferOptions:
    """Every ``runtime.infer`` flag (see ``python -m runtime.infer --help`` for each one's meaning).

    ``verify``: 'auto' (check on first use), 'force' (``--verify``) or 'skip' (``--no-verify``);
    ``progress``: False for ``--no-progress``. Paths may be given as strings; a network URL stays a
    string. ``live``: None detects it (a URL or a camera is live), True forces it (``--live``);
    ``drop``: False for ``--no-drop``. Values out of range raise the one-line ``UserError`` the
    command line would print for them.
    """

    video: list[Source] = field(default_factory=list)
    engines: Path = DEFAULT_ENGINES
    backend: str = "auto"
    precision: str | None = None  # 'f32', 'bf16' or 'int8' (None: the backend's default for the engines)
    interval: int = 4
    out: Path | None = None
    labels_dir: Path | None = None
    stats: Path | None = None
    alpha: float = 0.5
    encoder_preset: str = DEFAULT_PRESET  # x264 preset of the overlay (runtime.outputs.X264_PRESETS)
    encoder_crf: int = DEFAULT_CRF  # x264 quality of the overlay: 0 (lossless) .. 51
    encoder_threads: int = 0  # overlay encoder threads (0: from the CPU budget, runtime.threads.codec_threads)
    max_frames: int | None = None
    keyframe_net: str | None = None
    size: tuple[int, int] | None = None  # (H, W)
    threads: int = 0
    tune: bool = False
    profile_stages: bool = False
    verify: VerifyMode = "auto"
    progress: bool = True
    live: bool | None = None
    drop: bool = True  # a live run slower than its source drops the oldest frames (False: waits)
    reconnect: int = DEFAULT_RECONNECT  # reopen attempts after a live source drops out
    duration: float | None = None  # seconds of wall time after which a run ends, outputs complete
    segment_seconds: float | None = None  # the overlay in files of this many seconds (out_000.mp4, ...)

    def __post_init__(self) -> None:
        self.video = [as_source(v) for v in ([self.video] if isinstance(self.video, (str, Path)) else self.video)]
        self.engines = Path(self.engines)
        for name in ("out", "labels_dir", "stats"):
            value = getattr(self, name)
            if value is not None:
                setattr(self, name, Path(value))
        if self.size is not None:
            self.size = (int(self.size[0]), int(self.size[1]))
        _check(self.interval >= 1, "interval", "must be >= 1", self.interval)
        _check(self.threads >= 0, "threads", "must be >= 0", self.threads)
        _check(self.max_frames is None or self.max_frames >= 1, "max_frames", "must be >= 1", self.max_frames)
        _check(0 <= self.alpha <= 1, "alpha", "must be in [0, 1]", self.alpha)
        _check(self.encoder_preset in X264_PRESETS, "encoder_preset", f"must be one of {', '.join(X264_PRESETS)}",
               self.encoder_preset)
        _check(0 <= self.encoder_crf <= 51, "encoder_crf", "must be in [0, 51]", self.encoder_crf)
        _check(self.encoder_threads >= 0, "encoder_threads", "must be >= 0", self.encoder_threads)
        _check(self.verify in ("auto", "force", "skip"), "verify", "must be 'auto', 'force' or 'skip'", self.verify)
        _check(self.reconnect >= 0, "reconnect", "must be >= 0", self.reconnect)
        _check(self.duration is None or self.duration > 0, "duration", "must be > 0 seconds", self.duration)
        _check(self.segment_seconds is None or self.segment_seconds > 0, "segment_seconds", "must be > 0 seconds",
               self.segment_seconds)
        _check(self.precision in (None, *PRECISIONS), "precision", f"must be one of {', '.join(PRECISIONS)}",
               self.precision)


def _check(ok: bool, name: str, rule: str, value: object) -> None:
    if not ok:
        raise UserError(f"{name} {rule}, got {value!r}")
