from __future__ import annotations

import math

import numpy as np

from evaluation.metrics import ConfusionMatrix, miou


def test_known_confusion_and_iou():
    truth = np.array([0, 0, 0, 1, 1, 2, 2, 2, 9, 9])  # 9 = ignored
    pred = np.array([0, 0, 1, 1, 1, 2, 0, 2, 0, 1])
    cm = ConfusionMatrix(3, ignore=9)
    cm.update(truth, pred)
    assert cm.matrix.tolist() == [[2, 1, 0], [0, 2, 0], [1, 0, 2]]
    # class 0: tp 2, gt 3, pred 3 -> 2/4; class 1: tp 2, gt 2, pred 3 -> 2/3; class 2: tp 2, gt 3, pred 2 -> 2/3
    np.testing.assert_allclose(cm.iou(), [0.5, 2 / 3, 2 / 3])
    assert math.isclose(cm.miou(), (0.5 + 2 / 3 + 2 / 3) / 3)
    assert math.isclose(cm.pixel_accuracy(), 6 / 8)


def test_void_is_ignored_whatever_is_predicted():
    truth = np.array([[0, 1], [11, 11]])
    a = miou(truth, np.array([[0, 1], [0, 0]]), 11, ignore=11)
    b = miou(truth, np.array([[0, 1], [5, 7]]), 11, ignore=11)
    assert a == b == 1.0


def test_absent_classes_do_not_count_and_accumulation_is_additive(rng):
    cm = ConfusionMatrix(4)
    cm.update(np.array([0, 1]), np.array([0, 1]))
    iou = cm.iou()
    assert np.isnan(iou[2]) and np.isnan(iou[3]) and cm.miou() == 1.0
    truth = rng.integers(0, 4, (2, 50))
    pred = rng.integers(0, 4, (2, 50))
    whole, parts = ConfusionMatrix(4), ConfusionMatrix(4)
    whole.update(truth, pred)
    for t, p in zip(truth, pred):
        parts.update(t, p)
    assert (whole.matrix == parts.matrix).all()


def test_out_of_range_prediction_counts_as_wrong():
    cm = ConfusionMatrix(2)
    cm.update(np.array([0, 0]), np.array([0, 7]))
    assert cm.iou()[0] == 0.5
