"""Joint image/label augmentation for keyframe training: random scale, crop, flip, photometric jitter.

Geometry is applied identically to image (bilinear) and label (nearest), so labels stay aligned
and void stays void; padding added by the crop is void in the label. The photometric part
(brightness, contrast, saturation, hue rotation and per-channel gains, i.e. white balance)
changes only the image: CamVid's overcast skies and grey roads then also appear blue, warm or
tinted, as they do on other footage.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class AugmentConfig:
    crop: tuple[int, int] = (384, 384)  # (height, width) of the training patch
    scale_min: float = 0.75
    scale_max: float = 2.0
    flip: bool = True
    brightness: float = 0.2  # multiplicative, +-
    contrast: float = 0.2  # around the mean, +-
    saturation: float = 0.2  # towards/away from grey, +-
    hue: float = 0.0  # rotation of the hue circle, +- this fraction of a full turn
    channel_gain: float = 0.0  # independent multiplicative gain per RGB channel, +- (white balance)


def random_scale(image: np.ndarray, label: np.ndarray, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """Resize image (bilinear) and label (nearest) by ``scale``."""
    h, w = label.shape
    size = (max(1, int(round(w * scale))), max(1, int(round(h * scale))))  # cv2 takes (width, height)
    return (cv2.resize(image, size, interpolation=cv2.INTER_LINEAR),
            cv2.resize(label, size, interpolation=cv2.INTER_NEAREST))


def random_crop(image: np.ndarray, label: np.ndarray, crop: tuple[int, int], void: int,
                rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Crop [ch,cw] at a random position, padding with zeros (image) and ``void`` (label) if smaller."""
    ch, cw = crop
    h, w = label.shape
    ph, pw = max(0, ch - h), max(0, cw - w)
    if ph or pw:
        image = np.pad(image, ((0, ph), (0, pw), (0, 0)))
        label = np.pad(label, ((0, ph), (0, pw)), constant_values=void)
        h, w = label.shape
    y = int(rng.integers(0, h - ch + 1))
    x = int(rng.integers(0, w - cw + 1))
    return image[y : y + ch, x : x + cw], label[y : y + ch, x : x + cw]


def rotate_hue(image: np.ndarray, turns: float) -> np.ndarray:
    """Rotate the hue of a float32 RGB image in 0..255 by ``turns`` of the colour circle (grey stays grey)."""
    hsv = cv2.cvtColor(image / 255.0, cv2.COLOR_RGB2HSV)  # float input: H in [0, 360)
    hsv[..., 0] = (hsv[..., 0] + 360.0 * turns) % 360.0
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB) * 255.0


def colour_jitter(image: np.ndarray, cfg: AugmentConfig, rng: np.random.Generator) -> np.ndarray:
    """Brightness, contrast, saturation, hue and per-channel gain changes of a uint8 RGB image."""
    x = image.astype(np.float32)
    x *= 1.0 + rng.uniform(-cfg.brightness, cfg.brightness)
    mean = x.mean()
    x = (x - mean) * (1.0 + rng.uniform(-cfg.contrast, cfg.contrast)) + mean
    grey = x.mean(axis=2, keepdims=True)
    x = (x - grey) * (1.0 + rng.uniform(-cfg.saturation, cfg.saturation)) + grey
    if cfg.hue:
        x = rotate_hue(np.clip(x, 0, 255), float(rng.uniform(-cfg.hue, cfg.hue)))
    if cfg.channel_gain:
        x *= (1.0 + rng.uniform(-cfg.channel_gain, cfg.channel_gain, size=3)).astype(np.float32)
    return np.clip(x, 0, 255).astype(np.uint8)


def augment(image: np.ndarray, label: np.ndarray, cfg: AugmentConfig, void: int,
            rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One training sample: image uint8 [H,W,3], label uint8 [H,W] -> the same at ``cfg.crop``."""
    image, label = random_scale(image, label, float(rng.uniform(cfg.scale_min, cfg.scale_max)))
    image, label = random_crop(image, label, cfg.crop, void, rng)
    if cfg.flip and rng.random() < 0.5:
        image, label = image[:, ::-1], label[:, ::-1]
    image = colour_jitter(image, cfg, rng)
    return np.ascontiguousarray(image), np.ascontiguousarray(label)
