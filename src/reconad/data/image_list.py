"""Images of any size as a list of float32 arrays ``(C, H, W)`` in 0..1, with the checks
of :func:`reconad.data.images.to_float_array` applied to each."""

from __future__ import annotations

import os

import numpy as np

from reconad.data.images import expand_paths, read_image, to_float_array


def to_image_list(X, channels: int = 3) -> list[np.ndarray]:
    """Turn images into a list of float32 ``(channels, H, W)`` arrays in 0..1.

    Accepts what ``to_float_array`` accepts, and also a list of arrays (or files) whose
    sizes differ. Grayscale becomes ``channels`` channels by repetition.
    """
    if isinstance(X, (str, os.PathLike)):
        X = [X]
    if isinstance(X, np.ndarray):
        return list(to_float_array(X, channels=channels))
    if not isinstance(X, (list, tuple)):
        raise TypeError(f"images must be a numpy array or a list of arrays or file paths, got {type(X).__name__}")
    if len(X) == 0:
        raise ValueError("no images given (empty input)")
    if all(isinstance(x, (str, os.PathLike)) for x in X):
        return [to_float_array(read_image(f, channels)[None], channels=channels)[0] for f in expand_paths(X)]
    out = []
    for i, x in enumerate(X):
        if isinstance(x, (str, os.PathLike)):
            raise TypeError("mix of file paths and arrays in one list; give one kind")
        a = np.asarray(x)
        if a.ndim not in (2, 3):
            raise ValueError(f"image {i} must have 2 dimensions (H, W) or 3 (H, W, C); got shape {a.shape}")
        out.append(to_float_array(a[None], channels=channels)[0])
    return out
