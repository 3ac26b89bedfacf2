"""The overlay encoder's settings (``--encoder-preset``, ``--encoder-crf``, ``--encoder-threads``)
reach x264: the options string x264 writes into every stream it encodes says which were used."""

from __future__ import annotations

import re
from pathlib import Path

import av
import pytest

from runtime.errors import UserError
from runtime.options import InferOptions
from runtime.outputs import DEFAULT_CRF, DEFAULT_PRESET
from tests.conftest import run_module

FRAMES = 6


def x264_settings(video: Path) -> dict[str, str]:
    """The ``key=value`` options x264 recorded in its SEI message (``options: cabac=1 ref=3 ...``)."""
    data = video.read_bytes()
    found = re.search(rb"x264 - core \d+.*? options: ([^\x00]+)", data)
    assert found, f"{video} has no x264 options message"
    return dict(item.split("=", 1) for item in found.group(1).decode("ascii", "replace").split() if "=" in item)


def write_overlay(engines: Path, clip: Path, folder: Path, *flags: str) -> Path:
    folder.mkdir()
    out = folder / "overlay.mp4"
    proc = run_module("runtime.infer", "--video", str(clip), "--engines", str(engines), "--out", str(out),
                      "--max-frames", str(FRAMES), "--backend", "onnxruntime", "--no-progress", *flags, cwd=folder)
    assert proc.returncode == 0, proc.stderr[-2000:]
    with av.open(str(out)) as container:
        assert sum(1 for _ in container.decode(video=0)) == FRAMES
    return out


def test_encoder_flags_reach_x264(engines, real_clip, tmp_path):
    default = x264_settings(write_overlay(engines, real_clip, tmp_path / "a"))
    assert DEFAULT_PRESET == "veryfast" and float(default["crf"]) == DEFAULT_CRF
    assert default["cabac"] == "1" and default["ref"] == "1"  # veryfast: CABAC on, one reference frame
    chosen = x264_settings(write_overlay(engines, real_clip, tmp_path / "b", "--encoder-preset", "ultrafast",
                                         "--encoder-crf", "30", "--encoder-threads", "1"))
    assert float(chosen["crf"]) == 30
    assert chosen["cabac"] == "0" and chosen["deblock"].startswith("0")  # ultrafast: no CABAC, no deblocking
    assert chosen["threads"] == "1"


@pytest.mark.parametrize("field, value", [("encoder_preset", "warp-speed"), ("encoder_crf", 52), ("encoder_threads", -1)])
def test_bad_encoder_options_are_one_line_errors(field, value):
    with pytest.raises(UserError, match=field):
        InferOptions(**{field: value})


def test_bad_encoder_flag_is_a_usage_error(tmp_path):
    proc = run_module("runtime.infer", "--video", "v.mp4", "--out", "o.mp4", "--encoder-crf", "60", cwd=tmp_path)
    assert proc.returncode == 2 and "--encoder-crf" in proc.stderr and "Traceback" not in proc.stderr
