"""The threads that run sync tasks and signal receivers, and how their results reach the loop.

Daemon threads, because ``ThreadPoolExecutor`` threads are joined at exit and a task stuck past
the shutdown timeout must not keep the process alive (its run is back to waiting by then).

``run()`` hands a result to the loop without ``concurrent.futures``: ``run_in_executor`` makes a
``concurrent.futures.Future`` per call (a lock and a condition), chains an asyncio future to it,
and wakes the loop through its self-pipe once per call. Here finished calls are queued and the
loop is woken once for as many as finished before it got round to them: while a batch of
claimed runs ends together, one wake-up, not one a run.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

_T = TypeVar("_T")


class DaemonThreadPool:
    """A fixed set of daemon threads, running calls for one event loop."""

    def __init__(self, size: int, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._jobs: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        # Calls finished, their results not yet set on the loop: (future, raised, value).
        self._finished: collections.deque[tuple[asyncio.Future[Any], bool, Any]]
        self._finished = collections.deque()
        self._lock = threading.Lock()
        self._wake_pending = False  # the loop is asked to set results and has not begun yet
        self._threads = [
            threading.Thread(target=self._work, name=f"autotask-sync-{n}", daemon=True)
            for n in range(size)
        ]
        for thread in self._threads:
            thread.start()

    def run(self, fn: Callable[..., _T], /, *args: Any) -> asyncio.Future[_T]:
        """``fn(*args)`` in a thread, as a future of the pool's loop (call from that loop). A
        call whose future is cancelled before a thread takes it is skipped; one under way runs
        to its end, its result dropped."""
        future: asyncio.Future[_T] = self._loop.create_future()

        def job() -> None:
            if future.cancelled():  # read across threads: at worst the call runs for nothing
                return
            value: Any
            try:
                value, raised = fn(*args), False
            except BaseException as exc:
                value, raised = _storable(exc), True
            self._hand_over(future, raised, value)

        self._jobs.put(job)
        return future

    def _hand_over(self, future: asyncio.Future[Any], raised: bool, value: Any) -> None:
        """From a thread: queue the result, and wake the loop unless a wake-up is pending (the
        results queued before it began are all set by it)."""
        self._finished.append((future, raised, value))
        with self._lock:
            if self._wake_pending:
                return
            self._wake_pending = True
        with contextlib.suppress(RuntimeError):  # the loop is closed: no one waits any more
            self._loop.call_soon_threadsafe(self._set_results)

    def _set_results(self) -> None:
        """On the loop: every result queued so far onto its future."""
        with self._lock:
            self._wake_pending = False
        while self._finished:
            future, raised, value = self._finished.popleft()
            if future.done():  # cancelled while its call ran
                continue
            if raised:
                future.set_exception(value)
            else:
                future.set_result(value)

    def shutdown(self, wait: bool = True) -> None:
        for _ in self._threads:
            self._jobs.put(None)
        if wait:
            for thread in self._threads:
                thread.join()

    def _work(self) -> None:
        while (job := self._jobs.get()) is not None:
            job()


class StopIterationInThread(RuntimeError):
    """A StopIteration raised in a thread, on its way to the loop: a future cannot hold one
    (PEP 479's reason), so it travels wrapped and ``unwrapped()`` unwraps it where it is
    caught."""


def unwrapped(exc: BaseException) -> BaseException:
    """The exception a plain function raised: a StopIteration is itself again, so ``retry_on``
    and the stored error name what the task raised. (An ``async def`` task's StopIteration is
    a RuntimeError before autotask sees it: Python's own doing, PEP 479.)"""
    if isinstance(exc, StopIterationInThread) and isinstance(exc.__cause__, StopIteration):
        return exc.__cause__
    return exc


def _storable(exc: BaseException) -> BaseException:
    """What a future can be given for ``exc``: itself, or a StopIteration wrapped."""
    if not isinstance(exc, StopIteration):
        return exc
    wrapped = StopIterationInThread("StopIteration raised in a thread (a future cannot hold one)")
    wrapped.__cause__ = exc
    return wrapped
