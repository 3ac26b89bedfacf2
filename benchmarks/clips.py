"""Short clips cut from long videos (re-encoded H.264, same size and frame rate), for measurements
and tests that need several real videos of a known length."""

from __future__ import annotations

from pathlib import Path

import av


def cut_clip(src: Path, dst: Path, start: int, count: int, faststart: bool = False) -> Path:
    """Write frames [start, start + count) of ``src`` to ``dst``; ``faststart`` puts the mp4 index
    first, so a copy cut short still opens. Frames are decoded and encoded one at a time."""
    options = {"movflags": "faststart"} if faststart else {}
    with av.open(str(src)) as inp, av.open(str(dst), "w", options=options) as out:
        s_in = inp.streams.video[0]
        s_out = out.add_stream("libx264", rate=s_in.average_rate)
        s_out.width, s_out.height, s_out.pix_fmt = s_in.codec_context.width, s_in.codec_context.height, "yuv420p"
        for i, frame in enumerate(inp.decode(s_in)):
            if i >= start + count:
                break
            if i >= start:
                for packet in s_out.encode(av.VideoFrame.from_ndarray(frame.to_ndarray(format="rgb24"), format="rgb24")):
                    out.mux(packet)
        for packet in s_out.encode():
            out.mux(packet)
    return dst


def frame_count(path: Path) -> int:
    """Frames in a video, by decoding it (headers can be wrong)."""
    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))


def split_video(src: Path, folder: Path, pieces: int) -> list[Path]:
    """Cut ``src`` into ``pieces`` consecutive clips of (nearly) equal length, named <stem>-<i>.mp4."""
    total = frame_count(src)
    bounds = [round(i * total / pieces) for i in range(pieces + 1)]
    return [cut_clip(src, folder / f"{src.stem}-{i}.mp4", bounds[i], bounds[i + 1] - bounds[i]) for i in range(pieces)]
