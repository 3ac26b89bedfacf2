"""python -m benchmarks.overlay_frames: save overlay PNGs of a keyframe and the frames propagated
farthest from it (the README's pictures), through the same backend and scheduler as the runtime."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from .environment import CLIP


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.overlay_frames", description=__doc__)
    p.add_argument("--engines", type=Path, default=Path("engines"), help="engines folder (default engines/)")
    p.add_argument("--video", type=Path, default=CLIP, help="video (default: the real clip in ../shared/data)")
    p.add_argument("--interval", type=int, default=4, help="keyframe interval l (default 4)")
    p.add_argument("--keyframe", type=int, default=100, help="index of the keyframe to show (a multiple of l; default 100)")
    p.add_argument("--backend", default="auto", help="runtime backend (default auto)")
    p.add_argument("--out", type=Path, default=Path("docs"), help="folder for the PNGs (default docs/)")
    p.add_argument("--alpha", type=float, default=0.5, help="overlay opacity (default 0.5)")
    p.add_argument("--name", default="overlay", help="file name prefix: NAME-<frame>-<kind>.png and NAME-strip.png "
                   "(default overlay)")
    return p


def main(argv: list[str] | None = None) -> int:
    from engine_format.manifest import load_manifest
    from runtime.schedule import KeyframeScheduler
    from runtime.backends import create_backend, select_backend
    from runtime.outputs import blend
    from runtime.video import VideoReader, resize_rgb

    args = build_parser().parse_args(argv)
    if args.keyframe % args.interval:
        print(f"error: --keyframe {args.keyframe} is not a multiple of --interval {args.interval}", file=sys.stderr)
        return 2
    manifest = load_manifest(args.engines)
    name, _ = select_backend(args.backend, manifest)
    backend = create_backend(name, manifest, profile=False)
    palette = np.asarray(manifest.model["palette"], dtype=np.uint8)
    offsets = sorted({0, max(0, args.interval - 2), args.interval - 1})
    wanted = {args.keyframe + o: ("keyframe" if o == 0 else f"propagated-{o}") for o in offsets}
    last = max(wanted)
    reader = VideoReader(args.video)
    originals: dict[int, np.ndarray] = {}

    def frames():
        for decoded in reader:
            if decoded.index in wanted:
                originals[decoded.index] = decoded.rgb
            yield resize_rgb(decoded.rgb, backend.frame_size)[None]
            if decoded.index >= last:
                return

    args.out.mkdir(parents=True, exist_ok=True)
    tiles = []
    for result in KeyframeScheduler(backend, args.interval, label_size=reader.size).run(frames()):
        if result.index in wanted:
            overlay = blend(originals[result.index], result.labels[0], palette, args.alpha)
            path = args.out / f"{args.name}-{result.index:04d}-{wanted[result.index]}.png"
            Image.fromarray(overlay).save(path)
            tiles.append(overlay)
            print(f"wrote {path} ({'keyframe' if result.keyframe else 'propagated'} frame {result.index}, {name})")
    strip = np.concatenate([t[:, :, :] for t in tiles], axis=1)
    half = Image.fromarray(strip).resize((strip.shape[1] // 2, strip.shape[0] // 2), Image.BILINEAR)
    half.save(args.out / f"{args.name}-strip.png")
    print(f"wrote {args.out / f'{args.name}-strip.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
