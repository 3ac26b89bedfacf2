"""training.ship: refuses propagation below warp-only on the selection half, writes weights + provenance otherwise."""

from __future__ import annotations

import json

import pytest
import torch

from gsvnet import GSVNet, load_checkpoint, save_checkpoint
from gsvnet.datasets.camvid import load_split
from gsvnet.stepper import TorchStepper
from training import ship
from training.keyframe import camvid_config

from .scoring import keyframe_scores_by_hand
from .synthetic import write_camvid_tree


def _selection(ours: list[float], warp: list[float]) -> dict:
    row = lambda v: {"miou_by_distance": {str(d): x for d, x in enumerate(v)}}  # noqa: E731
    return {"step": 100, "score": sum(ours[1:5]) / 4, "warp_score": sum(warp[1:5]) / 4, "gsvnet": row(ours), "warp_only": row(warp)}


def test_refuses_propagation_below_warp_only(tmp_path):
    model = GSVNet(camvid_config("swiftnet_r18"))
    bad = save_checkpoint(tmp_path / "bad.pt", model, {"selection": _selection([0.6, 0.58, 0.56, 0.53, 0.5, 0.48],
                                                                            [0.6, 0.58, 0.56, 0.54, 0.5, 0.48])})
    with pytest.raises(SystemExit) as info:
        ship.main(["--checkpoint", str(bad), "--weights-dir", str(tmp_path / "w"), "--keyframe-state", "",
                   "--propagation-summary", str(tmp_path / "none.json")])
    assert "below warp-only at distance(s) 3" in str(info.value) and "\n" not in str(info.value)
    assert not (tmp_path / "w").exists() or not any((tmp_path / "w").iterdir())
    untrained = save_checkpoint(tmp_path / "raw.pt", model)
    with pytest.raises(SystemExit, match="no selection record"):
        ship.main(["--checkpoint", str(untrained), "--weights-dir", str(tmp_path / "w")])


def test_ships_fp16_weights_with_provenance(tmp_path, rng):
    model = GSVNet(camvid_config("swiftnet_r18"))
    good = save_checkpoint(tmp_path / "good.pt", model, {"selection": _selection([0.6, 0.59, 0.57, 0.55, 0.53, 0.5],
                                                                             [0.6, 0.58, 0.56, 0.54, 0.5, 0.48])})
    target = ship.main(["--checkpoint", str(good), "--weights-dir", str(tmp_path / "w"), "--keyframe-state", "",
                        "--propagation-summary", str(tmp_path / "none.json"), "--command", "python -m training.keyframe",
                        "--data", str(write_camvid_tree(tmp_path / "cv", rng, {"test": 2}))])
    info = json.loads(target.with_suffix(".json").read_text())
    assert info["training"]["selection_half"]["gsvnet"]["miou_by_distance"]["3"] == 0.55
    assert info["commands"] == ["python -m training.keyframe"] and info["sha256"]
    shipped, _ = load_checkpoint(target)
    a, b = shipped.state_dict(), model.state_dict()
    assert all(torch.allclose(a[k].float(), b[k].float(), atol=1e-3, rtol=1e-3) for k in a)  # FP16 storage
    record = info["regression_check"]
    assert len(record["images"]) == 2 and 0 <= record["miou"] <= 1
    # of the FP16 file as shipped, scored independently of runtime.metrics
    by_hand = keyframe_scores_by_hand(TorchStepper(shipped), load_split(tmp_path / "cv", "test"), tuple(record["frame_size"]))
    assert (record["miou"], record["pixel_accuracy"]) == pytest.approx(by_hand, abs=1e-12)
