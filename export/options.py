"""Typed options of an engines build: what ``python -m export.build_engines`` parses its flags
into, and what the project's own callers (benchmarks, tests) fill in directly, with no argv and
no argparse Namespace. Plain Python: importing it (and ``export``) loads neither torch nor onnx."""

from __future__ import annotations

import shlex
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Literal

from engine_format.sizes import size_error

from .build_errors import BuildError

DEFAULT_SIZE = (1024, 2048)
DEFAULT_OUT = Path("engines")
SUPPORTED_OPSETS = (16, 17, 18, 19)  # GridSample is 'bilinear' there; TensorRT misreads opset >= 20 'linear'
DEFAULT_OPSET = 18
MAX_BATCH = 64  # the largest batch of every graph's dynamic batch dimension
DEFAULT_CALIBRATION_FRAMES = 64
PRECISIONS = ("fp32", "int8")
CUSTOM_OPS = ("function", "none")
BACKENDS = ("auto", "onnx", "tensorrt")
OPT_LEVELS = tuple(range(0, 6))
COMMAND = "python -m export.build_engines"


@dataclass
class BuildOptions:
    """Every ``python -m export.build_engines`` flag, each with the command line's default (see
    ``--help`` for what each one means): the field ``max_batch`` is ``--max-batch`` and so on.

    ``size``: (H, W) of the engine frames; ``official``: the official files KEYFRAME
    PROPAGATION [FLOW]. Paths may be given as strings. A value out of range, or flags that
    contradict each other, raise the one-line ``BuildError`` the command line prints for them.
    """

    keyframe_net: str | None = None
    checkpoint: Path | None = None
    keyframe_onnx: Path | None = None  # the user's own segmenter as the keyframe net (export/keyframe_import.py)
    input_size: tuple[int, int] | None = None  # (H, W) it takes (None: the graph's fixed size)
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)  # its input normalisation, on 0..1 RGB
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    bgr: bool = False  # it takes BGR
    classes: Path | None = None  # class names (and colours) of its output, one per line
    official: tuple[Path, ...] | None = None
    random_weights: bool = False
    seed: int = 0
    num_classes: int = 19
    radius: int = 1
    out: Path = DEFAULT_OUT
    size: tuple[int, int] = DEFAULT_SIZE
    key_scale: float | None = None
    opset: int = DEFAULT_OPSET
    precision: Literal["fp32", "int8"] = "fp32"
    calibration: Path | None = None
    calibration_frames: int = DEFAULT_CALIBRATION_FRAMES
    custom_ops: Literal["function", "none"] = "function"
    backend: Literal["auto", "onnx", "tensorrt"] = "auto"
    max_batch: int = 4
    opt_level: int = 3
    timing_cache: Path | None = None
    version_compatible: bool = False
    force: bool = False

    def __post_init__(self) -> None:
        for name in ("checkpoint", "calibration", "timing_cache", "keyframe_onnx", "classes"):
            if getattr(self, name) is not None:
                setattr(self, name, Path(getattr(self, name)))
        self.out = Path(self.out)
        if self.official is not None:
            self.official = tuple(Path(f) for f in self.official)
        self.size = (int(self.size[0]), int(self.size[1]))
        if self.input_size is not None:
            self.input_size = (int(self.input_size[0]), int(self.input_size[1]))
        self.mean, self.std = tuple(float(v) for v in self.mean), tuple(float(v) for v in self.std)
        _check_ranges(self)
        _check_together(self)

    def command_line(self) -> str:
        """The command that builds with these options (flags left at their default omitted)."""
        words = COMMAND.split()
        for f in fields(self):
            value = getattr(self, f.name)
            if value == f.default:
                continue
            flag = "--" + f.name.replace("_", "-")
            if isinstance(value, bool):
                words.append(flag)
            elif f.name in ("size", "input_size"):
                words += [flag, f"{value[0]}x{value[1]}"]
            elif isinstance(value, tuple):
                words += [flag, *map(str, value)]
            else:
                words += [flag, str(value)]
        return shlex.join(words)


def key_scale_error(value: float) -> str | None:
    """Why ``value`` cannot be the keyframe input scale (it must be in (0, 1]), or None."""
    return None if 0.0 < value <= 1.0 else f"key scale must be in (0, 1], got {value}"


def _one_of(flag: str, value: object, choices: tuple) -> None:
    if value not in choices:
        raise BuildError(f"{flag} must be one of {', '.join(map(str, choices))}, got {value!r}")


def _check_ranges(o: BuildOptions) -> None:
    """Each value on its own (what argparse's ``type`` and ``choices`` refuse on the command line)."""
    for problem in (size_error(o.size), key_scale_error(o.key_scale) if o.key_scale is not None else None):
        if problem is not None:
            raise BuildError(problem)
    _one_of("--opset", o.opset, SUPPORTED_OPSETS)
    _one_of("--precision", o.precision, PRECISIONS)
    _one_of("--custom-ops", o.custom_ops, CUSTOM_OPS)
    _one_of("--backend", o.backend, BACKENDS)
    _one_of("--opt-level", o.opt_level, OPT_LEVELS)
    if o.keyframe_net is not None:
        from gsvnet.keyframe import keyframe_net_names

        _one_of("--keyframe-net", o.keyframe_net, tuple(keyframe_net_names()))
    for flag, value, low in (("--num-classes", o.num_classes, 1), ("--radius", o.radius, 1),
                             ("--calibration-frames", o.calibration_frames, 1)):
        if value < low:
            raise BuildError(f"{flag} must be >= {low}, got {value}")
    if not 1 <= o.max_batch <= MAX_BATCH:
        raise BuildError(f"--max-batch must be in 1..{MAX_BATCH}, got {o.max_batch}")


def _check_together(o: BuildOptions) -> None:
    """Flags that contradict each other, or one that needs another."""
    if o.official is not None:
        if not 2 <= len(o.official) <= 3:
            raise BuildError(f"--official takes 2 or 3 files (KEYFRAME PROPAGATION [FLOW]), got {len(o.official)}")
        if o.checkpoint is not None or o.random_weights:
            raise BuildError("--official replaces --checkpoint and --random-weights; pass only one of them")
    if o.keyframe_onnx is not None:
        for flag, given in (("--official", o.official is not None), ("--keyframe-net", o.keyframe_net is not None),
                            ("--precision int8", o.precision == "int8"), ("--random-weights", o.random_weights)):
            if given:
                raise BuildError(f"--keyframe-onnx makes the keyframe net your model; {flag} does not go with it")
    else:
        named = [flag for flag, given in (("--input-size", o.input_size is not None), ("--bgr", o.bgr),
                                          ("--classes", o.classes is not None),
                                          ("--mean", o.mean != (0.485, 0.456, 0.406)),
                                          ("--std", o.std != (0.229, 0.224, 0.225))) if given]
        if named:
            raise BuildError(f"{', '.join(named)} describe(s) a model imported with --keyframe-onnx MODEL.onnx; "
                             "pass it too, or drop them")
    if o.precision == "int8":
        if o.backend == "tensorrt":
            raise BuildError("--precision int8 builds an onnxruntime keyframe graph; "
                             "TensorRT engines are built from FP32 folders (drop --precision int8, or use --backend onnx)")
        if o.calibration is None:
            raise BuildError("--precision int8 needs --calibration DIR: a folder of real frames (PNG/JPEG) to measure "
                             "the INT8 ranges on, e.g. ../shared/data/camvid/train")
