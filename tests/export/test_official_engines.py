"""Engines built from official GSVNet files (`build_engines --official`) compute what the official
code computes: their non-keyframe stages in onnxruntime against the independent re-statement of
the official forward (tests/gsvnet/official_restatement.py), step by step."""

from __future__ import annotations

import numpy as np
import torch

from engine_format.manifest import load_manifest
from gsvnet import GSVNet, GSVNetConfig
from runtime.backends import create_backend
from tests.conftest import run_module
from tests.gsvnet import official_restatement as official

SIZE = (64, 128)  # 1/8 grid 8x16: the official guiding net needs multiples of 4


def test_engines_from_official_files_match_the_official_computation(tmp_path, rng):
    state = official.random_official_state(torch.Generator().manual_seed(21))
    keyframe = GSVNet(GSVNetConfig(num_classes=19)).keyframe.state_dict()  # a bare SwiftNet state dict
    torch.save(keyframe, tmp_path / "swiftnet.pth")
    torch.save({"epoch": 1, "state_dict": {f"module.{k}": v for k, v in state["grm"].items()},
                "state_dict_of": state["flow"]}, tmp_path / "gsvnet.pth.tar")
    out = tmp_path / "eng"
    proc = run_module("export.build_engines", "--official", str(tmp_path / "swiftnet.pth"), str(tmp_path / "gsvnet.pth.tar"),
                      "--size", f"{SIZE[0]}x{SIZE[1]}", "--out", str(out), "--backend", "onnx")
    assert proc.returncode == 0, proc.stderr[-2000:]
    manifest = load_manifest(out)
    assert manifest.model["resampling"] == "official" and manifest.model["num_classes"] == 19
    backend = create_backend("onnxruntime", manifest)

    smooth = torch.nn.functional.interpolate(torch.rand(1, 3, 8, 12, generator=torch.Generator().manual_seed(3)) * 255,
                                             size=(SIZE[0], SIZE[1] + 40), mode="bicubic", align_corners=False).clamp(0, 255)
    frames = [smooth[..., 8 * t : 8 * t + SIZE[1]].permute(0, 2, 3, 1).to(torch.uint8).numpy() for t in range(5)]
    states = [backend.keyframe_step(frames[0])]
    for f in frames[1:]:
        states.append(backend.propagation_step(states[-1], f))
    smalls_bgr = [torch.from_numpy(np.asarray(s.small)).flip(1) for s in states]  # the official nets see BGR
    with torch.no_grad():
        expected = official.propagate_sequence(state, torch.from_numpy(np.asarray(states[0].scores)), smalls_bgr)
    for t, (e, s) in enumerate(zip(expected, states[1:]), start=1):
        got = torch.from_numpy(np.asarray(s.scores))
        err = float((got.double() - e.double()).abs().max())
        assert err <= 1e-4 * max(1.0, float(e.abs().max())), (t, err)
        assert torch.equal(got.argmax(1), e.argmax(1)), t
    assert float((expected[-1] - expected[0]).abs().max()) > 1e-2  # the scores really move
