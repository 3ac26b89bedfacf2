"""python -m runtime.fleet as a user runs it: --help, inputs refused before anything starts, Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from runtime.fleet.outdir import LOCK_NAME
from tests.conftest import REPO, run_module
from tests.requirements import require_module
from tests.runtime.fleet.conftest import partial_files, run_fleet
from tests.runtime.videos import write_video


def test_help_explains_every_flag():
    proc = run_module("runtime.fleet", "--help")
    assert proc.returncode == 0
    for flag in ("--videos", "--engines", "--out-dir", "--overlay", "--labels", "--interval", "--alpha", "--backend",
                 "--address", "--workers", "--gpus-per-worker", "--cpus-per-worker", "--retries", "--redo",
                 "--no-progress"):
        assert flag in proc.stdout
    text = " ".join(proc.stdout.split())
    assert "(default: 4)" in text and "(default: 2)" in text and "(default: 1.0)" in text and "`ray start`" in text
    assert "(default: None)" not in text  # every flag without a value says what happens instead


def test_whole_number_flags_are_read_as_runtime_infer_reads_them():
    from runtime import infer
    from runtime.fleet import cli

    assert (cli.positive_int, cli.non_negative_int) == (infer.positive_int, infer.non_negative_int)  # one definition each
    types = {action.dest: action.type for action in cli.build_parser()._actions}
    assert types["cpus_per_worker"] is cli.positive_float and types["retries"] is cli.non_negative_int


# (--cpus-per-worker 0 and --retries -1 are refused by runtime.arguments' types, tested in
# tests/runtime/test_arguments.py and shared with runtime.infer: not repeated here)
@pytest.mark.parametrize("case", ["missing", "no-match", "folder", "same-name", "no-engines", "no-parent"])
def test_bad_input_is_one_line_before_anything_starts(engines, tmp_path, case):
    video = write_video(tmp_path / "v.mp4", 3, (48, 64))
    other = tmp_path / "sub"
    other.mkdir()
    write_video(other / "v.mp4", 3, (48, 64))
    out_dir = tmp_path / "out"
    videos = {"missing": [str(tmp_path / "nope.mp4")], "no-match": [str(tmp_path / "*.mkv")], "folder": [str(other)],
              "same-name": [str(video), str(other / "v.mp4")]}.get(case, [str(video)])
    extra = {"no-engines": ["--engines", str(tmp_path / "none")],
             "no-parent": ["--out-dir", str(tmp_path / "a" / "b")]}.get(case, [])
    status, err = run_fleet("--videos", *videos, "--engines", str(engines), "--out-dir", str(out_dir), *extra)
    assert status == 2, err
    line = err.strip().splitlines()[-1]
    expected = {"missing": "error: video not found:", "no-match": "error: no file matches",
                "folder": "is a folder; pass the videos in it", "same-name": "share the name 'v'",
                "no-engines": "python -m export.build_engines", "no-parent": "does not exist; create it"}[case]
    assert expected in line
    assert "Ray" not in err  # refused before a cluster was started
    assert not out_dir.exists() or not list(out_dir.iterdir())


def test_second_job_on_the_same_folder_is_refused(engines, tmp_path):
    video = write_video(tmp_path / "v.mp4", 3, (48, 64))
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    (out_dir / LOCK_NAME).write_text(json.dumps({"host": os.uname().nodename, "pid": os.getpid(), "started": "now"}))
    status, err = run_fleet("--videos", str(video), "--engines", str(engines), "--out-dir", str(out_dir))
    assert status == 2
    assert f"another fleet job (pid {os.getpid()}" in err.strip().splitlines()[-1]
    assert (out_dir / LOCK_NAME).exists()  # still theirs


def _session_processes(sid: int) -> list[int]:
    """Processes still alive in session ``sid`` (the fleet's Ray processes started in it)."""
    alive = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid and fields[0] != "Z":
            alive.append(int(stat.parent.name))
    return alive


def test_ctrl_c_stops_the_job_and_leaves_no_partial_file(engines, tmp_path):
    require_module("ray", "the fleet runs its workers on a Ray cluster")
    video = write_video(tmp_path / "long.mp4", 400, (48, 64))
    out_dir = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "runtime.fleet", "--videos", str(video), "--engines", str(engines), "--out-dir",
           str(out_dir), "--workers", "1", "--interval", "1", "--labels", "--overlay", "--no-progress"]
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True, start_new_session=True)
    writing = lambda: list(out_dir.glob(".partial/*/.labels.partial/*.png"))  # noqa: E731
    deadline = time.time() + 180
    while time.time() < deadline and not writing() and proc.poll() is None:
        time.sleep(0.05)
    assert writing(), "the job never started writing: " + (proc.stderr.read() if proc.poll() is not None else "")
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does: the whole process group
    sent = time.time()
    proc.wait(timeout=60)
    took = time.time() - sent
    err = proc.stderr.read()
    assert proc.returncode == 130, err[-2000:]
    assert took < 20, f"took {took:.1f} s to stop"
    assert "error: stopped by SIGINT" in err.strip().splitlines()[-1]
    assert not partial_files(out_dir) and not (out_dir / "long").exists()
    summary = json.loads((out_dir / "summary.json").read_text())
    assert summary["status"] == "stopped" and summary["videos"][0]["status"] == "stopped"
    time.sleep(1.0)
    assert not _session_processes(proc.pid), "Ray processes outlived the job"


def test_the_command_line_fills_the_typed_options(tmp_path):
    from runtime.errors import UserError
    from runtime.fleet.cli import parse_options
    from runtime.fleet.options import FleetOptions

    out = tmp_path / "out"
    assert parse_options(["--videos", "a.mp4", "--out-dir", str(out)]) == FleetOptions(videos=["a.mp4"], out_dir=out)
    argv = ["--videos", "a.mp4", "clips/*.mp4", "--out-dir", str(out), "--labels", "--interval", "3", "--workers", "2",
            "--cpus-per-worker", "0.5", "--retries", "0", "--no-progress", "--backend", "onnxruntime"]
    assert parse_options(argv) == FleetOptions(videos=["a.mp4", "clips/*.mp4"], out_dir=out, labels=True, interval=3,
                                               workers=2, cpus_per_worker=0.5, retries=0, progress=False,
                                               backend="onnxruntime")
    for bad, line in (({"interval": 0}, "--interval must be >= 1, got 0"),
                      ({"cpus_per_worker": 0.0}, "--cpus-per-worker must be > 0, got 0.0"),
                      ({"backend": "cuda"}, "--backend must be one of auto, ")):
        with pytest.raises(UserError, match="^" + line):
            FleetOptions(videos=["a.mp4"], out_dir=out, **bad)
