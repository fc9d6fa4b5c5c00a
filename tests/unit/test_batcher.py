"""Dynamic batching on a real onnxruntime session: merged, identical, isolated."""
import multiprocessing
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import modelrepo
from service import cores
from service.batcher import Batcher
from service.runtime import ModelRuntime


@pytest.fixture
def runtime(tiny_repo):
    return ModelRuntime.load(tiny_repo, "fashion-mnist", 1, ["CPUExecutionProvider"], threads=1)


class Counting:
    """Records the size of every run the batcher makes, then runs the real model."""

    def __init__(self, runtime):
        self.runtime, self.sizes, self.lock = runtime, [], threading.Lock()

    def __call__(self, batch):
        with self.lock:
            self.sizes.append(len(batch))
        return self.runtime.run(batch)


def _submit_all(batcher, images, threads=16):
    def one(i):
        with batcher.expecting():
            return batcher.submit(images[i : i + 1])

    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(one, range(len(images))))


def test_concurrent_requests_are_merged_and_get_their_own_rows(runtime):
    images = np.random.default_rng(0).random((256, 28, 28, 1), dtype=np.float32)
    run = Counting(runtime)
    batcher = Batcher(run, "m", max_batch_size=64, wait_s=0.005)
    results = _submit_all(batcher, images)
    expected = runtime.run(images)
    np.testing.assert_allclose(np.concatenate(results), expected, rtol=1e-5, atol=1e-7)
    assert sum(run.sizes) == 256 and max(run.sizes) > 1 and max(run.sizes) <= 64


def test_batching_off_runs_one_request_at_a_time(runtime):
    images = np.random.default_rng(1).random((32, 28, 28, 1), dtype=np.float32)
    run = Counting(runtime)
    results = _submit_all(Batcher(run, "m", max_batch_size=1, wait_s=0.005), images)
    assert run.sizes == [1] * 32
    np.testing.assert_allclose(np.concatenate(results), runtime.run(images), rtol=1e-5, atol=1e-7)


def test_a_request_as_big_as_a_batch_passes_straight_through(runtime):
    run = Counting(runtime)
    out = Batcher(run, "m", max_batch_size=8, wait_s=0.005).submit(np.zeros((20, 28, 28, 1), np.float32))
    assert out.shape == (20, 10) and run.sizes == [20]


def test_one_bad_request_does_not_fail_the_others_in_its_batch(runtime):
    batcher = Batcher(Counting(runtime), "m", max_batch_size=64, wait_s=0.02)
    good = np.zeros((1, 28, 28, 1), np.float32)
    bad = np.zeros((1, 27, 28, 1), np.float32)  # cannot even be concatenated with the others
    barrier = threading.Barrier(9)

    def one(images):
        with batcher.expecting():
            barrier.wait()
            return batcher.submit(images)

    with ThreadPoolExecutor(9) as pool:
        futures = [pool.submit(one, good) for _ in range(8)] + [pool.submit(one, bad)]
    assert all(f.result().shape == (1, 10) for f in futures[:8])
    with pytest.raises(Exception):
        futures[8].result()


def test_a_lone_request_runs_at_once(runtime):
    run = Counting(runtime)
    batcher = Batcher(run, "m", max_batch_size=64, wait_s=0.5)
    started = __import__("time").perf_counter()
    with batcher.expecting():
        batcher.submit(np.zeros((1, 28, 28, 1), np.float32))
    assert __import__("time").perf_counter() - started < 0.25 and run.sizes == [1]


@pytest.mark.parametrize("n, padded", [(1, 1), (2, 2), (3, 4), (5, 8), (64, 64), (65, 128)])
def test_gpu_batches_are_padded_to_a_power_of_two(n, padded):
    from service.runtime import pad_to_power_of_two

    batch = np.ones((n, 28, 28, 1), np.float32)
    out = pad_to_power_of_two(batch)
    assert out.shape == (padded, 28, 28, 1) and out[:n].all() and not out[n:].any()


def _lead_while_another_decodes(batcher: Batcher) -> float:
    """Seconds a lone submit takes while another request of the worker is still decoding."""
    decoding, release = threading.Event(), threading.Event()

    def slow_request():
        with batcher.expecting():
            decoding.set()
            release.wait(5)

    other = threading.Thread(target=slow_request)
    other.start()
    decoding.wait(5)
    try:
        with batcher.expecting():
            started = time.perf_counter()
            batcher.submit(np.zeros((1, 28, 28, 1), np.float32))
            return time.perf_counter() - started
    finally:
        release.set()
        other.join()


def test_a_leader_waits_for_requests_on_their_way_only_when_allowed(runtime):
    # Allowed to wait 0.3 s: it waits for the request still decoding (which never comes here).
    assert _lead_while_another_decodes(Batcher(runtime.run, "m", max_batch_size=64, wait_s=0.3)) >= 0.25
    # Not allowed (what the CPU gets): it runs at once.
    assert _lead_while_another_decodes(Batcher(runtime.run, "m", max_batch_size=64, wait_s=0.0)) < 0.1


def test_waiting_is_allowed_only_where_merged_runs_are_much_cheaper_per_image(runtime, cnn):
    # The tiny model's runs are all overhead: eight images cost about what one does.
    assert 0 < runtime.merge_wait(0.002) <= 0.002
    # The course CNN on a CPU: eight images cost nearly eight times one, so no batch waits.
    assert cnn.merge_wait(0.002) == 0.0


@pytest.fixture(scope="module")
def cnn(bundled):
    return ModelRuntime.load(bundled, "fashion-mnist", modelrepo.newest_version(bundled, "fashion-mnist"),
                             ["CPUExecutionProvider"], threads=1, every_core_threads=2)


def test_a_run_alone_uses_both_sessions_and_they_answer_the_same(cnn, test_split):
    # threads=1 and every_core_threads=2 on the CPU: the every-core session is always opened.
    assert cnn.every_core_session is not None and cnn.alone_runs is not None
    images, before = test_split.images[:4], cnn.alone_runs.runs
    # EXPLORE_EVERY runs alone in a row: the faster session, and once the other one.
    alone = [cnn.run(images) for _ in range(cores.LoneRuns.EXPLORE_EVERY)]
    assert cnn.alone_runs.runs == before + cores.LoneRuns.EXPLORE_EVERY
    with cores.running():  # another run under way somewhere in the server: the one-thread session
        crowded = cnn.run(images)
    assert cnn.alone_runs.runs == before + cores.LoneRuns.EXPLORE_EVERY  # not a run alone: no choice made
    for answer in alone:
        np.testing.assert_allclose(answer, crowded, rtol=1e-5, atol=1e-6)


def _hold_a_run(ready, release):
    with cores.running():
        ready.set()
        release.wait(10)


def test_runs_are_counted_across_processes():
    cores.share()
    ready, release = multiprocessing.get_context("fork").Event(), multiprocessing.get_context("fork").Event()
    child = multiprocessing.get_context("fork").Process(target=_hold_a_run, args=(ready, release))
    child.start()
    try:
        assert ready.wait(10)
        with cores.running() as alone:
            assert not alone  # the other process is running
    finally:
        release.set()
        child.join(10)
    with cores.running() as alone:
        assert alone


def test_lone_runs_follow_the_faster_session_and_notice_when_it_changes():
    lone = cores.LoneRuns([0.002, 0.001])  # every core measured twice as fast at load
    picks = [lone.pick() for _ in range(32)]
    assert picks.count(1) == 30 and picks[15] == picks[31] == 0  # every 16th tries the other one
    for _ in range(20):  # the host takes the second core away: every-core runs become slow
        lone.record(1, 0.004, 1)
    assert [lone.pick() for _ in range(15)] == [0] * 15
