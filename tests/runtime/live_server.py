"""Starting and stopping the real RTSP server of tests/runtime/rtsp_server.py from a test."""

from __future__ import annotations

import socket
import subprocess
import tempfile
from pathlib import Path

import pytest

SYSTEM_PYTHON = "/usr/bin/python3"  # Debian's, with PyGObject (python3-gi); the venv has none
SCRIPT = Path(__file__).with_name("rtsp_server.py")
PACKAGES = "gir1.2-gst-rtsp-server-1.0 python3-gi gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad"


def require_rtsp_server() -> None:
    """Skip, naming the packages, where GStreamer's RTSP server is not installed (.ci/run installs it)."""
    probe = "import gi; gi.require_version('GstRtspServer', '1.0'); from gi.repository import GstRtspServer"
    try:
        proc = subprocess.run([SYSTEM_PYTHON, "-c", probe], capture_output=True, text=True, timeout=60)
    except FileNotFoundError:
        pytest.skip(f"no {SYSTEM_PYTHON} for GStreamer's RTSP server (apt-get install {PACKAGES})")
    if proc.returncode != 0:
        pytest.skip(f"GStreamer's RTSP server is not installed (apt-get install {PACKAGES}): "
                    f"{proc.stderr.strip().splitlines()[-1]}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RtspServer:
    """``start()`` serves ``clip`` at ``url`` (each client from its first frame); ``kill()`` makes
    it vanish at once, as a camera losing power does; ``start()`` again on the same port."""

    def __init__(self, clip: Path) -> None:
        self.clip, self.port = clip, free_port()
        self.url = f"rtsp://127.0.0.1:{self.port}/clip"
        self.proc: subprocess.Popen | None = None

    def start(self) -> RtspServer:
        errors = tempfile.TemporaryFile("w+")  # a file, not a pipe: GStreamer's warnings never block it
        self.proc = subprocess.Popen([SYSTEM_PYTHON, str(SCRIPT), str(self.clip), str(self.port)],
                                     stdout=subprocess.PIPE, stderr=errors, text=True)
        line = self.proc.stdout.readline().strip()
        if line != "ready":
            self.kill()
            errors.seek(0)
            raise RuntimeError(f"the RTSP server did not start: {line} {errors.read()[-2000:]}")
        return self

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None
