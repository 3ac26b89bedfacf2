"""Shared fixtures: paths to the read-only real data beside the repository, seeded RNGs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
CLIP = DATA / "videos" / "solidWhiteRight.mp4"
CAMVID = DATA / "camvid"


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


@pytest.fixture(autouse=True)
def _seed_torch() -> None:
    torch.manual_seed(1234)


@pytest.fixture
def real_clip() -> Path:
    if not CLIP.exists():
        pytest.skip(f"real clip not found at {CLIP} (read-only data beside the repo: ../shared/data)")
    return CLIP


@pytest.fixture
def camvid_dir() -> Path:
    if not (CAMVID / "test").is_dir():
        pytest.skip(f"CamVid not found at {CAMVID} (read-only data beside the repo: ../shared/data)")
    return CAMVID
