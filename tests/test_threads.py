"""``dl.set_threads``: the one thread-count helper of the notebooks and the benches."""

from __future__ import annotations

import os

import pytest
import torch

import diffedit_lab as dl


@pytest.fixture(autouse=True)
def restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_explicit_count_is_set(monkeypatch):
    assert dl.set_threads(2) == 2 and torch.get_num_threads() == 2
    assert dl.set_threads(1) == 1 and torch.get_num_threads() == 1


def test_environment_then_shared_cpu_default(monkeypatch):
    monkeypatch.setenv("DIFFEDIT_THREADS", "3")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert dl.set_threads() == 3
    monkeypatch.delenv("DIFFEDIT_THREADS")
    assert dl.set_threads() == 1
    monkeypatch.delenv("OMP_NUM_THREADS")
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(16)), raising=False)
    assert dl.set_threads() == 4  # half of 16 cores, capped at 4
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0}, raising=False)
    assert dl.set_threads() == 1


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "2"])
def test_bad_count_is_one_line_error(bad):
    with pytest.raises(ValueError, match="threads="):
        dl.set_threads(bad)


def test_bad_environment_names_the_variable(monkeypatch):
    monkeypatch.setenv("DIFFEDIT_THREADS", "many")
    with pytest.raises(ValueError, match="DIFFEDIT_THREADS='many'"):
        dl.set_threads()
