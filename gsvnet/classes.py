"""Class names and colour palettes (the only palette definitions in the project)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LabelSet:
    name: str
    class_names: tuple[str, ...]
    palette: tuple[tuple[int, int, int], ...]

    def __post_init__(self) -> None:
        if len(self.class_names) != len(self.palette):
            raise ValueError(f"{self.name}: {len(self.class_names)} names but {len(self.palette)} colours")

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


#: Cityscapes train ids 0..18 with the official colours.
CITYSCAPES = LabelSet(
    "cityscapes",
    ("road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign", "vegetation",
     "terrain", "sky", "person", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle"),
    ((128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156), (190, 153, 153), (153, 153, 153),
     (250, 170, 30), (220, 220, 0), (107, 142, 35), (152, 251, 152), (70, 130, 180), (220, 20, 60),
     (255, 0, 0), (0, 0, 142), (0, 0, 70), (0, 60, 100), (0, 80, 100), (0, 0, 230), (119, 11, 32)),
)

#: The 11-class CamVid of SegNet (label 11 is void and is not a class).
CAMVID = LabelSet(
    "camvid",
    ("sky", "building", "pole", "road", "pavement", "tree", "sign symbol", "fence", "car", "pedestrian", "bicyclist"),
    ((128, 128, 128), (128, 0, 0), (192, 192, 128), (128, 64, 128), (0, 0, 192), (128, 128, 0),
     (192, 128, 128), (64, 64, 128), (64, 0, 128), (64, 64, 0), (0, 128, 192)),
)

_KNOWN = {ls.name: ls for ls in (CITYSCAPES, CAMVID)}


def label_set(name: str) -> LabelSet:
    if name not in _KNOWN:
        raise KeyError(f"unknown label set {name!r}; choose one of: {', '.join(sorted(_KNOWN))}")
    return _KNOWN[name]


def default_label_set(num_classes: int) -> LabelSet:
    """Cityscapes for 19 classes, CamVid for 11, otherwise numbered classes on a fixed palette."""
    for ls in _KNOWN.values():
        if ls.num_classes == num_classes:
            return ls
    colours = tuple(((37 * i + 80) % 256, (101 * i + 30) % 256, (173 * i + 150) % 256) for i in range(num_classes))
    return LabelSet(f"generic{num_classes}", tuple(f"class {i}" for i in range(num_classes)), colours)
