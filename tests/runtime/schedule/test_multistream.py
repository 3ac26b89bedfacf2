import json
import shutil

import av
import numpy as np
from PIL import Image

from engine_format.manifest import load_manifest
from runtime.schedule import KeyframeScheduler
from runtime.backends import create_backend
from runtime.schedule.multistream import MultiStreamScheduler
from tests.conftest import clip_frames, run_module


def test_streams_are_batched_and_staggered(engines, real_clip):
    manifest = load_manifest(engines)
    backend = create_backend("onnxruntime", manifest)
    frames = clip_frames(real_clip, 12)
    size = (540, 960)
    ticks = list(MultiStreamScheduler(backend, 4, [size, size]).run([iter(frames), iter(frames[::-1])]))
    assert len(ticks) == 12 and all([s for s, _ in t] == [0, 1] for t in ticks)
    keys = [[r.index for t in ticks for s, r in t if s == stream and r.keyframe] for stream in (0, 1)]
    assert keys == [[0, 4, 8], [0, 2, 6, 10]]  # stream 1 is staggered by half an interval
    # per tick the backend ran one batched propagation step, not one per stream
    assert backend.timer.summary()["flow"]["count"] == sum(1 for t in ticks if any(not r.keyframe for _, r in t))


def test_every_stream_equals_its_own_single_stream_run(engines, real_clip):
    """Batching is invisible: each stream's labels equal, exactly, a one-stream run of the same
    frames with the same keyframe phase, whatever the streams' lengths and label sizes."""
    backend = create_backend("onnxruntime", load_manifest(engines))
    frames = clip_frames(real_clip, 14)
    sources = [frames[:14], frames[::-1][:11], frames[5:12]]  # three contents, three lengths
    sizes = [(540, 960), (540, 960), (68, 120)]
    scheduler = MultiStreamScheduler(backend, 4, sizes)
    got: list[list] = [[] for _ in sources]
    for tick in scheduler.run([iter(s) for s in sources]):
        for s, result in tick:
            got[s].append(result)
    for s, (source, size) in enumerate(zip(sources, sizes)):
        phase = s * 4 // len(sources)  # the documented stagger: floor(s * l / S)
        single = list(KeyframeScheduler(backend, 4, label_size=size, phase=phase).run(iter(source)))
        assert [r.index for r in got[s]] == list(range(len(source))), f"stream {s}"
        assert [r.keyframe for r in got[s]] == [r.keyframe for r in single], f"stream {s}"
        for mine, ref in zip(got[s], single):
            assert mine.labels.shape == (1, *size)
            assert np.array_equal(mine.labels, ref.labels), f"stream {s}, frame {ref.index}"
    assert [[r.index for r in g if r.keyframe] for g in got] == [[0, 4, 8, 12], [0, 3, 7], [0, 2, 6]]


def test_cli_with_two_videos_writes_one_output_each(engines, real_clip, tmp_path):
    a, b = tmp_path / "a.mp4", tmp_path / "b.mp4"
    shutil.copy(real_clip, a)
    shutil.copy(real_clip, b)
    outdir, labels = tmp_path / "out", tmp_path / "labels"
    outdir.mkdir()
    labels.mkdir()
    proc = run_module("runtime.infer", "--video", str(a), str(b), "--engines", str(engines), "--out", str(outdir),
                      "--labels-dir", str(labels), "--stats", str(tmp_path / "s.json"), "--max-frames", "10",
                      "--no-progress", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    backend = create_backend("onnxruntime", load_manifest(engines))
    frames = clip_frames(real_clip, 10)
    for name, phase in (("a", 0), ("b", 2)):  # b is the staggered stream: keyframes at 0, 2, 6
        with av.open(str(outdir / f"{name}.mp4")) as c:
            assert sum(1 for _ in c.decode(video=0)) == 10
        assert sorted(p.name for p in (labels / name).iterdir()) == [f"{k:06d}.png" for k in range(10)]
        single = KeyframeScheduler(backend, 4, label_size=(540, 960), phase=phase).run(iter(frames))
        for result in single:
            png = np.asarray(Image.open(labels / name / f"{result.index:06d}.png"))
            assert np.array_equal(png, result.labels[0]), f"{name}: frame {result.index}"
    stats = json.loads((tmp_path / "s.json").read_text())
    assert stats["frames"] == 20 and [s["frames"] for s in stats["streams"]] == [10, 10]
    bad = run_module("runtime.infer", "--video", str(a), str(b), "--engines", str(engines),
                     "--out", str(tmp_path / "x.mp4"), cwd=tmp_path)
    assert bad.returncode == 2 and "must be an existing folder" in bad.stderr
