"""The fleet on a local Ray cluster (2 workers, CPU): outputs equal runtime.infer's, a worker
killed mid-video costs nothing, a rerun resumes, a bad video does not stop the others."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket

import pytest

from benchmarks.clips import cut_clip
from tests.requirements import require_module
from tests.independent import shipped_model
from tests.runtime.test_independent_reference import assert_matches_reference
from tests.runtime.fleet.conftest import Throttle, assert_same_as_infer, fleet_args, partial_files, run_fleet, summary_rows
from tests.runtime.videos import write_video


@pytest.fixture(scope="session", autouse=True)
def _ray() -> None:
    """Ray is in the dev extra: without it every test here fails with that line (session scope, so it
    comes before the session fixtures that start a cluster)."""
    require_module("ray", "the fleet runs its workers on a Ray cluster")


def test_outputs_equal_runtime_infer_and_summary_lists_every_video(fleet_run, fleet_clips, reference):
    for name in fleet_clips:
        assert_same_as_infer(fleet_run / name, reference[name])
    summary = json.loads((fleet_run / "summary.json").read_text())
    assert summary["status"] == "complete" and summary["counts"] == {"done": 3}
    rows = summary_rows(fleet_run)
    assert list(rows) == list(fleet_clips)
    workers = {w["name"]: w for w in summary["workers"]}
    for name, row in rows.items():
        want = json.loads((reference[name] / "stats.json").read_text())
        assert row["status"] == "done" and row["frames"] == want["frames"] and row["fps"] > 0 and row["attempts"] == 1
        assert row["video"] == str(fleet_clips[name]) and row["error"] is None
        assert row["node"] == workers[row["worker"]]["node_ip"] and row["host"] == socket.gethostname()
        assert row["worker_pid"] == workers[row["worker"]]["pid"]
    assert {row["worker"] for row in rows.values()} == {"w0", "w1"}  # both workers took videos
    # each worker runs its engines as runtime.infer does: the per-graph thread plan within its cores
    assert all("CPU budget 1" in w["detail"] for w in summary["workers"]), [w["detail"] for w in summary["workers"]]
    assert summary["frames_segmented"] == sum(r["frames"] for r in rows.values()) and summary["cluster_fps"] > 0
    assert not partial_files(fleet_run)


def test_fleet_labels_equal_the_independent_reference(fleet_run, fleet_clips):
    """Each video's labels, as the fleet wrote them, equal the reference that shares no decode,
    resize or scheduling code with the runtime (tests/independent.py), at the default l = 4."""
    model = shipped_model()
    for name, clip in fleet_clips.items():
        stats = json.loads((fleet_run / name / "stats.json").read_text())
        frames = stats["frames"]
        assert stats["keyframes"] == len(range(0, frames, 4)), name  # the one-video rule, docs/architecture.md
        assert_matches_reference(fleet_run / name / "labels", clip, frames, 4, model=model)


def test_worker_killed_mid_video_is_replaced_and_its_video_redone(fleet_clips, engines, reference, tmp_path):
    killed: list[tuple[str, int, str]] = []
    throttled: list[Throttle] = []

    def kill_once(event) -> None:
        if event.kind == "start" and not throttled:  # so its video is still running when it is killed
            throttled.append(Throttle(event.slot.info["pid"]))
        expected = 24 if event.video == "project" else 30
        if event.kind == "progress" and not killed and 3 <= event.frames < expected and throttled \
                and event.slot.info["pid"] == throttled[0].pid:
            pid = event.slot.info["pid"]
            os.kill(pid, signal.SIGKILL)  # the worker's process, as the OOM killer or a lost node would
            killed.append((event.video, pid, event.slot.name))

    out_dir = tmp_path / "out"
    try:
        status, err = run_fleet(*fleet_args(fleet_clips.values(), engines, out_dir), on_event=kill_once)
    finally:
        for throttle in throttled:
            throttle.release()
    assert killed, "no worker was killed: the test did not exercise anything"
    video, pid, worker = killed[0]
    assert status == 0, err[-3000:]
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert f"worker {worker} (pid {pid})" in err and f"died while segmenting {video}" in err
    rows = summary_rows(out_dir)
    assert all(r["status"] == "done" for r in rows.values())
    assert rows[video]["attempts"] == 2 and rows[video]["worker_pid"] != pid
    assert [r["attempts"] for n, r in rows.items() if n != video] == [1, 1]
    workers = {w["name"]: w for w in json.loads((out_dir / "summary.json").read_text())["workers"]}
    assert workers[worker]["state"] == "dead" and "w2" in workers  # replaced by a new worker
    for name in fleet_clips:
        assert_same_as_infer(out_dir / name, reference[name])
    assert not partial_files(out_dir) and not partial_files(tmp_path)


def test_rerun_skips_complete_videos_and_redoes_a_damaged_output(fleet_run, fleet_clips, engines, reference, tmp_path):
    out_dir = tmp_path / "out"
    shutil.copytree(fleet_run, out_dir)
    mtimes = {n: (out_dir / n / "stats.json").stat().st_mtime_ns for n in fleet_clips}
    status, err = run_fleet(*fleet_args(fleet_clips.values(), engines, out_dir))
    assert status == 0, err[-3000:]
    assert "3 already complete, 0 to segment" in err and "Ray" not in err  # no cluster needed
    assert all(r["status"] == "skipped" and r["worker"] in ("w0", "w1") for r in summary_rows(out_dir).values())
    assert {n: (out_dir / n / "stats.json").stat().st_mtime_ns for n in fleet_clips} == mtimes

    (out_dir / "white_b" / "labels" / "000007.png").unlink()
    status, err = run_fleet(*fleet_args(fleet_clips.values(), engines, out_dir))
    assert status == 0, err[-3000:]
    assert "2 already complete, 1 to segment" in err
    rows = summary_rows(out_dir)
    assert {n: r["status"] for n, r in rows.items()} == {"white_a": "skipped", "white_b": "done", "project": "skipped"}
    assert_same_as_infer(out_dir / "white_b", reference["white_b"])
    assert all((out_dir / n / "stats.json").stat().st_mtime_ns == mtimes[n] for n in ("white_a", "project"))
    assert not partial_files(out_dir)


def test_bad_videos_are_reported_and_do_not_stop_the_others(fleet_clips, engines, tmp_path):
    good = write_video(tmp_path / "good.mp4", 12, (48, 64))
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_text("this is not a video\n" * 100)
    data = cut_clip(fleet_clips["white_a"], tmp_path / "whole.mp4", 0, 30, faststart=True).read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])
    out_dir = tmp_path / "out"
    status, err = run_fleet("--videos", str(corrupt), str(good), str(cut), "--engines", str(engines),
                            "--out-dir", str(out_dir), "--workers", "2", "--labels", "--no-progress")
    assert status == 4, err[-3000:]
    rows = summary_rows(out_dir)
    assert rows["corrupt"]["status"] == "failed" and rows["corrupt"]["attempts"] == 1  # not retried
    assert "is not a readable video" in rows["corrupt"]["error"] and "\n" not in rows["corrupt"]["error"]
    assert rows["good"]["status"] == "done" and rows["good"]["frames"] == 12
    assert rows["cut"]["status"] == "damaged" and "could not be decoded" in rows["cut"]["error"]
    assert 0 < rows["cut"]["frames"] < 30 and len(list((out_dir / "cut" / "labels").iterdir())) == rows["cut"]["frames"]
    assert not (out_dir / "corrupt").exists() and not partial_files(out_dir)
    assert f"corrupt: {rows['corrupt']['error']}" in err  # the table's problem lines


def test_workers_that_cannot_run_the_backend_refuse_with_the_reason(engines, tmp_path):
    video = write_video(tmp_path / "v.mp4", 4, (48, 64))
    out_dir = tmp_path / "out"
    status, err = run_fleet("--videos", str(video), "--engines", str(engines), "--out-dir", str(out_dir),
                            "--workers", "1", "--backend", "tensorrt", "--no-progress")
    assert status == 2
    line = err.strip().splitlines()[-1]
    assert line.startswith("error: no worker can segment: w0 (pid ") and "backend tensorrt is not available here" in line
    assert not list(out_dir.iterdir())  # nothing written, lock released


def test_node_lost_mid_video_its_video_is_redone_on_another_node(fleet_clips, engines, reference, tmp_path):
    from ray.cluster_utils import Cluster

    # two nodes of one CPU each on this machine (Ray's own multi-node test harness); dead nodes are noticed in ~2 s
    small = {"num_cpus": 1, "object_store_memory": 100 * 2**20}
    cluster = Cluster(initialize_head=True, head_node_args={
        **small, "include_dashboard": False,
        "_system_config": {"health_check_period_ms": 500, "health_check_failure_threshold": 3}})
    second = cluster.add_node(**small)
    lost: list[str] = []
    throttled: list[Throttle] = []

    def lose_second_node(event) -> None:
        on_second = event.slot is not None and event.slot.info.get("node_id") == second.node_id
        if event.kind == "start" and on_second and not throttled:  # so its short video is still running when the node goes
            throttled.append(Throttle(event.slot.info["pid"]))
        if event.kind == "progress" and not lost and event.frames >= 1 and on_second:
            cluster.remove_node(second, allow_graceful=False)  # its raylet and every worker on it are killed
            lost.append(event.video)

    out_dir = tmp_path / "out"
    try:
        status, err = run_fleet(*fleet_args(fleet_clips.values(), engines, out_dir, "--address", cluster.address),
                                on_event=lose_second_node)
    finally:
        for throttle in throttled:
            throttle.release()
        cluster.shutdown()
    assert lost, "the second node never ran a video: the test did not exercise anything"
    assert status == 0, err[-3000:]
    rows = summary_rows(out_dir)
    assert all(r["status"] == "done" for r in rows.values())
    assert rows[lost[0]]["attempts"] == 2
    workers = {w["name"]: w for w in json.loads((out_dir / "summary.json").read_text())["workers"]}
    assert workers[rows[lost[0]]["worker"]]["node_id"] != second.node_id  # redone on the surviving node
    assert [w["state"] for w in workers.values() if w.get("node_id") == second.node_id] == ["dead"]
    for name in fleet_clips:
        assert_same_as_infer(out_dir / name, reference[name])
    assert not partial_files(out_dir)
