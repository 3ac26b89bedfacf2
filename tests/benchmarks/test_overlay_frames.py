"""python -m benchmarks.overlay_frames, the command behind the README's picture, on the real clip
with the shipped weights: it writes the keyframe and propagated overlays and the strip."""

from __future__ import annotations

import itertools

import numpy as np
from PIL import Image

from gsvnet.pretrained import default_checkpoint, provenance
from runtime.outputs import blend
from tests.conftest import run_module
from tests.runtime.output_checks import decode_rgb

KEYFRAME = 180  # the README's held-out keyframe; l = 4 shows frames 180, 182 and 183


def test_overlay_frames_writes_the_readme_pictures(shipped_clip_run, real_clip, tmp_path):
    run = shipped_clip_run
    out = tmp_path / "docs"
    proc = run_module("benchmarks.overlay_frames", "--engines", str(run.engines), "--video", str(real_clip),
                      "--keyframe", str(KEYFRAME), "--interval", str(run.interval), "--backend", "onnxruntime",
                      "--alpha", str(run.alpha), "--out", str(out), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    shown = {KEYFRAME: "keyframe", KEYFRAME + 2: "propagated-2", KEYFRAME + 3: "propagated-3"}
    names = [f"overlay-{k:04d}-{what}.png" for k, what in shown.items()]
    assert sorted(p.name for p in out.iterdir()) == sorted([*names, "overlay-strip.png"])
    palette = np.array(provenance(default_checkpoint("swiftnet_r18"))["config"]["palette"], np.uint8)
    frames = {k: rgb for k, rgb in enumerate(itertools.islice(decode_rgb(real_clip), KEYFRAME + 4)) if k in shown}
    tiles = []
    for (k, _), name in zip(shown.items(), names):
        image = np.asarray(Image.open(out / name).convert("RGB"))
        assert image.shape == (540, 960, 3)
        # the same backend and schedule as runtime.infer: exactly the CLI's labels of that frame, blended
        labels = np.asarray(Image.open(run.labels_dir / f"{k:06d}.png"))
        assert np.array_equal(image, blend(frames[k], labels, palette, run.alpha)), name
        assert image.std() > 20 and len(np.unique(labels)) >= 3, f"{name} is nearly blank"
        tiles.append(image)
    strip = np.asarray(Image.open(out / "overlay-strip.png").convert("RGB")).astype(np.float64)
    assert strip.shape == (270, 3 * 480, 3)  # the three overlays side by side at half size
    for i, tile in enumerate(tiles):
        half = tile.reshape(270, 2, 480, 2, 3).mean(axis=(1, 3))
        assert np.abs(strip[:, 480 * i : 480 * (i + 1)] - half).mean() < 4, f"tile {i} of the strip"
