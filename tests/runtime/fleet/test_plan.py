"""Deciding what a job does without a cluster: video lists, completeness checks, worker sizing."""

from __future__ import annotations

import json
import shutil

import pytest

from export.manifest import load_manifest
from runtime.errors import UserError
from runtime.fleet.cluster import size_workers
from runtime.fleet.plan import OutputSettings, completed_stats, expand_videos, plan_jobs


def test_expand_videos_globs_paths_and_duplicates(tmp_path):
    for rel in ("a.mp4", "b.mp4", "sub/c.mp4"):
        (tmp_path / rel).parent.mkdir(exist_ok=True)
        (tmp_path / rel).write_bytes(b"x")
    found = expand_videos([str(tmp_path / "*.mp4"), str(tmp_path / "a.mp4"), str(tmp_path / "**" / "c.mp4")])
    assert found == [tmp_path / "a.mp4", tmp_path / "b.mp4", tmp_path / "sub" / "c.mp4"]
    with pytest.raises(UserError, match="no file matches"):
        expand_videos([str(tmp_path / "*.mkv")])
    with pytest.raises(UserError, match="video not found"):
        expand_videos([str(tmp_path / "z.mp4")])


def test_plan_jobs_names_outputs_after_the_videos(tmp_path):
    jobs = plan_jobs([tmp_path / "a.mp4", tmp_path / "x" / "b.mov"])
    out = tmp_path / "out"
    assert [(j.name, j.folder(out)) for j in jobs] == [("a", out / "a"), ("b", out / "b")]
    with pytest.raises(UserError, match="share the name 'a'"):
        plan_jobs([tmp_path / "a.mp4", tmp_path / "x" / "a.mkv"])


def _settings(engines, **kw) -> OutputSettings:
    defaults = {"engines": engines.resolve(), "interval": 4, "overlay": True, "labels": True, "alpha": 0.5}
    return OutputSettings(**{**defaults, **kw})


def test_completed_outputs_are_verified_not_trusted(fleet_run, fleet_clips, engines, tmp_path):
    out_dir = tmp_path / "out"
    shutil.copytree(fleet_run, out_dir)
    manifest = load_manifest(engines)
    jobs = {j.name: j for j in plan_jobs(list(fleet_clips.values()))}

    def complete(name, **kw) -> bool:
        return completed_stats(jobs[name], _settings(engines, **kw), out_dir, manifest.model, manifest.frame_size) is not None

    assert all(complete(n) for n in jobs)
    assert not complete("white_a", interval=5)  # made with another keyframe interval
    (out_dir / "white_a" / "labels" / "000029.png").unlink()
    assert not complete("white_a") and complete("white_a", labels=False)  # only what is asked for must be there
    (out_dir / "white_b" / "overlay.mp4").write_bytes((out_dir / "white_b" / "overlay.mp4").read_bytes()[:5000])
    assert not complete("white_b") and complete("white_b", overlay=False)
    stats = json.loads((out_dir / "project" / "stats.json").read_text())
    (out_dir / "project" / "stats.json").write_text(json.dumps({**stats, "frames": stats["frames"] - 1}))
    assert not complete("project")
    (out_dir / "project" / "stats.json").write_text("{ cut")
    assert not complete("project")


def test_size_workers():
    assert size_workers(None, None, 1, {"CPU": 2}) == size_workers(2, 0, 1, {"CPU": 2.0})
    assert size_workers(None, None, 1, {"CPU": 2}).count == 2
    assert size_workers(None, None, 2, {"CPU": 16, "GPU": 4}).count == 4  # one per GPU
    shape = size_workers(None, 0.5, 1, {"CPU": 16, "GPU": 2})
    assert (shape.count, shape.gpus) == (4, 0.5)
    assert size_workers(None, 0, 4, {"CPU": 16, "GPU": 2}).count == 4  # CPU workers on a GPU cluster
    with pytest.raises(UserError, match="pass --workers 2 or less"):
        size_workers(3, None, 1, {"CPU": 2})
    with pytest.raises(UserError, match="the cluster has 0 GPUs"):
        size_workers(None, 1, 1, {"CPU": 2})
