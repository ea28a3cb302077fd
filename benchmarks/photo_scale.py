"""Large colour photos from the command line: time and peak memory of `reconad train` and
`reconad evaluate` with a feature model.

The photos are made here, so that the check needs no data set: crops of 256 x 256 pixels of
scikit-image's bundled colour texture `immunohistochemistry`, enlarged four times to
``--side`` x ``--side`` (1024) RGB PNG files, in the MVTec layout (`train/good`, `test/good`, `test/spot`,
`ground_truth/spot`). Each test spot is a disc (radius 15-60 pixels) whose colour channels are
rotated: a change of colour that keeps the grey-level spread (radius scaled with ``--side``). Each command runs as a new
process; its peak memory is the largest resident set the operating system recorded for it.

    python benchmarks/photo_scale.py [--train 295] [--test 30] [--side 1024] [--model feature_knn] [--src DIR] [--out NAME]
                                     [--patch-size 64 [--map-stride 8]]

``--patch-size`` trains a pixel model on patches (``reconad train --patch-size``); ``--map-stride``
is ``reconad evaluate --stride`` (default: the model's scoring stride).

``--src`` runs another checkout's package (its ``src`` folder), to compare versions.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from _common import ROOT, machine, markdown_table, write_results

CROP = 256


def make_photos(root: Path, n_train: int, n_test: int, side: int = 1024, seed: int = 0) -> None:
    from skimage import data

    rng = np.random.default_rng(seed)
    texture = np.asarray(data.immunohistochemistry())
    for d in ("train/good", "test/good", "test/spot", "ground_truth/spot"):
        (root / d).mkdir(parents=True, exist_ok=True)

    def photo() -> np.ndarray:
        y, x = rng.integers(0, texture.shape[0] - CROP + 1), rng.integers(0, texture.shape[1] - CROP + 1)
        crop = Image.fromarray(texture[y:y + CROP, x:x + CROP])
        return np.asarray(crop.resize((side, side), Image.BICUBIC))

    for i in range(n_train):
        Image.fromarray(photo()).save(root / "train/good" / f"{i:03d}.png")
    for i in range(n_test):
        Image.fromarray(photo()).save(root / "test/good" / f"{i:03d}.png")
    for i in range(n_test):
        image = photo().copy()
        mask_image = Image.new("L", (side, side), 0)
        r = rng.uniform(15, 60) * side / 1024
        cy, cx = rng.uniform(r, side - r, 2)
        ImageDraw.Draw(mask_image).ellipse([cx - r, cy - r, cx + r, cy + r], fill=255)
        mask = np.asarray(mask_image) > 127
        image[mask] = image[mask][:, [1, 2, 0]]
        Image.fromarray(image).save(root / "test/spot" / f"{i:03d}.png")
        mask_image.save(root / "ground_truth/spot" / f"{i:03d}_mask.png")


def run(args: list[str], src: Path) -> dict:
    """One command in a new process: wall seconds and its own peak resident memory in GB."""
    env = {**os.environ, "PYTHONPATH": str(src)}
    with tempfile.TemporaryFile("w+") as out:
        t = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-c", "from reconad.cli.app import main; main()", *args],
                                env=env, stdout=out, stderr=subprocess.STDOUT, text=True)
        _, status, usage = os.wait4(proc.pid, 0)  # this child's own resource use
        wall = time.perf_counter() - t
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        text = out.read()
    if proc.returncode:
        sys.exit(f"reconad {args[0]} failed:\n{text}")
    return {"wall_s": wall, "peak_gb": usage.ru_maxrss / 1024 ** 2, "output": text}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train", type=int, default=295)
    ap.add_argument("--test", type=int, default=30, help="defect-free test photos, and as many with a spot")
    ap.add_argument("--model", default="feature_knn")
    ap.add_argument("--side", type=int, default=1024, help="the photos' side in pixels")
    ap.add_argument("--src", default=str(ROOT / "src"), help="the package's source folder to run")
    ap.add_argument("--out", default="photo_scale", help="name of the results in docs/")
    ap.add_argument("--patch-size", type=int, default=None, help="train a pixel model on patches of this size")
    ap.add_argument("--map-stride", type=int, default=None, help="reconad evaluate --stride")
    args = ap.parse_args()
    src = Path(args.src).resolve()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "photos"
        make_photos(root, args.train, args.test, args.side)
        patch = [] if args.patch_size is None else ["--patch-size", str(args.patch_size)]
        stride = [] if args.map_stride is None else ["--stride", str(args.map_stride)]
        train = run(["train", "--mvtec", str(root), "--model", args.model, "--out", f"{tmp}/model", *patch], src)
        evaluate = run(["evaluate", "--model", f"{tmp}/model", "--mvtec", str(root), "--out", f"{tmp}/eval", *stride],
                       src)
        metrics = json.loads(Path(f"{tmp}/eval/metrics.json").read_text())
    how = "" if args.patch_size is None else f" --patch-size {args.patch_size}"
    rows = [[f"`reconad train --mvtec ... --model {args.model}{how}` ({args.train} photos)",
             f"{train['wall_s']:.0f}", f"{train['peak_gb']:.2f}"],
            [f"`reconad evaluate --mvtec ...{'' if args.map_stride is None else f' --stride {args.map_stride}'}` "
             f"({2 * args.test} photos, anomaly maps, pixel ROC-AUC, AUPRO)",
             f"{evaluate['wall_s']:.0f}", f"{evaluate['peak_gb']:.2f}"]]
    table = markdown_table(["command", "wall s", "peak memory, GB"], rows)
    print(table)
    print(f"image ROC-AUC {metrics['roc_auc']:.4f}, pixel ROC-AUC {metrics['pixel_roc_auc']:.4f}, "
          f"AUPRO {metrics['aupro']:.4f}")
    other = ("" if args.side == 1024 else f" --side {args.side}") + (
        "" if args.patch_size is None else f" --patch-size {args.patch_size}") + (
        "" if args.map_stride is None else f" --map-stride {args.map_stride}") + (
        "" if src == ROOT / "src" else f" --src {args.src}") + ("" if args.out == "photo_scale" else f" --out {args.out}")
    md = f"""# Large colour photos from the command line: time and memory

{args.train} training photos and {2 * args.test} test photos ({args.test} with a colour spot), {args.side} x {args.side} RGB PNG,
made from scikit-image's `immunohistochemistry` texture (see the script's docstring); model
`{args.model}` with its defaults{"" if args.patch_size is None else f" on patches of {args.patch_size} x {args.patch_size} pixels"}.

```
python benchmarks/photo_scale.py --train {args.train} --test {args.test} --model {args.model}{other}
```

Machine: {machine()}. Each command is a new process; peak memory is its largest resident set.

{table}

Detection on these spots (a rotation of the colour channels inside a disc): image ROC-AUC
{metrics['roc_auc']:.4f}, pixel ROC-AUC {metrics['pixel_roc_auc']:.4f}, AUPRO {metrics['aupro']:.4f}.
"""
    write_results(args.out, md, {"train": {k: v for k, v in train.items() if k != "output"},
                                 "evaluate": {k: v for k, v in evaluate.items() if k != "output"},
                                 "metrics": {k: metrics[k] for k in ("roc_auc", "pixel_roc_auc", "aupro")},
                                 "settings": vars(args) | {"src": "this checkout" if src == ROOT / "src" else "other"}})


if __name__ == "__main__":
    main()
