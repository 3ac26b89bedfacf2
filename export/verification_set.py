"""The engines folder's verification set: a few real frames and the labels the PyTorch reference
gives for them, written by the build and read by the runtime's first-use check
(runtime/verification.py), so a backend proves itself on the user's machine without PyTorch.

``verification.npz`` holds
- ``frames``: uint8 [F,h,w,3], real frames at the shipped sample's size (gsvnet/samples);
- ``labels_fp32``: uint8 [F,H,W] at the engine size, from the checkpoint in FP32 (PyTorch), with
  frame 0 a keyframe and frames 1..F-1 propagated, the frames resized by
  ``gsvnet.samples.resize_bilinear``;
- ``labels_int8`` (INT8 folders): the same with the keyframe scores of the INT8 keyframe graph
  (onnxruntime), i.e. what an INT8 engine should give; that graph was itself held to FP32 by the
  build's INT8 gate.
Reading it needs numpy only.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

FILE = "verification.npz"
#: frames in the set: a keyframe and l - 1 propagation steps at the default interval l = 4
FRAMES = 4
#: a backend passes when, on every frame, at least this share of pixels has the reference label
MIN_AGREEMENT = 0.995


def engine_frames(frames: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The set's frames at the engine size (the same bytes on every machine)."""
    from gsvnet.samples import resize_bilinear

    return resize_bilinear(frames, size)


def reference_labels(model, frames: np.ndarray, size: tuple[int, int], keyframe_scores=None) -> np.ndarray:
    """uint8 [F,H,W]: ``model`` (GSVNet, FP32, eval) over ``frames`` at the engine ``size``, frame 0
    a keyframe; ``keyframe_scores(frame) -> [1,C,h,w] numpy`` replaces the keyframe net's scores."""
    import torch

    from gsvnet.model import PropagationState

    out, state = [], None
    with torch.inference_mode():
        for k, frame in enumerate(engine_frames(frames, size)):
            image = torch.from_numpy(frame[None])
            if k == 0:
                state = model.keyframe_step(image)
                if keyframe_scores is not None:
                    state = PropagationState(torch.from_numpy(keyframe_scores(frame[None])), state.small)
            else:
                state = model.propagation_step(state, image)
            out.append(model.labels(state, size)[0].numpy())
    return np.stack(out)


def write_verification_set(folder: Path, model, size: tuple[int, int], int8_keyframe: Path | None = None) -> dict:
    """Write ``folder/verification.npz`` and return its manifest entry (file, sha256, what is in it)."""
    from gsvnet.samples import sample_frames

    from .manifest import sha256_file

    frames = sample_frames()[:FRAMES]
    arrays = {"frames": frames, "labels_fp32": reference_labels(model, frames, size)}
    if int8_keyframe is not None:
        from .onnx_session import make_session

        session = make_session(int8_keyframe, precision="int8")
        name = session.get_inputs()[0].name
        arrays["labels_int8"] = reference_labels(model, frames, size,
                                                 lambda f: session.run(None, {name: f})[0].astype(np.float32))
    path, tmp = folder / FILE, folder / f".{FILE}.tmp.npz"
    np.savez_compressed(tmp, **arrays)
    tmp.replace(path)
    return {"file": FILE, "sha256": sha256_file(path), "frames": FRAMES, "min_agreement": MIN_AGREEMENT,
            "references": sorted(k.removeprefix("labels_") for k in arrays if k.startswith("labels_")),
            "source": "gsvnet/samples/road.npz (solidWhiteRight.mp4, MIT, Udacity)"}


def read_verification_set(path: Path) -> dict[str, np.ndarray]:
    """The arrays of a verification file (numpy only)."""
    with np.load(path) as data:
        return {k: np.ascontiguousarray(data[k]) for k in data.files}
