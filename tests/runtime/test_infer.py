import json

import av
import numpy as np
import pytest
import torch
from PIL import Image

from export.manifest import load_manifest
from gsvnet import KeyframeScheduler
from runtime.backends import create_backend, select_backend
from runtime.backends.base import resize_labels_nearest
from tests.conftest import ENGINE_SIZE, clip_frames, run_module

N_FRAMES = 30


def _labels(backend, frames, interval=4, size=(540, 960)):
    results = list(KeyframeScheduler(backend, interval, label_size=size).run(iter(frames)))
    return results, np.concatenate([r.labels for r in results])


def test_onnxruntime_and_torch_agree_on_the_real_clip(engines, real_clip):
    manifest = load_manifest(engines)
    frames = clip_frames(real_clip, N_FRAMES)
    res_ort, ort_labels = _labels(create_backend("onnxruntime", manifest), frames)
    res_pt, pt_labels = _labels(create_backend("torch", manifest), frames)
    assert ort_labels.shape == (N_FRAMES, 540, 960) and ort_labels.dtype == np.uint8
    agreement = float(np.mean(ort_labels == pt_labels))
    assert agreement >= 0.995, agreement
    assert [r.index for r in res_ort if r.keyframe] == [0, 4, 8, 12, 16, 20, 24, 28]
    assert [r.keyframe for r in res_ort] == [r.keyframe for r in res_pt]


def test_backend_steps_equal_the_gsvnet_composition(engines, rng):
    manifest = load_manifest(engines)
    backend = create_backend("torch", manifest)
    frames = [rng.integers(0, 256, (1, *ENGINE_SIZE, 3), dtype=np.uint8) for _ in range(3)]
    state = backend.keyframe_step(frames[0])
    for f in frames[1:]:
        state = backend.propagation_step(state, f)
    model = backend.model
    with torch.no_grad():
        ref = model.keyframe_step(torch.from_numpy(frames[0]))
        for f in frames[1:]:
            ref = model.propagation_step(ref, torch.from_numpy(f))
    assert torch.equal(state.scores, ref.scores)


def test_backend_rejects_frames_of_another_size(engines):
    backend = create_backend("onnxruntime", load_manifest(engines))
    with pytest.raises(ValueError, match="resize frames to the engine size"):
        backend.keyframe_step(np.zeros((1, 64, 64, 3), np.uint8))


def test_auto_picks_onnxruntime_on_a_cpu_machine_and_says_why(engines):
    name, why = select_backend("auto", load_manifest(engines))
    if not torch.cuda.is_available():
        assert name == "onnxruntime" and "tensorrt" in why


def test_size_advice_names_the_matching_export_size():
    from runtime.infer import size_advice

    assert "export with --size 544x960 to match" in size_advice((540, 960), (1024, 2048))
    closest = size_advice((540, 960), (544, 960))
    assert "960x540 is resized to the engine size 960x544" in closest and "--size" not in closest


def test_resize_labels_nearest():
    labels = np.arange(12, dtype=np.uint8).reshape(1, 3, 4)
    up = resize_labels_nearest(labels, (6, 8))
    assert up.shape == (1, 6, 8) and np.array_equal(up[0, ::2, ::2], labels[0])
    assert resize_labels_nearest(labels, (3, 4)) is labels


def test_cli_segments_the_real_clip(engines, real_clip, tmp_path):
    out, labels_dir, stats_path = tmp_path / "overlay.mp4", tmp_path / "labels", tmp_path / "stats.json"
    proc = run_module("runtime.infer", "--video", str(real_clip), "--engines", str(engines), "--out", str(out),
                      "--labels-dir", str(labels_dir), "--stats", str(stats_path), "--max-frames", str(N_FRAMES),
                      "--interval", "4", "--backend", "onnxruntime", "--no-progress", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "backend: onnxruntime" in proc.stderr and "RANDOM weights" in proc.stderr
    assert "960x540 is resized to the engine size 240x136" in proc.stderr and "--size 544x960 to match" in proc.stderr
    with av.open(str(out)) as container:
        stream = container.streams.video[0]
        decoded = sum(1 for _ in container.decode(stream))
        assert (stream.codec_context.width, stream.codec_context.height) == (960, 540)
        assert stream.average_rate == 25
    assert decoded == N_FRAMES
    pngs = sorted(labels_dir.glob("*.png"))
    assert len(pngs) == N_FRAMES and pngs[0].name == "000000.png"
    first = np.asarray(Image.open(pngs[0]))
    assert first.shape == (540, 960) and first.dtype == np.uint8 and first.max() < 11
    stats = json.loads(stats_path.read_text())
    assert stats["frames"] == N_FRAMES and stats["keyframes"] == 8 and stats["fps"] > 0
    assert {"keyframe", "flow", "warp", "intra", "guide", "filter", "labels"} <= set(stats["stages_ms"])
    assert not list(tmp_path.glob(".*partial*"))


def test_missing_engines_tell_the_user_to_build(real_clip, tmp_path):
    proc = run_module("runtime.infer", "--video", str(real_clip), "--engines", str(tmp_path / "none"),
                      "--out", str(tmp_path / "o.mp4"), cwd=tmp_path)
    assert proc.returncode == 2
    line = proc.stderr.strip().splitlines()[-1]
    assert line.startswith("error: engines folder") and "python -m export.build_engines" in line
    assert not (tmp_path / "o.mp4").exists()


def test_help_explains_every_flag():
    proc = run_module("runtime.infer", "--help")
    assert proc.returncode == 0
    for flag in ("--video", "--engines", "--backend", "--interval", "--out", "--labels-dir", "--stats", "--alpha", "--profile-stages",
                 "--max-frames", "--threads", "--no-progress"):
        assert flag in proc.stdout
    assert "default: 4" in proc.stdout  # defaults are shown
