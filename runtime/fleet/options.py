"""Typed options of a fleet job: what ``python -m runtime.fleet`` parses its flags into and what
``runtime.fleet.job.FleetJob`` runs (no argparse Namespace past the command line)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import UserError
from ..options import DEFAULT_ENGINES


@dataclass
class FleetOptions:
    """Every ``runtime.fleet`` flag with the command line's default (``--help`` says what each one
    means). ``videos``: files and/or glob patterns; ``progress``: False for ``--no-progress``;
    ``workers`` / ``gpus_per_worker`` None: sized to the cluster. A value out of range raises the
    one-line ``UserError`` the command line would print for it."""

    videos: list[str]
    out_dir: Path
    engines: Path = DEFAULT_ENGINES
    overlay: bool = False
    labels: bool = False
    interval: int = 4
    alpha: float = 0.5
    backend: str = "auto"
    address: str | None = None
    workers: int | None = None
    gpus_per_worker: float | None = None
    cpus_per_worker: float = 1.0
    retries: int = 2
    redo: bool = False
    progress: bool = True

    def __post_init__(self) -> None:
        from ..backends import CHOICES

        self.videos = [str(v) for v in ([self.videos] if isinstance(self.videos, (str, Path)) else self.videos)]
        self.out_dir, self.engines = Path(self.out_dir), Path(self.engines)
        for flag, ok, rule, value in (
                ("--interval", self.interval >= 1, "must be >= 1", self.interval),
                ("--alpha", 0 <= self.alpha <= 1, "must be in [0, 1]", self.alpha),
                ("--workers", self.workers is None or self.workers >= 1, "must be >= 1", self.workers),
                ("--gpus-per-worker", self.gpus_per_worker is None or self.gpus_per_worker >= 0, "must be >= 0",
                 self.gpus_per_worker),
                ("--cpus-per-worker", self.cpus_per_worker > 0, "must be > 0", self.cpus_per_worker),
                ("--retries", self.retries >= 0, "must be >= 0", self.retries),
                ("--backend", self.backend in CHOICES, f"must be one of {', '.join(CHOICES)}", self.backend)):
            if not ok:
                raise UserError(f"{flag} {rule}, got {value!r}")
