"""Device buffers of the GPU pipeline, planned once per batch size from the stage I/O specs.

Each engine tensor is wired to a named buffer. The state (``scores``, ``small``) has two slots,
0 and 1: a step reads slot ``p`` and writes slot ``q = 1 - p``, so no engine ever reads what it
is writing and a captured CUDA graph has fixed addresses for each direction. Scratch tensors
whose lifetimes in the step do not overlap share one region (``flow`` is dead once the warp
has run, so ``weights`` and ``labels`` reuse its memory). ``image`` (uploaded) and ``labels``
(downloaded) also get pinned host buffers of the same size.

Pure Python (numpy only for dtype sizes): the plan is tested on the CPU with the real stage
table; the tensorrt backend allocates one device region per ``BufferPlan.regions`` entry.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

BATCH = "N"
ALIGN = 256  # bytes; cudaMalloc alignment, and what TensorRT expects of I/O addresses

#: stage -> {engine tensor: buffer}; "{p}" is the state slot read, "{q}" the slot written.
WIRING: dict[str, dict[str, str]] = {
    "keyframe": {"image": "image", "scores": "scores.{q}"},
    "downsample": {"image": "image", "small": "small.{q}"},
    "flow": {"small": "small.{q}", "prev_small": "small.{p}", "flow": "flow"},
    "warp": {"seg": "scores.{p}", "flow": "flow", "out": "warped"},
    "intra": {"small": "small.{q}", "intra": "intra"},
    "guide": {"intra": "intra", "warped": "warped", "weights": "weights"},
    "filter": {"warped": "warped", "intra": "intra", "weights": "weights", "out": "scores.{q}"},
    "labels": {"scores": "scores.{p}", "labels": "labels"},
}

#: the tensors each stage writes (the others it reads)
OUTPUTS: dict[str, tuple[str, ...]] = {"keyframe": ("scores",), "downsample": ("small",), "flow": ("flow",),
                                       "warp": ("out",), "intra": ("intra",), "guide": ("weights",),
                                       "filter": ("out",), "labels": ("labels",)}

KEYFRAME_PROGRAM = ("keyframe", "downsample")
PROPAGATION_PROGRAM = ("downsample", "flow", "warp", "intra", "guide", "filter")
LABELS_PROGRAM = ("labels",)
STATE = ("scores", "small")
HOST_MIRRORS = ("image", "labels")  # pinned host buffers: frames go up, labels come back


def align(nbytes: int) -> int:
    return -(-nbytes // ALIGN) * ALIGN


@dataclass(frozen=True)
class PlannedBuffer:
    name: str
    shape: tuple[int, ...]
    dtype: str  # numpy dtype name
    nbytes: int
    region: str  # the device allocation it lives in (shared with other buffers when aliased)


@dataclass(frozen=True)
class BufferPlan:
    """Buffers and device regions for one batch size."""

    batch: int
    buffers: dict[str, PlannedBuffer]
    regions: dict[str, int]  # region -> bytes to allocate (256-aligned)

    def binding(self, stage: str, read: int, write: int | None = None) -> dict[str, str]:
        """Engine tensor -> buffer for ``stage`` reading state slot ``read`` and writing ``write``."""
        write = 1 - read if write is None else write
        return {tensor: buf.format(p=read, q=write) for tensor, buf in WIRING[stage].items()}

    def aliases(self) -> dict[str, tuple[str, ...]]:
        """Regions shared by more than one buffer: region -> buffer names."""
        shared: dict[str, list[str]] = {}
        for buf in self.buffers.values():
            shared.setdefault(buf.region, []).append(buf.name)
        return {r: tuple(names) for r, names in shared.items() if len(names) > 1}

    @property
    def device_bytes(self) -> int:
        return sum(self.regions.values())

    @property
    def host_bytes(self) -> int:
        return sum(self.buffers[name].nbytes for name in HOST_MIRRORS)


def _concrete(shape: Sequence[int | str], batch: int) -> tuple[int, ...]:
    return tuple(batch if d == BATCH else int(d) for d in shape)


def _logical_buffers(stage_io: Mapping[str, Mapping], batch: int) -> dict[str, tuple[tuple[int, ...], str]]:
    """Buffer -> (shape, dtype) from the specs, checking every tensor wired to it agrees."""
    found: dict[str, tuple[tuple[int, ...], str, str]] = {}
    for stage, wiring in WIRING.items():
        if stage not in stage_io:
            raise ValueError(f"no I/O specs for stage '{stage}'")
        specs = [*stage_io[stage]["inputs"], *stage_io[stage]["outputs"]]
        names = {s["name"] for s in specs}
        if names != set(wiring):
            raise ValueError(f"stage '{stage}' has tensors {sorted(names)}, the pipeline wires {sorted(wiring)}")
        for spec in specs:
            shape, dtype = _concrete(spec["shape"], batch), str(spec["dtype"])
            for slot in (0, 1):
                buf = wiring[spec["name"]].format(p=slot, q=1 - slot)
                where = f"{stage}.{spec['name']}"
                if buf in found and found[buf][:2] != (shape, dtype):
                    raise ValueError(f"buffer '{buf}': {where} is {dtype}{list(shape)} but {found[buf][2]} "
                                     f"is {found[buf][1]}{list(found[buf][0])}")
                found.setdefault(buf, (shape, dtype, where))
    return {buf: (shape, dtype) for buf, (shape, dtype, _) in found.items()}


def lifetimes(program: Sequence[str] = PROPAGATION_PROGRAM + LABELS_PROGRAM) -> dict[str, tuple[int, int]]:
    """Scratch buffer -> (step that writes it, last step that uses it) over ``program``.

    Steps are positions in ``program``; the labels download is one more step after it. The
    state slots and ``image`` are not scratch: they live across steps.
    """
    written: dict[str, int] = {}
    used: dict[str, int] = {}
    for index, stage in enumerate(program):
        for tensor, template in WIRING[stage].items():
            buf = template.format(p=0, q=1)
            if buf == "image" or buf.split(".")[0] in STATE:
                continue
            if tensor in OUTPUTS[stage]:
                written.setdefault(buf, index)
            elif buf not in written:
                raise ValueError(f"'{stage}' reads '{buf}' before any stage of the program writes it")
            used[buf] = index
    if "labels" in used:
        used["labels"] = len(program)  # read back by the host after the last engine
    return {buf: (written[buf], used[buf]) for buf in written}


def _assign_regions(spans: dict[str, tuple[int, int]]) -> dict[str, str]:
    """Greedy interval colouring: a buffer joins the first region free before it is written."""
    regions: list[tuple[str, int]] = []  # (name, last step in use)
    out = {}
    for buf, (start, end) in sorted(spans.items(), key=lambda item: (item[1][0], item[0])):
        for i, (name, busy_until) in enumerate(regions):
            if busy_until < start:
                regions[i] = (name, end)
                out[buf] = name
                break
        else:
            name = f"scratch{len(regions)}"
            regions.append((name, end))
            out[buf] = name
    return out


def plan_buffers(stage_io: Mapping[str, Mapping], batch: int, alias: bool = True) -> BufferPlan:
    """The buffer plan for ``batch`` frames.

    stage_io: stage -> {"inputs": [spec], "outputs": [spec]}, spec = {"name", "shape" (with
        "N" for the batch), "dtype"}: the manifest's engine (or graph) entries, or
        ``{s: {"inputs": [t.to_dict() ...], ...}}`` from ``engine_format.stages.stage_table``.
    alias: share regions between scratch buffers with disjoint lifetimes.
    """
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    logical = _logical_buffers(stage_io, batch)
    regions_of = _assign_regions(lifetimes()) if alias else {}
    buffers: dict[str, PlannedBuffer] = {}
    regions: dict[str, int] = {}
    for name, (shape, dtype) in sorted(logical.items()):
        nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
        region = regions_of.get(name, name)
        buffers[name] = PlannedBuffer(name, shape, dtype, nbytes, region)
        regions[region] = max(regions.get(region, 0), align(nbytes))
    return BufferPlan(batch, buffers, regions)
