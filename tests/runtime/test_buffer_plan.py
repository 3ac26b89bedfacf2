"""The GPU buffer plan on the real FP16 stage table (and on engine entries as the builder writes
them): shapes, byte sizes, state double-buffering and which scratch buffers alias."""

from __future__ import annotations

import numpy as np
import pytest

from engine_format.stages import stage_table
from runtime.backends.buffer_plan import (KEYFRAME_PROGRAM, LABELS_PROGRAM, OUTPUTS, PROPAGATION_PROGRAM, WIRING,
                                          plan_buffers)
from tests.conftest import ENGINE_SIZE

C, H, W = 11, ENGINE_SIZE[0], ENGINE_SIZE[1]
h, w = H // 8, W // 8  # 17 x 30


def stage_io(precision: str = "fp16") -> dict:
    table = stage_table(C, 1, ENGINE_SIZE, precision=precision)
    return {name: {"inputs": [s.to_dict() for s in st.inputs], "outputs": [s.to_dict() for s in st.outputs]}
            for name, st in table.items()}


def expected_buffers(batch: int) -> dict[str, tuple[tuple[int, ...], str, int]]:
    """Buffer -> (shape, dtype, bytes per element), by hand from the FP16 stage table's I/O."""
    return {
        "image": ((batch, H, W, 3), "uint8", 1), "labels": ((batch, H, W), "uint8", 1),
        "scores.0": ((batch, C, h, w), "float16", 2), "scores.1": ((batch, C, h, w), "float16", 2),
        "small.0": ((batch, 3, h, w), "float16", 2), "small.1": ((batch, 3, h, w), "float16", 2),
        "flow": ((batch, 2, h, w), "float32", 4), "warped": ((batch, C, h, w), "float16", 2),
        "intra": ((batch, C, h, w), "float16", 2), "weights": ((batch, 11, h, w), "float16", 2),  # K+2 = 11 for r = 1
    }


def check_shapes_and_bytes(plan, batch: int) -> None:
    expect = expected_buffers(batch)
    assert set(plan.buffers) == set(expect)
    for name, (shape, dtype, size) in expect.items():
        buf = plan.buffers[name]
        assert (buf.shape, buf.dtype, buf.nbytes) == (shape, dtype, int(np.prod(shape)) * size), name
    assert plan.buffers["scores.0"].nbytes == batch * 11220 and plan.buffers["image"].nbytes == batch * 97920
    assert plan.host_bytes == batch * (97920 + 32640)  # pinned: frames up, labels back


@pytest.mark.parametrize("batch", [1, 4])
def test_shapes_and_bytes(batch):
    plan = plan_buffers(stage_io(), batch)
    check_shapes_and_bytes(plan, batch)
    assert all(n % 256 == 0 for n in plan.regions.values())
    unaliased = sum(b.nbytes for b in plan.buffers.values())
    assert plan.device_bytes < unaliased  # the aliasing saves memory


@pytest.mark.parametrize("batch", [1, 4])
def test_which_buffers_alias(batch):
    plan = plan_buffers(stage_io(), batch)
    # flow dies at the warp; intra, then labels (after the filter), reuse its memory
    assert plan.aliases() == {"scratch0": ("flow", "intra", "labels")}
    region = plan.regions["scratch0"]
    assert region >= max(plan.buffers[b].nbytes for b in ("flow", "intra", "labels"))
    for state in ("scores.0", "scores.1", "small.0", "small.1", "image"):
        assert plan.buffers[state].region == state  # never shared
    assert plan_buffers(stage_io(), batch, alias=False).aliases() == {}


# What each stage reads and writes, by hand from GSVNet's step (engine_format/stages.py's table, SPEC.md);
# "p" is the state slot a step reads, "q" the one it writes. The host uploads the image first and
# downloads the labels last.
KEYFRAME_STEP = [("upload", [], ["image"]), ("keyframe", ["image"], ["scores.q"]), ("downsample", ["image"], ["small.q"])]
PROPAGATION_STEP = [("upload", [], ["image"]), ("downsample", ["image"], ["small.q"]),
                    ("flow", ["small.q", "small.p"], ["flow"]), ("warp", ["scores.p", "flow"], ["warped"]),
                    ("intra", ["small.q"], ["intra"]), ("guide", ["intra", "warped"], ["weights"]),
                    ("filter", ["warped", "intra", "weights"], ["scores.q"])]
LABELS_STEP = [("labels", ["scores.q"], ["labels"]), ("download", ["labels"], [])]


def simulate(plan, steps: list[tuple[list, int]]) -> int:
    """Run ``steps`` ([(stages, slot read)]) on a model of device memory: each region holds the
    last (buffer, version) written into it; every read must find the version its buffer was last
    written with, and no stage may write a region it reads. Returns how many reads were checked."""
    memory: dict[str, tuple[str, int]] = {}
    version: dict[str, int] = {}
    checked = 0
    for stages, p in steps:
        q = 1 - p
        for stage, reads, writes in stages:
            reads = [b.replace("p", str(p)).replace("q", str(q)) if b.endswith((".p", ".q")) else b for b in reads]
            writes = [b.replace("p", str(p)).replace("q", str(q)) if b.endswith((".p", ".q")) else b for b in writes]
            if stage in WIRING:  # the plan wires exactly the buffers this stage reads and writes
                slot = q if stage == "labels" else p  # the backend labels the state the step just wrote
                assert set(plan.binding(stage, read=slot).values()) == set(reads) | set(writes), stage
            read_regions = {plan.buffers[b].region for b in reads}
            assert not read_regions & {plan.buffers[b].region for b in writes}, f"{stage} writes what it reads"
            for b in reads:
                assert memory.get(plan.buffers[b].region) == (b, version[b]), f"{stage} reads {b}, clobbered"
                checked += 1
            for b in writes:
                version[b] = version.get(b, 0) + 1
                memory[plan.buffers[b].region] = (b, version[b])
                assert plan.regions[plan.buffers[b].region] >= plan.buffers[b].nbytes
    return checked


@pytest.mark.parametrize("alias", [True, False])
def test_simulated_steps_never_read_a_clobbered_buffer(alias):
    plan = plan_buffers(stage_io(), 2, alias=alias)
    # a keyframe into slot 0, then propagations 0 -> 1 -> 0 -> 1, labels after every step
    sequence = [(KEYFRAME_STEP + LABELS_STEP, 1)] + [(PROPAGATION_STEP + LABELS_STEP, p) for p in (0, 1, 0, 1)]
    assert simulate(plan, sequence) == 4 + 4 * 13


def test_no_stage_reads_what_it_writes_and_steps_alternate_slots():
    plan = plan_buffers(stage_io(), 2)
    for p in (0, 1):
        for stage in (*KEYFRAME_PROGRAM, *PROPAGATION_PROGRAM, *LABELS_PROGRAM):
            binding = plan.binding(stage, read=p)
            written = {plan.buffers[b].region for t, b in binding.items() if t in OUTPUTS[stage]}
            read = {plan.buffers[b].region for t, b in binding.items() if t not in OUTPUTS[stage]}
            assert not written & read, (stage, p)
        assert plan.binding("flow", p) == {"small": f"small.{1 - p}", "prev_small": f"small.{p}", "flow": "flow"}
        assert plan.binding("warp", p)["seg"] == f"scores.{p}"
        assert plan.binding("filter", p)["out"] == f"scores.{1 - p}"
        assert plan.binding("keyframe", p)["scores"] == f"scores.{1 - p}"
    assert plan.binding("labels", 1) == {"scores": "scores.1", "labels": "labels"}


def test_plan_from_the_builders_engine_entries(tmp_path):
    from tests.export.helpers import make_manifest

    plan = plan_buffers(make_manifest(tmp_path / "eng").engines, 4)
    check_shapes_and_bytes(plan, 4)
    assert plan.aliases() == {"scratch0": ("flow", "intra", "labels")}


def test_inconsistent_specs_are_rejected():
    io = stage_io()
    io["guide"]["inputs"][1] = {**io["guide"]["inputs"][1], "dtype": "float32"}  # 'warped' read as FP32
    with pytest.raises(ValueError, match="buffer 'warped'"):
        plan_buffers(io, 1)
    io = stage_io()
    io["warp"]["outputs"][0] = {**io["warp"]["outputs"][0], "name": "warped_scores"}
    with pytest.raises(ValueError, match="stage 'warp' has tensors"):
        plan_buffers(io, 1)
    with pytest.raises(ValueError, match="batch"):
        plan_buffers(stage_io(), 0)


def test_fp32_graphs_plan_too():
    plan = plan_buffers(stage_io("fp32"), 1)
    assert plan.buffers["scores.0"].dtype == "float32" and plan.buffers["labels"].dtype == "uint8"
    assert set(WIRING) == set(stage_io("fp32"))
