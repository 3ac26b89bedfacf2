"""export.BuildOptions: the typed form of every ``python -m export.build_engines`` flag, what the
command line parses into and what the project's callers fill in directly."""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pytest

from export import BuildOptions
from export.build_engines import build_parser, main, parse_options
from export.build_errors import BuildError
from tests.conftest import REPO


def test_every_flag_is_a_field_with_the_command_lines_default():
    flags = {a.dest: a.default for a in build_parser()._actions if not isinstance(a, argparse._HelpAction)}
    assert set(flags) == {f.name for f in fields(BuildOptions)}
    assert parse_options([]) == BuildOptions()
    for f in fields(BuildOptions):
        assert flags[f.name] == f.default, f.name


def test_paths_may_be_strings_and_the_command_line_gives_the_same_options_back():
    options = BuildOptions(out="eng", size=(544, 960), checkpoint="my weights.pt", key_scale=0.5, opset=17,
                           precision="int8", calibration="frames", calibration_frames=8, custom_ops="none",
                           backend="onnx", max_batch=8, opt_level=5, timing_cache="t.cache", version_compatible=True,
                           force=True, keyframe_net="bisenet_r18")
    assert options.out == Path("eng") and options.checkpoint == Path("my weights.pt")
    words = shlex.split(options.command_line())
    assert words[:3] == ["python", "-m", "export.build_engines"] and "'my weights.pt'" in options.command_line()
    assert parse_options(words[3:]) == options
    official = BuildOptions(official=["kf.pth", "gsvnet.pth.tar"], random_weights=False, seed=4)
    assert official.official == (Path("kf.pth"), Path("gsvnet.pth.tar"))
    assert parse_options(shlex.split(official.command_line())[3:]) == official
    assert BuildOptions().command_line() == "python -m export.build_engines"


@pytest.mark.parametrize("fields_,argv,needle", [
    ({"size": (540, 960)}, ["--size", "540x960"], "size 540x960: height and width must be multiples of 8 and >= 16 (try 544x960)"),
    ({"key_scale": 1.5}, ["--key-scale", "1.5"], "key scale must be in (0, 1], got 1.5"),
    ({"max_batch": 65}, ["--max-batch", "65"], "--max-batch must be in 1..64, got 65"),
    ({"calibration_frames": 0}, ["--calibration-frames", "0"], "--calibration-frames must be >= 1, got 0"),
    ({"official": ["a.pth"]}, ["--official", "a.pth"], "--official takes 2 or 3 files (KEYFRAME PROPAGATION [FLOW]), got 1"),
    ({"official": ["a", "b"], "random_weights": True}, ["--official", "a", "b", "--random-weights"],
     "--official replaces --checkpoint and --random-weights; pass only one of them"),
    ({"precision": "int8"}, ["--precision", "int8"], "--precision int8 needs --calibration DIR"),
    ({"precision": "int8", "calibration": ".", "backend": "tensorrt"},
     ["--precision", "int8", "--calibration", ".", "--backend", "tensorrt"], "TensorRT engines are built from FP32 folders"),
])
def test_a_value_out_of_range_is_the_command_lines_one_line(fields_, argv, needle, capsys, tmp_path):
    with pytest.raises(BuildError) as info:
        BuildOptions(out=tmp_path / "eng", **fields_)
    message = str(info.value)
    assert needle in message and "\n" not in message
    try:
        status = main(["--out", str(tmp_path / "eng"), *argv])
    except SystemExit as e:  # argparse's own refusal (a bad ``type``)
        status = e.code
    assert status == 2
    assert message in capsys.readouterr().err.strip().splitlines()[-1]
    assert not (tmp_path / "eng").exists()


@pytest.mark.parametrize("fields_,needle", [
    ({"opset": 20}, "--opset must be one of 16, 17, 18, 19, got 20"),
    ({"keyframe_net": "resnet9000"}, "--keyframe-net must be one of"),
    ({"backend": "openvino"}, "--backend must be one of auto, onnx, tensorrt, got 'openvino'"),
    ({"radius": 0}, "--radius must be >= 1, got 0"),
])
def test_choices_are_checked_as_argparse_checks_them(fields_, needle):
    with pytest.raises(BuildError, match="^" + needle.replace("(", r"\(").replace(")", r"\)")):
        BuildOptions(**fields_)


def test_import_export_loads_neither_torch_nor_onnx():
    code = ("import sys, export\n"
            "options = export.BuildOptions(size=(64, 64))\n"
            "heavy = sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'onnx', 'onnxruntime', 'numpy'})\n"
            "assert not heavy, heavy\n"
            "assert callable(export.build)\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
