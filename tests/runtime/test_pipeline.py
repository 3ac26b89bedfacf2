"""The pipelined runtime gives exactly the labels of the sequential schedule, whatever its threads."""

from __future__ import annotations

import itertools
import json
import threading
import time

import numpy as np
import pytest

from engine_format.manifest import STAGES, load_manifest
from engine_format.sessions import make_session
from engine_format.stages import Stage, TensorSpec, random_inputs
from runtime.schedule import KeyframeScheduler
from runtime.backends import create_backend
from runtime.pipeline import OutputWriter
from runtime.schedule.lookahead import KeyframeWorkers, LookaheadScheduler
from runtime.threads import plan_threads
from tests.conftest import clip_frames, run_module
from tests.runtime.output_checks import decode_rgb, read_label_pngs


def sequential_labels(backend, frames, interval, size=(540, 960)) -> list[np.ndarray]:
    return [r.labels[0] for r in KeyframeScheduler(backend, interval, label_size=size).run(iter(frames))]


@pytest.mark.parametrize("interval,workers", [(1, 2), (3, 1), (3, 2), (5, 2)])
def test_lookahead_equals_the_sequential_schedule(engines, real_clip, interval, workers):
    backend = create_backend("onnxruntime", load_manifest(engines), plan=plan_threads(2, list(STAGES)))
    frames = clip_frames(real_clip, 13)
    expected = sequential_labels(backend, frames, interval)
    got = list(LookaheadScheduler(backend, interval, (540, 960), workers).run(iter(enumerate(frames))))
    assert [payload for payload, _ in got] == list(range(13))  # in frame order, with their payloads
    assert [r.keyframe for _, r in got] == [k % interval == 0 for k in range(13)]
    for k, (_, result) in enumerate(got):
        assert np.array_equal(result.labels[0], expected[k]), f"frame {k} differs from the sequential schedule"


def test_thread_counts_do_not_change_any_graph_output(engines):
    """The plan may give a graph 1 or 2 threads: onnxruntime's CPU kernels give the same bits."""
    manifest = load_manifest(engines)
    for stage in STAGES:
        entry = manifest.graphs[stage]
        spec = Stage(stage, tuple(TensorSpec.from_dict(d) for d in entry["inputs"]), ())
        feeds = random_inputs(spec, 2, np.random.default_rng(5))
        one, two = (make_session(manifest.file(entry["file"]), threads=t, spinning=False).run(None, feeds)[0] for t in (1, 2))
        assert np.array_equal(one, two), stage


def test_cli_labels_equal_the_sequential_schedule_on_the_whole_clip(engines, real_clip, tmp_path):
    """Every label PNG of the real clip (221 frames) written by the CLI with keyframes computed
    inline (--threads 1) equals the sequential schedule's. (Keyframes computed ahead on 2 workers,
    the default on 2 cores, are held to it over the whole clip by
    tests/runtime/test_infer.py::test_cli_on_the_whole_clip_with_the_shipped_weights.)"""
    threads, interval = "1", "3"
    labels_dir, stats_path = tmp_path / "labels", tmp_path / "stats.json"
    proc = run_module("runtime.infer", "--video", str(real_clip), "--engines", str(engines), "--labels-dir", str(labels_dir),
                      "--stats", str(stats_path), "--interval", interval, "--threads", threads, "--backend", "onnxruntime",
                      "--no-progress", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    stats = json.loads(stats_path.read_text())
    assert stats["keyframe_workers"] == (2 if threads == "2" else 0) and stats["threads"]["budget"] == int(threads)
    backend = create_backend("onnxruntime", load_manifest(engines), threads=1)
    results = KeyframeScheduler(backend, int(interval), label_size=(540, 960)).run(iter(clip_frames(real_clip, 10_000)))
    count = 0
    for k, (result, png) in enumerate(itertools.zip_longest(results, read_label_pngs(labels_dir, stats["frames"]))):
        assert result is not None and png is not None, f"frame {k}: the CLI wrote {stats['frames']} frames"
        assert np.array_equal(png, result.labels[0]), f"frame {k} differs from the sequential schedule"
        count += 1
    assert count == sum(1 for _ in decode_rgb(real_clip)) == 221


def test_writer_raises_the_error_of_its_thread():
    def write(k):
        if k == 2:
            raise OSError(28, "No space left on device")

    writer = OutputWriter(write, depth=1)
    with pytest.raises(OSError, match="No space left"):
        for k in range(50):
            writer.put(k)
        writer.finish()


def test_writer_writes_in_order_and_stop_drops_what_waits():
    written, gate = [], threading.Event()

    def write(k):
        gate.wait(5)
        written.append(k)

    writer = OutputWriter(write, depth=2)
    for k in range(3):  # one being written, two waiting
        writer.put(k)
    writer.stop(timeout=0.2)
    gate.set()
    writer.thread.join(5)
    assert written == [0]
    writer = OutputWriter(written.append, depth=2)
    for k in range(1, 20):
        writer.put(k)
    writer.finish()
    assert written == list(range(20))


def test_a_failing_keyframe_step_reaches_the_caller(engines, real_clip):
    backend = create_backend("onnxruntime", load_manifest(engines), plan=plan_threads(2, list(STAGES)))
    frames = clip_frames(real_clip, 6)
    real_step = backend.keyframe_step

    def failing_step(batch):
        if batch is frames[2]:  # the second keyframe at l = 2
            raise RuntimeError("keyframe graph failed")
        return real_step(batch)

    backend.keyframe_step = failing_step
    got = []
    with pytest.raises(RuntimeError, match="keyframe graph failed"):
        for _, result in LookaheadScheduler(backend, 2, (540, 960), 2).run(iter(enumerate(frames))):
            got.append(result.index)
    assert got == [0, 1]
    time.sleep(0.1)
    assert not [t for t in threading.enumerate() if t.name.startswith("keyframe-") and t.is_alive()]


def test_labels_resized_along_one_axis_are_rows_of_the_original():
    """544 -> 540 rows (the real clip on 544x960 engines): row i takes source row floor((i + 0.5) * 544 / 540)."""
    from runtime.backends.base import resize_labels_nearest

    labels = np.random.default_rng(0).integers(0, 11, (2, 544, 960), dtype=np.uint8)
    out = resize_labels_nearest(labels, (540, 960))
    assert out.shape == (2, 540, 960)
    for i in (0, 1, 134, 135, 136, 269, 270, 404, 405, 539):
        assert np.array_equal(out[:, i], labels[:, int((i + 0.5) * 544 / 540)]), i
    # 6 -> 3 columns: column j takes floor((j + 0.5) * 2) = 1, 3, 5
    assert np.array_equal(resize_labels_nearest(labels[:, :8, :6], (8, 3)), labels[:, :8][:, :, [1, 3, 5]])


def test_closing_keyframe_workers_cancels_waiting_jobs_and_waits_for_the_one_in_flight():
    started, finished = threading.Event(), []

    class Slow:
        def keyframe_step(self, frames):
            started.set()
            time.sleep(0.3)
            finished.append(frames)
            return frames

    workers = KeyframeWorkers(Slow(), 1)
    first, second = workers.submit(1), workers.submit(2)
    assert started.wait(5)
    workers.close()
    assert finished == [1] and first.result(0) == 1 and second.cancelled()
    assert not any(t.is_alive() for t in workers.threads)
