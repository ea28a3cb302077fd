import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from reconad import ImageDetector
from reconad.data.samples import load_mnist_01

DATA_DIR = Path(os.environ.get("RECONAD_DATA", Path(__file__).resolve().parents[1] / ".." / "shared" / "data"))


@pytest.fixture(scope="session")
def mnist01():
    return load_mnist_01()


@pytest.fixture(scope="session")
def small_detector(mnist01):
    """A small conv AE trained briefly on 600 bundled MNIST 1s."""
    return ImageDetector(model="conv_ae", width=8, latent_dim=16, epochs=4, batch_size=32,
                         verbose=0, random_state=0).fit(mnist01["train_ones"][:600])


def write_pngs(folder: Path, images: np.ndarray) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, im in enumerate(images):
        p = folder / f"img_{i:04d}.png"
        Image.fromarray(im).save(p)
        paths.append(p)
    return paths
