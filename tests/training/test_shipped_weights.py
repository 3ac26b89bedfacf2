"""The project's own trained weights in gsvnet/weights/ (written by training.ship)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from gsvnet import load_checkpoint
from gsvnet.pretrained import default_checkpoint, provenance
from gsvnet.datasets.camvid import VOID, load_split
from gsvnet.stepper import TorchStepper
from runtime.protocol import resize_frame


@pytest.fixture(scope="module")
def shipped():
    path = default_checkpoint("swiftnet_r18")
    if path is None:
        pytest.skip("gsvnet/weights/swiftnet_r18-camvid.pt is not shipped yet (python -m training.ship)")
    return path


def test_file_is_small_fp16_with_provenance(shipped):
    assert shipped.stat().st_size < 30 * 2**20
    payload = torch.load(shipped, map_location="cpu", weights_only=True)
    floats = [v for v in payload["state_dict"].values() if v.is_floating_point()]
    assert floats and all(v.dtype == torch.float16 for v in floats)
    info = provenance(shipped)
    for key in ("commands", "git_commit", "machine", "training", "data", "metrics", "sha256"):
        assert key in info, key
    assert info["commands"] and info["config"]["num_classes"] == 11


def test_loads_as_a_camvid_gsvnet(shipped):
    model, meta = load_checkpoint(shipped)
    assert model.num_classes == 11 and model.config.class_names[3] == "road"
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert json.dumps(meta)  # plain metadata


def test_predicts_plausible_classes_on_a_camvid_test_image(shipped, camvid_dir):
    model, _ = load_checkpoint(shipped)
    stepper = TorchStepper(model)
    frame = load_split(camvid_dir, "test", limit=1)[0]
    labels = stepper.labels(stepper.keyframe_step(resize_frame(frame.image, (360, 480))[None]), (360, 480))[0]
    scored = frame.label != VOID
    accuracy = float((labels[scored] == frame.label[scored]).mean())
    assert accuracy > 0.6, f"pixel accuracy {accuracy:.2f} on {frame.name}"
    # a road scene: road, sky and building are among the predicted classes, and no class dominates everything
    shares = np.bincount(labels.ravel(), minlength=11) / labels.size
    assert shares[3] > 0.1 and shares[0] > 0.02 and shares[1] > 0.02, shares.round(3)
    assert shares.max() < 0.8
