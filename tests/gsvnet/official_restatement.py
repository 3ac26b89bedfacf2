"""An independent re-statement of the official GSVNet propagation forward (robert80203/GSVNet),
written as plain functions over the official state-dict layout after reading its code
(model/gsv/network.py, model/guide/networks.py, model/intra/networks.py,
model/flownet/networks.py FlowLight, model/warp/{mc_mod,grid_sampler}.py, and the inference
loop of trainer/gsvnet_trainer.py). Nothing here imports the project's modules: the tests hold
``gsvnet`` (loaded with ``gsvnet.official.load_official``) against it.

Conventions of the official code that matter:
- the flow and intra nets see BGR frames; the flow net's input is cat(current, previous);
- FlowLight predicts at 1/4 of the 1/8 grid, upsampled bilinearly (align_corners=True), and the
  motion-compensation layer divides it by 4 before sampling;
- the sampling grid is linspace(-1, 1) plus 2 * flow / (size - 1), sampled by grid_sample in
  torch 1.1 (the version the official requirements pin), whose bilinear mode is align_corners=True;
- edge map: argmax as float, 3x3 Laplacian (centre -8) with zero padding, non-zero -> 1;
- the guiding net's 11 ReLU outputs are divided by their sum + 1e-9 and weigh
  [warped, 8 delayed copies (unit impulses at the off-centre taps, row-major), an all-zero
  delayed copy, intra].
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

EPS = 1e-9
BN_EPS = 1e-5


def official_state_shapes(num_classes: int = 19, flow_ch: int = 32, intra_ch: int = 32, guide_ch: int = 32) -> dict:
    """{'flow': {key: shape}, 'grm': {key: shape}} as the official modules name and size them
    (FlowLight(BatchNorm2d); GuidedSpatiallyVaryingConv(num_filter=32): IntraNetwork(3, 32, 19),
    GuidingNetwork(19 + 1, 32, 9 + 2), IdealDelayKernels(3, 9))."""
    def conv(prefix: str, cin: int, cout: int, k: int = 3) -> dict:
        return {f"{prefix}.weight": (cout, cin, k, k), f"{prefix}.bias": (cout,)}

    def bn(prefix: str, c: int) -> dict:
        return {f"{prefix}.weight": (c,), f"{prefix}.bias": (c,), f"{prefix}.running_mean": (c,),
                f"{prefix}.running_var": (c,), f"{prefix}.num_batches_tracked": ()}

    c2 = 2 * flow_ch
    flow: dict = {}
    for name, cin, cout, k in (("conv1", 6, flow_ch, 3), ("conv2", flow_ch, c2, 3), ("conv_dilate_1", c2, c2, 3),
                               ("conv_dilate_2", c2, c2, 3), ("conv_dilate_3", c2, c2, 3), ("conv_dilate_4", c2, c2, 3),
                               ("conv_merge", 4 * c2, c2, 1)):
        flow.update(conv(f"{name}.0", cin, cout, k))
        flow.update(bn(f"{name}.1", cout))
    flow.update(conv("toflow", c2, 2))

    grm: dict = {}
    p = "grm.intra_net.intra_net"
    grm.update(conv(f"{p}.0", 3, intra_ch)), grm.update(bn(f"{p}.1", intra_ch))
    grm.update(conv(f"{p}.3", intra_ch, intra_ch)), grm.update(bn(f"{p}.4", intra_ch))
    grm.update(conv(f"{p}.6", intra_ch, num_classes))
    g, c = "grm.guide", guide_ch
    grm.update(conv(f"{g}.guide_conv.0", num_classes + 1, c)), grm.update(bn(f"{g}.guide_conv.1", c))
    grm.update(conv(f"{g}.guide_conv_feat.0", c, 2 * c)), grm.update(bn(f"{g}.guide_conv_feat.1", 2 * c))
    grm.update(conv(f"{g}.guide_conv_feat.3", 2 * c, 4 * c)), grm.update(bn(f"{g}.guide_conv_feat.4", 4 * c))
    grm.update(conv(f"{g}.guide_deconv.1", 4 * c, 2 * c)), grm.update(bn(f"{g}.guide_deconv.2", 2 * c))
    grm.update(conv(f"{g}.guide_deconv.5", 2 * c, c)), grm.update(bn(f"{g}.guide_deconv.6", c))
    grm.update(conv(f"{g}.guide_decoder.0", c, 11)), grm.update(bn(f"{g}.guide_decoder.1", 11))
    grm["grm.ideal_dk.filter_copy_s"] = (9, 1, 1, 3, 3)
    return {"flow": flow, "grm": grm}


def random_official_state(generator: torch.Generator, num_classes: int = 19) -> dict:
    """Random weights in the official layout with non-trivial BatchNorm statistics and the fixed
    delay kernels (IdealDelayKernels' 'idk' initialisation)."""
    out = {}
    for part, shapes in official_state_shapes(num_classes).items():
        state = {}
        for key, shape in shapes.items():
            fan_in = int(torch.tensor(shape[1:]).prod()) if len(shape) > 1 else 1
            state[key] = torch.randn(shape, generator=generator) * (1.5 / fan_in) ** 0.5
        for key in [k for k in shapes if k.endswith("running_mean")]:
            prefix, c = key.removesuffix("running_mean"), shapes[key][0]
            state[prefix + "running_mean"] = torch.randn(c, generator=generator) * 0.3
            state[prefix + "running_var"] = torch.rand(c, generator=generator) * 1.5 + 0.5
            state[prefix + "weight"] = torch.rand(c, generator=generator) + 0.5
            state[prefix + "bias"] = torch.randn(c, generator=generator) * 0.2
            state[prefix + "num_batches_tracked"] = torch.tensor(100)
        out[part] = state
    kernels = torch.zeros(9, 1, 1, 3, 3)
    for idx, (i, j) in enumerate((i, j) for i in range(3) for j in range(3) if (i, j) != (1, 1)):
        kernels[idx, 0, 0, i, j] = 1.0
    out["grm"]["grm.ideal_dk.filter_copy_s"] = kernels
    out["grm"]["grm.guide.guide_decoder.1.bias"] += 1.0  # most of the ReLU outputs alive, some not
    return out


def _bn(x: torch.Tensor, s: dict, p: str) -> torch.Tensor:
    return F.batch_norm(x, s[p + ".running_mean"], s[p + ".running_var"], s[p + ".weight"], s[p + ".bias"], False, 0.0, BN_EPS)


def _conv(x: torch.Tensor, s: dict, p: str, stride: int = 1, padding: int = 1, dilation: int = 1) -> torch.Tensor:
    return F.conv2d(x, s[p + ".weight"], s[p + ".bias"], stride, padding, dilation)


def _up2(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=True)


def flow_light(s: dict, x: torch.Tensor) -> torch.Tensor:
    """FlowLight.forward on x = cat(current BGR, previous BGR) -> flow at 1/4 of the input grid."""
    act = lambda t: F.leaky_relu(t, 0.1)  # noqa: E731
    unit = lambda t, name, stride=1, pad=1, dil=1: act(_bn(_conv(t, s, f"{name}.0", stride, pad, dil), s, f"{name}.1"))  # noqa: E731
    x = unit(unit(x, "conv1", 2), "conv2", 2)
    x1 = unit(x, "conv_dilate_1")
    x2 = unit(x, "conv_dilate_2", pad=2, dil=2) + x1
    x3 = unit(x, "conv_dilate_3", pad=4, dil=4) + x2
    x4 = unit(x, "conv_dilate_4", pad=8, dil=8) + x3
    out = unit(torch.cat((x1, x2, x3, x4), 1), "conv_merge", pad=0) + x
    return _conv(out, s, "toflow")


def mc_warp(pred: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """MC_Module_Batch + GridSampler: flow / 4, normalised by (size - 1), grid_sample as in torch 1.1."""
    _, _, h, w = flow.shape
    flow = flow / 4
    gy = torch.linspace(-1, 1, h, dtype=flow.dtype).view(h, 1).expand(h, w)
    gx = torch.linspace(-1, 1, w, dtype=flow.dtype).view(1, w).expand(h, w)
    grid = torch.stack((flow[:, 0] * 2 / (w - 1) + gx, flow[:, 1] * 2 / (h - 1) + gy), dim=-1)
    return F.grid_sample(pred, grid, mode="bilinear", padding_mode="zeros", align_corners=True)


def guided_conv(s: dict, warped: torch.Tensor, image_bgr: torch.Tensor) -> torch.Tensor:
    """GuidedSpatiallyVaryingConv.forward(warped, 1/8 frame) -> fused scores [N,C,h,w]."""
    p = "grm.intra_net.intra_net"
    t = F.relu(_bn(_conv(image_bgr, s, f"{p}.0"), s, f"{p}.1"))
    t = F.relu(_bn(_conv(t, s, f"{p}.3"), s, f"{p}.4"))
    intra = _conv(t, s, f"{p}.6")

    lap = torch.ones(1, 1, 3, 3, dtype=warped.dtype)
    lap[0, 0, 1, 1] = -8
    edge = F.conv2d(warped.argmax(1, keepdim=True).to(warped.dtype), lap, padding=1)
    edge = (edge != 0).to(warped.dtype)

    g = "grm.guide"
    feat = F.relu(_bn(_conv(torch.cat((intra, edge), 1), s, f"{g}.guide_conv.0"), s, f"{g}.guide_conv.1"))
    inter = F.relu(_bn(_conv(feat, s, f"{g}.guide_conv_feat.0", stride=2), s, f"{g}.guide_conv_feat.1"))
    inter = F.relu(_bn(_conv(inter, s, f"{g}.guide_conv_feat.3", stride=2), s, f"{g}.guide_conv_feat.4"))
    inter = F.relu(_bn(_conv(_up2(inter), s, f"{g}.guide_deconv.1"), s, f"{g}.guide_deconv.2"))
    inter = F.relu(_bn(_conv(_up2(inter), s, f"{g}.guide_deconv.5"), s, f"{g}.guide_deconv.6"))
    weights = F.relu(_bn(_conv(feat + inter, s, f"{g}.guide_decoder.0"), s, f"{g}.guide_decoder.1"))
    weights = weights / (weights.sum(1, keepdim=True) + EPS)

    delayed = F.conv3d(warped.unsqueeze(1), s["grm.ideal_dk.filter_copy_s"], padding=(0, 1, 1))  # [N,9,C,h,w]
    candidates = torch.cat((warped.unsqueeze(1), delayed, intra.unsqueeze(1)), 1)  # [N,11,C,h,w]
    return (weights.unsqueeze(2) * candidates).sum(1)


def propagate_sequence(state: dict, key_scores: torch.Tensor, smalls_bgr: list[torch.Tensor]) -> list[torch.Tensor]:
    """The official inference loop from a keyframe's 1/8 scores over the following frames'
    1/8 BGR images (``smalls_bgr[0]`` is the keyframe's): the fused scores of every later frame."""
    flow_state, grm = state["flow"], state["grm"]
    out, pred = [], key_scores
    for prev, cur in zip(smalls_bgr[:-1], smalls_bgr[1:]):
        flow = flow_light(flow_state, torch.cat((cur, prev), 1))
        flow = F.interpolate(flow, size=cur.shape[-2:], mode="bilinear", align_corners=True)
        pred = guided_conv(grm, mc_warp(pred, flow), cur)
        out.append(pred)
    return out


# ---- float64 NumPy statements of the fusion and the edge map, for tests at their constants ----
# The official file is model/gsv/network.py at commit 48cc199 of robert80203/GSVNet:
#   lines 15-23  IdealDelayKernels(3, 9): unit impulses at the 8 off-centre taps (row-major), and
#                the 9th kernel left all zero (filled only when out_channel > 9): the null candidate
#   line 41      cat(x, 9 delayed copies) -> [warped, 8 shifts, zero]; line 94 appends intra
#   line 86      edge = conv2d(argmax(x).float(), Laplacian, padding=1): ZERO padding
#                ("image boundary will be included"); model/guide/networks.py line 38: edge != 0 -> 1
#   line 88      guide_feat / (sum(guide_feat, dim=1) + 1e-9): all 11 weights, the zero kernel's too


#: the official candidates' delays (dy, dx) for channels 1..8 of the 11: row-major taps without the centre
OFFICIAL_DELAYS = [(i - 1, j - 1) for i in range(3) for j in range(3) if (i, j) != (1, 1)]


def fusion_np(warped: np.ndarray, intra: np.ndarray, w11: np.ndarray, eps: float = EPS,
              null_in_denominator: bool = True) -> np.ndarray:
    """The official fusion in float64: w11 [N,11,h,w] in the official order [warped, 8 delayed
    copies, zero kernel, intra], divided by their sum + ``eps``, weighing those candidates.
    ``null_in_denominator=False`` states the variant without the null candidate (for tests that
    show it matters)."""
    w = w11.astype(np.float64)
    denominator = (w.sum(1, keepdims=True) if null_in_denominator else w.sum(1, keepdims=True) - w[:, 9:10]) + eps
    w = w / denominator
    warped, intra = warped.astype(np.float64), intra.astype(np.float64)
    h, wd = warped.shape[-2:]
    padded = np.pad(warped, ((0, 0), (0, 0), (1, 1), (1, 1)))  # conv3d padding=(0, 1, 1): zeros outside
    delayed = [padded[:, :, 1 + dy : 1 + dy + h, 1 + dx : 1 + dx + wd] for dy, dx in OFFICIAL_DELAYS]
    candidates = [warped, *delayed, np.zeros_like(warped), intra]
    return sum(w[:, k : k + 1] * c for k, c in enumerate(candidates))


def edge_map_np(labels: np.ndarray, padding: str = "constant") -> np.ndarray:
    """The official edge map of a label map [N,h,w] in float64: 3x3 Laplacian (centre -8) of the
    labels with ``padding`` ('constant': zeros, the official; 'edge': replicate, for tests that
    show the difference), non-zero -> 1. Returns [N,1,h,w]."""
    x = np.pad(labels.astype(np.float64), ((0, 0), (1, 1), (1, 1)), mode=padding)
    h, w = labels.shape[-2:]
    window = sum(x[:, 1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w] for dy in (-1, 0, 1) for dx in (-1, 0, 1))
    response = window - 9 * x[:, 1:-1, 1:-1]  # the 8 neighbours - 8 * the centre
    return (response != 0).astype(np.float64)[:, None]
