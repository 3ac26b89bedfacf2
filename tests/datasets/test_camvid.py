from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from gsvnet.datasets.camvid import NUM_CLASSES, VOID, load_split, split_files

from tests.training.synthetic import write_camvid_tree


def test_synthetic_tree_loads_paired_and_sorted(tmp_path, rng):
    root = write_camvid_tree(tmp_path / "camvid", rng, {"train": 3, "val": 1})
    frames = load_split(root, "train")
    assert [f.name for f in frames] == ["seq_0000", "seq_0001", "seq_0002"]
    assert frames[0].image.shape == (60, 80, 3) and frames[0].image.dtype == np.uint8
    assert frames[0].label.shape == (60, 80) and frames[0].label.max() <= VOID


def test_labels_above_void_become_void(tmp_path, rng):
    root = write_camvid_tree(tmp_path / "camvid", rng, {"train": 1})
    Image.fromarray(np.full((60, 80), 200, np.uint8)).save(root / "trainannot" / "seq_0000.png")
    assert (load_split(root, "train")[0].label == VOID).all()


def test_missing_split_and_missing_label_are_reported(tmp_path, rng):
    with pytest.raises(FileNotFoundError, match="not found"):
        split_files(tmp_path, "train")
    root = write_camvid_tree(tmp_path / "camvid", rng, {"train": 2})
    (root / "trainannot" / "seq_0001.png").unlink()
    with pytest.raises(FileNotFoundError, match="no label"):
        split_files(root, "train")


def test_real_camvid_split_sizes(camvid_dir):
    assert [len(split_files(camvid_dir, s)) for s in ("train", "val", "test")] == [367, 101, 233]
    frame = load_split(camvid_dir, "test", limit=1)[0]
    assert frame.image.shape == (360, 480, 3)
    assert set(np.unique(frame.label)) <= set(range(NUM_CLASSES + 1))


def test_sequence_halves_split_in_time_order_without_overlap():
    from gsvnet.datasets.camvid import sequence_half

    frames = list(range(101))
    first, second = sequence_half(frames, "first"), sequence_half(frames, "second")
    assert first == list(range(50)) and second == list(range(50, 101)) and sequence_half(frames, "all") == frames
    with pytest.raises(ValueError, match="unknown half"):
        sequence_half(frames, "middle")
