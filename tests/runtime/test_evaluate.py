"""runtime.evaluate: CamVid per-frame accuracy, the video propagation protocol and the
Cityscapes protocol on small synthetic trees written here."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from gsvnet import GSVNet, GSVNetConfig, save_checkpoint
from runtime import evaluate
from gsvnet.datasets.cityscapes import LABEL_TO_TRAIN_ID, find_snippets
from training.keyframe import camvid_config

from ..training.synthetic import LABEL_COLOURS, block_label, moving_texture, write_camvid_tree, write_video

TRAIN_TO_LABEL_ID = {t: l for l, t in LABEL_TO_TRAIN_ID.items()}


class ChannelStepper:
    """Fake backend: a keyframe's labels are its frames' first channel; propagation holds them."""

    def keyframe_step(self, frames):
        return frames[..., 0].copy()

    def propagation_step(self, state, frames):
        return state

    def labels(self, state, size):
        assert tuple(state.shape[1:]) == tuple(size)
        return state


class ColourStepper(ChannelStepper):
    """Fake backend that reads CamVid labels back from the synthetic colour code."""

    def keyframe_step(self, frames):
        d = ((frames[..., None, :].astype(np.int32) - LABEL_COLOURS[:11].astype(np.int32)) ** 2).sum(-1)
        return d.argmin(-1).astype(np.uint8)


def iou_by_hand(truth: np.ndarray, pred: np.ndarray, ignore: int) -> float:
    valid = truth != ignore
    ious = []
    for c in np.unique(np.concatenate([truth[valid], pred[valid]])):
        inter = ((truth == c) & (pred == c) & valid).sum()
        union = (((truth == c) | (pred == c)) & valid).sum()
        ious.append(inter / union)
    return float(np.mean(ious))


def write_cityscapes(root, rng, size=(64, 128)):
    """Two complete snippets (annotated frames 19 and 49) and one with a missing frame."""
    truths = {}
    for city, seq, frame in (("aachen", "000000", 19), ("bonn", "000001", 49), ("bonn", "000002", 19)):
        seq_dir = root / "leftImg8bit_sequence" / "val" / city
        gt_dir = root / "gtFine" / "val" / city
        seq_dir.mkdir(parents=True, exist_ok=True)
        gt_dir.mkdir(parents=True, exist_ok=True)
        truth = block_label(rng, size, block=16, classes=19)
        truth[:8] = 255  # ignore region (label id 0, "unlabeled")
        label_ids = np.vectorize(lambda t: TRAIN_TO_LABEL_ID.get(int(t), 0))(truth).astype(np.uint8)
        Image.fromarray(label_ids).save(gt_dir / f"{city}_{seq}_{frame:06d}_gtFine_labelIds.png")
        for d in range(6):
            if seq == "000002" and d == 3:
                continue
            shifted = np.roll(np.where(truth == 255, 0, truth), d, axis=1).astype(np.uint8)
            Image.fromarray(np.repeat(shifted[..., None], 3, axis=-1)).save(
                seq_dir / f"{city}_{seq}_{frame - d:06d}_leftImg8bit.png")
        truths[(city, seq)] = truth
    return truths


def test_cityscapes_protocol_on_a_synthetic_tree(tmp_path, rng, monkeypatch):
    root = tmp_path / "cityscapes"
    truths = write_cityscapes(root, rng)
    snippets, skipped = find_snippets(root, "val")
    assert sorted(s.frame for s in snippets) == [19, 49] and len(skipped) == 1
    monkeypatch.setattr(evaluate, "make_stepper", lambda args, ckpt, variant="full": evaluate.Runner(ChannelStepper(), None, "fake", []))
    ckpt = save_checkpoint(tmp_path / "cs.pt", GSVNet(GSVNetConfig(num_classes=19)))
    section = evaluate.main(["cityscapes", "--root", str(root), "--checkpoint", str(ckpt), "--json", str(tmp_path / "a.json")])
    result = section["cityscapes"]
    assert result["snippets"] == 2 and result["skipped"] == 1
    # keyframe at 20-l predicts that frame's labels (the truth shifted by l columns), held to frame 20
    complete = [truths[("aachen", "000000")], truths[("bonn", "000001")]]
    for d in range(6):
        truth = np.concatenate(complete, axis=1)
        shifted = np.concatenate([np.roll(np.where(t == 255, 0, t), d, axis=1) for t in complete], axis=1)
        assert result["miou_by_distance"][d] == pytest.approx(iou_by_hand(truth, shifted, 255)), d
    assert result["miou_by_distance"][0] == 1.0
    assert result["min"][5] == result["miou_by_distance"][5] < result["min"][1]
    assert result["avg"][3] == pytest.approx(np.mean([result["miou_by_distance"][d] for d in (1, 2, 3)]))
    saved = json.loads((tmp_path / "a.json").read_text())
    assert saved["cityscapes"]["snippets"] == 2 and "commit" in saved["runs"]["cityscapes"]


def test_cityscapes_cli_with_a_real_network(tmp_path, rng):
    root = tmp_path / "cityscapes"
    write_cityscapes(root, rng)
    ckpt = save_checkpoint(tmp_path / "cs.pt", GSVNet(GSVNetConfig(num_classes=19)))
    result = evaluate.main(["cityscapes", "--root", str(root), "--checkpoint", str(ckpt), "--limit", "1",
                            "--max-distance", "2", "--json", str(tmp_path / "b.json")])["cityscapes"]
    assert set(result["min"]) == {1, 2} and all(0.0 <= v <= 1.0 for v in result["miou_by_distance"].values())


def test_camvid_scores_a_perfect_stepper_near_one_and_merges_json(tmp_path, rng, monkeypatch):
    data = write_camvid_tree(tmp_path / "camvid", rng, {"test": 3}, size=(64, 80))
    ckpt = save_checkpoint(tmp_path / "kf.pt", GSVNet(camvid_config("swiftnet_r18")))
    out = tmp_path / "acc.json"
    out.write_text(json.dumps({"video": {"kept": True}}))
    monkeypatch.setattr(evaluate, "make_stepper", lambda args, ckpt, variant="full": evaluate.Runner(ColourStepper(), None, "fake", list(camvid_config("swiftnet_r18").class_names)))
    result = evaluate.main(["camvid", "--data", str(data), "--size", "64", "80", "--checkpoint", str(ckpt),
                            "--json", str(out)])["camvid"]
    # block borders blend colours (so rare stray classes score 0 there), interiors are exact
    assert result["images"] == 3 and result["pixel_accuracy"] > 0.95
    assert np.nanmedian(list(result["iou"].values())) > 0.9
    assert list(result["iou"])[:2] == ["sky", "building"]
    saved = json.loads(out.read_text())
    assert saved["video"] == {"kept": True} and saved["camvid"]["miou"] == result["miou"]


def test_camvid_with_the_torch_reference(tmp_path, rng):
    data = write_camvid_tree(tmp_path / "camvid", rng, {"test": 2}, size=(64, 80))
    ckpt = save_checkpoint(tmp_path / "kf.pt", GSVNet(camvid_config("swiftnet_r18")))
    result = evaluate.main(["camvid", "--data", str(data), "--size", "64", "80", "--checkpoint", str(ckpt),
                            "--json", str(tmp_path / "c.json")])["camvid"]
    assert result["backend"].startswith("torch-reference") and 0.0 <= result["miou"] <= 1.0
    assert result["label_size"] == [64, 80]


def test_video_protocol_on_a_static_clip(tmp_path, rng):
    frame = moving_texture(rng, 1, (64, 96))[0]
    video = write_video(tmp_path / "still.mp4", np.repeat(frame[None], 12, axis=0))
    ckpt = save_checkpoint(tmp_path / "kf.pt", GSVNet(camvid_config("swiftnet_r18")))
    section = evaluate.main(["video", "--video", str(video), "--size", "64", "96", "--checkpoint", str(ckpt),
                             "--no-intra-checkpoint", str(ckpt), "--max-distance", "3", "--holdout", "0.5",
                             "--json", str(tmp_path / "v.json")])["video"]
    assert section["heldout_frames"] == [6, 12]
    rows = section["rows"]
    assert [r["variant"] for r in rows.values()] == ["full", "no_intra", "warp", "hold"]
    for r in rows.values():
        assert r["miou_by_distance"][0] == 1.0  # the reference is the keyframe net's own prediction
    # nothing moves (up to codec noise): holding the keyframe's labels is (almost) exact
    assert min(rows["hold (no motion)"]["min"].values()) > 0.97


def test_evaluate_through_a_runtime_backend(tmp_path, rng, engines):
    pytest.importorskip("onnxruntime")
    data = write_camvid_tree(tmp_path / "camvid", rng, {"test": 2}, size=(64, 80))
    section = evaluate.main(["camvid", "--data", str(data), "--backend", "onnxruntime", "--engines", str(engines),
                             "--json", str(tmp_path / "e.json")])
    (key, result), = section.items()
    # the engines' size, not the labels', and the backend: never overwrites the reference's section
    assert key == f"camvid_{result['frame_size'][0]}x{result['frame_size'][1]}_onnxruntime"
    assert "onnxruntime" in result["backend"] and result["label_size"] == [64, 80]
    assert 0.0 <= result["miou"] <= 1.0
