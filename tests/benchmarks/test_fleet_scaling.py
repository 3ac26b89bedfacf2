"""benchmarks.fleet_scaling on a tiny fleet: clips cover the video, every configuration is measured."""

from __future__ import annotations

import json

import pytest

from benchmarks.clips import frame_count, split_video
from tests.requirements import require_module
from tests.runtime.videos import write_video


def test_split_video_covers_every_frame_once(tmp_path):
    video = write_video(tmp_path / "v.mp4", 23, (48, 64))
    clips = split_video(video, tmp_path, 4)
    assert [c.name for c in clips] == ["v-0.mp4", "v-1.mp4", "v-2.mp4", "v-3.mp4"]
    assert [frame_count(c) for c in clips] == [6, 6, 5, 6]


def test_the_command_line_fills_the_typed_options(tmp_path):
    from benchmarks.fleet_scaling import VIDEOS, FleetScalingOptions, parse_options

    out = tmp_path / "s.json"
    assert parse_options(["--out", str(out)]) == FleetScalingOptions(out=out, videos=VIDEOS)
    assert parse_options(["--out", str(out), "--configs", "2x1", "--note", "busy"]) == \
        FleetScalingOptions(out=out, configs=[(2, 1)], note="busy")
    with pytest.raises(ValueError, match="^--pieces must be >= 1, got 0$"):
        FleetScalingOptions(out=out, pieces=0)


def test_scaling_run_records_each_configuration_with_the_load(engines, tmp_path):
    require_module("ray", "benchmarks.fleet_scaling runs the fleet on a Ray cluster")
    from benchmarks.fleet_scaling import FleetScalingOptions, run

    video = write_video(tmp_path / "v.mp4", 16, (48, 64))
    out = tmp_path / "scaling.json"
    result = run(FleetScalingOptions(out=out, engines=engines, videos=[video], pieces=2, configs=[(1, 1), (2, 1)],
                                     repeats=1, shared=True, note="test"))
    assert json.loads(out.read_text()) == result
    assert [(r["workers"], r["cpus_per_worker"]) for r in result["runs"]] == [(1, 1), (2, 1)]
    assert all(r["frames"] == 16 and r["frames_per_second"] > 0 and len(r["loadavg_before"]) == 3 for r in result["runs"])
    assert result["configs"]["1x1"]["vs_first"] == 1.0 and result["machine"]["shared"] is True
    assert [c["frames"] for c in result["clips"]] == [8, 8] and result["engines"]["size"] == [136, 240]
