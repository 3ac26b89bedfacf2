"""What a ``--video`` value names: a file, a network stream (by its URL scheme) or a camera."""

from __future__ import annotations

import re
from pathlib import Path

#: URL schemes FFmpeg opens as network streams; a source named so is live unless told otherwise
LIVE_SCHEMES = ("rtsp", "rtsps", "rtmp", "rtmps", "http", "https", "udp", "tcp", "srt", "rtp")
Source = Path | str  # a file as a Path, a network URL as a string


def is_url(source: object) -> bool:
    """``rtsp://...``, ``udp://...`` and the other LIVE_SCHEMES (not ``file:``)."""
    match = re.match(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://", str(source))
    return bool(match) and match.group(1).lower() in LIVE_SCHEMES


def is_device(source: object) -> bool:
    """A V4L2 camera: ``/dev/videoN``."""
    return re.fullmatch(r"/dev/video\d+", str(source)) is not None


def is_live(source: Source) -> bool:
    """Live by its name: a network URL or a camera device (``--live`` forces it for anything else)."""
    return is_url(source) or is_device(source)


def resolve_live(source: Source, live: bool | None) -> bool:
    """Whether ``source`` is read as live: ``live`` as given (``--live``), else by its name."""
    return is_live(source) if live is None else live


def as_source(value: object) -> Source:
    """A command-line or API ``--video`` value: URLs stay strings (``Path`` would fold ``//``)."""
    text = str(value)
    return text if is_url(text) else Path(value)  # type: ignore[arg-type]


def source_stem(source: Source) -> str:
    """A file name for a source's outputs: the file's stem, or the URL's host and path."""
    if not is_url(source):
        return Path(source).stem
    rest = str(source).split("://", 1)[1].split("?", 1)[0].split("@")[-1]
    return re.sub(r"[^A-Za-z0-9._-]+", "_", rest).strip("_.") or "stream"
