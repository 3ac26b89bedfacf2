import pickle

import pytest
import torch

from gsvnet import CheckpointError, GSVNet, GSVNetConfig, load_checkpoint, save_checkpoint


def _model(**kw) -> GSVNet:
    return GSVNet(GSVNetConfig(**kw)).eval()


def test_round_trip_restores_weights_config_and_metadata(tmp_path):
    model = _model(keyframe_net="bisenet_r18", num_classes=11, key_scale=0.5)
    path = save_checkpoint(tmp_path / "m.pt", model, metadata={"data": "camvid", "miou": 0.5})
    loaded, meta = load_checkpoint(path)
    assert meta == {"data": "camvid", "miou": 0.5}
    assert loaded.config.to_dict() == model.config.to_dict()
    for (k, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), k
    image = torch.randint(0, 256, (1, 64, 64, 3), dtype=torch.uint8)
    with torch.no_grad():
        assert torch.equal(model.keyframe_scores(image), loaded.keyframe_scores(image))


def test_half_checkpoint_loads_into_float_model(tmp_path):
    model = _model(num_classes=5)
    path = save_checkpoint(tmp_path / "h.pt", model, half=True)
    loaded, _ = load_checkpoint(path)
    w = loaded.flow.conv1[0].weight
    assert w.dtype == torch.float32
    assert torch.allclose(w, model.flow.conv1[0].weight, atol=1e-3)
    assert (tmp_path / "h.pt").stat().st_size < (save_checkpoint(tmp_path / "f.pt", model)).stat().st_size


def test_misfitting_checkpoint_names_keys(tmp_path):
    model = _model(num_classes=5)
    path = save_checkpoint(tmp_path / "m.pt", model)
    payload = torch.load(path, weights_only=True)
    payload["state_dict"].pop("flow.toflow.bias")
    payload["state_dict"]["extra.weight"] = torch.zeros(1)
    payload["state_dict"]["intra.intra_net.6.weight"] = torch.zeros(3, 32, 3, 3)
    torch.save(payload, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(tmp_path / "bad.pt")
    msg = str(e.value)
    assert "1 missing: flow.toflow.bias" in msg and "1 unexpected: extra.weight" in msg
    assert "intra.intra_net.6.weight (3, 32, 3, 3) vs model (5, 32, 3, 3)" in msg


def test_missing_truncated_foreign_and_malicious_files(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "none.pt")
    good = save_checkpoint(tmp_path / "g.pt", _model(num_classes=3))
    data = good.read_bytes()
    (tmp_path / "trunc.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_checkpoint(tmp_path / "trunc.pt")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError, match="not a GSVNet checkpoint"):
        load_checkpoint(tmp_path / "foreign.pt")

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    (tmp_path / "evil.pt").write_bytes(pickle.dumps(Evil()))
    with pytest.raises(CheckpointError, match="never unpickled|truncated or corrupt"):
        load_checkpoint(tmp_path / "evil.pt")
    torch.save({"format": "gsvnet-checkpoint", "version": 1, "config": {}, "state_dict": {}, "x": Evil()}, tmp_path / "evil2.pt")
    with pytest.raises(CheckpointError, match="never unpickled"):
        load_checkpoint(tmp_path / "evil2.pt")


def test_same_weights_give_the_same_file_bytes(tmp_path):
    """Saving is reproducible: the sha256 in manifests and provenance names the weights, not the save."""
    import hashlib

    model = GSVNet(GSVNetConfig(num_classes=5))
    digests = {hashlib.sha256(save_checkpoint(tmp_path / f"{name}.pt", model, {"k": 1}).read_bytes()).hexdigest()
               for name in ("a", "b")}
    assert len(digests) == 1
