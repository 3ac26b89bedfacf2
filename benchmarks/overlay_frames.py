"""python -m benchmarks.overlay_frames: save overlay PNGs of a keyframe and the frames propagated
farthest from it (the README's pictures), through the same backend selection, first-use
verification, thread plan and scheduler as the runtime."""

from __future__ import annotations

import argparse
import contextlib
import sys
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

from runtime.errors import UserError

from .environment import CLIP


@dataclass
class OverlayOptions:
    """Every ``benchmarks.overlay_frames`` flag with the command line's default (``--help`` says
    what each one means). ``keyframe`` must be a multiple of ``interval``; a value out of range
    raises the one-line UserError the command line prints."""

    engines: Path = Path("engines")
    video: Path = CLIP
    interval: int = 4
    keyframe: int = 100
    backend: str = "auto"
    out: Path = Path("docs")
    alpha: float = 0.5
    name: str = "overlay"

    def __post_init__(self) -> None:
        self.engines, self.video, self.out = Path(self.engines), Path(self.video), Path(self.out)
        if self.interval < 1 or self.keyframe < 0:
            raise UserError(f"--interval must be >= 1 and --keyframe >= 0, got {self.interval} and {self.keyframe}")
        if self.keyframe % self.interval:
            raise UserError(f"--keyframe {self.keyframe} is not a multiple of --interval {self.interval}")
        if not 0 <= self.alpha <= 1:
            raise UserError(f"--alpha must be in [0, 1], got {self.alpha}")


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


def run(options: OverlayOptions, log: Callable[[str], None] = print) -> list[Path]:
    """Write the overlays and the strip into ``options.out``; returns their paths (the strip last).
    The backend is loaded as ``runtime.infer`` loads it (runtime.loading.load_backend)."""
    from engine_format.manifest import load_manifest
    from runtime.loading import load_backend
    from runtime.video import VideoReader

    manifest = load_manifest(options.engines)
    palette = np.asarray(manifest.model["palette"], dtype=np.uint8)
    offsets = sorted({0, max(0, options.interval - 2), options.interval - 1})
    wanted = {options.keyframe + o: ("keyframe" if o == 0 else f"propagated-{o}") for o in offsets}
    last = max(wanted)
    with contextlib.ExitStack() as cleanup:
        reader = VideoReader(options.video)
        cleanup.callback(reader.close)
        backend = load_backend(options.backend, manifest, log=log).backend
        cleanup.callback(backend.close)
        tiles, written = _overlays(options, reader, backend, wanted, palette, log)
    if len(tiles) != len(wanted):
        raise UserError(f"{options.video} ends before frame {last}; pick an earlier --keyframe")
    strip = np.concatenate(tiles, axis=1)
    half = Image.fromarray(strip).resize((strip.shape[1] // 2, strip.shape[0] // 2), Image.BILINEAR)
    written.append(options.out / f"{options.name}-strip.png")
    half.save(written[-1])
    log(f"wrote {written[-1]}")
    return written


def _overlays(options: OverlayOptions, reader, backend, wanted: dict[int, str], palette: np.ndarray,
              log: Callable[[str], None]) -> tuple[list[np.ndarray], list[Path]]:
    """Segment ``reader`` up to the last wanted frame; write each wanted frame's overlay PNG.
    Returns (overlays, their paths)."""
    from runtime.outputs import blend
    from runtime.schedule import KeyframeScheduler
    from runtime.video import resize_rgb

    last = max(wanted)
    originals: dict[int, np.ndarray] = {}

    def frames():
        for decoded in reader:
            if decoded.index in wanted:
                originals[decoded.index] = decoded.rgb
            yield resize_rgb(decoded.rgb, backend.frame_size)[None]
            if decoded.index >= last:
                return

    options.out.mkdir(parents=True, exist_ok=True)
    tiles, written = [], []
    for result in KeyframeScheduler(backend, options.interval, label_size=reader.size).run(frames()):
        if result.index in wanted:
            overlay = blend(originals[result.index], result.labels[0], palette, options.alpha)
            path = options.out / f"{options.name}-{result.index:04d}-{wanted[result.index]}.png"
            Image.fromarray(overlay).save(path)
            tiles.append(overlay)
            written.append(path)
            log(f"wrote {path} ({'keyframe' if result.keyframe else 'propagated'} frame {result.index}, {backend.name})")
    return tiles, written


def main(argv: list[str] | None = None) -> int:
    from runtime.infer import USER_ERRORS

    args = build_parser().parse_args(argv)
    try:
        run(OverlayOptions(**{f.name: getattr(args, f.name) for f in fields(OverlayOptions)}))
    except USER_ERRORS as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
