"""The I/O ceiling of a run with an overlay: how fast ``runtime.infer``'s own decode, resize, blend
and encode threads go with no network at all (``python -m benchmarks.io_ceiling``).

The same pipeline as runtime/pipeline.py: one thread decodes and resizes to the engine size
(``engine_frames`` under ``prefetch``), one writes (``OutputWriter`` with ``OverlayVideo``), with the
codec threads ``runtime.infer`` gives them for the CPU budget; in between, instead of the
schedule, every frame gets one constant label map. A constant map blends at the same cost as real
labels and encodes no label edges, so this is an upper bound: no segmenter writing this overlay
can be faster. ``--stats`` writes {"fps", "frames", "wall_seconds"} as runtime.infer does.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine_format.sizes import parse_size


@dataclass(frozen=True)
class CeilingOptions:
    """The video, the engine size its frames are resized to, the overlay and stats files, the
    CPU budget (0: the usable cores) and how many frames (0: all)."""

    video: Path
    size: tuple[int, int]
    out: Path
    stats: Path | None = None
    threads: int = 0
    max_frames: int = 0


def run(options: CeilingOptions) -> dict:
    """Decode, resize, blend and encode every frame; returns (and writes) the stats."""
    from runtime.outputs import OverlayVideo
    from runtime.pipeline import DECODE_DEPTH, OutputWriter, engine_frames
    from runtime.threads import codec_threads, usable_cores
    from runtime.video import VideoReader, prefetch

    threads = codec_threads(options.threads or usable_cores())
    reader = VideoReader(options.video, threads=threads)
    height, width = reader.size
    labels = np.zeros((height, width), np.uint8)
    palette = np.array([[128, 64, 128], [0, 0, 0]], np.uint8)
    video = OverlayVideo(options.out, reader.size, reader.fps, palette, 0.5, threads=threads)
    writer = OutputWriter(lambda decoded: video.write_frame(decoded.index, decoded.rgb, labels))
    frames, started = 0, time.perf_counter()
    source = prefetch(engine_frames(reader, options.size, options.max_frames), depth=DECODE_DEPTH)
    try:
        for decoded, engine in source:
            engine.sum(dtype=np.uint32)  # the resized frame is read, as a backend's upload reads it
            writer.put(decoded)
            frames += 1
        writer.finish()
        video.close()
    except BaseException:
        writer.stop()
        video.abort()
        raise
    finally:
        source.close()
        reader.close()
    wall = time.perf_counter() - started
    stats = {"fps": round(frames / wall, 2), "frames": frames, "wall_seconds": round(wall, 3),
             "codec_threads": threads, "engine_size": list(options.size)}
    if options.stats is not None:
        options.stats.write_text(json.dumps(stats, indent=1))
    return stats


def parse_options(argv: list[str] | None = None) -> CeilingOptions:
    p = argparse.ArgumentParser(prog="python -m benchmarks.io_ceiling", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--video", type=Path, required=True)
    p.add_argument("--size", type=parse_size, required=True, metavar="HxW", help="the engine size frames are resized to")
    p.add_argument("--out", type=Path, required=True, help="overlay video to write (.mp4)")
    p.add_argument("--stats", type=Path, default=None)
    p.add_argument("--threads", type=int, default=0, help="CPU budget, as runtime.infer --threads")
    p.add_argument("--max-frames", type=int, default=0)
    a = p.parse_args(argv)
    return CeilingOptions(a.video, a.size, a.out, a.stats, a.threads, a.max_frames)


def main(argv: list[str] | None = None) -> int:
    stats = run(parse_options(argv))
    print(f"{stats['frames']} frames, {stats['fps']} FPS (decode + resize + overlay encode, no network)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
