"""Shared bits for benchmark scripts: where the data is, machine description, output."""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from reconad._atomic import write_text  # noqa: E402


def data_dir() -> Path:
    path = Path(os.environ.get("RECONAD_DATA", ROOT.parent / "shared" / "data"))
    if not path.exists():
        sys.exit(f"benchmark data not found at {path}; set RECONAD_DATA")
    return path


def machine() -> str:
    return (f"{platform.machine()}, {os.cpu_count()} CPU cores, torch {torch.__version__} "
            f"({torch.get_num_threads()} threads), "
            f"{'CUDA ' + torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no GPU'}")


def best_time(fn, repeats: int = 3) -> float:
    """Shortest wall time of ``repeats`` calls of ``fn``, in seconds."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def markdown_table(header: list[str], rows: list[list]) -> str:
    def fmt(v):
        return f"{v:.4f}" if isinstance(v, float) else str(v)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def write_results(name: str, markdown: str, data: dict) -> None:
    docs = ROOT / "docs"
    write_text(docs / f"{name}.md", markdown)
    write_text(docs / f"{name}.json", json.dumps(data, indent=2))
    print(f"\nwrote docs/{name}.md and docs/{name}.json")


def magnetic_tile_split(root: Path | None = None) -> dict:
    """DifferNet's split of the magnetic tile set: ``train`` (761 defect-free image paths,
    from ``train_filenames.txt``), ``test`` (the other 191 defect-free and all 392
    defective images), ``test_labels`` (0 normal, 1 defect), ``test_masks`` (mask path,
    ``X.png`` beside ``X.jpg``; 255 = defect) and ``test_types`` (the folder name)."""
    root = Path(root or data_dir() / "magnetic_tile")
    train_names = set((root / "train_filenames.txt").read_text().split())
    free = sorted((root / "MT_Free" / "Imgs").glob("*.jpg"))
    train = [p for p in free if p.name in train_names]
    if len(train) != len(train_names):
        sys.exit(f"{root}: found {len(train)} of the {len(train_names)} training images")
    test = [p for p in free if p.name not in train_names]
    labels = [0] * len(test)
    types = ["MT_Free"] * len(test)
    for folder in sorted(root.glob("MT_*")):
        if folder.name == "MT_Free":
            continue
        defects = sorted((folder / "Imgs").glob("*.jpg"))
        test += defects
        labels += [1] * len(defects)
        types += [folder.name] * len(defects)
    return {"train": train, "test": test, "test_labels": labels,
            "test_masks": [p.with_suffix(".png") for p in test], "test_types": types}


# Pixel groups of the magnetic tile test set, for :func:`pixel_auc_by_group`.
POSITIVE_GROUPS = ("uneven defects", "other defects")
NEGATIVE_GROUPS = ("defect-free tiles", "clean parts of uneven tiles", "clean parts of other defective tiles")


def pixel_auc_by_group(maps: list, masks: list, types) -> dict:
    """Where the pooled pixel ROC-AUC of magnetic tile maps is lost.

    ``maps`` and ``masks`` (boolean) are per-image arrays of the same shapes and ``types``
    the tiles' folder names. Returns ``auc[positive][negative]``: the pixel ROC-AUC of one
    group of defect pixels against one group of clean pixels (groups as in
    ``POSITIVE_GROUPS`` and ``NEGATIVE_GROUPS``), ``share``: each group's share of the defect
    or clean pixels, and ``clean_median``: the median map value of the clean pixels of each
    tile type divided by that of the defect-free tiles."""
    from sklearn.metrics import roc_auc_score

    names, codes = np.unique(np.asarray(types), return_inverse=True)
    score = np.concatenate([np.asarray(m, dtype=np.float32).ravel() for m in maps])
    defect = np.concatenate([np.asarray(k, dtype=bool).ravel() for k in masks])
    # each pixel's tile type as a small integer (a string per pixel would take gigabytes)
    kind = np.repeat(codes.astype(np.int8), [np.asarray(k).size for k in masks])
    code = {name: i for i, name in enumerate(names)}
    uneven, free = kind == code.get("MT_Uneven", -1), kind == code.get("MT_Free", -1)
    positive = {"uneven defects": defect & uneven, "other defects": defect & ~uneven}
    negative = {"defect-free tiles": free, "clean parts of uneven tiles": ~defect & uneven,
                "clean parts of other defective tiles": ~defect & ~uneven & ~free}
    auc = {p: {n: float(roc_auc_score(defect[pm | nm], score[pm | nm])) for n, nm in negative.items()}
           for p, pm in positive.items()}
    share = {g: float(m.sum() / (defect if g in positive else ~defect).sum())
             for g, m in {**positive, **negative}.items()}
    free_median = float(np.median(score[free]))
    clean_median = {str(t): float(np.median(score[~defect & (kind == i)]) / free_median) for i, t in enumerate(names)}
    return {"auc": auc, "share": share, "clean_median": clean_median}


def pixel_auc_by_group_tables(rows: dict) -> str:
    """Markdown for :func:`pixel_auc_by_group` results ``{row name: result}``."""
    first = next(iter(rows.values()))
    header = ["model", "defect pixels"] + [f"against {n} ({100 * first['share'][n]:.0f} %)" for n in NEGATIVE_GROUPS]
    auc_table = markdown_table(header, [[name, f"{p} ({100 * first['share'][p]:.0f} %)"]
                                        + [r["auc"][p][n] for n in NEGATIVE_GROUPS]
                                        for name, r in rows.items() for p in POSITIVE_GROUPS])
    type_names = list(first["clean_median"])
    median_table = markdown_table(["model"] + type_names,
                                  [[name] + [r["clean_median"][t] for t in type_names] for name, r in rows.items()])
    return (auc_table + "\n\nMedian map value of the clean pixels of each tile type, divided by that of the "
            "defect-free test tiles (the full ELBO's map is mostly negative, as its log-normaliser "
            "A = ½ log 2πσ_x² is negative where σ_x is small; there a ratio below 1 means a higher, "
            "less negative median):\n\n"
            + median_table)
