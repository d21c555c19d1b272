"""The executor's calling conventions: the daemon thread pool that runs sync tasks."""

import threading

import pytest

from autotask.runtime.executor import DaemonThreadPool


def test_daemon_pool_runs_calls_in_daemon_threads_and_returns_results_and_errors() -> None:
    pool = DaemonThreadPool(2)
    try:
        thread = pool.submit(threading.current_thread).result(5)
        assert thread.daemon and thread.name.startswith("autotask-sync-")
        assert pool.submit(pow, 2, 10).result(5) == 1024
        with pytest.raises(ZeroDivisionError):
            pool.submit(lambda: 1 / 0).result(5)
    finally:
        pool.shutdown(wait=True)
    assert not thread.is_alive()


def test_a_cancelled_call_is_skipped() -> None:
    pool = DaemonThreadPool(1)
    gate = threading.Event()
    try:
        first = pool.submit(gate.wait, 5)
        second = pool.submit(lambda: "ran")
        assert second.cancel()
        gate.set()
        assert first.result(5) is True
    finally:
        pool.shutdown(wait=True)
    assert second.cancelled()
