import json
import shutil

import av
import numpy as np

from export.manifest import load_manifest
from gsvnet import KeyframeScheduler
from runtime.backends import create_backend
from runtime.multistream import MultiStreamScheduler
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
    single = np.concatenate([r.labels for r in KeyframeScheduler(backend, 4, label_size=size).run(iter(frames))])
    batched = np.concatenate([r.labels for t in ticks for s, r in t if s == 0])
    assert np.mean(single == batched) >= 0.995


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
    for name in ("a", "b"):
        with av.open(str(outdir / f"{name}.mp4")) as c:
            assert sum(1 for _ in c.decode(video=0)) == 10
        assert len(list((labels / name).glob("*.png"))) == 10
    stats = json.loads((tmp_path / "s.json").read_text())
    assert stats["frames"] == 20 and [s["frames"] for s in stats["streams"]] == [10, 10]
    bad = run_module("runtime.infer", "--video", str(a), str(b), "--engines", str(engines),
                     "--out", str(tmp_path / "x.mp4"), cwd=tmp_path)
    assert bad.returncode == 2 and "must be an existing folder" in bad.stderr
