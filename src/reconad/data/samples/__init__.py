"""Tiny bundled data for the offline demo and tests."""

from __future__ import annotations

from importlib import resources

import numpy as np


def load_mnist_01() -> dict[str, np.ndarray]:
    """MNIST digits bundled with reconad: 2,000 training images of the digit 1
    (``train_ones``), and all test 1s (``test_ones``, 1,135) and 0s (``test_zeros``, 980),
    as uint8 arrays ``(N, 28, 28)``. MNIST: Y. LeCun, C. Cortes, C. Burges; CC BY-SA 3.0."""
    with resources.files(__name__).joinpath("mnist_01.npz").open("rb") as fh:
        with np.load(fh) as data:
            return {k: data[k] for k in data.files}
