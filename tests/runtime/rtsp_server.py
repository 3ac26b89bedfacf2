"""A real RTSP server for the live-source tests: GStreamer's RTSP server (Debian's
gir1.2-gst-rtsp-server-1.0, python3-gi, gstreamer1.0-plugins-{base,good,bad}) playing an H.264
mp4 in real time at rtsp://127.0.0.1:PORT/clip, each client from the start of the file.

Run with the system interpreter (``/usr/bin/python3 rtsp_server.py FILE PORT``), not the project's
virtual environment, which has no PyGObject; prints ``ready`` once it listens. Not imported by the
tests (tests/runtime/live_server.py starts and stops it)."""

import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402

Gst.init(None)
path, port = sys.argv[1], sys.argv[2]
server = GstRtspServer.RTSPServer()
server.set_address("127.0.0.1")
server.set_service(port)
factory = GstRtspServer.RTSPMediaFactory()
factory.set_launch(f"( filesrc location={path} ! qtdemux ! h264parse ! rtph264pay name=pay0 pt=96 config-interval=1 )")
server.get_mount_points().add_factory("/clip", factory)
if server.attach(None) == 0:
    sys.exit(f"cannot listen on 127.0.0.1:{port}")
print("ready", flush=True)
GLib.MainLoop().run()
