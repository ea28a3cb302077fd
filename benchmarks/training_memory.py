"""The memory a whole-image fit is estimated to need (``reconad.training.memory``) against the
peak it takes: each model fitted for one epoch on random RGB images in a new process, whose
peak resident memory above what it held before the fit is compared with the estimate.

    python benchmarks/training_memory.py [--side 256] [--images 128] [--models conv_ae,conv_vae,dense_ae,anogan,fanogan]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

from _common import ROOT, machine, markdown_table, write_results

CHILD = """
import json, resource, sys
import numpy as np, psutil
from reconad import ImageDetector
from reconad.models import catalogue
from reconad.training.memory import training_bytes
name, side, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
X = np.random.default_rng(0).random((n, side, side, 3), dtype=np.float32)
start = psutil.Process().memory_info().rss
det = ImageDetector(model=name, epochs=1, verbose=0).fit(X)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
shape = (3, side, side)
estimate = training_bytes(lambda: catalogue.entry("image", name).build(shape), shape, det.batch_size, len(X),
                          det._strategy().training_step)
print(json.dumps({"peak": peak - start, "estimate": estimate}))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--side", type=int, default=256)
    ap.add_argument("--images", type=int, default=128)
    ap.add_argument("--models", default="conv_ae,conv_vae,dense_ae,anogan,fanogan")
    args = ap.parse_args()
    rows, results = [], {}
    for name in args.models.split(","):
        out = subprocess.run([sys.executable, "-c", CHILD, name, str(args.side), str(args.images)],
                             capture_output=True, text=True, check=True,
                             env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
        r = json.loads(out.stdout.strip().splitlines()[-1])
        results[name] = r
        rows.append([f"`{name}`", f"{r['estimate'] / 2**30:.2f}", f"{r['peak'] / 2**30:.2f}",
                     f"{r['estimate'] / r['peak']:.2f}"])
    table = markdown_table(["model", "estimated, GB", "measured peak above the start, GB", "ratio"], rows)
    print(table)
    md = f"""# Memory of a whole-image fit: estimated against measured

{args.images} random RGB images of {args.side} x {args.side} pixels, one epoch, batches of 64 (the
defaults); each model in a new process, its peak resident memory above what it held before the
fit (the images included in the start). The estimate (`reconad.training.memory.training_bytes`)
counts the network's weights four times, each layer's output twice per batch, and the images as
float32; a fit whose estimate exceeds the memory free at the time is refused before any image is
decoded.

```
python benchmarks/training_memory.py --side {args.side} --images {args.images} --models {args.models}
```

Machine: {machine()}.

{table}
"""
    write_results("training_memory", md, {"settings": vars(args), "results": results})


if __name__ == "__main__":
    main()
