"""The daemon thread pool that runs sync tasks, and how their results reach the loop."""

import asyncio
import threading
import time

import pytest

from autotask.runtime import threads
from autotask.runtime.threads import DaemonThreadPool


def _stops() -> None:
    raise StopIteration


class _Exhausted(StopIteration):
    pass


def _stops_as_subclass() -> None:
    raise _Exhausted


async def test_calls_run_in_daemon_threads_their_results_and_errors_the_loops_futures() -> None:
    """Daemon: a task stuck past the shutdown must not keep the process alive at exit."""
    pool = DaemonThreadPool(2, asyncio.get_running_loop())
    try:
        thread = await pool.run(threading.current_thread)
        assert thread.daemon and thread.name.startswith("autotask-sync-")
        assert await pool.run(pow, 2, 10) == 1024
        with pytest.raises(ZeroDivisionError):
            await pool.run(divmod, 1, 0)
        # A future cannot hold StopIteration: it comes as a RuntimeError, caused by it.
        with pytest.raises(RuntimeError, match="StopIteration raised in a thread") as raised:
            await pool.run(_stops)
        assert isinstance(raised.value.__cause__, StopIteration)
        # Where it is caught, it is itself again: retry_on and the stored error name it.
        assert threads.unwrapped(raised.value) is raised.value.__cause__
        other = RuntimeError("a task's own")
        assert threads.unwrapped(other) is other
        caused = RuntimeError("a task's own, from a StopIteration")
        caused.__cause__ = StopIteration()
        assert threads.unwrapped(caused) is caused  # the wrapper's type is checked, not the cause
        with pytest.raises(threads.StopIterationInThread) as subclass:
            await pool.run(_stops_as_subclass)
        assert type(threads.unwrapped(subclass.value)) is _Exhausted
    finally:
        pool.shutdown(wait=True)
    assert not thread.is_alive()


async def test_calls_that_end_together_wake_the_loop_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """While the loop is busy, every call finishing queues its result: the loop is woken once
    for them all, not once a call (as run_in_executor does)."""
    loop = asyncio.get_running_loop()
    wakes = []
    call_soon_threadsafe = loop.call_soon_threadsafe

    def counted(*args: object) -> asyncio.Handle:
        wakes.append(threading.current_thread().name)
        return call_soon_threadsafe(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(loop, "call_soon_threadsafe", counted)
    pool = DaemonThreadPool(8, loop)
    try:
        ended = threading.Barrier(9)
        futures = [pool.run(_wait_at, ended, n) for n in range(8)]
        ended.wait(5)  # every call returns now, while this loop is held
        time.sleep(0.2)
        assert await asyncio.gather(*futures) == list(range(8))
        assert len(wakes) == 1
        assert await pool.run(pow, 3, 2) == 9  # and the next one wakes it again
        assert len(wakes) == 2
    finally:
        pool.shutdown(wait=True)


def _wait_at(barrier: threading.Barrier, value: int) -> int:
    barrier.wait(5)
    return value


async def test_a_call_cancelled_before_a_thread_takes_it_is_skipped() -> None:
    pool = DaemonThreadPool(1, asyncio.get_running_loop())
    gate, ran = threading.Event(), threading.Event()
    try:
        first = pool.run(gate.wait, 5)
        second = pool.run(ran.set)
        second.cancel()
        gate.set()
        assert await first is True
        assert await pool.run(pow, 2, 2) == 4  # the one thread has passed the skipped call
        assert not ran.is_set()
    finally:
        pool.shutdown(wait=True)
