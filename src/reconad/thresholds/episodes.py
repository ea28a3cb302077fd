"""Alert episodes from step scores, with hysteresis.

An episode starts at the step that completes ``enter`` consecutive steps scoring above
``high``, and ends at the step that completes ``leave`` consecutive steps scoring at or
below ``low`` (``low <= high``). Every step from the start up to the end (exclusive) is
flagged, also steps that dip between ``low`` and ``high`` on the way: a fault that
flickers around its threshold stays one alert, and an alert ends only once the score has
settled back. Each step's flag depends on that step and the ones before it only (causal),
and a stream can be judged in pieces: pass the returned ``EpisodeState`` to the next call.
A NaN score (not scored yet) counts as neither above ``high`` nor at or below ``low``.

>>> import numpy as np
>>> flags, state = episodes(np.array([0, 5, 5, 5, 2, 5, 2, 0, 0, 0]), high=4, low=1, enter=2, leave=2)
>>> flags.astype(int).tolist()
[0, 0, 1, 1, 1, 1, 1, 1, 0, 0]
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class EpisodeState:
    """Where a stream stands: inside an episode or not, and the current runs of steps
    above ``high`` and at or below ``low``."""

    on: bool = False
    above: int = 0
    below: int = 0


def check_rule(high: float, low: float, enter: int, leave: int) -> None:
    if not (np.isfinite(high) and np.isfinite(low)):
        raise ValueError(f"alert levels must be finite, got high={high} and low={low}")
    if low > high:
        raise ValueError(f"the level that ends an alert ({low}) must not be above the one that starts it ({high})")
    if int(enter) < 1 or int(leave) < 1:
        raise ValueError(f"enter and leave must be at least 1 step, got {enter} and {leave}")


def _runs(hit: np.ndarray, carried: int) -> np.ndarray:
    """Length of the run of True ending at each step (``carried`` steps before the first)."""
    idx = np.arange(len(hit))
    last_miss = np.maximum.accumulate(np.where(~hit, idx, -1))
    run = np.where(last_miss >= 0, idx - last_miss, idx + 1 + carried)
    return np.where(hit, run, 0)


def episodes(scores, high: float, low: float, enter: int = 1, leave: int = 1,
             state: EpisodeState | None = None) -> tuple[np.ndarray, EpisodeState]:
    """Flags ``(n,)`` (True inside an episode) and the state after the last step."""
    check_rule(high, low, enter, leave)
    s = np.asarray(scores, dtype=np.float64).ravel()
    state = state or EpisodeState()
    if s.size == 0:
        return np.zeros(0, bool), state
    if s.size <= 16:  # a few new steps (a live stream): a plain loop is faster
        return _episodes_loop(s, high, low, int(enter), int(leave), state)
    with np.errstate(invalid="ignore"):
        above = _runs(s > high, state.above)
        below = _runs(s <= low, state.below)
    idx = np.arange(s.size)
    last_start = np.maximum.accumulate(np.where(above >= int(enter), idx, -1))
    last_end = np.maximum.accumulate(np.where(below >= int(leave), idx, -1))
    flags = np.where((last_start < 0) & (last_end < 0), state.on, last_start > last_end)
    return flags.astype(bool), EpisodeState(bool(flags[-1]), int(above[-1]), int(below[-1]))


def _episodes_loop(s: np.ndarray, high: float, low: float, enter: int, leave: int,
                   state: EpisodeState) -> tuple[np.ndarray, EpisodeState]:
    on, above, below = state.on, state.above, state.below
    flags = np.zeros(s.size, bool)
    for i, v in enumerate(s.tolist()):
        above = above + 1 if v > high else 0   # NaN compares False: neither run goes on
        below = below + 1 if v <= low else 0
        if above >= enter:
            on = True
        elif below >= leave:
            on = False
        flags[i] = on
    return flags, EpisodeState(on, above, below)


def starts(flags: np.ndarray, was_on: bool = False) -> np.ndarray:
    """Indices where an episode starts (a flag that the step before did not have)."""
    flags = np.asarray(flags, dtype=bool)
    before = np.r_[was_on, flags[:-1]]
    return np.flatnonzero(flags & ~before)
