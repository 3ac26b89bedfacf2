"""What runtime.infer writes, held to a reference that shares none of its decode, resize or
scheduling code (tests/independent.py): the shipped PyTorch networks run on frames decoded by
OpenCV and resized in numpy, keyframes placed by the documented rule, labels resized back here."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterable

import numpy as np

from tests.conftest import DATA, ENGINE_SIZE, run_module, shared_data
from tests.independent import (agreement_per_frame, decode_rgb_opencv, documented_keyframes, reference_labels,
                               shipped_model)
from tests.runtime.output_checks import read_label_pngs

#: share of pixels on which every frame's labels must equal the independent reference: the two
#: resizes and decoders differ by about a grey level, which moves a few boundary pixels
MIN_AGREEMENT = 0.995
#: the mean over a run must be higher still: a frame offset or a keyframe phase changes a few
#: tenths of a percent per frame, not more, on a road scene at 25 Hz
MIN_MEAN_AGREEMENT = 0.998


def assert_matches_reference(labels_dir: Path, video: Path, count: int, interval: int, stream: int = 0,
                             streams: int = 1, model=None) -> list[float]:
    """The ``count`` label PNGs in ``labels_dir`` equal the independent reference for ``video``."""
    return assert_labels_match_reference(read_label_pngs(labels_dir, count), video, count, interval, stream, streams,
                                         model)


def assert_labels_match_reference(labels: Iterable[np.ndarray], video: Path, count: int, interval: int,
                                  stream: int = 0, streams: int = 1, model=None) -> list[float]:
    """``labels`` (uint8 [H,W] per frame, ``count`` of them) equal the independent reference for ``video``."""
    first = next(decode_rgb_opencv(video, 1))
    expected = reference_labels(model or shipped_model(), decode_rgb_opencv(video, count), ENGINE_SIZE, interval,
                                first.shape[:2], stream, streams)
    agree = agreement_per_frame(labels, expected)
    worst = int(np.argmin(agree))
    where = f"{video.name} (stream {stream} of {streams}, l = {interval})"
    assert agree[worst] >= MIN_AGREEMENT, f"{where}: frame {worst} agrees on {100 * agree[worst]:.2f}% of pixels"
    mean = float(np.mean(agree))
    assert mean >= MIN_MEAN_AGREEMENT, f"{where}: {100 * mean:.3f}% of pixels agree on average"
    return agree


def test_documented_keyframe_rule():
    """The rule itself, written out by hand: l = 4, three streams have phases 0, 1, 2."""
    take = lambda it, n: [next(it) for _ in range(n)]  # noqa: E731
    assert take(documented_keyframes(4), 4) == [0, 4, 8, 12]
    assert take(documented_keyframes(4, 1, 3), 4) == [0, 3, 7, 11]
    assert take(documented_keyframes(4, 2, 3), 4) == [0, 2, 6, 10]
    assert take(documented_keyframes(1), 3) == [0, 1, 2]


def test_cli_whole_clip_equals_the_independent_reference(shipped_clip_run, real_clip):
    """runtime.infer (CPU pipeline, keyframe workers ahead) on all 221 frames of the real clip."""
    run = shipped_clip_run
    assert_matches_reference(run.labels_dir, real_clip, run.stats["frames"], run.interval)


def test_cli_several_videos_equal_the_independent_reference(shipped_engines, tmp_path):
    """Three staggered streams through one backend (runtime/schedule/multistream.py): each stream's labels
    equal the reference with that stream's documented keyframes (phases 0, 1 and 2 at l = 4)."""
    videos = DATA / "videos"
    sources = [shared_data(videos / "solidWhiteRight.mp4", "real clip"),
               shared_data(videos / "project_video_short.mp4", "real clip"), None]
    sources[2] = tmp_path / "white-again.mp4"
    os.symlink(sources[0], sources[2])
    labels = tmp_path / "labels"
    labels.mkdir()
    count = 20
    proc = run_module("runtime.infer", "--video", *map(str, sources), "--engines", str(shipped_engines),
                      "--labels-dir", str(labels), "--stats", str(tmp_path / "stats.json"), "--max-frames", str(count),
                      "--interval", "4", "--backend", "onnxruntime", "--no-progress", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads((tmp_path / "stats.json").read_text())["frames"] == 3 * count
    model = shipped_model()
    for s, video in enumerate(sources):
        assert_matches_reference(labels / video.stem, video, count, 4, stream=s, streams=3, model=model)


#: how far runtime.infer's CamVid test mIoU may fall from the recorded figure of the shipped weights
MIOU_TOLERANCE = 0.005
RECORDED = Path(__file__).resolve().parents[2] / "benchmarks" / "results" / "accuracy-2026-11-25.json"


def write_lossless_video(images: list[Path], path: Path, fps: int = 15) -> None:
    """The images, in order, as one video whose decoded frames are exactly their RGB pixels
    (PNG frames in a QuickTime file), written with PyAV directly."""
    import av
    from PIL import Image

    with av.open(str(path), "w") as out:
        stream = out.add_stream("png", rate=fps)
        first = np.asarray(Image.open(images[0]).convert("RGB"))
        stream.width, stream.height, stream.pix_fmt = first.shape[1], first.shape[0], "rgb24"
        for image in images:
            rgb = np.asarray(Image.open(image).convert("RGB"))
            for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def miou_by_hand(predictions, truths, classes: int = 11, void: int = 11) -> float:
    """mIoU (void ignored) over the classes present in truth or prediction, numpy only."""
    confusion = np.zeros((classes, classes), np.int64)
    for pred, truth in zip(predictions, truths, strict=True):
        scored = truth != void
        confusion += np.bincount(truth[scored].astype(np.int64) * classes + pred[scored],
                                 minlength=classes * classes).reshape(classes, classes)
    tp = np.diag(confusion).astype(np.float64)
    union = confusion.sum(0) + confusion.sum(1) - tp
    return float((tp[union > 0] / union[union > 0]).mean())


def test_cli_scores_the_recorded_camvid_miou_through_a_video(camvid_dir, tmp_path):
    """CamVid test (233 stills, 480x360) written into a lossless video and segmented by
    runtime.infer at l = 1 with the shipped weights, as a user would run it, scores the mIoU recorded
    for those weights (benchmarks/results) within half a point: a channel swap, a normalisation
    change or a wrong resize costs several points."""
    from PIL import Image

    images = sorted((camvid_dir / "test").glob("*.png")) or sorted((camvid_dir / "test").glob("*.jpg"))
    assert len(images) == 233, f"CamVid test should hold 233 images, found {len(images)}"
    video = tmp_path / "camvid-test.mov"
    write_lossless_video(images, video)
    engines = tmp_path / "engines"
    proc = run_module("export.build_engines", "--out", str(engines), "--size", "360x480", "--backend", "onnx")
    assert proc.returncode == 0, proc.stderr[-3000:]
    labels = tmp_path / "labels"
    proc = run_module("runtime.infer", "--video", str(video), "--engines", str(engines), "--labels-dir", str(labels),
                      "--interval", "1", "--backend", "onnxruntime", "--no-progress", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    truths = (np.asarray(Image.open(camvid_dir / "testannot" / f"{image.stem}.png")) for image in images)
    miou = miou_by_hand(read_label_pngs(labels, len(images)), truths)
    recorded = json.loads(RECORDED.read_text())["camvid"]
    assert recorded["split"] == "test" and recorded["images"] == 233 and "swiftnet_r18-camvid" in recorded["backend"]
    assert abs(miou - recorded["miou"]) <= MIOU_TOLERANCE, f"mIoU {100 * miou:.2f} vs recorded {100 * recorded['miou']:.2f}"
