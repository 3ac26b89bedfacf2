"""The CPU budget: which thread counts the plan picks from measured times, and the tuning file."""

from __future__ import annotations

import json

from engine_format.manifest import STAGES, load_manifest
from runtime.tuning import FILE, stage_timings, thread_plan
from runtime.threads import candidate_counts, codec_threads, fastest, plan_threads

SMALL = [s for s in STAGES if s != "keyframe"]


def test_fastest_takes_more_threads_only_for_a_real_gain():
    assert fastest({1: 100.0, 2: 95.0}, limit=2) == 1  # 5% faster: not worth a core
    assert fastest({1: 100.0, 2: 60.0, 4: 57.0}, limit=4) == 2  # 4 threads within 10% of 2
    assert fastest({1: 100.0, 2: 60.0, 4: 40.0}, limit=4) == 4
    assert fastest({1: 100.0, 2: 60.0, 4: 40.0}, limit=3) == 2  # 4 is over the limit
    assert fastest({1: 4.9, 2: 12.7}, limit=2) == 1  # the guide net on 2 shared cores
    assert fastest({}, limit=8, unmeasured=8) == 8 and fastest({}, limit=8) == 1


def test_two_cores_one_thread_per_graph_and_two_keyframe_workers():
    measured = {"keyframe": {1: 120.0, 2: 70.0}, **{s: {1: 2.0, 2: 1.5} for s in SMALL}}
    plan = plan_threads(2, list(STAGES), measured)
    assert plan.keyframe_workers == 2 and set(plan.stage_threads.values()) == {1}
    assert plan.codec_threads == 1 and not plan.spinning


def test_one_core_runs_everything_inline_on_one_thread():
    plan = plan_threads(1, list(STAGES), {"keyframe": {1: 120.0}})
    assert plan.keyframe_workers == 0 and set(plan.stage_threads.values()) == {1} and plan.codec_threads == 1


def test_sixteen_cores_split_between_the_keyframe_workers_and_the_rest():
    guide, flow = {1: 5.0, 2: 3.0, 4: 2.9, 8: 4.0, 16: 6.0}, {1: 1.0, 2: 1.2, 4: 1.5, 8: 2.0, 16: 3.0}
    scaling = {1: 160.0, 2: 85.0, 4: 45.0, 8: 26.0, 16: 20.0}
    plan = plan_threads(16, list(STAGES), {"keyframe": scaling, "guide": guide, "flow": flow})
    assert plan.keyframe_workers == 2 and plan.stage_threads["keyframe"] == 8  # 16 is over 16 / 2 workers
    assert plan.stage_threads["guide"] == 1  # the two workers hold all 16 cores: 1 thread for the rest
    saturating = {1: 160.0, 2: 85.0, 4: 45.0, 8: 44.0, 16: 44.0}
    plan = plan_threads(16, list(STAGES), {"keyframe": saturating, "guide": guide, "flow": flow})
    assert plan.stage_threads["keyframe"] == 4  # 8 threads buy 2%
    assert plan.stage_threads["guide"] == 2 and plan.stage_threads["flow"] == 1  # within the 16 - 2 x 4 left
    assert plan.stage_threads["intra"] == 1  # not measured
    assert plan.codec_threads == codec_threads(16) == 4
    unmeasured = plan_threads(16, list(STAGES))
    assert unmeasured.stage_threads["keyframe"] == 8 and unmeasured.stage_threads["guide"] == 1


def test_candidate_counts():
    assert candidate_counts(1) == [1] and candidate_counts(2) == [1, 2]
    assert candidate_counts(6) == [1, 2, 4, 6] and candidate_counts(16) == [1, 2, 4, 8, 16]


def _copy_engines(engines, tmp_path):
    import shutil

    folder = tmp_path / "eng"
    shutil.copytree(engines, folder)
    (folder / FILE).unlink(missing_ok=True)
    return load_manifest(folder)


def test_tuning_is_measured_once_and_kept_beside_the_engines(engines, tmp_path):
    manifest = _copy_engines(engines, tmp_path)
    lines: list[str] = []
    timings, where = stage_timings(manifest, 2, log=lines.append)
    assert "measured now" in where and any("tuning the threads" in line for line in lines)
    assert set(timings) == set(STAGES) - {"labels"}  # the labels of half-pixel models come from NumPy
    assert all(set(v) == {1, 2} and min(v.values()) > 0 for v in timings.values())
    data = json.loads((manifest.folder / FILE).read_text())
    assert data["machine"]["cores"] >= 1 and set(data["machine"]["graphs"]) == set(timings)
    lines.clear()
    again, where = stage_timings(manifest, 2, log=lines.append)
    assert again == timings and not lines and "tuning of" in where  # reused, nothing measured
    _, where = stage_timings(manifest, 2, remeasure=True, log=lines.append)
    assert "measured now" in where  # --tune


def test_tuning_of_other_graphs_is_not_reused(engines, tmp_path):
    manifest = _copy_engines(engines, tmp_path)
    stage_timings(manifest, 1, log=lambda m: None)
    path = manifest.folder / FILE
    data = json.loads(path.read_text())
    data["machine"]["graphs"]["guide"] = "0" * 64  # as if guide.onnx were rebuilt
    path.write_text(json.dumps(data))
    lines: list[str] = []
    stage_timings(manifest, 1, log=lines.append)
    assert any("tuning the threads" in line for line in lines)


def test_unwritable_engines_folder_still_gets_a_plan(engines, tmp_path, monkeypatch):
    from runtime import tuning

    def refuse(path, payload):
        raise PermissionError(13, "Permission denied")

    manifest = _copy_engines(engines, tmp_path)
    monkeypatch.setattr(tuning, "write_json_atomic", refuse)
    plan = thread_plan("onnxruntime", manifest, 2, log=lambda m: None)
    assert "not kept" in plan.source and "Permission denied" in plan.source and not (manifest.folder / FILE).exists()
    assert plan.keyframe_workers == 2 and set(plan.stage_threads) == set(STAGES)


def test_gpu_backends_get_no_cpu_plan(engines):
    assert thread_plan("tensorrt", load_manifest(engines), 8) is None
    assert thread_plan("torch", load_manifest(engines), 2).keyframe_workers == 2
