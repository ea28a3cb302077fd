"""Torch threads of a fit on a CPU that other processes use (reconad.training.threads)."""
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from reconad import TabularDetector
from reconad.training import threads


@pytest.fixture
def two_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def test_a_busy_process_is_seen_as_a_busy_core():
    hog = subprocess.Popen([sys.executable, "-c", "import time\nt = time.time()\nwhile time.time() - t < 3: pass"])
    try:
        time.sleep(0.3)
        busy = threads.busy_cores_of_others(0.5)
    finally:
        hog.kill()
        hog.wait()
    assert busy >= 0.6  # the loop keeps one core busy; other jobs on the machine only add to it
    assert threads.free_cores(0.05) >= 1


def test_a_fit_uses_no_more_threads_than_free_cores_and_puts_the_setting_back(two_threads, monkeypatch):
    calls = []
    monkeypatch.setattr(threads, "free_cores", lambda *a: calls.append(1) or 1)
    seen = []
    real = TabularDetector._train

    def spy(self, train, val):
        seen.append(torch.get_num_threads())
        return real(self, train, val)

    monkeypatch.setattr(TabularDetector, "_train", spy)
    X = np.random.RandomState(0).normal(size=(200, 4))
    TabularDetector(verbose=0, members=2, epochs=1).fit(X)
    assert seen == [1] and calls == [1]
    assert torch.get_num_threads() == 2
    with threads.cpu_threads(torch.device("cpu")) as n:  # nested fits measure once
        assert n == 1 and torch.get_num_threads() == 1
        with threads.cpu_threads(torch.device("cpu")) as inner:
            assert inner == 1
    assert calls == [1, 1] and torch.get_num_threads() == 2


def test_never_more_threads_than_set_and_the_switch_off(two_threads, monkeypatch):
    monkeypatch.setattr(threads, "free_cores", lambda *a: 8)
    with threads.cpu_threads(torch.device("cpu")) as n:
        assert n == 2 == torch.get_num_threads()
    monkeypatch.setattr(threads, "free_cores", lambda *a: 1)
    monkeypatch.setenv("RECONAD_ADAPT_THREADS", "0")
    with threads.cpu_threads(torch.device("cpu")) as n:
        assert n == 2 == torch.get_num_threads()


def test_a_recent_look_is_reused_without_waiting():
    threads.free_cores()
    t = time.perf_counter()
    first = threads.free_cores()
    again = threads.free_cores()
    assert time.perf_counter() - t < threads.SAMPLE_SECONDS and 1 <= first == again <= threads.cores()
