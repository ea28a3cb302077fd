"""How many torch threads a fit or a scoring call uses on a CPU that other processes may
be using.

Torch's parallel steps wait for all their threads at every step. When other processes
hold some of the cores, a thread that lands on a busy core holds up the others at each
step, and work with as many threads as cores can take several times longer than with one
(the feature memory bank on the 761 magnetic tiles, 2 cores, one other busy process: fit
60.6 s with this rule against more than 400 s with 2 threads, docs/magnetic_tile_features.md).
So on the CPU a fit or a scoring call first looks at how many cores the other processes
kept busy (over the time since the previous look, or over a tenth of a second when that
was more than ``MAX_AGE`` seconds ago), and runs with no more threads than the cores left
free (at least one); it never uses more threads than torch is set to, and puts the setting
back when it ends. ``RECONAD_ADAPT_THREADS=0`` turns this off.
"""

from __future__ import annotations

import os
import time
from contextlib import contextmanager
from contextvars import ContextVar

import psutil
import torch

#: seconds over which the other processes' CPU use is measured when there is no recent look
SAMPLE_SECONDS = 0.1
#: a look older than this many seconds is not used; a new one is taken
MAX_AGE = 10.0

# set inside ``cpu_threads``: nested calls (feature extraction, then the head's fit; the
# scoring inside a fit) look once
_inside: ContextVar[bool] = ContextVar("reconad_cpu_threads", default=False)
# the previous look: (time, busy CPU seconds of the machine, of this process), and its result
_last: tuple[float, float, float] | None = None
_last_free: int | None = None


def cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _busy_seconds(times) -> float:
    return sum(getattr(times, name, 0.0) for name in ("user", "system", "nice", "irq", "softirq", "steal"))


def _look() -> tuple[float, float, float]:
    return (time.perf_counter(), _busy_seconds(psutil.cpu_times()),
            _busy_seconds(psutil.Process().cpu_times()))


def _others(start: tuple[float, float, float], end: tuple[float, float, float]) -> float:
    """Cores kept busy by other processes between two looks, on average."""
    return max(0.0, (end[1] - start[1]) - (end[2] - start[2])) / max(end[0] - start[0], 1e-9)


def busy_cores_of_others(seconds: float = SAMPLE_SECONDS) -> float:
    """Cores kept busy by other processes, on average over the next ``seconds``."""
    start = _look()
    time.sleep(seconds)
    return _others(start, _look())


def free_cores(seconds: float = SAMPLE_SECONDS) -> int:
    """Cores the other processes leave free (at least 1): measured since the previous call
    when that was at most ``MAX_AGE`` seconds ago (the previous answer when it was less than
    ``seconds`` ago), else over the next ``seconds``."""
    global _last, _last_free
    start, now = _last, time.perf_counter()
    if start is not None and _last_free is not None and now - start[0] < seconds:
        return _last_free
    if start is None or now - start[0] > MAX_AGE:
        start = _look()
        time.sleep(seconds)
    end = _look()
    _last, _last_free = end, max(1, cores() - round(_others(start, end)))
    return _last_free


@contextmanager
def cpu_threads(device: torch.device, verbose: int = 0):
    """Run the enclosed work with at most as many torch threads as there are free cores
    (see the module notes); a no-op off the CPU, inside another ``cpu_threads``, with one
    thread set, or with ``RECONAD_ADAPT_THREADS=0``. Yields the thread count used."""
    before = torch.get_num_threads()
    if (_inside.get() or torch.device(device).type != "cpu" or before == 1
            or os.environ.get("RECONAD_ADAPT_THREADS") == "0"):
        yield before
        return
    threads = min(before, free_cores())
    if threads < before:
        torch.set_num_threads(threads)
        if verbose:
            print(f"other processes keep {cores() - threads} of {cores()} cores busy: running with "
                  f"{threads} torch thread{'s' if threads > 1 else ''} instead of {before}", flush=True)
    token = _inside.set(True)
    try:
        yield threads
    finally:
        _inside.reset(token)
        torch.set_num_threads(before)
