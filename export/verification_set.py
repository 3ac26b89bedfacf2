"""Writing the engines folder's verification set (its format and reader: ``engine_format.verification_set``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from engine_format.verification_set import FILE, FRAMES, MIN_AGREEMENT, engine_frames

def reference_labels(model, frames: np.ndarray, size: tuple[int, int], keyframe_scores=None) -> np.ndarray:
    """uint8 [F,H,W]: ``model`` (GSVNet, FP32, eval) over ``frames`` at the engine ``size``, frame 0
    a keyframe; ``keyframe_scores(frame) -> [1,C,h,w] numpy`` replaces the keyframe net's scores."""
    import torch

    from gsvnet.model import PropagationState

    out, state = [], None
    with torch.inference_mode():
        for k, frame in enumerate(engine_frames(frames, size)):
            image = torch.from_numpy(frame[None])
            if k == 0 and keyframe_scores is not None:
                state = PropagationState(torch.from_numpy(keyframe_scores(frame[None])), model.downsample(image))
            elif k == 0:
                state = model.keyframe_step(image)
            else:
                state = model.propagation_step(state, image)
            out.append(model.labels(state, size)[0].numpy())
    return np.stack(out)


def write_verification_set(folder: Path, model, size: tuple[int, int], int8_keyframe: Path | None = None,
                           imported_keyframe: Path | None = None) -> dict:
    """Write ``folder/verification.npz`` and return its manifest entry (file, sha256, what is in it).
    ``imported_keyframe``: the keyframe graph of an imported model, whose FP32 scores replace the
    (stand-in) keyframe net's."""
    from gsvnet.samples import sample_frames

    from engine_format.manifest import sha256_file

    frames = sample_frames()[:FRAMES]
    from engine_format.sessions import keyframe_scores

    scores = keyframe_scores(imported_keyframe) if imported_keyframe is not None else None
    arrays = {"frames": frames, "labels_fp32": reference_labels(model, frames, size, scores)}
    if int8_keyframe is not None:
        arrays["labels_int8"] = reference_labels(model, frames, size, keyframe_scores(int8_keyframe, precision="int8"))
    path, tmp = folder / FILE, folder / f".{FILE}.tmp.npz"
    np.savez_compressed(tmp, **arrays)
    tmp.replace(path)
    return {"file": FILE, "sha256": sha256_file(path), "frames": FRAMES, "min_agreement": MIN_AGREEMENT,
            "references": sorted(k.removeprefix("labels_") for k in arrays if k.startswith("labels_")),
            "source": "gsvnet/samples/road.npz (solidWhiteRight.mp4, MIT, Udacity)"}
