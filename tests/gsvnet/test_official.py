"""Official GSVNet checkpoints: our modules loaded with ``gsvnet.official`` against an independent
re-statement of the official forward (tests/gsvnet/official_restatement.py) on state dicts in the
official layout, whose key names come from the official module structure."""

from __future__ import annotations

import argparse

import numpy as np
import pytest
import torch

from gsvnet import GSVNet, GSVNetConfig, ops
from gsvnet.checkpoint import CheckpointError
from gsvnet.official import load_official, model_from_official_files

from . import official_restatement as official

H, W, C, STEPS = 16, 24, 19, 5


@pytest.fixture
def official_state() -> dict:
    return official.random_official_state(torch.Generator().manual_seed(11), C)


def _ours(state: dict) -> GSVNet:
    model = GSVNet(GSVNetConfig(num_classes=C, radius=1)).eval()
    load_official(model, flow=state["flow"], guided_conv=state["grm"])
    return model


def _sequence(generator: torch.Generator) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Keyframe scores and STEPS + 1 smooth 1/8 RGB frames drifting to the right."""
    base = torch.randn(1, 3, H // 2, W // 2 + STEPS, generator=generator)
    big = torch.nn.functional.interpolate(base, size=(H, W + 2 * STEPS), mode="bilinear", align_corners=False)
    smalls = [big[..., t : t + W].contiguous() for t in range(STEPS + 1)]
    scores = 3 * torch.nn.functional.interpolate(torch.randn(1, C, H // 4, W // 4, generator=generator), size=(H, W),
                                                 mode="bilinear", align_corners=False)
    return scores, smalls


def test_loader_takes_the_official_layout_and_a_module_prefix(official_state):
    prefixed = {"flow": {f"module.{k}": v for k, v in official_state["flow"].items()},
                "grm": {f"module.{k}": v for k, v in official_state["grm"].items()}}
    a, b = _ours(official_state), _ours(prefixed)
    for part in ("flow", "intra", "guide"):
        for (k, x), (_, y) in zip(getattr(a, part).state_dict().items(), getattr(b, part).state_dict().items()):
            assert torch.equal(x, y), f"{part}.{k}"
    # nothing silently left at its initial value: every intra/guide tensor came from the file
    assert torch.equal(a.intra.intra_net[6].weight, official_state["grm"]["grm.intra_net.intra_net.6.weight"])


def test_propagation_over_five_steps_matches_the_official_computation(official_state):
    scores, smalls_rgb = _sequence(torch.Generator().manual_seed(5))
    smalls_bgr = [s.flip(1) for s in smalls_rgb]  # the official flow and intra nets see BGR
    with torch.no_grad():
        expected = official.propagate_sequence(official_state, scores, smalls_bgr)
        model, got, prev = _ours(official_state), [], scores
        for t in range(1, STEPS + 1):
            prev = model.propagate(prev, smalls_rgb[t - 1], smalls_rgb[t])
            got.append(prev)
    for t, (e, g) in enumerate(zip(expected, got), start=1):
        err = (g.double() - e.double()).abs().max().item()
        scale = e.abs().max().item()
        assert err <= 1e-5 * max(1.0, scale), (t, err, scale)
        assert torch.equal(g.argmax(1), e.argmax(1)), t
    # the comparison is not vacuous: the scores move, the null candidate is used, edges exist
    assert (expected[-1] - expected[0]).abs().max() > 1e-2


def test_edge_map_and_eleven_weight_fusion_against_the_official_statements(official_state):
    g = torch.Generator().manual_seed(3)
    warped = torch.randn(2, C, H, W, generator=g) * 2
    intra = torch.randn(2, C, H, W, generator=g)
    w11 = torch.rand(2, 11, H, W, generator=g)
    w11[:, :, :3, :3] = 0.0  # all-zero weights somewhere: 0, not NaN
    # official: normalise all 11, weigh [warped, 8 delays, zero kernel, intra]
    delayed = torch.nn.functional.conv3d(warped.unsqueeze(1), official.random_official_state(g)["grm"]["grm.ideal_dk.filter_copy_s"],
                                         padding=(0, 1, 1))
    cands = torch.cat((warped.unsqueeze(1), delayed, intra.unsqueeze(1)), 1)
    expected = ((w11 / (w11.sum(1, keepdim=True) + 1e-9)).unsqueeze(2) * cands).sum(1)
    from gsvnet.official import OFFICIAL_GUIDE_ROWS

    got = ops.chunk_filter(warped, intra, w11[:, OFFICIAL_GUIDE_ROWS], radius=1)
    assert (got - expected).abs().max() < 1e-5
    lap = torch.ones(1, 1, 3, 3)
    lap[0, 0, 1, 1] = -8
    official_edge = (torch.nn.functional.conv2d(warped.argmax(1, keepdim=True).float(), lap, padding=1) != 0).float()
    assert torch.equal(ops.edge_map(warped), official_edge)


def test_unknown_layouts_are_refused_in_one_line(official_state):
    flat = {k.replace("intra_net.intra_net.", "intra_net."): v for k, v in official_state["grm"].items()}
    with pytest.raises(CheckpointError) as info:
        load_official(GSVNet(GSVNetConfig(num_classes=C)), guided_conv=flat)
    assert "intra_net" in str(info.value) and "\n" not in str(info.value)
    missing = dict(official_state["grm"])
    del missing["grm.guide.guide_decoder.0.bias"]
    with pytest.raises(CheckpointError, match="missing: guide_decoder.0.bias"):
        load_official(GSVNet(GSVNetConfig(num_classes=C)), guided_conv=missing)
    trained = dict(official_state["grm"])
    trained["grm.ideal_dk.filter_copy_s"] = trained["grm.ideal_dk.filter_copy_s"] + 0.01
    with pytest.raises(CheckpointError, match="unit impulses"):
        load_official(GSVNet(GSVNetConfig(num_classes=C)), guided_conv=trained)


def test_official_files_as_the_official_trainer_saves_them(tmp_path, official_state):
    """The training checkpoint (state_dict under module., state_dict_of, optimizer, argparse args)
    plus a bare SwiftNet state dict give one model; a file with foreign objects is refused."""
    keyframe = GSVNet(GSVNetConfig(num_classes=C)).keyframe.state_dict()
    keyframe["backbone.img_mean"] = torch.zeros(1, 3, 1, 1)  # the official SwiftNet's buffers are dropped
    torch.save(keyframe, tmp_path / "swiftnet.pth")
    torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in official_state["grm"].items()},
                "state_dict_of": official_state["flow"], "optimizer": {"state": {}, "param_groups": []},
                "best_pred": 0.7, "args": argparse.Namespace(lr=0.002, segnet="swiftnet")}, tmp_path / "gsvnet.pth.tar")
    model = model_from_official_files("swiftnet_r18", tmp_path / "swiftnet.pth", tmp_path / "gsvnet.pth.tar")
    reference = _ours(official_state)
    for key in ("flow.toflow.weight", "guide.guide_decoder.0.weight", "intra.intra_net.0.weight"):
        assert torch.equal(model.state_dict()[key], reference.state_dict()[key]), key
    assert torch.equal(model.keyframe.state_dict()["logits.conv.weight"], keyframe["logits.conv.weight"])

    torch.save({"state_dict": official_state["grm"], "args": np.random.default_rng(0)}, tmp_path / "odd.pth")
    with pytest.raises(CheckpointError, match="never unpickled"):
        model_from_official_files("swiftnet_r18", tmp_path / "swiftnet.pth", tmp_path / "odd.pth")
    torch.save({"state_dict": official_state["grm"]}, tmp_path / "noflow.pth")
    with pytest.raises(CheckpointError, match="state_dict_of"):
        model_from_official_files("swiftnet_r18", tmp_path / "swiftnet.pth", tmp_path / "noflow.pth")


def test_command_reports_a_missing_file_in_one_line_on_stderr(tmp_path):
    """python -m gsvnet.official as every other command: ``error: ...`` alone on stderr, nothing on
    stdout, exit 2, no checkpoint written."""
    from tests.conftest import run_module

    out = tmp_path / "gsvnet.pt"
    proc = run_module("gsvnet.official", "--net", "swiftnet_r18", "--keyframe", str(tmp_path / "swiftnet.pth"),
                      "--propagation", str(tmp_path / "gsvnet.pth.tar"), "--out", str(out))
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr == f"error: official checkpoint not found: {tmp_path / 'gsvnet.pth.tar'}\n"
    assert proc.stdout == "" and not out.exists()


def test_official_resampling_follows_the_official_pipeline():
    """config.resampling = 'official': 1/8 frame, keyframe input/output and labels resized the way
    trainer/gsvnet_trainer.py does (bilinear, align_corners=True; keyframe input h//4*3)."""
    g = torch.Generator().manual_seed(2)
    model = GSVNet(GSVNetConfig(num_classes=C, resampling="official")).eval()
    image = torch.randint(0, 256, (1, 80, 144, 3), dtype=torch.uint8, generator=g)
    frame = (image.permute(0, 3, 1, 2).float() - model.mean.view(1, 3, 1, 1)) / model.std.view(1, 3, 1, 1)
    bilinear = lambda x, size: torch.nn.functional.interpolate(x, size=size, mode="bilinear", align_corners=True)  # noqa: E731
    with torch.no_grad():
        assert torch.allclose(model.downsample(image), bilinear(frame, (10, 18)), atol=1e-5)
        expected = bilinear(model.keyframe(bilinear(frame, (80 // 4 * 3, 144 // 4 * 3))), (10, 18))
        assert torch.allclose(model.keyframe_scores(image), expected, atol=1e-4)
        scores = torch.randn(1, C, 10, 18, generator=g)
        assert torch.equal(model.scores_to_labels(scores, (80, 144)), bilinear(scores, (80, 144)).argmax(1).to(torch.uint8))
    with pytest.raises(ValueError, match="resampling"):
        GSVNetConfig(resampling="nearest")
