"""Tables outside ODDS, to check on other tables the table defaults chosen on ODDS, built
from the data that scikit-learn ships (no download), by the outlier protocols the
published benchmarks use.

* ``digits0`` .. ``digits9``: scikit-learn's handwritten digits (the test part of UCI's
  optdigits: 1797 rows, 64 pixel columns of 0..16, many of them nearly always 0); one
  digit is the outlier class, kept at 3 % of the rows (a fixed random choice), the other
  nine digits are the normal rows. ODDS' ``optdigits`` has the same form (digit 0,
  150 outliers among 5216 rows).
* ``wine``: UCI wine, as ODDS builds it: classes 2 and 3 are normal, class 1 is cut down
  to 10 rows (129 rows, 13 columns).
* ``iris0`` .. ``iris2``: UCI iris; one species cut down to 5 rows as the outliers, the
  other two normal (105 rows, 4 columns).

``load(name)`` returns ``(X, y)`` with ``y`` 1 for the outliers, as ``odds.load_set``.
"""

from __future__ import annotations

import numpy as np
from sklearn.datasets import load_digits, load_iris, load_wine

NAMES = [f"digits{k}" for k in range(10)] + ["wine"] + [f"iris{k}" for k in range(3)]


def _one_class_out(X: np.ndarray, classes: np.ndarray, outlier: int, n_out: int, seed: int):
    rng = np.random.RandomState(seed)
    out = rng.choice(np.flatnonzero(classes == outlier), n_out, replace=False)
    rows = np.r_[np.flatnonzero(classes != outlier), np.sort(out)]
    return X[rows].astype(np.float64), (classes[rows] == outlier).astype(int)


def load(name: str) -> tuple[np.ndarray, np.ndarray]:
    if name.startswith("digits"):
        k = int(name[len("digits"):])
        d = load_digits()
        n_normal = int((d.target != k).sum())
        return _one_class_out(d.data, d.target, k, int(round(0.03 * n_normal / 0.97)), 100 + k)
    if name == "wine":
        d = load_wine()
        return _one_class_out(d.data, d.target, 0, 10, 0)
    if name.startswith("iris"):
        d = load_iris()
        return _one_class_out(d.data, d.target, int(name[len("iris"):]), 5, 0)
    raise ValueError(f"unknown held-out table {name!r}; choose from {', '.join(NAMES)}")
