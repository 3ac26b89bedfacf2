from __future__ import annotations

import itertools
import json
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from engine_format.manifest import load_manifest
from runtime.schedule import KeyframeScheduler
from gsvnet.classes import CAMVID
from gsvnet.pretrained import default_checkpoint, provenance
from runtime.backends import create_backend, select_backend
from runtime.backends.base import resize_labels_nearest
from runtime.outputs import blend
from runtime.threads import usable_cores
from runtime.video import resize_rgb
from tests.conftest import ENGINE_SIZE, clip_frames, run_module
from tests.runtime.output_checks import decode_rgb, psnr, read_label_pngs

N_FRAMES = 30
CLIP_FRAMES = 221  # frames in the real clip
MIN_OVERLAY_PSNR = 35.0  # dB between a decoded overlay frame and the blend it encodes (H.264 at crf 20)
# random-weight label maps are speckled noise, which H.264 keeps less well (36.3 dB at worst at alpha 0.5);
# a frame shifted by one against its labels measures 29 dB and shifted labels 15 dB, so both bounds catch them
MIN_NOISY_OVERLAY_PSNR = 33.0


def assert_labels_equal_backend(labels_dir: Path, engines: Path, clip: Path, count: int, interval: int) -> None:
    """Every label PNG written by the CLI equals, exactly, the onnxruntime backend's labels for that
    frame when the frames are fed one by one to ``KeyframeScheduler`` (decoded here with PyAV)."""
    backend = create_backend("onnxruntime", load_manifest(engines))
    frames = (resize_rgb(rgb, backend.frame_size)[None] for rgb in itertools.islice(decode_rgb(clip), count))
    results = KeyframeScheduler(backend, interval, label_size=(540, 960)).run(frames)
    pairs = itertools.zip_longest(results, read_label_pngs(labels_dir, count))
    for k, (result, png) in enumerate(pairs):
        assert result is not None and result.index == k, f"the clip has fewer than {count} frames"
        assert png.shape == (540, 960) and png.dtype == np.uint8
        differ = int(np.count_nonzero(png != result.labels[0]))
        assert differ == 0, f"frame {k}: {differ} label pixels differ from the onnxruntime backend"


def assert_overlay_is_the_blend(overlay: Path, labels_dir: Path, clip: Path, count: int, palette: np.ndarray,
                                alpha: float, min_psnr: float = MIN_OVERLAY_PSNR) -> None:
    """The overlay video has the clip's frame rate and duration, one frame per input frame at its
    time, and decoded frame k is ``blend(clip frame k, label PNG k)`` up to codec loss."""
    with av.open(str(overlay)) as out, av.open(str(clip)) as src:
        o, s = out.streams.video[0], src.streams.video[0]
        assert (o.codec_context.width, o.codec_context.height) == (s.codec_context.width, s.codec_context.height)
        assert o.average_rate == s.average_rate == 25
        times = [float(f.pts * f.time_base) for f in out.decode(o)]
        if count == s.frames:
            assert abs(float(o.duration * o.time_base) - float(s.duration * s.time_base)) < 0.5 / 25
    assert times == pytest.approx([k / 25 for k in range(count)], abs=1e-6)
    frames = itertools.islice(decode_rgb(clip), count)
    triples = itertools.zip_longest(decode_rgb(overlay), frames, read_label_pngs(labels_dir, count))
    worst = (float("inf"), -1)
    for k, (got, frame, labels) in enumerate(triples):
        assert got is not None and frame is not None, f"frame {k}: overlay or clip ended early"
        worst = min(worst, (psnr(got, blend(frame, labels, palette, alpha)), k))
    assert worst[0] > min_psnr, f"frame {worst[1]}: overlay is {worst[0]:.1f} dB from the expected blend"


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
                      "--interval", "4", "--backend", "onnxruntime", "--alpha", "0.3", "--no-progress", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "backend: onnxruntime" in proc.stderr and "RANDOM weights" in proc.stderr
    assert "960x540 is resized to the engine size 240x136" in proc.stderr and "--size 544x960 to match" in proc.stderr
    assert_labels_equal_backend(labels_dir, engines, real_clip, N_FRAMES, interval=4)
    # random-weight engines for 11 classes take CamVid's palette (gsvnet.classes)
    assert_overlay_is_the_blend(out, labels_dir, real_clip, N_FRAMES, np.array(CAMVID.palette, np.uint8), alpha=0.3,
                                min_psnr=MIN_NOISY_OVERLAY_PSNR)
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


def test_blend_on_hand_computed_pixels():
    palette = np.array([[0, 0, 0], [255, 255, 255], [128, 64, 0]], np.uint8)
    rgb = np.array([[[10, 200, 254], [1, 1, 1]], [[254, 254, 254], [100, 50, 2]]], np.uint8)
    labels = np.array([[2, 1], [0, 2]], np.uint8)
    assert np.array_equal(blend(rgb, labels, palette, 0.0), rgb)
    colours = np.array([[[128, 64, 0], [255, 255, 255]], [[0, 0, 0], [128, 64, 0]]], np.uint8)
    assert np.array_equal(blend(rgb, labels, palette, 1.0), colours)
    # alpha 0.5: the mean of frame and colour (sums chosen even, so no rounding): (10 + 128) / 2 = 69, ...
    half = np.array([[[69, 132, 127], [128, 128, 128]], [[127, 127, 127], [114, 57, 1]]], np.uint8)
    assert np.array_equal(blend(rgb, labels, palette, 0.5), half)


@pytest.mark.parametrize("alpha", [0.25, 0.7])
def test_blend_is_the_float_mix_within_one_and_a_half_levels(rng, alpha):
    """8-bit blending: alpha quantised to 1/256 (<= 0.5 level at 255) and truncation (< 1 level)."""
    palette = rng.integers(0, 256, (11, 3), dtype=np.uint8)
    rgb = rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)
    labels = rng.integers(0, 11, (40, 50), dtype=np.uint8)
    expected = (1 - alpha) * rgb.astype(np.float64) + alpha * palette.astype(np.float64)[labels]
    got = blend(rgb, labels, palette, alpha)
    assert got.dtype == np.uint8 and got.shape == rgb.shape
    assert np.abs(got - expected).max() < 1.5


def test_cli_on_the_whole_clip_with_the_shipped_weights(shipped_clip_run, real_clip):
    """What a user gets from runtime.infer with the shipped weights: labels equal to the onnxruntime
    backend's, an overlay video showing them on every frame, with the clip's frame count, duration and rate."""
    run = shipped_clip_run
    assert run.stats["frames"] == CLIP_FRAMES and run.stats["keyframes"] == len(range(0, CLIP_FRAMES, run.interval))
    assert run.stats["lost_frames"] == 0
    assert (run.stats["keyframe_workers"] > 0) == (usable_cores() > 1)  # keyframes computed ahead on 2+ cores
    assert_labels_equal_backend(run.labels_dir, run.engines, real_clip, CLIP_FRAMES, run.interval)
    palette = np.array(provenance(default_checkpoint("swiftnet_r18"))["config"]["palette"], np.uint8)
    assert_overlay_is_the_blend(run.overlay, run.labels_dir, real_clip, CLIP_FRAMES, palette, run.alpha)
