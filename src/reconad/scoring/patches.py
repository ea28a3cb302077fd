"""Square patches of images: random crops for training, a regular grid for scoring, and
per-pixel maps from grid scores.

Images are float32 arrays ``(C, H, W)``. A grid of patches of ``size`` at ``stride`` is
laid on the image after reflect-padding its bottom and right edges just enough that the
grid covers every pixel; the padding is cropped off the maps again.
"""

from __future__ import annotations

import math
from typing import Callable, Iterator

import numpy as np
import torch
from torch.nn import functional as F


def check_patch_settings(size: int, stride: int) -> None:
    if int(size) < 2:
        raise ValueError(f"patch_size must be at least 2, got {size}")
    if int(stride) < 1:
        raise ValueError(f"stride must be at least 1, got {stride}")


def check_image_sizes(images: list[np.ndarray], size: int) -> None:
    small = [im.shape[1:] for im in images if min(im.shape[1:]) < size]
    if small:
        raise ValueError(f"{len(small)} image(s) are smaller than patch_size={size}, "
                         f"e.g. {small[0][0]}x{small[0][1]} (height x width)")


def random_crops(images: list[np.ndarray], size: int, per_image: int,
                 rng: np.random.Generator) -> np.ndarray:
    """``per_image`` random ``size`` x ``size`` crops of every image: ``(N * per_image, C, size, size)``."""
    check_image_sizes(images, size)
    out = []
    for im in images:  # one vectorised gather per image
        _, h, w = im.shape
        ys = rng.integers(0, h - size + 1, per_image)
        xs = rng.integers(0, w - size + 1, per_image)
        windows = np.lib.stride_tricks.sliding_window_view(im, (size, size), axis=(1, 2))
        out.append(windows[:, ys, xs].transpose(1, 0, 2, 3))  # (per_image, C, size, size)
    return np.ascontiguousarray(np.concatenate(out), dtype=np.float32)


def _padded(n: int, size: int, stride: int) -> int:
    """Smallest length >= n such that a grid of ``size`` at ``stride`` covers it exactly."""
    steps = max(math.ceil((n - size) / stride), 0)
    return size + steps * stride


def pad_to_grid(image: torch.Tensor, size: int, stride: int) -> torch.Tensor:
    """Reflect-pad ``(C, H, W)`` at the bottom and right so the grid covers every pixel."""
    _, h, w = image.shape
    ph, pw = _padded(h, size, stride) - h, _padded(w, size, stride) - w
    if ph == 0 and pw == 0:
        return image
    mode = "reflect" if ph < h and pw < w else "replicate"
    return F.pad(image[None], (0, pw, 0, ph), mode=mode)[0]


def grid_shape(h: int, w: int, size: int, stride: int) -> tuple[int, int]:
    """Rows and columns of the patch grid over an ``h`` x ``w`` image."""
    return ((_padded(h, size, stride) - size) // stride + 1,
            (_padded(w, size, stride) - size) // stride + 1)


def iter_grid_batches(image: torch.Tensor, size: int, stride: int,
                      batch_size: int = 512) -> Iterator[torch.Tensor]:
    """The grid's patches in row-major order, in batches ``(n, C, size, size)``; only one
    batch of rows is copied out of the strided view at a time."""
    padded = pad_to_grid(image, size, stride)
    view = padded.unfold(1, size, stride).unfold(2, size, stride)  # (C, rows, cols, size, size)
    c, rows, cols = view.shape[:3]
    rows_per_batch = max(1, batch_size // cols)
    for r in range(0, rows, rows_per_batch):
        chunk = view[:, r:r + rows_per_batch]                        # (C, r, cols, size, size)
        yield chunk.permute(1, 2, 0, 3, 4).reshape(-1, c, size, size)


def grid_scores(image: np.ndarray | torch.Tensor, size: int, stride: int,
                score_fn: Callable[[torch.Tensor], torch.Tensor], batch_size: int = 512,
                device: torch.device | str = "cpu", channels_last: bool = False) -> np.ndarray:
    """Score of every grid patch of one image ``(C, H, W)``: an array ``(rows, cols)``;
    ``channels_last`` hands the batches to ``score_fn`` in that memory layout."""
    image = torch.as_tensor(image)
    rows, cols = grid_shape(image.shape[1], image.shape[2], size, stride)
    layout = torch.channels_last if channels_last else torch.contiguous_format
    out = [score_fn(b.to(device).contiguous(memory_format=layout)).float().cpu()
           for b in iter_grid_batches(image, size, stride, batch_size)]
    return torch.cat(out).reshape(rows, cols).numpy().astype(np.float64)


def _cover(n_patches: int, size: int, stride: int, length: int) -> np.ndarray:
    """``(length, n_patches)``: 1 where a patch (start ``i * stride``, ``size`` long) covers a pixel."""
    starts = np.arange(n_patches) * stride
    pixel = np.arange(length)[:, None]
    return ((pixel >= starts) & (pixel < starts + size)).astype(np.float64)


def scores_to_map(scores: np.ndarray, size: int, stride: int, height: int, width: int) -> np.ndarray:
    """Per-pixel map ``(height, width)``: each pixel takes the mean score of the grid
    patches covering it. The box kernel is separable, so the sums are two matrix products
    with 0/1 cover matrices (milliseconds, where a transposed convolution took seconds)."""
    scores = np.asarray(scores, dtype=np.float64)
    rows = _cover(scores.shape[0], size, stride, height)
    cols = _cover(scores.shape[1], size, stride, width)
    total = rows @ scores @ cols.T
    count = rows.sum(1)[:, None] * cols.sum(1)[None, :]
    return total / count


def aggregate(scores: np.ndarray, how: str = "max", top_k: int = 10) -> float:
    """One image score from its patch scores: the maximum, or the mean of the ``top_k`` largest."""
    flat = np.asarray(scores, dtype=np.float64).ravel()
    if how == "max":
        return float(flat.max())
    if how == "topk":
        k = min(max(int(top_k), 1), flat.size)
        return float(np.partition(flat, flat.size - k)[flat.size - k:].mean())
    raise ValueError(f"unknown patch aggregation {how!r}; choose 'max' or 'topk'")
