from __future__ import annotations

import json

from gsvnet import GSVNet, load_checkpoint, save_checkpoint
from training import propagation
from training.keyframe import camvid_config
from runtime.clips import holdout_split, read_video

from .synthetic import moving_texture, write_video


def test_read_video_and_holdout(tmp_path, rng):
    path = write_video(tmp_path / "clip.mp4", moving_texture(rng, 10, (48, 64)))
    frames = read_video(path, (56, 64))
    assert frames.shape == (10, 56, 64, 3) and frames.dtype.name == "uint8"
    train, held = holdout_split(10, 0.3)
    assert list(train) == list(range(7)) and list(held) == [7, 8, 9]


def test_end_to_end_training_on_a_tiny_clip(tmp_path, rng):
    video = write_video(tmp_path / "clip.mp4", moving_texture(rng, 16, (64, 96), dx=4))
    keyframe_ckpt = save_checkpoint(tmp_path / "kf.pt", GSVNet(camvid_config("swiftnet_r18")))
    summary = propagation.main(["--checkpoint", str(keyframe_ckpt), "--video", str(video), "--out", str(tmp_path / "p"),
                                "--size", "64", "96", "--flow-steps", "30", "--steps", "4", "--batch-size", "2",
                                "--max-interval", "3", "--seed", "1"])
    assert summary["train_frames"] == [0, 11] and summary["heldout_frames"] == [11, 16]
    model, meta = load_checkpoint(tmp_path / "p" / "final.pt")
    assert meta["variant"] == "full" and model.num_classes == 11
    # the keyframe net is frozen: identical to the input checkpoint
    teacher, _ = load_checkpoint(keyframe_ckpt)
    for k, v in teacher.keyframe.state_dict().items():
        assert (model.keyframe.state_dict()[k] == v).all(), k
    # flow pre-training learned the motion (4 px/frame = 0.5 grid px) better than the zero-initialised flow
    assert summary["heldout_grid_after_flow_pretraining"]["flow_l1_to_dis"] < 0.4
    assert json.loads((tmp_path / "p" / "summary.json").read_text())["variant"] == "full"
    # the prepared clip is cached and reused
    assert (tmp_path / "p" / "clip.pt").is_file()


def test_device_choice(monkeypatch):
    import pytest
    import torch

    from training.state import pick_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert pick_device("auto") == torch.device("cpu") and pick_device("cpu") == torch.device("cpu")
    with pytest.raises(SystemExit, match="sees no CUDA GPU"):
        pick_device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert pick_device("auto") == torch.device("cuda")
