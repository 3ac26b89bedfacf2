"""A recording whose frame size changes part-way (two MPEG-TS segments of different sizes joined,
as dashcams and broadcast captures write them): every frame is segmented, the first frame of the
new size is a keyframe, label PNGs keep each frame's size, the overlay keeps the first size."""

from __future__ import annotations

import json

import av
import numpy as np
import pytest

from engine_format.manifest import load_manifest
from runtime import Segmenter
from runtime.outputs import blend
from runtime.video import resize_rgb
from tests.conftest import clip_frames, run_module
from tests.runtime.output_checks import decode_rgb, psnr, read_label_pngs
from tests.runtime.videos import write_video

FIRST, SECOND = (360, 640), (540, 960)
N_FIRST, N_SECOND = 10, 13  # the change at frame 10: not a keyframe of l = 4 (0, 4, 8, 12, ...)


@pytest.fixture
def segments(real_clip, tmp_path_factory):
    """(first segment, second segment, the two joined byte for byte), from the real clip."""
    tmp = tmp_path_factory.mktemp("joined")
    frames = [f[0] for f in clip_frames(real_clip, N_FIRST + N_SECOND, SECOND)]
    first = write_video(tmp / "a.ts", N_FIRST, FIRST, frames=[resize_rgb(f, FIRST) for f in frames[:N_FIRST]])
    second = write_video(tmp / "b.ts", N_SECOND, SECOND, frames=frames[N_FIRST:])
    joined = tmp / "joined.ts"
    joined.write_bytes(first.read_bytes() + second.read_bytes())
    return first, second, joined


def infer(engines, video, tmp, name: str, *extra: str) -> tuple[dict, object]:
    labels, stats = tmp / f"{name}-labels", tmp / f"{name}.json"
    proc = run_module("runtime.infer", "--video", str(video), "--engines", str(engines), "--no-progress",
                      "--interval", "4", "--labels-dir", str(labels), "--stats", str(stats), *extra, cwd=tmp)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(stats.read_text()), labels


def test_a_joined_recording_is_segmented_whole_with_a_keyframe_at_the_change(engines, segments, tmp_path):
    first, second, joined = segments
    overlay = tmp_path / "joined.mp4"
    stats, labels = infer(engines, joined, tmp_path, "joined", "--out", str(overlay))
    total = N_FIRST + N_SECOND
    assert stats["frames"] == total and stats["lost_frames"] == 0
    assert stats["size_changes"] == [{"frame": N_FIRST, "from": list(FIRST), "to": list(SECOND)}]
    assert stats["keyframes"] == 3 + 4  # 0, 4, 8, then 10 (the change), 14, 18, 22
    pngs = list(read_label_pngs(labels, total))
    assert [p.shape for p in pngs] == [FIRST] * N_FIRST + [SECOND] * N_SECOND
    # each part is labelled as that segment alone is: the schedule restarts at the change
    _, alone_a = infer(engines, first, tmp_path, "a")
    _, alone_b = infer(engines, second, tmp_path, "b")
    for k, (got, want) in enumerate(zip(pngs, [*read_label_pngs(alone_a, N_FIRST), *read_label_pngs(alone_b, N_SECOND)])):
        assert np.array_equal(got, want), f"frame {k}: {int(np.count_nonzero(got != want))} pixels differ"
    # the overlay: playable, every frame at the first size, the later frames scaled to it
    palette = np.asarray(load_manifest(engines).model["palette"], dtype=np.uint8)
    sources = [*decode_rgb(first), *decode_rgb(second)]
    written = list(decode_rgb(overlay))
    assert len(written) == total and {f.shape for f in written} == {(*FIRST, 3)}
    for k in (0, N_FIRST - 1, N_FIRST, total - 1):
        want = resize_rgb(blend(sources[k], pngs[k], palette, 0.5), FIRST)
        assert psnr(written[k], want) > 30.0, k
    with av.open(str(overlay)) as container:
        assert container.streams.video[0].frames == total


def test_the_python_api_takes_frames_whose_size_changes(engines):
    """``Segmenter.stream`` over arrays: labels at each frame's size, a keyframe at the change."""
    rng = np.random.default_rng(5)
    sizes = [(48, 64)] * 3 + [(72, 96)] * 4
    frames = [rng.integers(0, 256, (*s, 3), dtype=np.uint8) for s in sizes]
    with Segmenter.load(engines=engines, backend="onnxruntime", interval=4, log=lambda line: None) as seg:
        results = list(seg.stream(frames))
    assert [r.labels.shape for r in results] == sizes
    assert [r.index for r in results if r.keyframe] == [0, 3]
