"""Bad inputs, interrupted runs: one clear line, a non-zero exit, no partial output under the final name."""

import ctypes
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import av
import numpy as np
import pytest
from PIL import Image

from tests.conftest import ENGINE_SIZE, REPO, run_module
from tests.runtime.videos import write_video


def infer(engines: Path, video: Path, tmp: Path, *extra: str) -> subprocess.CompletedProcess:
    return run_module("runtime.infer", "--video", str(video), "--engines", str(engines), "--no-progress", *extra, cwd=tmp)


def last_line(proc: subprocess.CompletedProcess) -> str:
    return proc.stderr.strip().splitlines()[-1]


def no_partials(folder: Path) -> bool:
    return not [p for p in folder.rglob("*") if "partial" in p.name]


@pytest.mark.parametrize("case", ["missing", "folder", "text", "empty"])
def test_unreadable_inputs(engines, tmp_path, case):
    video = {"missing": tmp_path / "nope.mp4", "folder": tmp_path / "frames", "text": tmp_path / "notes.mp4",
             "empty": tmp_path / "empty.mp4"}[case]
    if case == "folder":
        video.mkdir()
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(video / "000000.png")
    elif case == "text":
        video.write_text("this is not a video\n" * 100)
    elif case == "empty":
        video.write_bytes(b"")
    out = tmp_path / "o.mp4"
    proc = infer(engines, video, tmp_path, "--out", str(out))
    assert proc.returncode == 2, proc.stderr
    line = last_line(proc)
    assert line.startswith("error: ") and str(video) in line
    expected = {"missing": "video not found", "folder": "image sequences are not supported",
                "text": "not a readable video", "empty": "not a readable video"}[case]
    assert expected in line
    assert not out.exists() and no_partials(tmp_path)


def test_zero_frame_video(engines, tmp_path):
    video = tmp_path / "zero.mp4"
    with av.open(str(video), "w") as c:
        s = c.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        c.start_encoding()  # write a header, then no frames at all
        for packet in s.encode():
            c.mux(packet)
    assert video.stat().st_size > 0
    proc = infer(engines, video, tmp_path, "--out", str(tmp_path / "o.mp4"))
    assert proc.returncode == 2
    assert "no video stream" in last_line(proc) or "no decodable video frames" in last_line(proc)
    assert not (tmp_path / "o.mp4").exists() and no_partials(tmp_path)


def test_truncated_video_processes_every_decodable_frame(engines, tmp_path, real_clip):
    data = real_clip.read_bytes()
    video = tmp_path / "cut.mp4"
    video.write_bytes(data[: len(data) // 2])
    out, stats = tmp_path / "o.mp4", tmp_path / "s.json"
    proc = infer(engines, video, tmp_path, "--out", str(out), "--stats", str(stats), "--interval", "5")
    assert proc.returncode == 3, proc.stderr
    s = json.loads(stats.read_text())
    assert 0 < s["frames"] < 221 and s["lost_frames"] == 221 - s["frames"]
    assert f"{s['lost_frames']} of 221 announced frames could not be decoded" in last_line(proc)
    with av.open(str(out)) as c:
        assert sum(1 for _ in c.decode(video=0)) == s["frames"]
    assert no_partials(tmp_path)


@pytest.mark.parametrize("size", [(61, 97), (48, 64)])
def test_odd_and_tiny_videos_keep_their_size(engines, tmp_path, size):
    video = write_video(tmp_path / "v.mp4", 9, size)
    out = tmp_path / "o.mp4"
    proc = infer(engines, video, tmp_path, "--out", str(out), "--labels-dir", str(tmp_path / "lab"))
    assert proc.returncode == 0, proc.stderr
    with av.open(str(out)) as c:
        s = c.streams.video[0]
        assert (s.codec_context.height, s.codec_context.width) == size
        assert sum(1 for _ in c.decode(s)) == 9
    assert np.asarray(Image.open(tmp_path / "lab" / "000008.png")).shape == size


def test_rotated_stream_is_segmented_upright(engines, tmp_path):
    frames = [np.zeros((48, 64, 3), np.uint8) for _ in range(4)]
    for f in frames:
        f[:10, :20] = 255  # a white block in the top-left corner as stored
    video = write_video(tmp_path / "rot.mp4", 4, (48, 64), rotation=90, frames=frames)
    from runtime.video import VideoReader

    reader = VideoReader(video)
    first = next(iter(reader))
    assert reader.size == (64, 48) and first.rgb.shape == (64, 48, 3)
    bright = np.argwhere(first.rgb[..., 0] > 128)
    assert bright[:, 0].min() >= 40 and bright[:, 1].max() < 16  # counter-clockwise: now bottom-left
    out = tmp_path / "o.mp4"
    proc = infer(engines, video, tmp_path, "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    with av.open(str(out)) as c:
        assert (c.streams.video[0].codec_context.height, c.streams.video[0].codec_context.width) == (64, 48)


def test_variable_frame_rate_stream(engines, tmp_path):
    video = write_video(tmp_path / "vfr.mp4", 12, (48, 64), pts_steps=[40, 20, 60, 33])
    stats = tmp_path / "s.json"
    proc = infer(engines, video, tmp_path, "--stats", str(stats), "--out", str(tmp_path / "o.mp4"))
    assert proc.returncode == 0, proc.stderr
    assert json.loads(stats.read_text())["frames"] == 12


def test_output_paths(engines, tmp_path):
    video = write_video(tmp_path / "v.mp4", 3, (48, 64))
    proc = infer(engines, video, tmp_path, "--out", str(tmp_path / "missing" / "o.mp4"))
    assert proc.returncode == 2 and "does not exist" in last_line(proc)
    proc = infer(engines, video, tmp_path, "--out", str(video))
    assert proc.returncode == 2 and "is the input video itself" in last_line(proc)
    assert video.stat().st_size > 0
    proc = infer(engines, video, tmp_path, "--out", "/proc/gsvnet-test.mp4")
    assert proc.returncode == 2 and "not writable" in last_line(proc)
    proc = infer(engines, video, tmp_path, "--out", str(tmp_path / "o.avi"))
    assert proc.returncode == 2 and ".mp4" in last_line(proc)
    proc = infer(engines, video, tmp_path)
    assert proc.returncode == 2 and "nothing to write" in last_line(proc)


PR_CAPBSET_DROP = 24  # prctl option, <linux/prctl.h>
CAP_DAC_OVERRIDE = 1  # <linux/capability.h>: bypass file write/read/execute permission checks
CLONE_NEWUSER = 0x10000000  # <linux/sched.h>


def _drop_dac_override() -> None:
    """``preexec_fn``: remove CAP_DAC_OVERRIDE from the bounding set (needs CAP_SETPCAP). A root
    process gets exactly its bounding set as capabilities at exec, so the child then obeys write
    permissions like any user."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_CAPBSET_DROP, CAP_DAC_OVERRIDE, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP, CAP_DAC_OVERRIDE)")


def _enter_user_namespace() -> None:
    """``preexec_fn``: move into a new user namespace with no uid mapping (for a root without
    CAP_SETPCAP). Its uid there maps to no one, so exec keeps no capability, and capabilities never
    apply to files of unmapped owners; the kernel still sees uid 0, so the owner's permission bits
    of root's files apply: it reads and writes pytest's 0700 folders, not a 0555 one."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWUSER) != 0:
        raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWUSER)")


#: ways for a root test to run a command that obeys file permissions, in the order tried
AS_UNPRIVILEGED_ROOT = {"bounding set without CAP_DAC_OVERRIDE": _drop_dac_override,
                        "user namespace": _enter_user_namespace}


def _failure(preexec: Callable[[], None]) -> str | None:
    """None when ``preexec`` works in a child process, else its error (subprocess would only say
    'Exception occurred in preexec_fn')."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report and leave without running any Python cleanup
        os.close(read)
        try:
            preexec()
        except OSError as e:
            os.write(write, str(e).encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as f:
        message = f.read().decode()
    os.waitpid(pid, 0)
    return message or None


def _root_preexec() -> tuple[Callable[[], None] | None, str]:
    """(the first way in AS_UNPRIVILEGED_ROOT that works here, its name), or (None, why each failed)."""
    failures = []
    for name, preexec in AS_UNPRIVILEGED_ROOT.items():
        error = _failure(preexec)
        if error is None:
            return preexec, name
        failures.append(f"{name}: {error}")
    return None, "; ".join(failures)


@pytest.mark.parametrize("way", list(AS_UNPRIVILEGED_ROOT))
def test_each_way_to_run_as_unprivileged_root_obeys_write_permissions(way, tmp_path):
    """The child of each way is refused a 0555 folder and still writes its own 0700 one (pytest's
    temporary folders are 0700: the CLI must still read the engines and the video there)."""
    error = _failure(AS_UNPRIVILEGED_ROOT[way])
    if error is not None:  # both work as root on a machine like CI's; test_read_only_folder tries each
        pytest.skip(f"{way} is not available here: {error}")
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    tmp_path.chmod(0o700)
    script = f"touch {ro}/x; echo ro=$?; touch {tmp_path}/y; echo own=$?"
    proc = subprocess.run(["sh", "-c", script], preexec_fn=AS_UNPRIVILEGED_ROOT[way], capture_output=True, text=True,
                          timeout=60)
    assert proc.stdout.split() == ["ro=1", "own=0"], proc.stdout + proc.stderr
    assert "Permission denied" in proc.stderr and list(ro.iterdir()) == []


def test_read_only_folder(engines, tmp_path):
    """A folder without write permission, also when the tests run as root (as CI does): the CLI
    then runs without the capability that lets root write anywhere (AS_UNPRIVILEGED_ROOT)."""
    video = write_video(tmp_path / "v.mp4", 3, (48, 64))
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    preexec = None
    if os.geteuid() == 0:
        preexec, why = _root_preexec()
        if preexec is None:  # a sandbox that allows neither (a machine like CI's allows both)
            pytest.skip(f"running as root and no way to run the CLI without CAP_DAC_OVERRIDE here ({why})")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "runtime.infer", "--video", str(video), "--engines", str(engines), "--no-progress",
           "--out", str(ro / "o.mp4")]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300, preexec_fn=preexec)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "not writable" in last_line(proc) and "Permission denied" in last_line(proc)
    assert list(ro.iterdir()) == []


def test_engines_folder_problems(engines, tmp_path):
    import shutil

    video = write_video(tmp_path / "v.mp4", 3, (48, 64))
    empty = tmp_path / "empty"
    empty.mkdir()
    proc = infer(empty, video, tmp_path, "--out", str(tmp_path / "o.mp4"))
    assert proc.returncode == 2 and "no manifest.json" in last_line(proc) and "export.build_engines" in last_line(proc)
    broken = tmp_path / "broken"
    shutil.copytree(engines, broken)
    (broken / "manifest.json").write_text("{ not json")
    proc = infer(broken, video, tmp_path, "--out", str(tmp_path / "o.mp4"))
    assert proc.returncode == 2 and "not valid JSON" in last_line(proc) and "--force" in last_line(proc)
    shutil.rmtree(broken)
    shutil.copytree(engines, broken)
    with open(broken / "guide.onnx", "ab") as f:
        f.write(b"\0")
    proc = infer(broken, video, tmp_path, "--out", str(tmp_path / "o.mp4"))
    line = last_line(proc)
    assert proc.returncode == 2 and "guide.onnx" in line and "sha256" in line and "export.build_engines" in line, proc.stderr
    proc = infer(engines, video, tmp_path, "--out", str(tmp_path / "o.mp4"), "--size", "1024x2048")
    assert proc.returncode == 2 and f"at {ENGINE_SIZE[0]}x{ENGINE_SIZE[1]}, not swiftnet_r18 at 1024x2048" in last_line(proc)
    proc = infer(engines, video, tmp_path, "--out", str(tmp_path / "o.mp4"), "--keyframe-net", "bisenet_r18")
    assert proc.returncode == 2 and "--keyframe-net bisenet_r18" in last_line(proc)
    assert not (tmp_path / "o.mp4").exists()


@pytest.mark.parametrize("flags,needle", [
    (["--interval", "0"], "--interval: must be >= 1"),
    (["--interval", "-2"], "--interval: must be >= 1"),
    (["--backend", "cuda9"], "invalid choice: 'cuda9'"),
    (["--keyframe-net", "vgg"], "invalid choice: 'vgg'"),
    (["--alpha", "2"], "must be in [0, 1]"),
])
def test_bad_flags(engines, tmp_path, flags, needle):
    proc = infer(engines, tmp_path / "v.mp4", tmp_path, "--out", str(tmp_path / "o.mp4"), *flags)
    assert proc.returncode == 2 and needle in proc.stderr


@pytest.mark.parametrize("sig,code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signal_stops_quickly_and_removes_outputs(engines, tmp_path, sig, code):
    video = write_video(tmp_path / "long.mp4", 600, (48, 64))
    out, labels = tmp_path / "o.mp4", tmp_path / "labels"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "runtime.infer", "--video", str(video), "--engines", str(engines), "--out", str(out),
           "--labels-dir", str(labels), "--no-progress", "--interval", "1"]
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not list(tmp_path.glob(".labels.partial/*.png")):
        time.sleep(0.05)
    assert list(tmp_path.glob(".labels.partial/*.png")), "the run never started writing"
    sent = time.time()
    proc.send_signal(sig)
    proc.wait(timeout=30)
    took = time.time() - sent
    assert proc.returncode == code, proc.stderr.read()
    assert took < 1.5, f"took {took:.2f} s to stop"
    assert not out.exists() and not labels.exists() and no_partials(tmp_path)
    rerun = infer(engines, video, tmp_path, "--out", str(out), "--max-frames", "5")
    assert rerun.returncode == 0 and out.exists()
