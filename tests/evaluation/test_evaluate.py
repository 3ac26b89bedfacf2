"""evaluation.evaluate: CamVid per-frame accuracy, the video propagation protocol and the
Cityscapes protocol on small synthetic trees written here."""

from __future__ import annotations

import dataclasses
import json
import shlex

import numpy as np
import pytest
from PIL import Image

from gsvnet import GSVNet, GSVNetConfig, save_checkpoint
from evaluation import evaluate
from evaluation.options import CamVidOptions, CamVidSequenceOptions, CityscapesOptions, VideoOptions
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
    section = evaluate.run(CityscapesOptions(root=root, checkpoint=ckpt, json=tmp_path / "a.json"))
    result = section["cityscapes"]
    assert result["snippets"] == 2 and result["skipped"] == 1
    # keyframe at 20-l predicts that frame's labels (the truth shifted by l columns), held to frame 20
    complete = [truths[("aachen", "000000")], truths[("bonn", "000001")]]
    for d in range(6):
        truth = np.concatenate(complete, axis=1)
        shifted = np.concatenate([np.roll(np.where(t == 255, 0, t), d, axis=1) for t in complete], axis=1)
        assert result["miou_by_distance"][str(d)] == pytest.approx(iou_by_hand(truth, shifted, 255)), d
    assert result["miou_by_distance"]["0"] == 1.0
    # interval l covers distances 0..l-1 (the paper's Table 4)
    assert result["min"]["5"] == result["miou_by_distance"]["4"] < result["min"]["2"] < result["min"]["1"] == 1.0
    assert result["avg"]["3"] == pytest.approx(np.mean([result["miou_by_distance"][str(d)] for d in (0, 1, 2)]))
    saved = json.loads((tmp_path / "a.json").read_text())
    assert saved["cityscapes"]["snippets"] == 2 and "commit" in saved["runs"]["cityscapes"]


def test_cityscapes_cli_with_a_real_network(tmp_path, rng):
    root = tmp_path / "cityscapes"
    write_cityscapes(root, rng)
    ckpt = save_checkpoint(tmp_path / "cs.pt", GSVNet(GSVNetConfig(num_classes=19)))
    result = evaluate.run(CityscapesOptions(root=root, checkpoint=ckpt, limit=1, max_distance=2,
                                            json=tmp_path / "b.json"))["cityscapes"]
    assert set(result["min"]) == {"1", "2"} and set(result["miou_by_distance"]) == {"0", "1", "2"}


def test_camvid_scores_a_perfect_stepper_near_one_and_merges_json(tmp_path, rng, monkeypatch):
    data = write_camvid_tree(tmp_path / "camvid", rng, {"test": 3}, size=(64, 80))
    ckpt = save_checkpoint(tmp_path / "kf.pt", GSVNet(camvid_config("swiftnet_r18")))
    out = tmp_path / "acc.json"
    out.write_text(json.dumps({"video": {"kept": True}}))
    monkeypatch.setattr(evaluate, "make_stepper", lambda args, ckpt, variant="full": evaluate.Runner(ColourStepper(), None, "fake", list(camvid_config("swiftnet_r18").class_names)))
    result = evaluate.run(CamVidOptions(data=data, size=(64, 80), checkpoint=ckpt, json=out))["camvid"]
    # block borders blend colours (so rare stray classes score 0 there), interiors are exact
    assert result["images"] == 3 and result["pixel_accuracy"] > 0.95
    assert np.nanmedian(list(result["iou"].values())) > 0.9
    assert list(result["iou"])[:2] == ["sky", "building"]
    saved = json.loads(out.read_text())
    assert saved["video"] == {"kept": True} and saved["camvid"]["miou"] == result["miou"]


def test_camvid_with_the_torch_reference(tmp_path, rng):
    data = write_camvid_tree(tmp_path / "camvid", rng, {"test": 2}, size=(64, 80))
    ckpt = save_checkpoint(tmp_path / "kf.pt", GSVNet(camvid_config("swiftnet_r18")))
    result = evaluate.run(CamVidOptions(data=data, size=(64, 80), checkpoint=ckpt, json=tmp_path / "c.json"))["camvid"]
    assert result["backend"].startswith("torch-reference") and result["label_size"] == [64, 80]
    # the same model's labels scored by hand: mean IoU over the classes present, void (11) ignored
    from gsvnet import load_checkpoint
    from gsvnet.datasets.camvid import load_split
    from runtime.schedule.torch_stepper import TorchStepper

    model, _ = load_checkpoint(ckpt)
    stepper = TorchStepper(model)
    frames = load_split(data, "test")
    truth = np.concatenate([f.label for f in frames], axis=1)
    assert (truth == 11).any()  # the case has void pixels
    pred = np.concatenate([stepper.labels(stepper.keyframe_step(f.image[None]), (64, 80))[0] for f in frames], axis=1)
    assert result["miou"] == pytest.approx(iou_by_hand(truth, pred, 11), abs=1e-12)


def test_video_protocol_on_a_static_clip(tmp_path, rng):
    frame = moving_texture(rng, 1, (64, 96))[0]
    video = write_video(tmp_path / "still.mp4", np.repeat(frame[None], 12, axis=0))
    ckpt = save_checkpoint(tmp_path / "kf.pt", GSVNet(camvid_config("swiftnet_r18")))
    section = evaluate.run(VideoOptions(video=video, size=(64, 96), checkpoint=ckpt, no_intra_checkpoint=ckpt,
                                        max_distance=3, holdout=0.5, json=tmp_path / "v.json"))["video_still"]
    assert section["heldout_frames"] == [6, 12] and section["scored_frames"] == [9, 12]
    rows = section["rows"]
    assert list(rows) == ["gsvnet", "without_intra", "warp_only", "hold"]
    assert [r["variant"] for r in rows.values()] == ["full", "no_intra", "warp", "hold"]
    # nothing moves (up to codec noise): holding the keyframe's labels is (almost) exact
    assert min(rows["hold"]["min"].values()) > 0.97


def write_val_sequence(root, rng, frames: int = 16, size=(48, 64)) -> tuple[np.ndarray, list[np.ndarray]]:
    """A labelled 'sequence' (lossless PNG): frame t shows the base label map shifted t columns;
    its truth is that map with the top 4 rows void. Returns (base, truths)."""
    base = block_label(rng, size, block=8, classes=11)
    truths = []
    for split in ("val", "valannot"):
        (root / split).mkdir(parents=True, exist_ok=True)
    for t in range(frames):
        truth = np.roll(base, t, axis=1)
        Image.fromarray(LABEL_COLOURS[truth]).save(root / "val" / f"seq_{t:04d}.png")
        truth = truth.copy()
        truth[:4] = 11  # void
        Image.fromarray(truth).save(root / "valannot" / f"seq_{t:04d}.png")
        truths.append(truth)
    return base, truths


def test_camvid_sequence_scores_every_distance_against_ground_truth(tmp_path, rng, monkeypatch):
    """A fake whose keyframe labels are exact and whose propagation holds them: at distance d the
    labels are d columns behind; every number is checked against a hand computation (void ignored)."""
    base, truths = write_val_sequence(tmp_path / "camvid", rng)
    ckpt = save_checkpoint(tmp_path / "kf.pt", GSVNet(camvid_config("swiftnet_r18")))
    monkeypatch.setattr(evaluate, "make_stepper", lambda args, ckpt, variant="full": evaluate.Runner(
        ColourStepper(), None, "fake", list(camvid_config("swiftnet_r18").class_names)))
    options = CamVidSequenceOptions(data=tmp_path / "camvid", size=(48, 64), checkpoint=ckpt, max_distance=3,
                                    json=tmp_path / "s.json")
    section = evaluate.run(options)["camvid_sequence"]
    # second half of 16 frames: 8..15, all with 3 frames before them
    assert section["half"] == "second" and section["targets"] == 8 and section["frames"] == ["seq_0008", "seq_0015"]
    rows = section["rows"]
    assert list(rows) == ["gsvnet", "warp_only", "hold"]  # no no-intra checkpoint given
    targets = range(8, 16)
    for d in range(4):
        truth = np.concatenate([truths[t] for t in targets], axis=1)
        predicted = np.concatenate([np.roll(base, t - d, axis=1) for t in targets], axis=1)
        assert rows["gsvnet"]["miou_by_distance"][str(d)] == pytest.approx(iou_by_hand(truth, predicted, 11)), d
    assert rows["gsvnet"]["miou_by_distance"]["0"] == 1.0 > rows["gsvnet"]["miou_by_distance"]["3"]
    assert rows["gsvnet"]["avg"]["2"] == pytest.approx(np.mean([rows["gsvnet"]["miou_by_distance"][d] for d in "01"]))
    assert rows["gsvnet"]["min"]["3"] == rows["gsvnet"]["miou_by_distance"]["2"]
    first = evaluate.run(dataclasses.replace(options, half="first"))
    assert first["camvid_sequence"]["frames"] == ["seq_0003", "seq_0007"]  # 0..7 with 3 frames before them


def test_camvid_same_miou_through_pytorch_and_onnxruntime(tmp_path, rng, engines):
    """The engines' own checkpoint through the PyTorch reference and through onnxruntime, at the
    engines' frame size (so neither path resizes labels): the same mIoU."""
    from engine_format.manifest import load_manifest

    manifest = load_manifest(engines)
    size = manifest.frame_size
    data = write_camvid_tree(tmp_path / "camvid", rng, {"test": 3}, size=size)
    checkpoint = manifest.file(manifest.data["checkpoint"]["file"])
    ref = evaluate.run(CamVidOptions(data=data, size=size, checkpoint=checkpoint, json=None))["camvid"]
    (_, ort), = evaluate.run(CamVidOptions(data=data, backend="onnxruntime", engines=engines, json=None)).items()
    assert abs(ref["miou"] - ort["miou"]) < 1e-3 and abs(ref["pixel_accuracy"] - ort["pixel_accuracy"]) < 1e-3
    assert ref["miou"] > 0.0  # random weights still predict some classes: the comparison is not of two zeros


def test_evaluate_through_a_runtime_backend(tmp_path, rng, engines):
    data = write_camvid_tree(tmp_path / "camvid", rng, {"test": 2}, size=(64, 80))
    section = evaluate.main(["camvid", "--data", str(data), "--backend", "onnxruntime", "--engines", str(engines),
                             "--json", str(tmp_path / "e.json")])  # the command line, as a user runs it
    (key, result), = section.items()
    # the engines' size, not the labels', and the backend: never overwrites the reference's section
    assert key == f"camvid_{result['frame_size'][0]}x{result['frame_size'][1]}_onnxruntime"
    assert "onnxruntime" in result["backend"] and result["label_size"] == [64, 80]


def test_user_errors_are_one_line_and_exit_2(tmp_path):
    from tests.conftest import run_module

    missing = run_module("evaluation", "camvid", "--data", str(tmp_path / "nowhere"), "--json", "")
    assert missing.returncode == 2 and missing.stderr.startswith("error: CamVid split 'test' not found")
    assert "Traceback" not in missing.stderr and missing.stderr.count("\n") == 1
    engines = run_module("evaluation", "camvid", "--backend", "onnxruntime", "--engines", str(tmp_path / "none"),
                         "--json", "")
    assert engines.returncode == 2 and engines.stderr.startswith("error: ") and "Traceback" not in engines.stderr
    checkpoint = run_module("evaluation", "camvid-sequence", "--checkpoint", str(tmp_path / "x.pt"), "--json", "")
    assert checkpoint.returncode == 2 and "checkpoint not found" in checkpoint.stderr


def test_sections_name_the_backend_and_an_int8_keyframe_graph():
    reference = evaluate.Runner(None, None, "", [])
    fp32 = evaluate.Runner(None, (8, 8), "", [], "onnxruntime")
    int8 = evaluate.Runner(None, (8, 8), "", [], "onnxruntime", True)
    assert (reference.section_suffix, fp32.section_suffix, int8.section_suffix) == ("", "_onnxruntime", "_onnxruntime_int8")


def test_the_command_line_fills_each_commands_typed_options(tmp_path):
    from runtime.errors import UserError

    assert evaluate.parse_options(["camvid"]) == CamVidOptions()
    assert evaluate.parse_options(["cityscapes", "--root", "cs", "--json", ""]) == CityscapesOptions(root="cs", json=None)
    options = CamVidSequenceOptions(data=tmp_path / "camvid data", size=(48, 64), checkpoint=tmp_path / "m.pt",
                                    max_distance=3, half="first", backend="onnxruntime", engines=tmp_path / "e", json=None)
    words = shlex.split(options.command_line())
    assert words[:4] == ["python", "-m", "evaluation", "camvid-sequence"]
    assert evaluate.parse_options(words[3:]) == options
    video = VideoOptions(holdout=0.5, no_intra_checkpoint="n.pt", threads=0)
    assert evaluate.parse_options(shlex.split(video.command_line())[3:]) == video
    for bad, needle in (({"size": (64, 81)}, "size 64x81: height and width must be multiples of 8"),
                        ({"threads": -1}, "--threads must be >= 0, got -1"),
                        ({"backend": "tensorflow"}, "--backend must be torch-reference or one of auto, "),
                        ({"split": "dev"}, "--split must be train, val or test, got 'dev'")):
        with pytest.raises(UserError, match="^" + needle):
            CamVidOptions(**bad)
