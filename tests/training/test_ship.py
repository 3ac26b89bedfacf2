"""training.ship: refuses propagation below warp-only on the selection half (at any one distance 1..4, and a real
net that loses), writes weights + provenance otherwise."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from gsvnet import GSVNet, load_checkpoint, ops, save_checkpoint
from gsvnet.datasets.camvid import LabelledFrame, load_split
from runtime.schedule.torch_stepper import TorchStepper
from training import ship
from training.keyframe import camvid_config
from training.propagation_loop import selection_record
from training.selection import SelectionSet

from .scoring import keyframe_scores_by_hand
from .synthetic import block_label, write_camvid_tree


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
    # of the FP16 file as shipped, scored independently of evaluation.metrics
    by_hand = keyframe_scores_by_hand(TorchStepper(shipped), load_split(tmp_path / "cv", "test"), tuple(record["frame_size"]))
    assert (record["miou"], record["pixel_accuracy"]) == pytest.approx(by_hand, abs=1e-12)


@pytest.mark.parametrize("distance", [1, 2, 3, 4])
def test_refuses_a_net_below_warp_only_at_any_one_of_the_distances_1_to_4(distance):
    """Better than warping everywhere but at ``distance`` (by half a point): refused, in one line
    naming that distance and its two scores."""
    warp = [0.6, 0.58, 0.56, 0.54, 0.52, 0.5]
    ours = [warp[0]] + [v + 0.02 for v in warp[1:]]
    ours[distance] = warp[distance] - 0.005
    with pytest.raises(SystemExit) as info:
        ship.check_propagation({"selection": _selection(ours, warp)}, "net.pt")
    message = str(info.value)
    assert "\n" not in message and message.startswith("error: refusing to ship net.pt: ")
    assert (f"below warp-only at distance(s) {distance} on the selection half "
            f"({100 * ours[distance]:.1f} < {100 * warp[distance]:.1f})") in message
    level = [warp[0]] + [v + 0.02 for v in warp[1:]]
    assert ship.check_propagation({"selection": _selection(level, warp)}, "net.pt")["gsvnet"]  # that distance decided it


def test_refuses_a_real_net_that_loses_to_plain_warping(tmp_path, rng):
    """A propagation net whose guiding net gives all its weight to the null candidate (its scores
    fade to zero), scored by training.propagation's own selection record on a static sequence
    with a perfect keyframe, where plain warping (zero flow) keeps the keyframe's labels: its
    record is below warp-only at every distance, and training.ship refuses it."""
    model = GSVNet(camvid_config("swiftnet_r18")).eval()
    null = ops.num_shifts(model.config.radius) + 1
    with torch.no_grad():  # the guiding net's last BatchNorm: every weight 0 but the null candidate's 1
        norm = model.guide.guide_decoder[1]
        norm.weight.zero_()
        norm.bias.zero_()
        norm.bias[null] = 1.0
    size, frames = (64, 96), 12
    label = block_label(rng, size, block=16, classes=11)
    grid = label[4::8, 4::8]  # the label at every 1/8-grid cell's centre
    scores = torch.from_numpy(np.eye(11, dtype=np.float32)[grid].transpose(2, 0, 1)[None]).repeat(frames, 1, 1, 1)
    small = torch.from_numpy(rng.standard_normal((1, 3, *grid.shape)).astype(np.float32)).repeat(frames, 1, 1, 1)
    image = np.zeros((*size, 3), np.uint8)
    selection = SelectionSet([LabelledFrame(f"{t:03d}", image, label) for t in range(frames)], small, scores,
                             targets=[4, 5])  # the first half's frames with 4 before them
    record = selection_record(model, selection, max_interval=4, step=1, shares=[])
    ours, warp = record["gsvnet"]["miou_by_distance"], record["warp_only"]["miou_by_distance"]
    assert all(ours[d] < warp[d] - 0.3 for d in ("1", "2", "3", "4")), (ours, warp)  # it really loses
    loser = save_checkpoint(tmp_path / "loser.pt", model, {"selection": record})
    with pytest.raises(SystemExit) as info:
        ship.main(["--checkpoint", str(loser), "--weights-dir", str(tmp_path / "w"), "--keyframe-state", "",
                   "--propagation-summary", str(tmp_path / "none.json")])
    message = str(info.value)
    assert "\n" not in message and "below warp-only at distance(s) 1, 2, 3, 4 on the selection half" in message
    assert not (tmp_path / "w").exists() or not any((tmp_path / "w").iterdir())
