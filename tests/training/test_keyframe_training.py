from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from gsvnet import GSVNet, load_checkpoint
from training import keyframe
from training.augment import AugmentConfig
from gsvnet.datasets.camvid import load_split, sequence_half

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
    """Two epochs straight == one epoch, a new process state, one more epoch: bit-identical weights,
    optimiser moments and losses (bfloat16 autocast and channels-last included)."""
    root = write_camvid_tree(tmp_path / "cv", rng, {"train": 4, "val": 1})
    straight = run_keyframe(root, tmp_path / "a", "--epochs", "2", "--threads", "1")
    run_keyframe(root, tmp_path / "b", "--epochs", "2", "--max-steps", "2", "--threads", "1")  # stops after epoch 1
    assert json.loads((tmp_path / "b" / "history.json").read_text())[-1]["epoch"] == 1
    torch.manual_seed(999)  # whatever the process did in between
    resumed = run_keyframe(root, tmp_path / "b", "--epochs", "2", "--resume", "--threads", "1")
    assert resumed["epochs"] == 2 and resumed["steps"] == straight["steps"] == 4
    a = torch.load(tmp_path / "a" / "last.pt", weights_only=False)
    b = torch.load(tmp_path / "b" / "last.pt", weights_only=False)
    for k in a["keyframe"]:
        assert torch.equal(a["keyframe"][k], b["keyframe"][k]), k
    moments = [(sa, sb) for sa, sb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values())]
    assert moments and all(torch.equal(sa["exp_avg_sq"], sb["exp_avg_sq"]) for sa, sb in moments)
    assert [h["loss"] for h in resumed["history"]] == [h["loss"] for h in straight["history"]]
    assert resumed["history"][0]["amp"] == straight["history"][0]["amp"]


def test_resume_refuses_another_recipe_in_one_line(tmp_path, rng):
    root = write_camvid_tree(tmp_path / "cv", rng, {"train": 2, "val": 1})
    run_keyframe(root, tmp_path / "o", "--epochs", "2", "--max-steps", "1", "--no-val")
    with pytest.raises(SystemExit) as info:
        run_keyframe(root, tmp_path / "o", "--epochs", "5", "--resume", "--no-val")
    message = str(info.value)
    assert "--epochs 5 differs from 2" in message and "\n" not in message


def test_epoch_batches_depend_only_on_seed_and_epoch(tmp_path, rng):
    frames = load_split(write_camvid_tree(tmp_path / "cv", rng, {"train": 5}), "train")
    cfg = AugmentConfig(crop=(32, 32), hue=0.1, channel_gain=0.1)
    first = list(keyframe.epoch_batches(frames, 2, cfg, seed=7, epoch=3))
    again = list(keyframe.epoch_batches(frames, 2, cfg, seed=7, epoch=3))
    other = list(keyframe.epoch_batches(frames, 2, cfg, seed=7, epoch=4))
    assert [b[0].shape[0] for b in first] == [2, 2, 1]
    assert all(torch.equal(x[0], y[0]) and torch.equal(x[1], y[1]) for x, y in zip(first, again))
    assert not torch.equal(first[0][0], other[0][0])


def test_best_checkpoint_is_the_best_val_epoch_and_rescores_the_same(tmp_path, rng):
    root = write_camvid_tree(tmp_path / "cv", rng, {"train": 2, "val": 4})
    result = run_keyframe(root, tmp_path / "o", "--epochs", "2")
    model, meta = load_checkpoint(tmp_path / "o" / "best.pt")
    assert model.num_classes == 11 and model.config.class_names[3] == "road"
    scored = [h["val_miou"] for h in result["history"]]
    assert meta["stage"] == "keyframe" and meta["val_miou"] == result["best_val_miou"] == max(scored)
    assert meta["epoch"] == 1 + scored.index(max(scored))
    # the recorded number is what the runtime's keyframe path gives for these weights
    again, _ = keyframe.validate(model, sequence_half(load_split(root, "val"), "first"), (64, 80))
    assert again == meta["val_miou"]


def test_carry_packs_and_restores_a_run_across_machines(tmp_path, rng):
    """pack -> parts with sha256 -> unpack elsewhere -> resume: same counters, history and weights,
    moments within bfloat16 rounding, and the continued run close to the uninterrupted one."""
    from training import carry

    root = write_camvid_tree(tmp_path / "cv", rng, {"train": 4, "val": 4})
    straight = run_keyframe(root, tmp_path / "a", "--epochs", "2", "--threads", "1")
    run_keyframe(root, tmp_path / "b", "--epochs", "2", "--max-steps", "2", "--threads", "1")
    carry.pack(tmp_path / "b", tmp_path / "carried", part_mb=0.1)
    manifest = carry.pack(tmp_path / "b", tmp_path / "carried", part_mb=0.2)  # packing again replaces the folder whole
    assert len(manifest["parts"]) > 1 and manifest["epoch"] == 1
    assert sorted(p.name for p in (tmp_path / "carried").iterdir()) == sorted([*(p["file"] for p in manifest["parts"]), "carry.json"])
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".carried")]
    assert carry.unpack(tmp_path / "carried", tmp_path / "c")["step"] == 2
    before = torch.load(tmp_path / "b" / "last.pt", weights_only=False)
    after = torch.load(tmp_path / "c" / "last.pt", weights_only=False)
    assert after["epoch"] == before["epoch"] and json.dumps(after["history"]) == json.dumps(before["history"])
    for k, v in before["keyframe"].items():
        assert torch.equal(after["keyframe"][k], v), k
    for sa, sb in zip(before["optimizer"]["state"].values(), after["optimizer"]["state"].values()):
        assert sb["exp_avg_sq"].dtype == torch.float32
        torch.testing.assert_close(sb["exp_avg_sq"], sa["exp_avg_sq"], rtol=2**-8, atol=0)
    assert (tmp_path / "c" / "best.pt").is_file()
    resumed = run_keyframe(root, tmp_path / "c", "--epochs", "2", "--resume", "--threads", "1")
    assert resumed["steps"] == straight["steps"]
    final_a = torch.load(tmp_path / "a" / "last.pt", weights_only=False)["keyframe"]
    final_c = torch.load(tmp_path / "c" / "last.pt", weights_only=False)["keyframe"]
    worst = max(float((final_a[k].float() - final_c[k].float()).abs().max()) for k in final_a if final_a[k].is_floating_point())
    assert worst < 1e-2
    # a corrupt part is refused before anything is written
    (tmp_path / "carried" / "part-000").write_bytes(b"x")
    with pytest.raises(SystemExit, match="sha256"):
        carry.unpack(tmp_path / "carried", tmp_path / "d")
    assert not (tmp_path / "d").exists()


def test_reschedule_shortens_the_run_from_the_current_learning_rate(tmp_path, rng):
    """--reschedule with another --epochs: no jump in the learning rate at the resumed step, a poly
    decay to the schedule's floor at the new last epoch, and the change recorded."""
    root = write_camvid_tree(tmp_path / "cv", rng, {"train": 4, "val": 1})
    run_keyframe(root, tmp_path / "o", "--epochs", "10", "--max-steps", "4", "--no-val", "--threads", "1")
    before = json.loads((tmp_path / "o" / "history.json").read_text())
    resumed = run_keyframe(root, tmp_path / "o", "--epochs", "4", "--resume", "--reschedule", "--no-val", "--threads", "1")
    assert resumed["epochs"] == 4 and resumed["steps"] == 8
    history = resumed["history"]
    assert [h["loss"] for h in history[:2]] == [h["loss"] for h in before]
    schedule = history[2]["rescheduled"]
    assert schedule["from_step"] == 4 and schedule["epochs_before"] == 10 and schedule["epochs_after"] == 4
    peak = 2e-3
    expected_start = keyframe.poly_lr(peak, 4, 20, warmup_steps=1)
    assert schedule["from_lr"] == pytest.approx(expected_start)
    # epoch 3 ends at step 5 (lr of step 5), epoch 4 at step 7: (1 - 3/4)^0.9 of the start, floored at 1% of peak
    assert history[2]["lr"] == pytest.approx(expected_start * (1 - 1 / 4) ** 0.9)
    assert history[3]["lr"] == pytest.approx(max(0.01 * peak, expected_start * (1 - 3 / 4) ** 0.9))
    assert torch.load(tmp_path / "o" / "last.pt", weights_only=False)["schedule"] == schedule
    # resuming the shortened run again needs no flag: its recorded --epochs is now 4
    again = run_keyframe(root, tmp_path / "o", "--epochs", "4", "--resume", "--no-val", "--threads", "1")
    assert again["steps"] == 8


def test_reschedule_refuses_an_end_already_passed(tmp_path, rng):
    root = write_camvid_tree(tmp_path / "cv", rng, {"train": 4, "val": 1})
    run_keyframe(root, tmp_path / "o", "--epochs", "10", "--max-steps", "4", "--no-val", "--threads", "1")
    with pytest.raises(SystemExit) as info:
        run_keyframe(root, tmp_path / "o", "--epochs", "2", "--resume", "--reschedule", "--no-val")
    assert "not beyond the 2 epochs already trained" in str(info.value)
