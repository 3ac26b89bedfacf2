"""``training.propagation --teacher-onnx``: the propagation nets distilled for a segmenter that is
not one of ours (other conventions, 8 classes) on a real clip without labels. The run's selection
score improves on the untrained nets, the held-out tail is split into a selection and a report
half that training never saw, the nets are shipped exactly when they are not below warp-only at
any distance of the selection half (else kept as final.rejected.pt with exit 1), and they build
into an engines folder with that model.

A run this short beats holding the keyframe's labels on the report half over distances 1..4 (it
does at distances 2-4 and not at 1 on this clip at 25 fps; docs/own-segmenter.md has the
figures)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from gsvnet import load_checkpoint
from gsvnet.pretrained import default_checkpoint
from tests.conftest import DATA, run_module, shared_data

#: CamVid's 11 classes merged into 8: sky, building+fence, pole+sign, road, pavement, tree, car,
#: pedestrian+bicyclist
GROUPS = [[0], [1, 7], [2, 6], [3], [4], [5], [8], [9, 10]]
INPUT = (208, 352)


class Grouped(nn.Module):
    """The shipped SwiftNet behind other conventions: BGR input on -1..1 at a fixed size, 8 merged
    classes, softmax probabilities at 1/8 of its input."""

    def __init__(self) -> None:
        super().__init__()
        model, _ = load_checkpoint(default_checkpoint("swiftnet_r18"))
        self.net = model.keyframe
        norm = model.config.normalization
        self.register_buffer("mean", torch.tensor(norm["mean"]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(norm["std"]).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.net(((x.flip(1) * 0.5 + 0.5) * 255.0 - self.mean) / self.std)
        grouped = torch.stack([torch.logsumexp(logits[:, g], dim=1) for g in GROUPS], dim=1)
        return F.softmax(F.avg_pool2d(grouped, 2), dim=1)


@pytest.fixture(scope="module")
def teacher(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("teacher") / "grouped.onnx"
    with torch.no_grad():
        torch.onnx.export(Grouped().eval(), (torch.randn(2, 3, *INPUT),), str(path), dynamo=True, input_names=["x"],
                          output_names=["p"], external_data=False,
                          dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=64)},))
    return path


FLAGS = ["--bgr", "--mean", "0.5", "0.5", "0.5", "--std", "0.5", "0.5", "0.5"]


def test_distillation_learns_selects_on_unseen_frames_ships_by_its_rule_and_builds(teacher, tmp_path):
    video = shared_data(DATA / "videos" / "project_video_short.mp4", "highway clip")
    out = tmp_path / "run"
    proc = run_module("training.propagation", "--teacher-onnx", str(teacher), *FLAGS, "--videos", str(video),
                      "--size", "272", "480", "--max-frames", "150", "--holdout", "0.4", "--flow-steps", "0",
                      "--intra-steps", "200", "--steps", "300", "--eval-every", "100", "--flow-lr-e2e", "0",
                      "--max-interval", "4", "--kl-scale", "2", "--out", str(out), timeout=1800)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["clips"][str(video)] == {"train": [0, 90], "selection": [90, 120], "report": [120, 150]}
    assert summary["keyframe_import"]["num_classes"] == 8 and summary["keyframe_import"]["output"] == "probabilities"
    history = summary["selection_history"]
    assert [h["step"] for h in history] == [0, 100, 200, 300]
    assert summary["selected"]["score"] > history[0]["score"] + 0.01, "training did not improve the agreement"
    chosen = summary["selected"]
    below = [d for d in "1234" if chosen["gsvnet"]["miou_by_distance"][d] < chosen["warp_only"]["miou_by_distance"][d]]
    assert summary["shipped"] == (not below)
    checkpoint = out / ("final.pt" if not below else "final.rejected.pt")
    assert checkpoint.is_file() and not (out / ("final.rejected.pt" if not below else "final.pt")).exists()
    assert proc.returncode == (0 if not below else 1), proc.stderr[-3000:]
    if below:
        assert "error: not shipping the distilled nets" in proc.stderr.strip().splitlines()[-1]
    for row in ("gsvnet", "warp_only", "hold"):
        assert set(summary["report_half"][row]["miou_by_distance"]) == {"0", "1", "2", "3", "4"}
    assert summary["report_half"]["hold"] != summary["report_half"]["gsvnet"]
    # the propagation beats holding the keyframe's labels on the report half (never trained or
    # selected on), over distances 1..4 (on 2026-12-07: 68.2 against 67.5 mIoU)
    mean = {row: sum(summary["report_half"][row]["miou_by_distance"][d] for d in "1234") / 4 for row in ("gsvnet", "hold")}
    assert mean["gsvnet"] > mean["hold"], mean

    engines = tmp_path / "eng"
    proc = run_module("export.build_engines", "--keyframe-onnx", str(teacher), *FLAGS, "--checkpoint",
                      str(checkpoint), "--size", "272x480", "--backend", "onnx", "--out", str(engines))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "propagation nets from" in proc.stdout
    assert json.loads((engines / "manifest.json").read_text())["checkpoint"]["propagation"] == str(checkpoint)
    proc = run_module("runtime.infer", "--video", str(video), "--engines", str(engines), "--backend", "onnxruntime",
                      "--interval", "4", "--max-frames", "12", "--stats", str(tmp_path / "s.json"), "--no-progress")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads((tmp_path / "s.json").read_text())["keyframes"] == 3
