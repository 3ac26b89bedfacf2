"""Deciding what a job does without a cluster: video lists, completeness checks, worker sizing."""

from __future__ import annotations

import json
import shutil

import pytest

from engine_format.manifest import Manifest, load_manifest
from runtime.errors import UserError
from runtime.fleet.cluster import size_workers
from runtime.fleet.plan import (RECORD_NAME, OutputSettings, completed_stats, engines_identity, expand_videos, plan_jobs,
                                write_record)
from tests.runtime.videos import write_video


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

    def complete(name, manifest=manifest, **kw) -> bool:
        return completed_stats(jobs[name], _settings(engines, **kw), out_dir, manifest) is not None

    assert all(complete(n) for n in jobs)  # the workers wrote what fleet.json must hold
    assert not complete("white_a", interval=5)  # made with another keyframe interval
    assert not complete("white_a", alpha=0.3)  # overlays blended with another opacity
    rebuilt = Manifest(manifest.folder, {**manifest.data, "build_key": "engines rebuilt in the same folder"})
    assert not complete("white_a", manifest=rebuilt)
    (out_dir / "white_a" / "labels" / "000029.png").unlink()
    assert not complete("white_a")
    (out_dir / "white_b" / "overlay.mp4").write_bytes((out_dir / "white_b" / "overlay.mp4").read_bytes()[:5000])
    assert not complete("white_b")
    stats = json.loads((out_dir / "project" / "stats.json").read_text())
    (out_dir / "project" / "stats.json").write_text(json.dumps({**stats, "frames": stats["frames"] - 1}))
    assert not complete("project")
    (out_dir / "project" / "stats.json").write_text("{ cut")
    assert not complete("project")


def _video_made_with(tmp_path, settings: OutputSettings, manifest: Manifest):
    """A video and the folder a worker commits for it with ``settings`` and ``manifest``'s engines
    (3 frames: stats.json, overlay.mp4, labels/ and fleet.json); returns its job."""
    video = (tmp_path / "v.mp4").resolve()
    video.write_bytes(b"only its path and age are read")
    job = plan_jobs([video])[0]
    folder = job.folder(tmp_path / "out")
    (folder / "labels").mkdir(parents=True)
    write_video(folder / "overlay.mp4", 3, (48, 64))
    for i in range(3):
        (folder / "labels" / f"{i:06d}.png").write_bytes(b"a label PNG")  # only the names are checked
    stats = {"video": str(video), "frames": 3, "interval": settings.interval, "engines": str(settings.engines),
             "keyframe_net": manifest.model["keyframe_net"], "engine_size": list(manifest.frame_size)}
    (folder / "stats.json").write_text(json.dumps(stats))
    write_record(folder, settings, engines_identity(manifest))
    return job


def test_outputs_of_other_engines_or_other_settings_are_redone(tmp_path):
    engines = tmp_path / "engines"
    data = {"build_key": "key-1", "checkpoint": {"file": "model.pt", "sha256": "weights-1"},
            "model": {"keyframe_net": "swiftnet_r18"}, "frame_size": [136, 240]}
    manifest = Manifest(engines, data)
    job = _video_made_with(tmp_path, _settings(engines), manifest)

    def complete(manifest=manifest, **kw) -> bool:
        return completed_stats(job, _settings(engines, **kw), tmp_path / "out", manifest) is not None

    assert complete()
    # the engines rebuilt at the same path: new weights, or the same weights exported otherwise
    assert not complete(Manifest(engines, {**data, "checkpoint": {"file": "model.pt", "sha256": "weights-2"}}))
    assert not complete(Manifest(engines, {**data, "build_key": "key-2"}))
    assert not complete(alpha=0.3)  # another opacity: the overlay differs
    assert not complete(labels=False) and not complete(overlay=False)  # other outputs asked for
    (job.folder(tmp_path / "out") / RECORD_NAME).unlink()
    assert not complete()  # no record of what made them (runtime.infer's own outputs, an older fleet)


def test_alpha_matters_only_with_an_overlay(tmp_path):
    engines = tmp_path / "engines"
    manifest = Manifest(engines, {"build_key": "key-1", "checkpoint": {"sha256": "weights-1"},
                                  "model": {"keyframe_net": "swiftnet_r18"}, "frame_size": [136, 240]})
    job = _video_made_with(tmp_path, _settings(engines, overlay=False), manifest)
    assert completed_stats(job, _settings(engines, overlay=False, alpha=0.9), tmp_path / "out", manifest) is not None


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
