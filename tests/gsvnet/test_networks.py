import pytest
import torch

from gsvnet import GSVNet, GSVNetConfig, grid_size, key_size
from gsvnet.keyframe import KeyframeNet, create_keyframe_net, keyframe_net_names, register
from gsvnet.keyframe import registry as registry_module
from gsvnet.keyframe.resnet import adaptive_avg_pool
from gsvnet.propagation import FlowNet, GuidingNet, IntraNet


def test_registry_lists_both_paper_nets():
    assert {"swiftnet_r18", "bisenet_r18"} <= set(keyframe_net_names())
    with pytest.raises(KeyError, match="swiftnet_r18"):
        create_keyframe_net("nope")


def test_registering_a_new_net_is_enough_to_use_it():
    class Tiny(KeyframeNet):
        output_stride = 2

        def __init__(self, num_classes: int) -> None:
            super().__init__(num_classes)
            self.conv = torch.nn.Conv2d(3, num_classes, 3, 2, 1)

        def forward(self, x):
            return self.conv(x)

    register("tiny_test_net")(lambda num_classes=19: Tiny(num_classes))
    try:
        model = GSVNet(GSVNetConfig(keyframe_net="tiny_test_net", num_classes=5)).eval()
        state = model.keyframe_step(torch.randint(0, 255, (1, 32, 48, 3), dtype=torch.uint8))
        assert state.scores.shape == (1, 5, 4, 6)
    finally:
        registry_module._REGISTRY.pop("tiny_test_net")


@pytest.mark.parametrize("name", ["swiftnet_r18", "bisenet_r18"])
@pytest.mark.parametrize("size", [(64, 128), (72, 104), (37, 53)])  # the last two are not multiples of 32
def test_keyframe_nets_accept_any_size(name, size):
    net = create_keyframe_net(name, num_classes=7).eval()
    with torch.no_grad():
        out = net(torch.randn(2, 3, *size))
    s = net.output_stride
    assert out.shape[:2] == (2, 7) and out.dtype == torch.float32
    assert abs(out.shape[2] - size[0] / s) <= 1 and abs(out.shape[3] - size[1] / s) <= 1


def test_keyframe_nets_carry_normalisation():
    for name in keyframe_net_names():
        norm = create_keyframe_net(name).normalization
        assert len(norm.mean) == 3 and all(s > 1 for s in norm.std)  # 0..255 units


def test_bisenet_aux_heads_in_training_mode():
    net = create_keyframe_net("bisenet_r18", num_classes=4)
    main, aux = net.forward_train(torch.randn(2, 3, 64, 64))
    assert main.shape == (2, 4, 8, 8) and [a.shape for a in aux] == [(2, 4, 4, 4), (2, 4, 8, 8)]


@pytest.mark.parametrize("hw", [(16, 32), (17, 30), (9, 13)])
def test_propagation_nets_keep_the_grid(hw):
    cur, prev = torch.randn(2, 3, *hw), torch.randn(2, 3, *hw)
    flow = FlowNet().eval()(cur, prev)
    assert flow.shape == (2, 2, *hw)
    intra = IntraNet(11).eval()(cur)
    assert intra.shape == (2, 11, *hw)
    weights = GuidingNet(11, 10).eval()(intra, torch.rand(2, 1, *hw))
    assert weights.shape == (2, 10, *hw) and (weights >= 0).all()


def test_fresh_flow_net_predicts_zero_motion():
    assert torch.count_nonzero(FlowNet()(torch.randn(1, 3, 8, 8), torch.randn(1, 3, 8, 8))) == 0


def test_parameter_counts_match_the_paper():
    model = GSVNet(GSVNetConfig())
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    # paper Table 2 counts bytes of FP32 weights: 47.2M for SwiftNet-R18, 1.6M for the non-key part
    assert abs(count(model.keyframe) * 4 / 1e6 - 47.2) < 0.1
    non_key = count(model.flow) + count(model.intra) + count(model.guide)
    assert abs(non_key * 4 / 1e6 - 1.6) < 0.05


def test_adaptive_pool_equals_torch():
    x = torch.randn(2, 3, 13, 23)
    assert torch.allclose(adaptive_avg_pool(x, (8, 14)), torch.nn.functional.adaptive_avg_pool2d(x, (8, 14)), atol=1e-6)


def test_sizes():
    assert grid_size((1024, 2048)) == (128, 256)
    assert key_size((1024, 2048), 0.75) == (768, 1536)
    assert key_size((544, 960), 0.75) == (408, 720)
    with pytest.raises(ValueError, match="multiples of 8"):
        grid_size((540, 960))


@pytest.mark.parametrize("name", ["swiftnet_r18", "bisenet_r18"])
def test_gsvnet_steps_shapes_and_dtypes(name):
    model = GSVNet(GSVNetConfig(keyframe_net=name, num_classes=11, radius=2)).eval()
    image = torch.randint(0, 256, (2, 96, 160, 3), dtype=torch.uint8)
    with torch.no_grad():
        key = model.keyframe_step(image)
        assert key.scores.shape == (2, 11, 12, 20) and key.small.shape == (2, 3, 12, 20)
        nxt = model.propagation_step(key, image)
        assert nxt.scores.shape == (2, 11, 12, 20) and nxt.scores.dtype == torch.float32
        flow = model.estimate_flow(nxt.small, key.small)
        warped = model.warp(key.scores, flow)
        intra = model.intra_scores(nxt.small)
        weights = model.guide_weights(intra, warped)
        assert weights.shape == (2, 27, 12, 20)  # K = 25 shifts, intra, null
        labels = model.labels(nxt, (96, 160))
    assert labels.shape == (2, 96, 160) and labels.dtype == torch.uint8 and int(labels.max()) < 11


def test_gsvnet_rejects_frames_not_multiple_of_8():
    model = GSVNet(GSVNetConfig()).eval()
    with pytest.raises(ValueError, match="multiple"):
        model.keyframe_step(torch.zeros(1, 100, 160, 3, dtype=torch.uint8))


def test_config_validation():
    with pytest.raises(ValueError, match="key_scale"):
        GSVNetConfig(key_scale=1.5)
    with pytest.raises(ValueError, match="unknown GSVNet config keys"):
        GSVNetConfig.from_dict({"bogus": 1})
    cfg = GSVNetConfig(num_classes=11)
    assert cfg.class_names[0] == "sky" and len(cfg.palette) == 11
