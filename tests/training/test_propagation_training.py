from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from gsvnet import GSVNet, load_checkpoint, ops, save_checkpoint
from gsvnet.datasets.camvid import VOID, load_split
from evaluation.clips import holdout_split, read_video
from training import propagation, propagation_loop
from training.egomotion import EgoMotion, affine, sequence
from training.keyframe import camvid_config

from .synthetic import moving_texture, write_camvid_tree, write_video


def test_read_video_and_holdout(tmp_path, rng):
    path = write_video(tmp_path / "clip.mp4", moving_texture(rng, 10, (48, 64)))
    frames = read_video(path, (56, 64))
    assert frames.shape == (10, 56, 64, 3) and frames.dtype.name == "uint8"
    train, held = holdout_split(10, 0.3)
    assert list(train) == list(range(7)) and list(held) == [7, 8, 9]


def test_egomotion_moves_the_label_with_the_image(rng):
    """Colour-coded classes: every non-void label of every synthetic frame is the class whose colour
    the image shows there (the geometry is shared), and the frames really zoom."""
    label = np.kron(rng.integers(0, 5, (6, 8), dtype=np.uint8), np.ones((20, 20), np.uint8))
    colours = np.array([[200, 0, 0], [0, 200, 0], [0, 0, 200], [200, 200, 0], [0, 200, 200]], np.uint8)
    frames, labels, matrices = sequence(colours[label], label, 4, (96, 128), VOID, rng,
                              EgoMotion(zoom_per_frame=(0.05, 0.05), shift_per_frame=1.0, start_scale=(1.0, 1.0)))
    assert frames.shape == (5, 96, 128, 3) and labels.shape == (5, 96, 128)
    for f, lab in zip(frames, labels):
        decoded = np.abs(f[:, :, None, :].astype(int) - colours[None, None].astype(int)).sum(-1).argmin(-1)
        valid = lab != VOID
        assert (decoded[valid] == lab[valid]).mean() > 0.95  # bilinear blends only along class borders
    # the last frame is the first one zoomed by 1.05^4 about the focus: p in frame 4 shows what
    # frame 0 shows at M0 M4^-1 p
    full = lambda m: np.vstack([m, [0, 0, 1]])  # noqa: E731
    to_first = full(matrices[0]) @ np.linalg.inv(full(matrices[4]))
    assert to_first[0, 0] == pytest.approx(1 / 1.05**4)
    ys, xs = np.mgrid[0:96, 0:128]
    src = to_first @ np.stack([xs.ravel(), ys.ravel(), np.ones(xs.size)])
    sx, sy = np.rint(src[0]).astype(int), np.rint(src[1]).astype(int)
    inside = (sx >= 0) & (sx < 128) & (sy >= 0) & (sy < 96) & (labels[4].ravel() != VOID)
    assert (labels[4].ravel()[inside] == labels[0][sy[inside], sx[inside]]).mean() > 0.95
    m = affine(2.0, (10.0, 20.0), (1.0, -1.0))
    assert np.allclose(m @ np.array([10.0, 20.0, 1.0]), [11.0, 19.0])  # the focus only moves by the shift


def test_exact_flow_warps_one_synthetic_frame_onto_the_next(rng):
    """The analytic backward flow, used by warp_by_flow on the 1/8 frames, reproduces the next 1/8
    frame far better than no motion does (an independent check of the flow's sign and units)."""
    from training.egomotion import grid_flows

    smooth = np.asarray(torch.nn.functional.interpolate(torch.rand(1, 3, 12, 16, generator=torch.Generator().manual_seed(4)),
                                                        size=(192, 256), mode="bicubic", align_corners=False)[0].permute(1, 2, 0).clamp(0, 1) * 255).astype(np.uint8)
    frames, _, matrices = sequence(smooth, np.zeros((192, 256), np.uint8), 2, (192, 256), VOID, rng,
                                   EgoMotion(zoom_per_frame=(0.06, 0.06), shift_per_frame=4.0, start_scale=(1.1, 1.1)))
    flow = torch.from_numpy(grid_flows(matrices, (192, 256)))
    small = torch.nn.functional.avg_pool2d(torch.from_numpy(frames).permute(0, 3, 1, 2).float(), 8)
    warped = ops.warp_by_flow(small[1:2], flow[2:3])
    inner = (slice(None), slice(None), slice(3, -3), slice(3, -3))
    err_flow = (warped - small[2:3])[inner].abs().mean()
    err_hold = (small[1:2] - small[2:3])[inner].abs().mean()
    assert flow[2].abs().max() > 0.5 and err_flow < 0.35 * err_hold, (err_flow, err_hold)
    assert torch.equal(flow[0], torch.zeros_like(flow[0]))
    # the official point-sampled 1/8 frames (align_corners): the same check with their own flow
    corners = torch.from_numpy(grid_flows(matrices, (192, 256), align_corners=True))
    small = ops.resize(torch.from_numpy(frames).permute(0, 3, 1, 2).float(), (24, 32), align_corners=True)
    err_corners = (ops.warp_by_flow(small[1:2], corners[2:3]) - small[2:3])[inner].abs().mean()
    assert err_corners < 0.35 * (small[1:2] - small[2:3])[inner].abs().mean()
    assert not torch.allclose(corners, flow)


def test_objective_kl_is_zero_on_the_teacher_and_weighs_classes():
    weights = torch.tensor([1.0, 3.0])
    objective = propagation_loop.Objective(weights, align_corners=False)
    g = torch.Generator().manual_seed(0)
    teacher = torch.randn(2, 2, 4, 5, generator=g)
    assert float(objective.kl(teacher, teacher)) == pytest.approx(0.0, abs=1e-6)
    assert float(objective.kl(torch.zeros_like(teacher), teacher)) > 0.05
    labels = torch.zeros(2, 32, 40, dtype=torch.long)
    labels[:, :, 20:] = 1
    labels[:, :4] = VOID
    student = torch.zeros(2, 2, 4, 5)
    student[:, 1] = 10.0  # confident class 1 everywhere: right on the right half only
    loss = objective.ce(student, labels)
    # weighted CE: only class-0 pixels (weight 1) are wrong, each by ~10 nats; class-1 (weight 3) ~0
    n0, n1 = int(((labels == 0)).sum()), int(((labels == 1)).sum())
    assert float(loss) == pytest.approx(10.0 * n0 / (n0 + 3 * n1), rel=1e-3)


def test_guide_init_keeps_every_candidate_alive(rng):
    model = GSVNet(camvid_config("swiftnet_r18"))
    propagation_loop.init_guide(model)
    propagation_loop.set_training(model)  # BatchNorm on batch statistics, as training starts
    intra = torch.randn(2, 11, 12, 16)
    weights = model.guide_weights(intra, torch.randn(2, 11, 12, 16))
    shares = (weights / weights.sum(1, keepdim=True)).mean(dim=(0, 2, 3))
    k = ops.num_shifts(1)
    assert (shares > 0.01).all() and int(shares.argmax()) == k // 2


def test_end_to_end_training_on_a_tiny_clip(tmp_path, rng):
    video = write_video(tmp_path / "clip.mp4", moving_texture(rng, 20, (128, 192), dx=8))
    camvid = write_camvid_tree(tmp_path / "cv", rng, {"train": 3, "val": 12}, size=(64, 96))
    keyframe_ckpt = save_checkpoint(tmp_path / "kf.pt", GSVNet(camvid_config("swiftnet_r18")))
    summary = propagation.main(["--checkpoint", str(keyframe_ckpt), "--videos", str(video), "--camvid", str(camvid),
                                "--out", str(tmp_path / "p"), "--size", "128", "192", "--synthetic-size", "64", "96",
                                "--synthetic", "0.3", "--flow-steps", "300", "--intra-steps", "5", "--steps", "6", "--eval-every", "3",
                                "--batch-size", "2", "--max-interval", "3", "--seed", "1"])
    assert summary["clips"][str(video)] == {"train": [0, 14], "heldout": [14, 20]}
    model, meta = load_checkpoint(tmp_path / "p" / "final.pt")
    assert meta["variant"] == "full" and model.num_classes == 11
    # the keyframe net is frozen: identical to the input checkpoint
    teacher, _ = load_checkpoint(keyframe_ckpt)
    for k, v in teacher.keyframe.state_dict().items():
        assert (model.keyframe.state_dict()[k] == v).all(), k
    # flow pre-training learned the motion (8 px/frame = 1 grid px): well below zero flow on held-out frames
    check = summary["heldout_flow_l1_after_pretraining"]
    assert check["flow_net"] < 0.7 * check["zero_flow"], check
    # selection: before training, after 3 updates and after the last; final.pt is the best of them
    history = summary["selection_history"]
    assert [h["step"] for h in history] == [0, 3, 6]
    assert meta["selection"]["score"] == max(h["score"] for h in history) == summary["selected"]["score"]
    assert set(history[-1]["gsvnet"]["miou_by_distance"]) == {"0", "1", "2", "3"}
    assert json.loads((tmp_path / "p" / "summary.json").read_text())["variant"] == "full"
    assert (tmp_path / "p" / f"clip-{video.stem}" / "meta.json").is_file()  # the prepared clip is cached (on disk)


def test_student_with_a_wider_intra_net_keeps_every_other_weight():
    teacher = GSVNet(camvid_config("swiftnet_r18"))
    model = propagation.student(teacher, "full", 48)
    assert model.config.intra_channels == 48 and teacher.config.intra_channels == 32
    assert model.intra.intra_net[0].weight.shape[0] == 48
    theirs = teacher.state_dict()
    for k, v in model.state_dict().items():
        if not k.startswith("intra."):
            assert torch.equal(v, theirs[k]), k
    same = propagation.student(teacher, "full", 32)
    assert torch.equal(same.intra.intra_net[0].weight, teacher.intra.intra_net[0].weight)
    with pytest.raises(ValueError, match="intra-channels"):
        propagation.student(teacher, "full", 0)



def test_intra_channels_flag_refuses_a_non_positive_width(capsys):
    with pytest.raises(SystemExit) as e:
        propagation.main(["--checkpoint", "x.pt", "--intra-channels", "0"])
    assert e.value.code == 2
    assert "--intra-channels: must be >= 1, got 0" in capsys.readouterr().err


def test_lengths_max_runs_every_sequence_to_the_longest_interval(tmp_path, rng, monkeypatch):
    video = write_video(tmp_path / "clip.mp4", moving_texture(rng, 16, (128, 192), dx=8))
    camvid = write_camvid_tree(tmp_path / "cv", rng, {"train": 2, "val": 8}, size=(64, 96))
    keyframe_ckpt = save_checkpoint(tmp_path / "kf.pt", GSVNet(camvid_config("swiftnet_r18")))
    seen = []
    original = propagation_loop.sequence_loss
    monkeypatch.setattr(propagation_loop, "sequence_loss", lambda *a, **k: (seen.append(a[3]), original(*a, **k))[1])
    common = ["--checkpoint", str(keyframe_ckpt), "--videos", str(video), "--camvid", str(camvid), "--size", "128", "192",
              "--synthetic-size", "64", "96", "--synthetic", "0.5", "--flow-steps", "0", "--intra-steps", "0", "--steps", "8",
              "--eval-every", "8", "--batch-size", "1", "--max-interval", "3", "--seed", "2", "--intra-channels", "16"]
    propagation.main(common + ["--out", str(tmp_path / "max")])  # the default
    assert seen == [3] * 8
    model, _ = load_checkpoint(tmp_path / "max" / "final.pt")
    assert model.config.intra_channels == 16  # the wider/narrower intra net is what the checkpoint rebuilds
    seen.clear()
    propagation.main(common + ["--out", str(tmp_path / "uniform"), "--cache-dir", str(tmp_path / "max"), "--lengths", "uniform"])
    assert set(seen) <= {1, 2, 3} and len(set(seen)) > 1


def test_device_choice(monkeypatch):
    from training.state import pick_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert pick_device("auto") == torch.device("cpu") and pick_device("cpu") == torch.device("cpu")
    with pytest.raises(SystemExit, match="sees no CUDA GPU"):
        pick_device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert pick_device("auto") == torch.device("cuda")


def test_selection_equals_the_camvid_sequence_command_on_the_first_half(tmp_path, rng):
    """The trainer's cached selection protocol gives what `evaluation.evaluate camvid-sequence --half first` gives."""
    from evaluation import evaluate
    from evaluation.options import CamVidSequenceOptions
    from training.selection import SelectionSet

    from tests.evaluation.test_evaluate import write_val_sequence

    write_val_sequence(tmp_path / "camvid", rng, frames=14, size=(48, 64))
    model = GSVNet(camvid_config("swiftnet_r18")).eval()
    ckpt = save_checkpoint(tmp_path / "m.pt", model)
    model, _ = load_checkpoint(ckpt)
    command = evaluate.run(CamVidSequenceOptions(data=tmp_path / "camvid", half="first", size=(48, 64), checkpoint=ckpt,
                                                 max_distance=3, json=tmp_path / "e.json"))
    selection = SelectionSet.prepare(model, load_split(tmp_path / "camvid", "val"), (48, 64), 3, "first")
    cached = selection.evaluate(model, 3)
    expected = command["camvid_sequence"]["rows"]["gsvnet"]
    for d in "0123":
        assert abs(cached["miou_by_distance"][d] - expected["miou_by_distance"][d]) < 1e-6, d
    assert selection.targets == [3, 4, 5, 6]
