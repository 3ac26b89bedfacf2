from __future__ import annotations

import json

import numpy as np
import torch

from gsvnet import GSVNet, load_checkpoint
from training import keyframe
from training.augment import AugmentConfig
from training.camvid import load_split

from .synthetic import write_camvid_tree


def test_a_few_steps_reduce_the_loss_on_a_tiny_batch(tmp_path, rng):
    torch.set_num_threads(2)
    frames = load_split(write_camvid_tree(tmp_path / "cv", rng, {"train": 2}), "train")
    model = GSVNet(keyframe.camvid_config("swiftnet_r18"))
    images, labels = keyframe.make_batch(frames, np.array([0, 1]), AugmentConfig(crop=(64, 64)), rng)
    assert images.dtype == torch.uint8 and labels.shape == (2, 64, 64)
    optimizer = torch.optim.AdamW(model.keyframe.parameters(), lr=2e-3)
    first = keyframe.train_step(model, optimizer, images, labels)
    for _ in range(7):
        last = keyframe.train_step(model, optimizer, images, labels)
    assert last < 0.8 * first


def run_keyframe(root, out, *extra):
    return keyframe.main(["--data", str(root), "--out", str(out), "--batch-size", "2", "--crop", "48", "48",
                          "--val-size", "64", "80", "--warmup-steps", "1", "--seed", "3", *extra])


def test_resume_continues_exactly_where_it_stopped(tmp_path, rng):
    root = write_camvid_tree(tmp_path / "cv", rng, {"train": 4, "val": 1})
    straight = run_keyframe(root, tmp_path / "a", "--epochs", "2")
    run_keyframe(root, tmp_path / "b", "--epochs", "2", "--max-steps", "2")  # stops after epoch 1
    assert json.loads((tmp_path / "b" / "history.json").read_text())[-1]["epoch"] == 1
    resumed = run_keyframe(root, tmp_path / "b", "--epochs", "2", "--resume")
    assert resumed["epochs"] == 2 and resumed["steps"] == straight["steps"] == 4
    a = torch.load(tmp_path / "a" / "last.pt", weights_only=False)["keyframe"]
    b = torch.load(tmp_path / "b" / "last.pt", weights_only=False)["keyframe"]
    for k in a:
        torch.testing.assert_close(a[k], b[k], msg=k)
    assert [h["loss"] for h in resumed["history"]] == [h["loss"] for h in straight["history"]]


def test_best_checkpoint_is_a_full_camvid_gsvnet(tmp_path, rng):
    root = write_camvid_tree(tmp_path / "cv", rng, {"train": 2, "val": 1})
    result = run_keyframe(root, tmp_path / "o", "--epochs", "1")
    model, meta = load_checkpoint(tmp_path / "o" / "best.pt")
    assert model.num_classes == 11 and model.config.class_names[3] == "road"
    assert meta["stage"] == "keyframe" and meta["val_miou"] == result["best_val_miou"]
    assert 0.0 <= meta["val_miou"] <= 1.0
