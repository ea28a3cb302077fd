"""Sliding windows over a series and back: from window scores to one score per time step.

Window ``j`` starts at row ``j * stride`` and covers ``window`` rows. A time step's score
combines the windows that cover it:

=========  ================================================================================
``mean``   mean of the scores of all windows that cover the step
``max``    largest score of the windows that cover the step
``last``   score of the most recent window that *ends* at or before the step (causal: it
           uses no later rows); steps before the first full window get ``fill`` (0)
=========  ================================================================================

Steps covered by no window (the tail when ``stride`` does not divide ``T - window``) take
the score of the last window.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import maximum_filter1d

COMBINE = ("mean", "max", "last")


def n_windows(length: int, window: int, stride: int = 1) -> int:
    return 0 if length < window else (length - window) // stride + 1


def starts(length: int, window: int, stride: int = 1) -> np.ndarray:
    return np.arange(n_windows(length, window, stride)) * stride


def make_windows(values: np.ndarray, window: int, stride: int = 1) -> np.ndarray:
    """Windows ``(n, window, F)`` of a series ``(T, F)`` (a strided view, no copy)."""
    values = np.asarray(values)
    if values.ndim != 2:
        raise ValueError(f"a series must be 2-D (T, F), got shape {values.shape}")
    if window < 1 or stride < 1:
        raise ValueError(f"window and stride must be positive, got {window} and {stride}")
    if len(values) < window:
        raise ValueError(f"the series has {len(values)} rows, fewer than one window of {window}")
    view = np.lib.stride_tricks.sliding_window_view(values, window, axis=0)  # (T-w+1, F, w)
    return view[::stride].transpose(0, 2, 1)


def center_sensors(wins: np.ndarray, mask) -> np.ndarray:
    """Windows ``(n, window, F)`` with each masked sensor's mean over the window removed:
    what is left is how that sensor moves inside the window, not its level. Uses only the
    window's own rows (so a causal score stays causal); unmasked sensors are unchanged;
    applying it twice changes nothing."""
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 1 or (np.ndim(wins) == 3 and mask.size != np.shape(wins)[2]):
        raise ValueError(f"mask of {mask.size} sensors for windows of shape {np.shape(wins)}")
    if not mask.any():
        return wins
    out = np.array(wins, dtype=np.float32)  # a copy: the input may be a strided view
    out[:, :, mask] -= out[:, :, mask].mean(1, keepdims=True)
    return out


def to_steps(window_values: np.ndarray, length: int, window: int, stride: int = 1,
             how: str = "mean", fill: float = 0.0) -> np.ndarray:
    """Per-step values ``(T, ...)`` from per-window values ``(n, ...)`` (see module doc)."""
    if how not in COMBINE:
        raise ValueError(f"unknown combine {how!r}; choose one of {', '.join(COMBINE)}")
    v = np.asarray(window_values, dtype=np.float64)
    n = n_windows(length, window, stride)
    if len(v) != n:
        raise ValueError(f"{len(v)} window values for {n} windows of a series of {length} rows")
    tail = v.shape[1:]
    flat = v.reshape(n, -1)
    s = starts(length, window, stride)
    last_covered = s[-1] + window  # steps from here on are covered by no window
    if how == "mean":
        acc = np.zeros((length + 1, flat.shape[1]))
        cnt = np.zeros(length + 1)
        acc[s] += flat
        acc[s + window] -= flat
        cnt[s] += 1
        cnt[s + window] -= 1
        out = np.cumsum(acc, 0)[:length] / np.maximum(np.cumsum(cnt)[:length], 1)[:, None]
    elif how == "max":
        placed = np.full((length, flat.shape[1]), -np.inf)
        placed[s] = flat
        origin = (window - 1) - window // 2  # output[t] = max over placed[t - window + 1 .. t]
        out = maximum_filter1d(placed, size=window, axis=0, mode="constant", cval=-np.inf,
                               origin=origin)
    else:
        ends = s + window - 1
        idx = np.full(length, -1)
        idx[ends] = np.arange(n)
        idx = np.maximum.accumulate(idx)
        out = np.where(idx[:, None] >= 0, flat[np.maximum(idx, 0)], fill)
    if how != "last" and last_covered < length:
        out[last_covered:] = flat[-1]
    return out.reshape(length, *tail)
