"""Labelled image folders in two common layouts, with defect masks.

MVTec layout::

    ROOT/train/good/*.png                     normal training images
    ROOT/test/good/*.png                      normal test images
    ROOT/test/<defect type>/*.png             defective test images
    ROOT/ground_truth/<defect type>/<name>_mask.png

Plain layout: a folder of normal images, a folder of defective ones, and optionally a
folder of masks named like the images (``<name>.png``, ``<name>_mask.png`` or the same
file name); masks may also sit beside the images as ``<name>.png`` next to ``<name>.jpg``.

Both give a ``LabelledImages``: file paths, labels (0 normal, 1 defect), mask paths
(None: no mask file; normal images have none and count as defect-free) and the type.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from reconad.data.images import IMAGE_SUFFIXES, list_image_files


@dataclass
class LabelledImages:
    files: list[Path] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    masks: list[Path | None] = field(default_factory=list)
    types: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.files)

    def add(self, files, label: int, masks, kind: str) -> None:
        self.files += list(files)
        self.labels += [label] * len(files)
        self.masks += list(masks)
        self.types += [kind] * len(files)

    @property
    def has_masks(self) -> bool:
        """Every defective image has a mask file."""
        return any(self.labels) and all(m is not None for m, y in zip(self.masks, self.labels) if y)


def _is_dir(path: Path, what: str) -> Path:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{what} folder not found: {path}")
    if not path.is_dir():
        raise ValueError(f"{what} is not a folder: {path}")
    return path


def _images_without_masks(folder: Path) -> list[Path]:
    """Image files in ``folder``, leaving out ``X.png`` masks that sit beside ``X.jpg``
    and ``*_mask.*`` files."""
    files = list_image_files(folder)
    stems_of_others = {f.stem for f in files if f.suffix.lower() != ".png"}
    return [f for f in files
            if not f.stem.endswith("_mask") and not (f.suffix.lower() == ".png" and f.stem in stems_of_others)]


def find_mask(image: Path, mask_dir: Path | None) -> Path | None:
    """The mask file of ``image`` in ``mask_dir`` (or beside it when ``mask_dir`` is None)."""
    folder = Path(mask_dir) if mask_dir is not None else image.parent
    for name in (f"{image.stem}_mask.png", f"{image.stem}.png", image.name):
        cand = folder / name
        if cand.is_file() and cand != image:
            return cand
    return None


def mvtec(root: str | os.PathLike) -> tuple[list[Path], LabelledImages]:
    """Training files (``train/good``) and the labelled test set of an MVTec-style folder."""
    root = _is_dir(Path(root), "MVTec category")
    train = list_image_files(_is_dir(root / "train" / "good", "MVTec train/good"))
    test = LabelledImages()
    test_dir = _is_dir(root / "test", "MVTec test")
    for sub in sorted(p for p in test_dir.iterdir() if p.is_dir()):
        files = list_image_files(sub)
        if sub.name == "good":
            test.add(files, 0, [None] * len(files), "good")
        else:
            gt = root / "ground_truth" / sub.name
            test.add(files, 1, [find_mask(f, gt) if gt.is_dir() else None for f in files], sub.name)
    if not test.files:
        raise ValueError(f"no test images under {test_dir}")
    return train, test


def plain(normal: str | os.PathLike, anomalous: str | os.PathLike | None = None,
          masks: str | os.PathLike | None = None) -> LabelledImages:
    """Normal and defective folders, masks from ``masks`` or beside the images."""
    out = LabelledImages()
    normal = _is_dir(Path(normal), "normal-image")
    files = _images_without_masks(normal)
    out.add(files, 0, [None] * len(files), normal.name)
    if anomalous is not None:
        anomalous = _is_dir(Path(anomalous), "anomalous-image")
        mask_dir = _is_dir(Path(masks), "mask") if masks is not None else None
        files = _images_without_masks(anomalous)
        out.add(files, 1, [find_mask(f, mask_dir) for f in files], anomalous.name)
    return out


def read_mask(path: Path | None, shape: tuple[int, int]) -> np.ndarray:
    """A boolean defect mask of ``shape`` (height, width); None gives an all-False mask.
    A mask of another size is resized with nearest-neighbour sampling. Defect pixels are those
    above half the mask's brightest grey level, so that masks of 0 and 255, of 0 and 1 (or
    palette indices) and compressed ones with faint noise all read alike."""
    if path is None:
        return np.zeros(shape, dtype=bool)
    try:
        with Image.open(path) as im:
            im = im.convert("L")
            if im.size != (shape[1], shape[0]):
                im = im.resize((shape[1], shape[0]), Image.NEAREST)
            values = np.asarray(im)
            return values > values.max() / 2
    except (OSError, SyntaxError) as exc:
        raise ValueError(f"cannot read mask file {path}: {exc}") from None


__all__ = ["LabelledImages", "mvtec", "plain", "find_mask", "read_mask", "IMAGE_SUFFIXES"]
