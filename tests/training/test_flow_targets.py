from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch

from gsvnet.ops import warp_by_flow
from training.clip import prepare_clip
from training.flow_targets import dis_flow

from .synthetic import moving_texture, write_video


def test_dis_target_is_backward_flow_in_grid_pixels(rng):
    frames = moving_texture(rng, 2, (128, 192), dx=8)  # frame 1 = frame 0 moved 8 px left
    prev, cur = frames[0], frames[1]
    flow = dis_flow(cur, prev, (16, 24))
    assert flow.shape == (2, 16, 24) and flow.dtype == np.float32
    inner = (slice(2, -2), slice(2, -4))
    # current(x) = previous(x + 8 px) = previous(x + 1 grid px): backward flow +1 in x, 0 in y
    np.testing.assert_allclose(np.median(flow[0][inner]), 1.0, atol=0.1)
    np.testing.assert_allclose(np.median(flow[1][inner]), 0.0, atol=0.1)


def test_warping_previous_by_target_approximates_current(rng):
    frames = moving_texture(rng, 2, (128, 192), dx=8)
    small = torch.from_numpy(frames).permute(0, 3, 1, 2).float()
    small = torch.nn.functional.avg_pool2d(small, 8)  # [2,3,16,24] on the 1/8 grid
    flow = torch.from_numpy(dis_flow(frames[1], frames[0], (16, 24)))[None]
    warped = warp_by_flow(small[:1], flow)
    inner = (..., slice(1, -1), slice(1, -3))
    err_warped = (warped - small[1:])[inner].abs().mean()
    err_still = (small[:1] - small[1:])[inner].abs().mean()
    assert err_warped < 0.35 * err_still
    # the opposite sign is as bad as not warping at all
    assert (warp_by_flow(small[:1], -flow) - small[1:])[inner].abs().mean() > 2 * err_warped


def _clip_functions(calls: list[int], staging: list[int] | None = None, cache: Path | None = None, fail_at: int | None = None):
    def scores(x: np.ndarray) -> torch.Tensor:
        calls.append(len(x))
        if staging is not None:  # what is on disk already, while the second batch is computed
            staging.extend(p.stat().st_size for p in cache.parent.glob(f".{cache.name}.partial-*/scores.f32"))
        if fail_at is not None and len(calls) == fail_at:
            raise OSError(28, "No space left on device")
        return torch.from_numpy(x.mean(axis=3, dtype=np.float32))[:, None, ::8, ::8]

    def small(x: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(x[:, ::8, ::8].transpose(0, 3, 1, 2).astype(np.float32))

    return small, scores


def test_a_prepared_clip_has_flows_both_ways_scores_of_every_frame_and_a_cache(rng, tmp_path, capsys):
    """training.clip.prepare_clip streams a real encoded video: 1/8 frames and scores from the
    callables, DIS flows t -> t-1 (forward) and t -> t+1 (reverse), written to disk batch by batch
    (never the whole clip in memory), memory-mapped back, kept under its key."""
    frames = moving_texture(rng, 6, (64, 96), dx=8)
    video = write_video(tmp_path / "moving.mp4", frames)
    cache = tmp_path / "clip"
    calls: list[int] = []
    staged: list[int] = []
    small, scores = _clip_functions(calls, staged, cache)
    clip = prepare_clip(video, (64, 96), small, scores, cache, {"v": 1}, batch=4)
    assert calls == [4, 2] and clip.scores.shape == (6, 1, 8, 12) and clip.small.shape == (6, 3, 8, 12)
    assert staged == [0, 4 * 1 * 8 * 12 * 4]  # the first batch's scores were on disk before the second was computed
    assert clip.flow_forward.shape == clip.flow_reverse.shape == (6, 2, 8, 12)
    assert (clip.flow_forward[0] == 0).all() and (clip.flow_reverse[-1] == 0).all()
    assert (clip.flow_forward[1:, 0].median(dim=-1).values.median() > 0.5) and (clip.flow_reverse[:-1, 0].median() < -0.5)
    # what was stored is what the callables computed on the decoded frames (not the raw ones: H.264)
    from evaluation.clips import iter_video

    decoded = np.stack(list(iter_video(video, (64, 96), None)))
    assert torch.equal(clip.scores, scores(decoded)) and torch.equal(clip.small, small(decoded))
    assert sorted(p.name for p in cache.iterdir()) == ["flow_forward.f32", "flow_reverse.f32", "meta.json", "scores.f32",
                                                       "small.f32"]
    assert not list(tmp_path.glob(".clip.partial-*"))
    clip.scores[0] += 1.0  # copy-on-write: training code may write into a batch without touching the cache
    calls.clear()
    again = prepare_clip(video, (64, 96), small, scores, cache, {"v": 1})
    assert calls == [] and torch.equal(again.scores, scores(decoded)) and "cached" in capsys.readouterr().out
    calls.clear()
    prepare_clip(video, (64, 96), small, scores, cache, {"v": 2}, limit=3)
    assert calls == [3]  # another key: computed again, and only the first 3 frames
    (cache / "scores.f32").write_bytes((cache / "scores.f32").read_bytes()[:-4])  # a truncated cache is not used
    calls.clear()
    prepare_clip(video, (64, 96), small, scores, cache, {"v": 2}, limit=3)
    assert calls == [3]


def test_a_clip_that_fails_midway_leaves_no_cache(rng, tmp_path):
    """Bad luck while preparing (here the disk filling up at the second batch): the error goes
    through, nothing is left that a later run could take for a prepared clip; without a cache
    folder the clip still streams through a temporary folder that is gone when it returns."""
    video = write_video(tmp_path / "moving.mp4", moving_texture(rng, 6, (64, 96), dx=8))
    cache = tmp_path / "clip"
    small, scores = _clip_functions([], fail_at=2)
    with pytest.raises(OSError, match="No space left"):
        prepare_clip(video, (64, 96), small, scores, cache, {"v": 1}, batch=4)
    assert not cache.exists() and not list(tmp_path.glob(".clip*"))
    before = set(Path(tempfile.gettempdir()).glob("gsvnet-clip-*"))
    small, scores = _clip_functions([])
    clip = prepare_clip(video, (64, 96), small, scores, None, {"v": 1}, batch=4)
    assert set(Path(tempfile.gettempdir()).glob("gsvnet-clip-*")) == before
    assert clip.scores.shape == (6, 1, 8, 12) and float(clip.scores.abs().sum()) > 0


def test_a_full_disk_while_preparing_is_one_line_and_leaves_no_cache(rng, tmp_path, monkeypatch):
    """The prepared parts written to /dev/full (the kernel's ENOSPC on every write): the run ends
    with one line naming the folder and the fix, and no cache or staging folder is left."""
    import training.clip as clip_module

    video = write_video(tmp_path / "moving.mp4", moving_texture(rng, 6, (64, 96), dx=8))
    cache = tmp_path / "clip"
    monkeypatch.setattr(clip_module, "open", lambda path, mode, buffering: open("/dev/full", mode, buffering=buffering),
                        raising=False)
    small, scores = _clip_functions([])
    with pytest.raises(SystemExit) as info:
        prepare_clip(video, (64, 96), small, scores, cache, {"v": 1}, batch=4)
    line = str(info.value)
    assert line.startswith(f"error: cannot write the prepared clip to {cache} (No space left on device)")
    assert "--cache-dir" in line and "\n" not in line
    assert not cache.exists() and not list(tmp_path.glob(".clip*"))
