"""``runtime.Segmenter``, the Python API: its labels are runtime.infer's, pixel for pixel, for a
video and for numpy frames of another size, and are held to the independent reference; errors are
the command line's one-liners. (The README's example is run by tests/test_readme.py.)"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from runtime import Segmenter
from runtime.infer import USER_ERRORS
from tests.conftest import run_module
from tests.runtime.output_checks import read_label_pngs
from tests.runtime.test_independent_reference import assert_labels_match_reference
from tests.runtime.videos import write_lossless_frames

FRAMES = 40
INTERVAL = 4


@pytest.fixture(scope="module")
def segmenter(shipped_engines):
    with Segmenter.load(engines=shipped_engines, backend="onnxruntime", interval=INTERVAL) as seg:
        yield seg


def infer_labels(video: Path, engines: Path, folder: Path, count: int, backend: str = "onnxruntime") -> list[np.ndarray]:
    """The label PNGs ``python -m runtime.infer --labels-dir`` writes for the first ``count`` frames."""
    labels = folder / "labels"
    proc = run_module("runtime.infer", "--video", str(video), "--engines", str(engines), "--labels-dir", str(labels),
                      "--max-frames", str(count), "--interval", str(INTERVAL), "--backend", backend, "--no-progress",
                      cwd=folder)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return list(read_label_pngs(labels, count))


def first_frames(video: Path, count: int) -> list[np.ndarray]:
    from runtime.video import VideoReader

    reader = VideoReader(video)
    frames = [d.rgb for _, d in zip(range(count), reader)]
    reader.close()
    return frames


def take(results, count: int) -> list:
    out = []
    for result in results:
        out.append(result)
        if len(out) == count:
            break
    return out


def test_stream_of_a_video_equals_runtime_infer_and_the_reference(segmenter, shipped_engines, real_clip, tmp_path,
                                                                  one_torch_thread):
    expected = infer_labels(real_clip, shipped_engines, tmp_path, FRAMES)
    results = take(segmenter.stream(real_clip), FRAMES)
    assert [r.index for r in results] == list(range(FRAMES))
    assert [r.keyframe for r in results] == [i % INTERVAL == 0 for i in range(FRAMES)]
    for k, (result, png) in enumerate(zip(results, expected)):
        assert result.labels.dtype == np.uint8 and result.labels.shape == (540, 960)
        assert np.array_equal(result.labels, png), f"frame {k} differs from runtime.infer's PNG"
        assert result.scores is None
    assert_labels_match_reference([r.labels for r in results], real_clip, FRAMES, INTERVAL)


def test_stream_of_numpy_frames_of_another_size_equals_the_same_frames_as_a_video(segmenter, real_clip, tmp_path):
    """The clip's frames at 480x270 (PIL), given as a generator, against the same pixels as a lossless video."""
    count = 24
    frames = [np.asarray(Image.fromarray(rgb).resize((480, 270), Image.BILINEAR)) for rgb in first_frames(real_clip, count)]
    video = tmp_path / "small.mov"
    write_lossless_frames(frames, video)
    from_video = [r.labels for r in segmenter.stream(video)]
    from_frames = [r.labels for r in segmenter.stream(f for f in frames)]
    assert len(from_frames) == len(from_video) == count
    for k, (a, b) in enumerate(zip(from_frames, from_video)):
        assert a.shape == (270, 480)
        assert np.array_equal(a, b), f"frame {k}: numpy frames and their video disagree"


def test_scores_on_request(segmenter, real_clip):
    results = take(segmenter.stream(real_clip, scores=True), 2)
    classes = segmenter.manifest.model["num_classes"]
    h, w = segmenter.backend.frame_size
    for result in results:
        assert result.scores.dtype == np.float32 and result.scores.shape == (classes, h // 8, w // 8)
    assert not np.array_equal(results[0].scores, results[1].scores)


def test_stream_many_staggers_and_equals_runtime_infer(segmenter, shipped_engines, real_clip, tmp_path):
    """Two sources batched: per stream, the labels runtime.infer writes for the same two videos."""
    count = 8
    second = tmp_path / "again.mov"
    write_lossless_frames(first_frames(real_clip, count), second)
    labels = tmp_path / "labels"
    labels.mkdir()
    proc = run_module("runtime.infer", "--video", str(real_clip), str(second), "--engines", str(shipped_engines),
                      "--labels-dir", str(labels), "--max-frames", str(count), "--interval", str(INTERVAL),
                      "--backend", "onnxruntime", "--no-progress", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    got: dict[int, list] = {0: [], 1: []}
    for stream, result in segmenter.stream_many([real_clip, second]):
        if len(got[stream]) < count:
            got[stream].append(result)
        if all(len(v) == count for v in got.values()):
            break
    assert [r.keyframe for r in got[1]][:4] == [True, False, True, False]  # phase 2 of 4: keyframes 0, 2, 6
    for stream, video in enumerate((real_clip, second)):
        for k, (result, png) in enumerate(zip(got[stream], read_label_pngs(labels / video.stem, count))):
            assert np.array_equal(result.labels, png), f"stream {stream} frame {k}"


def test_segment_video_writes_what_runtime_infer_writes(segmenter, real_clip, tmp_path):
    stats = segmenter.segment_video(real_clip, labels_dir=tmp_path / "labels", stats=tmp_path / "stats.json", max_frames=6)
    assert stats["frames"] == 6 and stats["backend"] == "onnxruntime"
    assert (tmp_path / "stats.json").is_file() and len(list(read_label_pngs(tmp_path / "labels", 6))) == 6
    assert not [p for p in tmp_path.iterdir() if ".partial" in p.name]


def test_context_manager_stops_the_stream_and_closes_the_backend(shipped_engines, real_clip):
    with Segmenter.load(engines=shipped_engines, backend="onnxruntime") as seg:
        closed: list[bool] = []
        close = seg.backend.close
        seg.backend.close = lambda: (closed.append(True), close())[1]
        results = seg.stream(real_clip)
        take(results, 3)  # decode and keyframe threads are running now
    assert closed == [True]
    assert not [t.name for t in threading.enumerate() if t.name.startswith(("keyframe-", "decode"))]
    with pytest.raises(RuntimeError, match="closed"):
        seg.stream(real_clip)


def test_describe_says_what_was_chosen_and_why(segmenter):
    text = segmenter.describe()
    assert "backend: onnxruntime (asked for;" in text
    assert "verification: onnxruntime" in text
    assert "threads: CPU budget" in text and "schedule: keyframe every 4 frames" in text


def test_one_source_at_a_time(segmenter, real_clip):
    first = segmenter.stream(real_clip)
    next(first)
    with pytest.raises(RuntimeError, match="one source at a time"):
        segmenter.stream(real_clip)
    first.close()
    assert next(segmenter.stream(real_clip)).index == 0


def test_errors_are_the_command_lines_one_liners(real_clip, tmp_path):
    missing = tmp_path / "no-engines"
    proc = run_module("runtime.infer", "--video", str(real_clip), "--engines", str(missing), "--stats",
                      str(tmp_path / "s.json"), cwd=tmp_path)
    assert proc.returncode == 2
    line = proc.stderr.strip().splitlines()[-1]
    with pytest.raises(USER_ERRORS) as error:
        Segmenter.load(engines=missing)
    assert f"error: {error.value}" == line
    with pytest.raises(USER_ERRORS, match="interval must be >= 1"):
        Segmenter.load(engines=missing, interval=0)


def test_a_long_iterable_is_consumed_as_it_goes(segmenter, real_clip):
    """Frames are pulled a bounded distance ahead of the results (decode queue + keyframe lookahead),
    never materialised: an endless generator streams."""
    from runtime.pipeline import DECODE_DEPTH

    frame = first_frames(real_clip, 1)[0]
    pulled = 0

    def endless():
        nonlocal pulled
        while True:
            pulled += 1
            yield frame

    plan = segmenter.backend.plan
    ahead = DECODE_DEPTH + (plan.keyframe_workers if plan else 0) * INTERVAL + 3
    results = segmenter.stream(endless())
    for k, result in enumerate(results):
        assert result.index == k and pulled <= k + 1 + ahead, f"{pulled} frames pulled for {k + 1} results"
        if k == 12:
            break
    results.close()
