"""What the job functions of every system record: how often they ran, and when a probe started.

The job bodies are no-ops apart from this, the same few instructions for every system, so the
figures compare the queues and not the jobs.
"""

from __future__ import annotations

import asyncio
import threading
import time


class Calls:
    """Counts job executions and keeps the time of the last one (thread-safe: sync jobs run in
    threads)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.count = 0
        self.last = 0.0

    def hit(self) -> None:
        now = time.perf_counter()
        with self._lock:
            self.count += 1
            self.last = now

    def reset(self) -> None:
        with self._lock:
            self.count = 0
            self.last = 0.0


class Starts:
    """Start times of latency probes, keyed by the probe's number, for a waiter in another
    thread (autotask's runtime runs its jobs in a thread of its own)."""

    def __init__(self) -> None:
        self._times: dict[int, float] = {}
        self._changed = threading.Condition()

    def mark(self, key: int) -> None:
        self.mark_at(key, time.perf_counter())

    def mark_at(self, key: int, when: float) -> None:
        with self._changed:
            self._times[key] = when
            self._changed.notify_all()

    def wait(self, key: int, timeout: float) -> float | None:
        """The start time of probe ``key``, or None if it has not started within ``timeout``."""
        with self._changed:
            self._changed.wait_for(lambda: key in self._times, timeout)
            return self._times.pop(key, None)


class AsyncStarts:
    """The same for a waiter on the event loop that also runs the jobs (the async peers)."""

    def __init__(self) -> None:
        self._futures: dict[int, asyncio.Future[float]] = {}

    def expect(self, key: int) -> asyncio.Future[float]:
        future: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self._futures[key] = future
        return future

    def mark(self, key: int) -> None:
        now = time.perf_counter()
        future = self._futures.pop(key, None)
        if future is not None and not future.done():
            future.set_result(now)


calls = Calls()
starts = Starts()
async_starts = AsyncStarts()
