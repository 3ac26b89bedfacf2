"""The published architecture of the own-segmenter measurement (ERFNet, written here): its shape,
its size against the paper's 2.1M parameters, and its export as a user's ONNX model (dynamic
batch, onnxruntime equal to PyTorch on random input)."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import torch

from benchmarks.foreign_segmenter.erfnet import ERFNet
from benchmarks.foreign_segmenter.train import export_onnx


def test_erfnet_gives_full_resolution_scores_and_has_the_papers_size(tmp_path):
    torch.manual_seed(0)
    model = ERFNet(11).eval()
    assert 2.0e6 < sum(p.numel() for p in model.parameters()) < 2.1e6
    x = torch.rand(2, 3, 64, 96)
    with torch.no_grad():
        expected = model(x).numpy()
    assert expected.shape == (2, 11, 64, 96)
    path = tmp_path / "erfnet.onnx"
    export_onnx(model, path, (64, 96))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {"image": x.numpy()})[0]  # a batch of 2 from a graph exported at 1
    err = float(np.abs(got - expected).max())
    assert err <= 1e-4 * float(np.abs(expected).max()), err
