"""python -m benchmarks.sample_frames VIDEO: write the real frames shipped in the package
(``gsvnet/samples/road.npz``, read by ``gsvnet.samples``) from the first frames of a video.

The shipped file was made from ``solidWhiteRight.mp4`` (Udacity CarND-LaneLines-P1, MIT licence,
Copyright (c) 2016-2019 Udacity, Inc.) with the defaults below.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from gsvnet.samples import SAMPLE, SAMPLE_SIZE


def sample_frames(video: Path, count: int, size: tuple[int, int]) -> np.ndarray:
    """uint8 [count,H,W,3]: the first ``count`` frames of ``video`` resized to ``size`` (libswscale, bilinear)."""
    import av

    frames = []
    with av.open(str(video)) as container:
        for frame in container.decode(video=0):
            frames.append(frame.reformat(width=size[1], height=size[0], format="rgb24",
                                         interpolation="BILINEAR").to_ndarray())
            if len(frames) == count:
                break
    if len(frames) < count:
        raise SystemExit(f"error: {video} has {len(frames)} frames, fewer than {count}")
    return np.stack(frames)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.sample_frames", description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("video", type=Path, help="the video to take the first frames of")
    p.add_argument("--frames", type=int, default=8, help="how many frames")
    p.add_argument("--out", type=Path, default=SAMPLE, help="the .npz file to write")
    p.add_argument("--source", default="solidWhiteRight.mp4 (Udacity CarND-LaneLines-P1, MIT licence, "
                                       "Copyright (c) 2016-2019 Udacity, Inc.)", help="provenance recorded in the file")
    args = p.parse_args(argv)
    frames = sample_frames(args.video, args.frames, SAMPLE_SIZE)
    np.savez_compressed(args.out, frames=frames, source=np.array(args.source))
    print(f"wrote {args.out}: {frames.shape[0]} frames of {frames.shape[2]}x{frames.shape[1]}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
