"""No hidden process-global state: per-thread thread counts."""

from __future__ import annotations

import threading

import pytest

import fastnn


def test_threads_block_is_per_thread_and_restores():
    outer = fastnn.get_num_threads()
    seen: dict[str, int] = {}
    barrier = threading.Barrier(2)

    def worker(name: str, n: int) -> None:
        with fastnn.threads(n):
            barrier.wait()  # both blocks are open at once
            seen[name] = fastnn.get_num_threads()
            barrier.wait()

    ts = [threading.Thread(target=worker, args=("a", 1)),
          threading.Thread(target=worker, args=("b", 3))]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert seen == {"a": 1, "b": 3}
    assert fastnn.get_num_threads() == outer


def test_threads_blocks_nest_and_leave_the_process_setting_alone():
    old = fastnn.get_num_threads()
    try:
        fastnn.set_num_threads(2)
        with fastnn.threads(1):
            assert fastnn.get_num_threads() == 1
            with fastnn.threads(2):
                assert fastnn.get_num_threads() == 2
            assert fastnn.get_num_threads() == 1
        assert fastnn.get_num_threads() == 2
    finally:
        fastnn.set_num_threads(old)


@pytest.mark.parametrize("bad, exc", [(0, ValueError), (-1, ValueError), (1.5, TypeError),
                                      (True, TypeError)])
def test_threads_rejects_bad_counts(bad, exc):
    with pytest.raises(exc, match="threads"):
        with fastnn.threads(bad):
            pass
