"""Typed options of the evaluation commands: what ``python -m evaluation COMMAND`` parses its flags
into and what ``evaluation.evaluate.run`` takes, so training, the benchmarks and the tests call the
evaluation without argv. One dataclass per command over the fields they share."""

from __future__ import annotations

import datetime
import shlex
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import ClassVar, Literal

from engine_format.sizes import size_error
from runtime.errors import UserError

REPO = Path(__file__).resolve().parents[1]
REFERENCE = "torch-reference"  # the PyTorch reference, any frame size (the default backend)
CAMVID = REPO.parent / "shared" / "data" / "camvid"
CLIP = REPO.parent / "shared" / "data" / "videos" / "solidWhiteRight.mp4"


def default_json() -> Path:
    """benchmarks/results/accuracy-<today>.json: where the command merges its results by default."""
    return REPO / "benchmarks" / "results" / f"accuracy-{datetime.date.today().isoformat()}.json"


@dataclass(kw_only=True)
class EvaluationOptions:
    """The flags every command shares (``python -m evaluation COMMAND --help`` says what each one
    means). ``checkpoint`` None: the engines' own checkpoint with an engines backend, else the
    shipped one; ``json`` None: merge the results into no file. Values out of range raise the
    one-line ``UserError`` the command line prints."""

    command: ClassVar[str]

    checkpoint: Path | None = None
    backend: str = REFERENCE
    engines: Path | None = None
    precision: str | None = None
    verify: bool = True  # False: --no-verify (measure a backend runtime.infer's first-use check refuses)
    threads: int = 2
    limit: int | None = None
    json: Path | None = field(default_factory=default_json)

    def __post_init__(self) -> None:
        from runtime.backends import CHOICES

        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, str) and "Path" in str(f.type):  # paths may be given as strings
                setattr(self, f.name, Path(value))
        _check(self.backend in (REFERENCE, *CHOICES), "--backend", f"must be {REFERENCE} or one of {', '.join(CHOICES)}",
               self.backend)
        _check(self.precision in (None, "f32", "bf16", "int8"), "--precision", "must be f32, bf16 or int8",
               self.precision)
        _check(self.precision is None or self.backend != REFERENCE, "--precision", f"needs an engines --backend, not {REFERENCE}",
               self.precision)
        _check(self.threads >= 0, "--threads", "must be >= 0", self.threads)
        _check(self.limit is None or self.limit >= 1, "--limit", "must be >= 1", self.limit)
        size = getattr(self, "size", None)
        if size is not None:
            self.size = (int(size[0]), int(size[1]))
            problem = size_error(self.size)
            if problem is not None:
                raise UserError(problem)
        distance = getattr(self, "max_distance", 1)
        _check(distance >= 1, "--max-distance", "must be >= 1", distance)

    def command_line(self) -> str:
        """The command that runs these options (flags at their default omitted)."""
        words = ["python", "-m", "evaluation", self.command]
        for f in fields(self):
            value = getattr(self, f.name)
            default = f.default_factory() if f.default_factory is not MISSING else f.default
            if value == default:
                continue
            flag = "--" + f.name.replace("_", "-")
            words += [flag, *map(str, value)] if isinstance(value, tuple) else [flag, "" if value is None else str(value)]
        return shlex.join(words)


@dataclass(kw_only=True)
class CamVidOptions(EvaluationOptions):
    """``camvid``: per-frame mIoU on a CamVid split; ``size``: (H, W) fed to the reference."""

    command: ClassVar[str] = "camvid"
    data: Path = CAMVID
    split: Literal["train", "val", "test"] = "test"
    size: tuple[int, int] = (360, 480)

    def __post_init__(self) -> None:
        super().__post_init__()
        _check(self.split in ("train", "val", "test"), "--split", "must be train, val or test", self.split)


@dataclass(kw_only=True)
class CamVidSequenceOptions(EvaluationOptions):
    """``camvid-sequence``: the propagation protocol against ground truth on the CamVid val sequence."""

    command: ClassVar[str] = "camvid-sequence"
    data: Path = CAMVID
    half: Literal["first", "second", "all"] = "second"
    size: tuple[int, int] = (360, 480)
    max_distance: int = 5
    no_intra_checkpoint: Path | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        _check(self.half in ("first", "second", "all"), "--half", "must be first, second or all", self.half)


@dataclass(kw_only=True)
class VideoOptions(EvaluationOptions):
    """``video``: the protocol on a clip's held-out end against the keyframe net's own labels."""

    command: ClassVar[str] = "video"
    video: Path = CLIP
    size: tuple[int, int] = (544, 960)
    holdout: float = 0.3
    max_distance: int = 5
    no_intra_checkpoint: Path | None = None
    fps: int = 0  # > 0: also time the backend over the held-out frames at every l, this many interleaved rounds

    def __post_init__(self) -> None:
        super().__post_init__()
        _check(0 < self.holdout < 1, "--holdout", "must be in (0, 1)", self.holdout)
        _check(self.fps >= 0, "--fps", "must be >= 0", self.fps)


@dataclass(kw_only=True)
class CityscapesOptions(EvaluationOptions):
    """``cityscapes``: the protocol against gtFine at frame 20 of each snippet under ``root``."""

    command: ClassVar[str] = "cityscapes"
    root: Path
    split: str = "val"
    max_distance: int = 5


#: subcommand -> its options
COMMAND_OPTIONS: dict[str, type[EvaluationOptions]] = {
    o.command: o for o in (CamVidOptions, CamVidSequenceOptions, VideoOptions, CityscapesOptions)}


def _check(ok: bool, flag: str, rule: str, value: object) -> None:
    if not ok:
        raise UserError(f"{flag} {rule}, got {value!r}")
