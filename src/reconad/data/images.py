"""Images in, float32 arrays ``(N, C, H, W)`` in 0..1 out, with checks that name the problem.

Image files are read as 8-bit (``uint8``) arrays, or, when they have more bits per sample
(16-bit grayscale PNG or TIFF), as float32 in 0..1 scaled by their bit depth; arrays of
``uint16`` are scaled by 65535 likewise. The size an image file declares in its header is
checked against ``max_pixels`` before it is decoded, so a small file that would decode to a
huge image (a decompression bomb) is refused at once: a model that takes whole images of
``H x W`` takes no more than ``H * W`` pixels, any other read no more than ``MAX_PIXELS``.
"""

from __future__ import annotations

import os
from pathlib import Path
from collections.abc import Sequence

import numpy as np
from PIL import Image, UnidentifiedImageError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
#: the most pixels an image may declare when the model implies no smaller limit
MAX_PIXELS = 40_000_000
_HIGH_DEPTH_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")
_GREY_MODES = ("1", "L", "I", "I;16", "I;16B", "I;16L", "I;16N", "F")


def _check_size(im: Image.Image, max_pixels: int | None, name) -> None:
    w, h = im.size
    limit = MAX_PIXELS if max_pixels is None else int(max_pixels)
    if w * h > limit:
        raise ValueError(f"image {name} declares {w}x{h} pixels ({w * h:,}), more than the {limit:,} "
                         f"this model takes; refused before decoding")


def _pixels(im: Image.Image, channels: int | None, name) -> np.ndarray:
    """Decoded pixels as uint8 ``(H, W, C)``, or float32 in 0..1 for more than 8 bits."""
    if channels is None:
        channels = 1 if im.mode in _GREY_MODES else 3
    if im.mode in _HIGH_DEPTH_MODES or im.mode == "F":
        arr = np.asarray(im)
        if im.mode == "F":
            if not np.all(np.isfinite(arr)) or arr.min() < 0 or arr.max() > 1:
                raise ValueError(f"image {name} has floating-point pixels outside 0..1; convert it "
                                 "to 8 or 16 bits")
            out = arr.astype(np.float32)
        else:
            if arr.min() < 0 or arr.max() > 65535:
                raise ValueError(f"image {name} has {im.mode} pixels outside 0..65535")
            out = (arr.astype(np.float32) / 65535.0)
        out = out[:, :, None]
        return np.repeat(out, 3, axis=2) if channels == 3 else out
    mode = "L" if channels == 1 else "RGB"
    arr = np.asarray(im if im.mode == mode else im.convert(mode), dtype=np.uint8)
    return arr[:, :, None] if arr.ndim == 2 else arr


def stack_images(images: Sequence[np.ndarray]) -> np.ndarray:
    """Stack images read by ``read_image``/``decode_image``: all uint8 stay uint8, a mix
    with high-depth (float) ones becomes float32 in 0..1."""
    if any(im.dtype != np.uint8 for im in images):
        images = [im.astype(np.float32) / 255.0 if im.dtype == np.uint8 else im for im in images]
    return np.stack(images)


def list_image_files(folder: str | os.PathLike) -> list[Path]:
    """The image files directly inside ``folder``, sorted by name."""
    folder = Path(folder)
    if not folder.exists():
        raise FileNotFoundError(f"image folder not found: {folder}")
    if not folder.is_dir():
        raise ValueError(f"not a folder: {folder}")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise ValueError(f"no image files ({', '.join(IMAGE_SUFFIXES)}) in {folder}")
    return files


def expand_paths(paths: Sequence[str | os.PathLike]) -> list[Path]:
    """Files stay as they are; folders become the image files inside them."""
    out: list[Path] = []
    for p in paths:
        p = Path(p)
        out.extend(list_image_files(p) if p.is_dir() else [p])
    return out


def read_image(path: str | os.PathLike, channels: int | None = None, max_pixels: int | None = None) -> np.ndarray:
    """One image file as uint8 ``(H, W, C)`` (float32 in 0..1 for more than 8 bits per
    sample); ``channels`` 1 or 3 converts, None keeps grayscale as 1 channel and anything
    else as RGB. An image declaring more than ``max_pixels`` is refused before decoding."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"image file not found: {path}")
    try:
        with Image.open(path) as im:
            _check_size(im, max_pixels, path)
            im.load()
            return _pixels(im, channels, path)
    except Image.DecompressionBombError as exc:
        raise ValueError(f"image file {path} is refused before decoding: {exc}") from None
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise ValueError(f"cannot read image file {path}: {exc}") from None


def _is_path_list(X) -> bool:
    return isinstance(X, (list, tuple)) and len(X) > 0 and all(isinstance(x, (str, os.PathLike)) for x in X)


def is_file_input(X) -> bool:
    """Whether ``X`` names image files or folders (a path, or a list of them) rather than arrays."""
    return isinstance(X, (str, os.PathLike)) or _is_path_list(X)



def _read_files(paths, channels: int | None, max_pixels: int | None = None) -> tuple[list[np.ndarray], int]:
    """Read image files (folders expanded); ``channels`` None becomes the most any file has."""
    images = [read_image(f, channels, max_pixels) for f in expand_paths(paths)]
    return images, channels if channels is not None else max(im.shape[2] for im in images)


class ImageFiles(Sequence):
    """Image files (folders expanded) read one at a time when indexed, each as float32
    ``(C, H, W)`` in 0..1 as ``to_image_list`` gives them; their shapes come from the files'
    headers, checked against ``max_pixels`` at once, so that a model that resizes every image
    holds only the images of one batch, not the whole set at full size."""

    def __init__(self, paths, channels: int | None = None, max_pixels: int | None = None):
        self.paths = expand_paths(paths)
        sizes, grey = [], []
        for path in self.paths:
            if not path.exists():
                raise FileNotFoundError(f"image file not found: {path}")
            try:
                with Image.open(path) as im:
                    _check_size(im, max_pixels, path)
                    sizes.append((im.height, im.width))
                    grey.append(im.mode in _GREY_MODES)
            except Image.DecompressionBombError as exc:
                raise ValueError(f"image file {path} is refused before decoding: {exc}") from None
            except (UnidentifiedImageError, OSError, SyntaxError) as exc:
                raise ValueError(f"cannot read image file {path}: {exc}") from None
        self.channels = channels if channels is not None else (1 if all(grey) else 3)
        self.max_pixels = max_pixels
        self.shapes = [(self.channels, h, w) for h, w in sizes]

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> np.ndarray:
        image = read_image(self.paths[i], self.channels, self.max_pixels)
        return to_float_array(image[None], channels=self.channels)[0]


def image_sequence(X, channels: int | None = None, max_pixels: int | None = None) -> Sequence[np.ndarray]:
    """Images as ``to_image_list`` gives them, but image files (or folders) as ``ImageFiles``,
    read only when used."""
    if isinstance(X, (str, os.PathLike)):
        X = [X]
    if _is_path_list(X):
        return ImageFiles(X, channels, max_pixels)
    return to_image_list(X, channels, max_pixels)


def image_shapes(images: Sequence[np.ndarray]) -> list[tuple[int, int, int]]:
    """``(C, H, W)`` of each image of ``image_sequence``, without reading any file."""
    return list(images.shapes) if isinstance(images, ImageFiles) else [tuple(im.shape) for im in images]


def to_float_array(X, channels: int | None = None, max_pixels: int | None = None) -> np.ndarray:
    """Turn images into float32 ``(N, C, H, W)`` in 0..1.

    Accepts a numpy array ``(N, H, W)`` or ``(N, H, W, C)`` (uint8 in 0..255 or float
    in 0..1, or uint16 in 0..65535), a list of equally sized arrays, or a list of image file
    paths / folders (each declaring at most ``max_pixels``).
    """
    if isinstance(X, (str, os.PathLike)):
        X = [X]
    if _is_path_list(X):
        images, channels = _read_files(X, channels, max_pixels)
        images = [np.repeat(im, 3, axis=2) if im.shape[2] < channels else im for im in images]
        shapes = {im.shape for im in images}
        if len(shapes) > 1:
            raise ValueError(f"image files differ in size: {sorted(shapes)[:3]}")
        X = stack_images(images)
    elif isinstance(X, (list, tuple)):
        if len(X) == 0:
            raise ValueError("no images given (empty input)")
        arrays = [np.asarray(x) for x in X]
        if len({a.shape for a in arrays}) > 1:
            raise ValueError("images in the list differ in shape")
        X = np.stack(arrays)
    if not isinstance(X, np.ndarray):
        raise TypeError(f"images must be a numpy array or a list of file paths, got {type(X).__name__}")
    if X.size == 0 or X.shape[0] == 0:
        raise ValueError("no images given (empty input)")
    if X.ndim == 3:
        X = X[:, :, :, None]
    elif X.ndim != 4:
        raise ValueError(
            f"images must have 3 dimensions (N, H, W) or 4 (N, H, W, C); got {X.ndim} with shape {X.shape}"
        )
    if X.shape[3] not in (1, 3):
        raise ValueError(f"images must have 1 or 3 channels in the last axis; got shape {X.shape}")
    if X.dtype == np.uint8:
        out = X.astype(np.float32) / 255.0
    elif X.dtype == np.uint16:
        out = X.astype(np.float32) / 65535.0
    elif np.issubdtype(X.dtype, np.floating):
        if not np.all(np.isfinite(X)):
            raise ValueError("images contain NaN or infinite values")
        lo, hi = float(X.min()), float(X.max())
        if lo < 0.0 or hi > 1.0:
            raise ValueError(f"float images must lie in 0..1; values range from {lo:g} to {hi:g}")
        out = X.astype(np.float32)
    elif np.issubdtype(X.dtype, np.integer) or X.dtype == bool:
        raise TypeError(f"integer images must be uint8 (0..255) or uint16 (0..65535); got {X.dtype}")
    else:
        raise TypeError(f"unsupported image dtype {X.dtype}")
    if channels is not None and out.shape[3] != channels:
        if out.shape[3] == 1 and channels == 3:
            out = np.repeat(out, 3, axis=3)
        elif out.shape[3] == 3 and channels == 1:
            out = (out @ np.array([0.299, 0.587, 0.114], dtype=np.float32))[..., None]
    return np.ascontiguousarray(out.transpose(0, 3, 1, 2))


def to_image_list(X, channels: int | None = None, max_pixels: int | None = None) -> list[np.ndarray]:
    """Turn images that may differ in size into a list of float32 ``(C, H, W)`` in 0..1.

    Accepts what ``to_float_array`` accepts, and also a list of arrays ``(H, W)`` or
    ``(H, W, C)`` of different sizes, or image files / folders of different sizes.
    """
    if isinstance(X, (str, os.PathLike)):
        X = [X]
    if _is_path_list(X):
        return list(ImageFiles(X, channels, max_pixels))
    if isinstance(X, (list, tuple)):
        if len(X) == 0:
            raise ValueError("no images given (empty input)")
        arrays = [np.asarray(x) for x in X]
        bad = [a.shape for a in arrays if a.ndim not in (2, 3)]
        if bad:
            raise ValueError(f"each image in the list must be (H, W) or (H, W, C); got shape {bad[0]}")
        if channels is None:
            channels = max(1 if a.ndim == 2 else a.shape[2] for a in arrays)
        return [to_float_array(a[None], channels=channels)[0] for a in arrays]
    return list(to_float_array(X, channels=channels))


def decode_image(data: bytes, channels: int | None = None, name: str = "upload",
                 max_pixels: int | None = None) -> np.ndarray:
    """Image file content (PNG, JPEG, ...) as an array, converted like ``read_image`` and
    refused like it when it declares more than ``max_pixels``; ``name`` appears in errors."""
    import io

    formats = ["PNG"] if data[:8] == b"\x89PNG\r\n\x1a\n" else ["JPEG"] if data[:3] == b"\xff\xd8\xff" else None
    try:
        with Image.open(io.BytesIO(data), formats=formats) as im:  # known formats: no probing
            _check_size(im, max_pixels, name)
            im.load()
            return _pixels(im, channels, name)
    except Image.DecompressionBombError as exc:
        raise ValueError(f"image {name} is refused before decoding: {exc}") from None
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise ValueError(f"cannot read image {name}: {exc}") from None
