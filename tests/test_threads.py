"""Threads per training job (issue 22): the rule, the slot registry, the rule over a job's life,
and the loop's two hooks. Expected values are written by hand."""

from __future__ import annotations

import subprocess
import sys
import types

import pytest
import torch

from repro import records as rec
from repro import threads
from repro.engine.loop import Engine


@pytest.fixture(autouse=True)
def restore_torch_threads():
    """These tests change the process's torch threads and module state: put both back."""
    before = torch.get_num_threads()
    yield
    threads.release()
    torch.set_num_threads(before)


@pytest.mark.parametrize(("cores", "trainers", "expected"), [
    (1, 1, 1), (2, 1, 2), (2, 2, 1), (2, 3, 1), (3, 2, 1), (4, 3, 1), (8, 3, 2), (16, 4, 4), (16, 5, 3), (2, 0, 2),
])
def test_threads_are_an_equal_share_of_the_cores_and_at_least_one(cores, trainers, expected):
    assert threads.threads_for(cores, trainers) == expected


@pytest.mark.parametrize(("n_jobs", "cores", "expected"), [(None, 2, 1), (1, 2, 1), (2, 2, 2), (4, 2, 4), (-1, 2, 2),
                                                          (-2, 4, 3), (-8, 2, 1)])
def test_joblib_n_jobs_as_jobs_at_once(n_jobs, cores, expected):
    assert threads.joblib_workers(n_jobs, cores) == expected


def test_registry_counts_two_holders_in_one_process_and_reuses_a_freed_slot(tmp_path):
    registry = threads.Registry(tmp_path)
    assert registry.held() == 0
    a = registry.take()
    assert (a.index, registry.held()) == (0, 1)
    b = registry.take()  # a second open file: flock treats it as another holder
    assert (b.index, registry.held()) == (1, 2)
    a.release()
    assert registry.held() == 1
    c = registry.take()
    assert (c.index, registry.held()) == (0, 2)
    b.release()
    c.release()
    assert registry.held() == 0


def test_a_killed_holder_frees_its_slot(tmp_path):
    code = ("import sys, time; from repro.threads import Registry; s = Registry(sys.argv[1]).take(); "
            "print(s.index, flush=True); time.sleep(60)")
    proc = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "0"
        registry = threads.Registry(tmp_path)
        assert registry.held() == 1
        mine = registry.take()
        assert (mine.index, registry.held()) == (1, 2)
    finally:
        proc.kill()
        proc.wait()
    assert registry.held() == 1  # the kernel dropped the killed process's lock; ours stays
    mine.release()


class Counts:
    """A hand-driven trainer count and clock."""

    def __init__(self, trainers: int) -> None:
        self.trainers, self.now = trainers, 0.0


def policy(counts: Counts, cores: int = 4, floor: int = 1) -> threads.Policy:
    return threads.Policy(cores, lambda: counts.trainers, floor=floor, settle_s=10.0, clock=lambda: counts.now)


def test_a_job_alone_takes_every_core_and_the_launchers_n_jobs_is_a_floor_at_start():
    assert policy(Counts(1)).threads == 4
    assert policy(Counts(1), floor=2).threads == 2
    assert policy(Counts(3), floor=2).threads == 1  # the registry saw more than the launcher runs


def test_more_trainers_cut_threads_at_once_fewer_raise_them_only_after_settling():
    counts = Counts(1)
    p = policy(counts)
    counts.trainers = 2
    assert p.check() == 2  # at once: oversubscription collapses
    counts.trainers, counts.now = 1, 100.0
    assert p.check() == 2
    counts.now = 109.0
    assert p.check() == 2
    counts.now = 110.0
    assert p.check() == 4


def test_a_neighbour_back_within_the_settle_time_restarts_it():
    counts = Counts(2)
    p = policy(counts)
    assert p.threads == 2
    counts.trainers, counts.now = 1, 0.0
    assert p.check() == 2
    counts.trainers, counts.now = 2, 3.0  # a sweep worker between jobs took its slot again
    assert p.check() == 2
    counts.trainers, counts.now = 1, 4.0
    assert p.check() == 2
    counts.now = 13.0
    assert p.check() == 2
    counts.now = 14.0
    assert p.check() == 4


def test_start_recheck_release_follow_the_registry_and_tag_the_run(tmp_path, monkeypatch):
    monkeypatch.setattr(threads, "usable_cores", lambda: 4)
    monkeypatch.setattr(threads, "SETTLE_S", 0.0)
    registry = threads.Registry(tmp_path)
    tags: list[dict] = []
    assert threads.start(0, tags.append, registry=registry) == 4
    assert (torch.get_num_threads(), registry.held()) == (4, 1)
    other = registry.take()
    threads.recheck()
    assert torch.get_num_threads() == 2
    other.release()
    threads.recheck()
    assert torch.get_num_threads() == 4
    assert tags[-1] == {rec.THREADS_TAG: "4,2,4", rec.CORES_TAG: "4"}
    threads.release()
    assert registry.held() == 0


def test_an_explicit_thread_count_stays_and_still_counts_for_others(tmp_path, monkeypatch):
    monkeypatch.setattr(threads, "usable_cores", lambda: 4)
    registry = threads.Registry(tmp_path)
    tags: list[dict] = []
    assert threads.start(3, tags.append, registry=registry) == 3
    other = registry.take()
    threads.recheck()
    assert (torch.get_num_threads(), registry.held()) == (3, 2)
    assert tags == [{rec.THREADS_TAG: "3", rec.CORES_TAG: "4"}]
    other.release()


def test_the_loop_rechecks_at_each_epoch_start_and_releases_its_slot_even_when_it_fails(tmp_path, monkeypatch):
    monkeypatch.setattr(threads, "usable_cores", lambda: 4)
    registry = threads.Registry(tmp_path)
    threads.start(0, registry=registry)
    other = registry.take()
    seen: list[int] = []

    def train_epoch(epoch: int) -> dict:
        seen.append(torch.get_num_threads())
        raise RuntimeError("stop")

    fake = types.SimpleNamespace(state=types.SimpleNamespace(epoch=0), train_epoch=train_epoch)
    with pytest.raises(RuntimeError):
        Engine._one_epoch(fake)
    assert seen == [2]  # the second trainer was counted before the epoch trained

    def failing_cycles() -> dict:
        raise RuntimeError("diverged")

    with pytest.raises(RuntimeError):
        Engine.run(types.SimpleNamespace(_run_cycles=failing_cycles))
    assert registry.held() == 1  # only the other holder
    other.release()
