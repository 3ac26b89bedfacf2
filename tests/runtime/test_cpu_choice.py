"""``--backend auto`` on a CPU: the engine and precision measured fastest here among those that
keep the FP32 results (runtime/tuning.py ``choose_cpu``), with fake timings and guards so the test,
not this machine, decides what is fast and what is accurate."""

from __future__ import annotations

import json

import pytest

from engine_format.manifest import load_manifest
from runtime import tuning
from runtime.backends import openvino_backend
from runtime.loading import load_backend
from runtime.threads import plan_threads
from runtime.tuning import GRID_AGREEMENT, LABEL_AGREEMENT, Candidate, Guard, choose_cpu, frame_cost, rank
from tests.conftest import private_engines
from tests.runtime.cpu_timings import fake_cpu_timings
from tests.requirements import require_module

OV_F32, OV_BF16, ORT_F32 = Candidate("openvino", "f32"), Candidate("openvino", "bf16"), Candidate("onnxruntime", "f32")


@pytest.fixture
def folder(engines, tmp_path):
    """A private copy of the random-weight engines (its tuning.json is this test's own)."""
    require_module("openvino", "the openvino backend is one of the package's CPU backends")
    out = tmp_path / "eng"
    return private_engines(engines, out)


@pytest.fixture
def bf16_cpu(monkeypatch):
    """A CPU on which OpenVINO computes bf16 natively, whatever this one has."""
    monkeypatch.setattr(openvino_backend, "cpu_capabilities", lambda: ("FP32", "BF16", "INT8"))


def fake_guards(monkeypatch, guards: dict[str, Guard]) -> list[str]:
    """``measure_guard`` returns ``guards[candidate name]``; returns the names it was asked for."""
    asked: list[str] = []
    monkeypatch.setattr(tuning, "reference_results", lambda manifest: {"frames": None})

    def measure(manifest, candidate, reference):
        asked.append(candidate.name)
        return guards[candidate.name]

    monkeypatch.setattr(tuning, "measure_guard", measure)
    return asked


GOOD, BAD = Guard(0.999, [1.0, 0.999, 0.995, 0.99]), Guard(0.97, [0.99, 0.96, 0.95, 0.95])


def test_the_guard_needs_both_the_grid_and_every_frame_of_the_interval():
    assert Guard(GRID_AGREEMENT, [LABEL_AGREEMENT] * 4).passed
    assert not Guard(GRID_AGREEMENT - 1e-3, [1.0] * 4).passed
    assert not Guard(1.0, [1.0, 1.0, LABEL_AGREEMENT - 1e-3, 1.0]).passed  # one frame is enough to fail
    assert not Guard(1.0, [1.0], why_not="no verification set").passed


def test_frame_cost_weighs_a_keyframe_step_once_per_interval():
    stages = ["keyframe", "downsample", "flow", "warp", "intra", "guide", "filter", "labels"]
    timings = {s: {1: 1.0, 2: 1.0} for s in stages}
    timings["keyframe"] = {1: 40.0, 2: 30.0}
    plan = plan_threads(2, stages, timings, "test")
    per_step = {s: timings[s][plan.stage_threads[s]] * plan.stage_threads[s] for s in stages}  # CPU-ms
    keyframe = per_step["keyframe"]
    propagation = sum(per_step[s] for s in tuning.PROPAGATION)
    assert frame_cost(timings, plan, 4) == pytest.approx((keyframe + per_step["downsample"] + 3 * propagation) / 4)
    assert frame_cost(timings, plan, 1) == pytest.approx(keyframe + per_step["downsample"])


def test_rank_never_takes_a_precision_that_fails_its_guard_unless_nothing_passes():
    costs = {OV_BF16: 1.0, OV_F32: 2.0, ORT_F32: 3.0}
    order, left_out = rank(costs, {OV_BF16: BAD})
    assert order == [OV_F32, ORT_F32] and len(left_out) == 1 and "openvino bf16 failed the accuracy guard" in left_out[0]
    order, _ = rank(costs, {OV_BF16: GOOD})
    assert order == [OV_BF16, OV_F32, ORT_F32]
    order, left_out = rank({OV_BF16: 1.0}, {OV_BF16: BAD}, "only bf16 here")
    assert order == [OV_BF16] and "none passes" in left_out[-1] and "only bf16 here" in left_out[-1]


def test_auto_takes_the_fastest_precision_that_passes_its_guard(folder, monkeypatch, bf16_cpu):
    fake_cpu_timings(monkeypatch, {"onnxruntime f32": 3.0, "openvino f32": 2.0, "openvino bf16": 1.0})
    asked = fake_guards(monkeypatch, {"openvino bf16": GOOD})
    lines: list[str] = []
    order, _ = choose_cpu(load_manifest(folder), 2, 4, log=lines.append)
    assert order[0] == OV_BF16 and asked == ["openvino bf16"]
    choice = [line for line in lines if line.startswith("CPU choice:")]
    assert len(choice) == 1 and "openvino bf16" in choice[0] and "accuracy guard passed" in choice[0]
    kept = json.loads((folder / tuning.FILE).read_text())
    assert kept["choice"]["first"] == "openvino bf16" and kept["guards"]["openvino bf16"]["passed"]
    assert set(kept["engines"]) == {"onnxruntime f32", "openvino f32", "openvino bf16"}


def test_a_faster_precision_that_fails_its_guard_is_left_out_with_the_reason(folder, monkeypatch, bf16_cpu):
    fake_cpu_timings(monkeypatch, {"onnxruntime f32": 3.0, "openvino f32": 2.0, "openvino bf16": 1.0})
    fake_guards(monkeypatch, {"openvino bf16": BAD})
    lines: list[str] = []
    order, left_out = choose_cpu(load_manifest(folder), 2, 4, log=lines.append)
    assert order == [OV_F32, ORT_F32]
    assert any("openvino bf16 failed the accuracy guard" in clause and "97.00%" in clause for clause in left_out)
    assert "openvino f32" in lines[-1] and "failed the accuracy guard" in lines[-1]


def test_a_reduced_precision_slower_than_f32_is_not_even_held_to_the_guard(folder, monkeypatch, bf16_cpu):
    fake_cpu_timings(monkeypatch, {"onnxruntime f32": 1.0, "openvino f32": 2.0, "openvino bf16": 1.5})
    asked = fake_guards(monkeypatch, {})
    order, _ = choose_cpu(load_manifest(folder), 2, 4, log=lambda line: None)
    assert order[0] == ORT_F32 and OV_BF16 not in order and asked == []


def test_the_choice_is_measured_once_and_retune_measures_again(folder, monkeypatch, bf16_cpu):
    measured = fake_cpu_timings(monkeypatch, {"onnxruntime f32": 3.0, "openvino f32": 2.0, "openvino bf16": 1.0})
    asked = fake_guards(monkeypatch, {"openvino bf16": GOOD})
    manifest = load_manifest(folder)
    choose_cpu(manifest, 2, 4, log=lambda line: None)
    first = len(measured)
    assert first > 0 and asked == ["openvino bf16"]
    order, _ = choose_cpu(manifest, 2, 4, log=lambda line: None)
    assert order[0] == OV_BF16 and len(measured) == first and asked == ["openvino bf16"]  # all kept
    choose_cpu(manifest, 2, 4, remeasure=True, log=lambda line: None)
    assert len(measured) == 2 * first and asked == ["openvino bf16"] * 2


def test_a_cpu_without_bf16_chooses_among_f32_engines_and_says_why(folder, monkeypatch):
    monkeypatch.setattr(openvino_backend, "cpu_capabilities", lambda: ("FP32", "INT8"))
    measured = fake_cpu_timings(monkeypatch, {"onnxruntime f32": 3.0, "openvino f32": 2.0, "openvino bf16": 0.1})
    fake_guards(monkeypatch, {})
    order, _ = choose_cpu(load_manifest(folder), 2, 4, log=lambda line: None)
    assert order == [OV_F32, ORT_F32] and not any("bf16" in m for m in measured)


def test_auto_loads_the_chosen_engine_and_says_it_was_measured_fastest(folder, monkeypatch, bf16_cpu):
    fake_cpu_timings(monkeypatch, {"onnxruntime f32": 3.0, "openvino f32": 1.0, "openvino bf16": 2.0})
    fake_guards(monkeypatch, {})
    loaded = load_backend("auto", load_manifest(folder), threads=2, log=lambda line: None)
    try:
        assert loaded.backend.name == "openvino" and loaded.why.startswith("fastest measured CPU engine")
        assert loaded.verdict.passed
    finally:
        loaded.backend.close()


def test_a_forced_precision_is_only_compared_across_engines(folder, monkeypatch, bf16_cpu):
    measured = fake_cpu_timings(monkeypatch, {"onnxruntime f32": 3.0, "openvino f32": 2.0, "openvino bf16": 1.0})
    asked = fake_guards(monkeypatch, {})
    order, _ = choose_cpu(load_manifest(folder), 2, 4, precision="f32", log=lambda line: None)
    assert order == [OV_F32, ORT_F32] and asked == [] and not any("bf16" in m for m in measured)


def test_a_precision_that_costs_too_much_accuracy_is_never_chosen_automatically(folder, monkeypatch, bf16_cpu):
    fake_cpu_timings(monkeypatch, {"onnxruntime f32": 3.0, "openvino f32": 2.0, "openvino bf16": 1.0})
    asked = fake_guards(monkeypatch, {"openvino bf16": GOOD})
    monkeypatch.setitem(tuning.NOT_AUTOMATIC, "openvino bf16", "0.5 mIoU below FP32 at d = 3 on CamVid")
    lines: list[str] = []
    order, left_out = choose_cpu(load_manifest(folder), 2, 4, log=lines.append)
    assert order == [OV_F32, ORT_F32] and asked == []  # not even held to the guard
    assert any("openvino bf16 is not chosen automatically (0.5 mIoU" in c for c in left_out)
    assert "not chosen automatically" in lines[-1]
    forced, _ = choose_cpu(load_manifest(folder), 2, 4, precision="bf16", log=lambda line: None)
    assert forced == [OV_BF16]  # asked for by name, it runs


def test_not_automatic_is_the_recorded_accuracy_table():
    """NOT_AUTOMATIC names exactly the candidates the recorded CamVid table shows more than
    MIOU_BUDGET below onnxruntime FP32 at some distance (or on the CamVid test split)."""
    from tests.conftest import REPO

    table = json.loads((REPO / "benchmarks/results/2026-12-04-cpu-precision-accuracy.json").read_text())
    names = {"openvino": "openvino f32", "openvino_bf16": "openvino bf16", "openvino_int8": "openvino int8",
             "onnxruntime_int8": "onnxruntime int8"}
    reference = 100 * table["camvid_onnxruntime"]["miou"]
    reference_d = [100 * v for v in table["camvid_sequence_onnxruntime"]["rows"]["gsvnet"]["miou_by_distance"].values()]
    costly = set()
    for suffix, name in names.items():
        test = reference - 100 * table[f"camvid_{suffix}"]["miou"]
        by_d = [r - 100 * v for r, v in zip(reference_d, table[f"camvid_sequence_{suffix}"]["rows"]["gsvnet"]
                                             ["miou_by_distance"].values())]
        if max([test, *by_d]) > tuning.MIOU_BUDGET:
            costly.add(name)
    assert set(tuning.NOT_AUTOMATIC) == costly


def test_an_openvino_run_hands_a_float32_graph_to_onnxruntime_where_that_is_faster(folder, monkeypatch, bf16_cpu):
    """Per graph: onnxruntime's downsample (0.1 ms) beats OpenVINO's (1 ms) and so runs there in
    an OpenVINO run; its keyframe graph (0.05 ms) is taken only where the run computes it in
    float32, never in place of a bf16 graph; a gain under BORROW_GAIN is not worth a second engine."""
    fake_cpu_timings(monkeypatch, {"onnxruntime f32": 3.0, "onnxruntime f32 downsample": 0.1,
                                   "onnxruntime f32 keyframe": 0.05, "onnxruntime f32 flow": 0.95,
                                   "openvino f32": 1.0, "openvino bf16": 1.0})
    manifest = load_manifest(folder)
    bf16 = tuning.thread_plan("openvino", manifest, 2, log=lambda line: None, precision="bf16")
    assert bf16.engines == {"downsample": "onnxruntime"}
    assert "downsample on onnxruntime" in bf16.describe()
    f32 = tuning.thread_plan("openvino", manifest, 2, log=lambda line: None, precision="f32")
    assert f32.engines == {"downsample": "onnxruntime", "keyframe": "onnxruntime"}
    assert tuning.thread_plan("onnxruntime", manifest, 2, log=lambda line: None).engines == {}
    # the choice costs each OpenVINO candidate with the graphs it hands over
    fake_guards(monkeypatch, {"openvino bf16": GOOD})
    order, _ = choose_cpu(manifest, 2, 4, remeasure=True, log=lambda line: None)
    kept = json.loads((folder / tuning.FILE).read_text())["choice"]["cpu_ms_per_frame"]
    plan = plan_threads(2, list(tuning.STAGES), {s: {1: 1.0, 2: 1.0} for s in tuning.tuned_stages(manifest)})
    alone = frame_cost({s: {1: 1.0, 2: 1.0} for s in tuning.tuned_stages(manifest)}, plan, 4)
    assert kept["openvino bf16"] < alone  # downsample's 0.9 ms saved on every frame


def test_borrowing_needs_the_gain_and_an_eligible_stage():
    own = {"downsample": {1: 1.0, 2: 0.8}, "flow": {1: 1.0}, "warp": {1: 1.0}}
    other = {"downsample": {1: 0.7, 2: 0.9}, "flow": {1: 0.1}, "warp": {1: 0.95}}
    # best against best: downsample 0.7 < 0.9 x 0.8; warp's 5% is not enough; flow is not eligible
    assert tuning.borrowed_stages(own, other, ["downsample", "warp"]) == {"downsample": "onnxruntime"}
    assert tuning.borrowed_stages(own, {}, ["downsample"]) == {}
