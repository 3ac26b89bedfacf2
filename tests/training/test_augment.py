from __future__ import annotations

import numpy as np

from training.augment import AugmentConfig, augment, random_crop
from gsvnet.datasets.camvid import VOID

from .synthetic import LABEL_COLOURS, block_label

NO_JITTER = dict(brightness=0.0, contrast=0.0, saturation=0.0)


def labels_from_colours(image: np.ndarray) -> np.ndarray:
    """Nearest LABEL_COLOURS entry of every pixel (-1 for black padding)."""
    d = ((image[..., None, :].astype(np.int32) - LABEL_COLOURS[None, None].astype(np.int32)) ** 2).sum(-1)
    out = d.argmin(-1)
    out[(image == 0).all(-1)] = -1
    return out


def test_geometry_keeps_image_and_label_aligned(rng):
    label = block_label(rng, (90, 120))
    image = LABEL_COLOURS[label]
    cfg = AugmentConfig(crop=(64, 64), scale_min=0.75, scale_max=2.0, **NO_JITTER)
    for _ in range(20):
        img, lab = augment(image, label, cfg, VOID, rng)
        assert img.shape == (64, 64, 3) and lab.shape == (64, 64) and img.dtype == np.uint8
        decoded = labels_from_colours(img)
        inside = decoded >= 0
        # bilinear resampling of the image blends colours only along block borders
        assert (decoded[inside] == lab[inside]).mean() > 0.9


def test_flip_mirrors_both():
    label = np.zeros((8, 8), np.uint8)
    label[:, :2] = 3
    image = LABEL_COLOURS[label]
    cfg = AugmentConfig(crop=(8, 8), scale_min=1.0, scale_max=1.0, **NO_JITTER)
    seen = set()
    for seed in range(16):
        img, lab = augment(image, label, cfg, VOID, np.random.default_rng(seed))
        flipped = bool(lab[0, -1] == 3)
        assert (labels_from_colours(img) == lab).all()
        seen.add(flipped)
    assert seen == {True, False}


def test_void_stays_void_and_padding_is_void(rng):
    label = block_label(rng, (40, 40), block=10)
    label[:10] = VOID
    image = LABEL_COLOURS[label]
    img, lab = random_crop(image, label, (64, 64), VOID, rng)
    assert lab.shape == (64, 64)
    assert (lab[40:] == VOID).all() and (lab[:, 40:] == VOID).all()  # padding
    assert (img[40:] == 0).all()
    cfg = AugmentConfig(crop=(48, 48), **NO_JITTER)
    for _ in range(10):
        img, lab = augment(image, label, cfg, VOID, rng)
        decoded = labels_from_colours(img)
        # a pixel whose colour is void's was labelled void (nearest-neighbour labels never invent void)
        void_colour = decoded == VOID
        assert (lab[void_colour] == VOID).mean() > 0.9
        assert set(np.unique(lab)) <= set(range(VOID + 1))


def test_colour_jitter_changes_only_the_image(rng):
    label = block_label(rng, (32, 32))
    image = LABEL_COLOURS[label]
    cfg = AugmentConfig(crop=(32, 32), scale_min=1.0, scale_max=1.0, flip=False, brightness=0.3)
    img, lab = augment(image, label, cfg, VOID, rng)
    assert (lab == label).all()
    assert not np.array_equal(img, image)


def test_hue_rotation_keeps_grey_and_turns_a_colour_by_the_asked_angle():
    from training.augment import rotate_hue

    grey = np.full((2, 2, 3), 128.0, np.float32)
    np.testing.assert_allclose(rotate_hue(grey, 0.3), grey, atol=1e-3)
    red = np.zeros((1, 1, 3), np.float32)
    red[..., 0] = 200.0
    np.testing.assert_allclose(rotate_hue(red, 1 / 3)[0, 0], [0.0, 200.0, 0.0], atol=1e-2)  # 120 degrees: red -> green
    np.testing.assert_allclose(rotate_hue(red, -1 / 3)[0, 0], [0.0, 0.0, 200.0], atol=1e-2)  # -120: red -> blue


def test_channel_gain_tints_a_grey_sky_and_leaves_labels(rng):
    label = np.zeros((16, 16), np.uint8)
    image = np.full((16, 16, 3), 160, np.uint8)  # overcast sky
    cfg = AugmentConfig(crop=(16, 16), scale_min=1.0, scale_max=1.0, flip=False, brightness=0.0, contrast=0.0,
                        saturation=0.0, channel_gain=0.2)
    spreads = []
    for _ in range(20):
        img, lab = augment(image, label, cfg, VOID, rng)
        assert (lab == label).all()
        spreads.append(int(img[0, 0].max()) - int(img[0, 0].min()))
    assert max(spreads) > 20  # some samples are visibly tinted (blue-ish, warm, ...)
