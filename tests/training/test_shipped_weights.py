"""The project's own trained weights in gsvnet/weights/ (written by training.ship)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from gsvnet import load_checkpoint
from gsvnet.pretrained import default_checkpoint, provenance
from gsvnet.datasets.camvid import VOID, load_split
from runtime.schedule.torch_stepper import TorchStepper
from evaluation.protocol import resize_frame

from .scoring import keyframe_scores_by_hand


@pytest.fixture(scope="module")
def shipped():
    path = default_checkpoint("swiftnet_r18")
    if path is None:  # committed to the repository: missing is a broken checkout, not a reason to skip
        pytest.fail("gsvnet/weights/swiftnet_r18-camvid.pt is missing: the repository ships it (written by "
                    "python -m training.ship)", pytrace=False)
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
    assert accuracy > 0.7, f"pixel accuracy {accuracy:.2f} on {frame.name}"
    # a road scene: road, sky and building are among the predicted classes, and no class dominates everything
    shares = np.bincount(labels.ravel(), minlength=11) / labels.size
    assert shares[3] > 0.1 and shares[0] > 0.02 and shares[1] > 0.02, shares.round(3)
    assert shares.max() < 0.8


def test_scores_what_training_ship_recorded_on_the_fixed_test_subset(shipped, camvid_dir):
    """The shipped file, loaded and run as users do, scores on the first CamVid test images what
    training.ship measured when it wrote the file (a tight regression check: a shifted label map,
    a changed resize or a palette/class-order mix-up moves it by far more than the tolerance)."""
    record = provenance(shipped).get("regression_check")
    if not record:
        pytest.fail("the shipped JSON has no regression_check; ship with python -m training.ship --data CAMVID")
    model, _ = load_checkpoint(shipped)
    stepper = TorchStepper(model)
    frames = load_split(camvid_dir, "test", limit=len(record["images"]))
    assert [f.name for f in frames] == record["images"]
    miou, accuracy = keyframe_scores_by_hand(stepper, frames, tuple(record["frame_size"]))
    assert abs(miou - record["miou"]) < 2e-3, (miou, record["miou"])
    assert abs(accuracy - record["pixel_accuracy"]) < 1e-3, (accuracy, record["pixel_accuracy"])
