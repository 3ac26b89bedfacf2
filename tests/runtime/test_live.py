"""Live sources against a real RTSP server (GStreamer's, tests/runtime/rtsp_server.py) playing a
real clip: the labels of what arrives equal those of the same file, a server that vanishes and
comes back is reconnected with a keyframe and a recorded gap, one that stays away ends with exit 3
and complete outputs, Ctrl-C and --duration end a run cleanly, and a run slower than its source
drops the oldest frames (counted) with memory bounded."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import av
import numpy as np
import pytest

from engine_format.manifest import load_manifest
from runtime import Segmenter
from runtime.infer import Run
from runtime.live import LIVE_BUFFER
from runtime.sources import is_live, source_stem
from runtime.loading import load_backend
from runtime.options import InferOptions
from tests.conftest import CLIP, ENGINE_SIZE, REPO, clip_frames, run_module, shared_data
from tests.runtime.live_server import RtspServer, require_rtsp_server
from tests.runtime.output_checks import read_label_pngs
from tests.runtime.videos import write_video

FRAMES = 50  # 2 s at 25 fps


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    """The first 50 frames of the real clip at the engine size, as H.264 (what the server plays)."""
    frames = [f[0] for f in clip_frames(shared_data(CLIP, "real clip"), FRAMES, ENGINE_SIZE)]
    return write_video(tmp_path_factory.mktemp("live") / "clip.mp4", FRAMES, ENGINE_SIZE, frames=frames)


@pytest.fixture(scope="module")
def file_labels(clip, engines, tmp_path_factory) -> dict[int, list[np.ndarray]]:
    """interval -> the label maps of the clip segmented from the file."""
    tmp, out = tmp_path_factory.mktemp("file-labels"), {}
    for interval in (1, 4):
        folder = tmp / f"l{interval}"
        proc = run_module("runtime.infer", "--video", str(clip), "--engines", str(engines), "--no-progress",
                          "--backend", "onnxruntime", "--interval", str(interval), "--labels-dir", str(folder))
        assert proc.returncode == 0, proc.stderr[-2000:]
        out[interval] = list(read_label_pngs(folder, FRAMES))
    return out


@pytest.fixture
def server(clip):
    require_rtsp_server()
    srv = RtspServer(clip).start()
    yield srv
    srv.kill()


def command(engines: Path, url: str, tmp: Path, interval: int, *extra: str) -> list[str]:
    return [sys.executable, "-m", "runtime.infer", "--video", url, "--engines", str(engines), "--no-progress",
            "--backend", "onnxruntime", "--interval", str(interval), "--labels-dir", str(tmp / "labels"),
            "--stats", str(tmp / "stats.json"), *extra]


def start(cmd: list[str], tmp: Path) -> subprocess.Popen:
    return subprocess.Popen(cmd, cwd=tmp, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_frames(tmp: Path, count: int, proc: subprocess.Popen, timeout: float = 120.0) -> None:
    """Until the run has written ``count`` label PNGs (into its partial folder)."""
    partial = tmp / ".labels.partial"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if partial.is_dir() and len(list(partial.glob("*.png"))) >= count:
            return
        if proc.poll() is not None:
            raise AssertionError(f"the run ended early: {proc.stderr.read()[-2000:]}")
        time.sleep(0.02)
    raise AssertionError(f"no {count} frames written within {timeout} s")


def assert_equal_labels(got: list[np.ndarray], want: list[np.ndarray], what: str) -> None:
    assert len(got) == len(want), what
    for k, (g, w) in enumerate(zip(got, want)):
        assert np.array_equal(g, w), f"{what}: frame {k}, {int(np.count_nonzero(g != w))} pixels differ"


def test_sources_named_live():
    assert is_live("rtsp://cam.local:554/stream1") and is_live("udp://0.0.0.0:5000") and is_live("/dev/video0")
    assert not is_live("road.mp4") and not is_live(Path("rtsp.mp4"))
    assert source_stem("rtsp://user:pw@cam.local:554/stream1?x=1") == "cam.local_554_stream1"


def test_a_url_nobody_answers_is_one_line_before_any_output(engines, tmp_path):
    from tests.runtime.live_server import free_port

    url = f"rtsp://127.0.0.1:{free_port()}/nothing"
    proc = subprocess.run(command(engines, url, tmp_path, 4), cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr[-2000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: {url} is not a readable stream (") and "server or camera is up" in last, last
    assert list(tmp_path.iterdir()) == []


def test_an_rtsp_stream_is_labelled_as_its_file_is(engines, server, file_labels, tmp_path):
    proc = subprocess.run(command(engines, server.url, tmp_path, 1, "--no-drop"), cwd=tmp_path, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    stats = json.loads((tmp_path / "stats.json").read_text())
    assert stats["live"] and stats["frames"] == FRAMES and stats["gaps"] == [] and stats["dropped_frames"] == 0
    assert stats["latency_ms"]["max"] > 0
    assert_equal_labels(list(read_label_pngs(tmp_path / "labels", FRAMES)), file_labels[1], "per frame (l = 1)")


def test_the_python_api_streams_an_rtsp_source(engines, server, file_labels):
    options = InferOptions(engines=engines, backend="onnxruntime", interval=1, drop=False)
    with Segmenter.from_options(options, log=lambda line: None) as seg:
        labels = [r.labels for r in seg.stream(server.url)]
    assert_equal_labels(labels, file_labels[1], "Segmenter.stream(url), per frame")


def test_a_server_that_vanishes_and_returns_is_reconnected_with_a_keyframe(engines, server, file_labels, tmp_path):
    run = start(command(engines, server.url, tmp_path, 4, "--no-drop"), tmp_path)
    wait_for_frames(tmp_path, 12, run)
    server.kill()
    time.sleep(2.5)
    server.start()  # it plays the clip again from its first frame
    _, err = run.communicate(timeout=300)
    assert run.returncode == 0, err[-3000:]
    stats = json.loads((tmp_path / "stats.json").read_text())
    (gap,) = stats["gaps"]
    before = gap["after_frame"]
    assert 12 <= before < FRAMES and gap["seconds"] >= 2.0 and gap["attempts"] >= 1
    assert stats["frames"] == before + FRAMES
    assert stats["keyframes"] == -(-before // 4) + -(-FRAMES // 4)  # 0, 4, ... then the reconnect, +4, ...
    pngs = list(read_label_pngs(tmp_path / "labels", before + FRAMES))
    assert_equal_labels(pngs[before:], file_labels[4], "after the reconnect (a keyframe, then every 4th)")
    # the last frames before the cut may be decoded from incomplete packets (the kill lands mid-frame,
    # and the decoder flushes the frames it holds for reordering), so up to 4 of them may differ
    assert_equal_labels(pngs[: before - 4], file_labels[4][: before - 4], "before the drop-out")
    assert "reconnected after" in err


def test_a_server_gone_for_good_ends_with_exit_3_and_complete_outputs(engines, server, tmp_path):
    run = start(command(engines, server.url, tmp_path, 4, "--no-drop", "--reconnect", "2"), tmp_path)
    wait_for_frames(tmp_path, 10, run)
    server.kill()
    _, err = run.communicate(timeout=300)
    assert run.returncode == 3, err[-3000:]
    stats = json.loads((tmp_path / "stats.json").read_text())
    assert stats["frames"] >= 10 and "did not come back (2 reconnect attempts" in stats["source_gone"]
    assert len(list(read_label_pngs(tmp_path / "labels", stats["frames"]))) == stats["frames"]
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"error: {server.url}: ") and f"the {stats['frames']} frames received were segmented" in last


def test_ctrl_c_and_duration_end_a_live_run_with_complete_outputs(engines, server, tmp_path):
    run = start(command(engines, server.url, tmp_path, 4, "--out", str(tmp_path / "o.mp4")), tmp_path)
    wait_for_frames(tmp_path, 8, run)
    run.send_signal(signal.SIGINT)
    _, err = run.communicate(timeout=120)
    assert run.returncode == 0, err[-3000:]
    assert "stopped by SIGINT; every output is complete" in err
    stats = json.loads((tmp_path / "stats.json").read_text())
    assert 8 <= stats["frames"] < FRAMES
    with av.open(str(tmp_path / "o.mp4")) as container:
        assert container.streams.video[0].frames == stats["frames"]
    assert len(list(read_label_pngs(tmp_path / "labels", stats["frames"]))) == stats["frames"]
    timed = tmp_path / "timed"
    timed.mkdir()
    proc = subprocess.run(command(engines, server.url, timed, 4, "--duration", "0.5"), cwd=timed, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    frames = json.loads((timed / "stats.json").read_text())["frames"]
    assert 1 <= frames < FRAMES and len(list(read_label_pngs(timed / "labels", frames))) == frames


def udp_sender(clip: Path, url: str, stop: threading.Event) -> None:
    """Send the clip's H.264 packets as they are (no re-encoding), looped, as MPEG-TS over UDP in
    real time (25 fps), until ``stop``: a live UDP camera feed, received from wherever it is."""
    with av.open(str(clip)) as src, av.open(url, "w", format="mpegts") as dst:  # the template lives with src
        stream = src.streams.video[0]
        packets = [p for p in src.demux(stream) if p.size]
        step = packets[1].pts - packets[0].pts
        out = dst.add_stream_from_template(stream)
        k = 0
        while not stop.is_set():
            for p in packets:
                shift = (k // len(packets)) * len(packets) * step
                copy = av.Packet(bytes(p))
                copy.stream, copy.time_base, copy.is_keyframe = out, p.time_base, p.is_keyframe
                copy.pts, copy.dts = p.pts + shift, (p.dts if p.dts is not None else p.pts) + shift
                dst.mux(copy)
                k += 1
                if stop.wait(0.04):
                    return


def test_a_udp_mpegts_feed_joined_mid_stream_is_labelled_as_its_file(engines, tmp_path):
    """Joined wherever the feed is, the frames received are consecutive frames of the clip (looped)
    and their labels (l = 1) equal the file's for those frames."""
    from tests.runtime.live_server import free_port

    frames = [f[0] for f in clip_frames(shared_data(CLIP, "real clip"), FRAMES, ENGINE_SIZE)]
    clip = tmp_path / "gop5.mp4"  # a keyframe every 5 frames: a receiver can start anywhere
    with av.open(str(clip), "w") as out:
        stream = out.add_stream("libx264", rate=25, options={"keyint": "5", "min-keyint": "5", "scenecut": "0"})
        stream.height, stream.width, stream.pix_fmt = *ENGINE_SIZE, "yuv420p"
        for rgb in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    files = tmp_path / "file"
    files.mkdir()
    proc = subprocess.run(command(engines, str(clip), files, 1), cwd=files, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    want = list(read_label_pngs(files / "labels", FRAMES))
    port = free_port()
    stop = threading.Event()
    sender = threading.Thread(target=udp_sender, args=(clip, f"udp://127.0.0.1:{port}?pkt_size=1316", stop), daemon=True)
    sender.start()
    try:
        proc = subprocess.run(command(engines, f"udp://127.0.0.1:{port}", tmp_path, 1, "--no-drop", "--max-frames", "30"),
                              cwd=tmp_path, capture_output=True, text=True, timeout=300)
    finally:
        stop.set()
        sender.join(10)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = list(read_label_pngs(tmp_path / "labels", 30))
    first = next((k for k, w in enumerate(want) if np.array_equal(w, got[0])), None)
    assert first is not None, "the first frame received is no frame of the clip"
    assert_equal_labels(got, [want[(first + k) % FRAMES] for k in range(30)], f"UDP from clip frame {first}")
    assert json.loads((tmp_path / "stats.json").read_text())["live"]


def test_a_source_faster_than_the_segmenter_drops_the_oldest_frames(engines, clip, tmp_path):
    """The clip read as a live source (``--live``) by a backend slowed to 60 ms a step: the
    decoder outruns it, the oldest frames are dropped and counted, the buffer never holds more
    than its bound, and the frame after each drop is a keyframe."""
    options = InferOptions(video=[clip], engines=engines, backend="onnxruntime", interval=4, live=True,
                           labels_dir=tmp_path / "labels", stats=tmp_path / "stats.json", progress=False)
    loaded = load_backend("onnxruntime", load_manifest(engines), log=lambda line: None)
    backend, keyframes = loaded.backend, []
    slow_key, slow_prop = backend.keyframe_step, backend.propagation_step

    def keyframe_step(frames):
        keyframes.append(1)
        time.sleep(0.06)
        return slow_key(frames)

    def propagation_step(state, frames):
        time.sleep(0.06)
        return slow_prop(state, frames)

    backend.keyframe_step, backend.propagation_step = keyframe_step, propagation_step
    try:
        stats = Run(options, log=lambda line: None, loaded=loaded).process()
    finally:
        backend.close()
    assert stats["live"] and stats["dropped_frames"] > 0
    assert stats["frames"] + stats["dropped_frames"] == FRAMES
    assert stats["input_buffer_peak"] <= LIVE_BUFFER
    assert sum(d["dropped"] for d in stats["drops"]) == stats["dropped_frames"]
    # a keyframe after every drop, on top of the regular ones
    assert stats["keyframes"] >= len(stats["drops"]) + 1
    assert len(list(read_label_pngs(tmp_path / "labels", stats["frames"]))) == stats["frames"]


def test_segment_seconds_writes_complete_overlay_files(engines, clip, tmp_path):
    proc = run_module("runtime.infer", "--video", str(clip), "--engines", str(engines), "--no-progress",
                      "--out", str(tmp_path / "o.mp4"), "--segment-seconds", "0.8", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    names = sorted(p.name for p in tmp_path.iterdir() if p.suffix == ".mp4")
    assert names == ["o_000.mp4", "o_001.mp4", "o_002.mp4"]  # 20 + 20 + 10 frames
    counts = []
    for name in names:
        with av.open(str(tmp_path / name)) as container:
            counts.append(sum(1 for _ in container.decode(video=0)))
    assert counts == [20, 20, 10]
