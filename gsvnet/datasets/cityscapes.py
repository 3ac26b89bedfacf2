"""Cityscapes video snippets for the paper's propagation protocol.

Layout (as downloaded from cityscapes-dataset.com):
  ROOT/leftImg8bit_sequence/SPLIT/CITY/CITY_SEQ_FRAME_leftImg8bit.png   (30 frames per snippet)
  ROOT/gtFine/SPLIT/CITY/CITY_SEQ_FRAME_gtFine_labelTrainIds.png       (the 20th frame; or
  ..._gtFine_labelIds.png, mapped here to the 19 train ids; 255 = ignore)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

IGNORE = 255
NUM_CLASSES = 19

#: Cityscapes label id -> train id (the 19 evaluated classes); everything else is IGNORE.
LABEL_TO_TRAIN_ID = {7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10, 24: 11,
                     25: 12, 26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18}

_GT_NAME = re.compile(r"^(?P<city>.+)_(?P<seq>\d{6})_(?P<frame>\d{6})_gtFine_(?P<kind>labelTrainIds|labelIds)\.png$")


@dataclass(frozen=True)
class Snippet:
    city: str
    sequence: str
    frame: int  # the annotated frame's number
    label_path: Path
    label_kind: str  # "labelTrainIds" or "labelIds"
    sequence_dir: Path

    def image_path(self, frame: int) -> Path:
        return self.sequence_dir / f"{self.city}_{self.sequence}_{frame:06d}_leftImg8bit.png"


def train_ids(label_ids: np.ndarray) -> np.ndarray:
    """Cityscapes label ids [H,W] -> train ids uint8 [H,W] (255 = ignore)."""
    table = np.full(256, IGNORE, dtype=np.uint8)
    for label_id, train_id in LABEL_TO_TRAIN_ID.items():
        table[label_id] = train_id
    return table[label_ids.astype(np.uint8)]


def find_snippets(root: str | Path, split: str = "val", max_distance: int = 5) -> tuple[list[Snippet], list[str]]:
    """(snippets whose frames f-max_distance..f all exist, reasons for the ones skipped)."""
    root = Path(root)
    gt_dir, seq_dir = root / "gtFine" / split, root / "leftImg8bit_sequence" / split
    if not gt_dir.is_dir() or not seq_dir.is_dir():
        raise FileNotFoundError(f"Cityscapes {split} not found: expected {gt_dir} and {seq_dir}")
    found: dict[tuple[str, str, int], Snippet] = {}
    for path in sorted(gt_dir.glob("*/*_gtFine_label*.png")):
        m = _GT_NAME.match(path.name)
        if m is None:
            continue
        key = (m["city"], m["seq"], int(m["frame"]))
        if key in found and found[key].label_kind == "labelTrainIds":
            continue  # prefer train ids when both are present
        found[key] = Snippet(m["city"], m["seq"], int(m["frame"]), path, m["kind"], seq_dir / m["city"])
    snippets, skipped = [], []
    for snippet in found.values():
        missing = [f for f in range(snippet.frame - max_distance, snippet.frame + 1) if not snippet.image_path(f).is_file()]
        if missing:
            skipped.append(f"{snippet.label_path.name}: {len(missing)} sequence frames missing")
        else:
            snippets.append(snippet)
    return snippets, skipped


def read_train_ids(snippet: Snippet) -> np.ndarray:
    """uint8 [H,W] train ids of the annotated frame."""
    with Image.open(snippet.label_path) as im:
        label = np.asarray(im)
    return label.astype(np.uint8) if snippet.label_kind == "labelTrainIds" else train_ids(label)
