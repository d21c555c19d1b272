"""The four measurements, each starting from an empty task table and a stopped runtime.

Import this module only once Django is set up with ``tests.benchmarks.settings``.
Every function returns plain data (seconds, counts); ``__main__`` turns it into tables.
"""

from __future__ import annotations

import asyncio
import math
import os
import selectors
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from django.db import transaction

from autotask import runtime, store
from autotask.task import AsyncTaskHandle, TaskHandle
from autotask.tasks import Task
from tests.app import tasks as app_tasks
from tests.app.models import Execution

from .database import BenchDB
from .report import percentile

ROOT = Path(__file__).resolve().parents[2]
WARMUP = 5
POLL = 0.02  # how often the end of a batch is checked, in seconds


def _fresh(bench: BenchDB, *tables: str) -> None:
    """Stop this process's runtime, then empty the task table (and ``tables``)."""
    runtime.stop()
    bench.truncate(*tables)


def _distribution(values: list[float]) -> dict[str, float]:
    return {
        "p50": percentile(values, 50),
        "p95": percentile(values, 95),
        "p99": percentile(values, 99),
        "max": max(values) if values else math.nan,
    }


# -- 1. enqueue -> start latency -------------------------------------------------------------


def latency_sync(
    bench: BenchDB, task: Task[..., Any], label: str, n: int, budget: float
) -> dict[str, Any]:
    """Enqueue one run from sync code, ``handle.wait()`` for it, then the next; ``n`` times."""
    _fresh(bench)
    runtime.start()
    ids: list[int] = []
    trips: list[float] = []
    timed_out = False
    try:
        warm_until = time.perf_counter() + budget / 4
        for _ in range(WARMUP):
            left = warm_until - time.perf_counter()
            if left <= 0:
                break
            try:
                task().wait(timeout=left)
            except TimeoutError:
                break
        deadline = time.perf_counter() + budget
        for _ in range(n):
            left = deadline - time.perf_counter()
            if left <= 0:
                break
            started = time.perf_counter()
            handle: TaskHandle = task()
            try:
                handle.wait(timeout=left)
            except TimeoutError:
                timed_out = True
                break
            trips.append(time.perf_counter() - started)
            ids.append(handle.id)
    finally:
        runtime.stop()
    return _latency_figures(bench, label, n, ids, trips, timed_out)


def latency_defer(
    bench: BenchDB, task: Task[..., Any], label: str, n: int, budget: float
) -> dict[str, Any]:
    """The same with ``await task.defer()`` and ``await handle.wait()`` on an asyncio loop."""
    _fresh(bench)
    runtime.start()
    ids: list[int] = []
    trips: list[float] = []

    async def series() -> bool:
        try:
            warm_until = time.perf_counter() + budget / 4
            for _ in range(WARMUP):
                left = warm_until - time.perf_counter()
                if left <= 0:
                    break
                try:
                    await (await task.defer()).wait(timeout=left)
                except TimeoutError:
                    break
            deadline = time.perf_counter() + budget
            for _ in range(n):
                left = deadline - time.perf_counter()
                if left <= 0:
                    break
                started = time.perf_counter()
                handle: AsyncTaskHandle = await task.defer()
                await handle.wait(timeout=left)
                trips.append(time.perf_counter() - started)
                ids.append(handle.id)
        except TimeoutError:
            return True
        return False

    try:
        timed_out = asyncio.run(series())
    finally:
        runtime.stop()
    return _latency_figures(bench, label, n, ids, trips, timed_out)


def _latency_figures(
    bench: BenchDB, label: str, n: int, ids: list[int], trips: list[float], timed_out: bool
) -> dict[str, Any]:
    timings = bench.timings(ids)
    return {
        "label": label,
        "requested": n,
        "measured": len(timings),
        "timed_out": timed_out,
        "start_latency": _distribution([start for start, _ in timings]),
        "run_to_finish": _distribution([run for _, run in timings if run is not None]),
        "round_trip": _distribution(trips),
    }


# -- 2. throughput ----------------------------------------------------------------------------


def _wait_until_finished(bench: BenchDB, started: float, limit: float) -> int:
    """Poll until no run is waiting or running, or ``limit`` seconds after ``started``."""
    while True:
        left = bench.unfinished()
        if left == 0 or time.perf_counter() - started > limit:
            return left
        time.sleep(POLL)


def throughput(
    bench: BenchDB, task: Task[..., Any], label: str, n: int, limit: float
) -> dict[str, Any]:
    """``n`` runs inserted while the runtime is stopped, then run by one runtime. A limited
    task's runs go in through store.insert_runs (which writes their keys and slots); a keyed
    one's get a key each ("k0" ...)."""
    _fresh(bench, "autotask_slot")
    if task.concurrency is None and task.rate is None:
        insert_seconds = bench.bulk_insert(task.name, task.queue, task.retries + 1, n)
    else:
        keyed = task.concurrency_key is not None or task.rate_key is not None
        new_runs = [task._new_run((f"k{i}",) if keyed else (), {}) for i in range(n)]
        insert_seconds = _timed(lambda: store.insert_runs(new_runs))
    started = time.perf_counter()
    try:
        runtime.start()
        start_seconds = time.perf_counter() - started
        left = _wait_until_finished(bench, started, limit)
        wall = time.perf_counter() - started
        span = bench.span()
        statuses = bench.statuses()
    finally:
        runtime.stop()
    return {
        "label": label,
        "n": n,
        "insert_seconds": insert_seconds,
        "start_seconds": start_seconds,
        "wall_seconds": wall,
        "unfinished": left,
        "statuses": statuses,
        **span,
    }


# -- 3. enqueue rate --------------------------------------------------------------------------


def _timed(action: Callable[[], None]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def _timed_async(
    make: Callable[[], Awaitable[None]], bench: BenchDB, task: Task[..., Any]
) -> float:
    """Run ``make()`` on a fresh loop after a warm-up (opens the runtime's pool); its seconds."""

    async def run() -> float:
        for _ in range(WARMUP):
            await task.defer()
        bench.truncate()  # blocking, but outside the timed part
        started = time.perf_counter()
        await make()
        return time.perf_counter() - started

    return asyncio.run(run())


def enqueue_rates(bench: BenchDB, n: int, width: int) -> list[dict[str, Any]]:
    """Enqueues per second of ``noop`` by each way there is, with the runtime stopped."""
    task = app_tasks.noop
    results: list[dict[str, Any]] = []

    def record(label: str, seconds: float) -> None:
        results.append({"label": label, "n": n, "seconds": seconds, "rows": bench.count()})
        bench.truncate()

    _fresh(bench)
    for _ in range(WARMUP):  # opens Django's connection
        task()
    bench.truncate()

    def calls() -> None:
        for _ in range(n):
            task()

    record("task(), autocommit: one transaction each", _timed(calls))

    def atomic_calls() -> None:
        with transaction.atomic():
            for _ in range(n):
                task()

    record("task() x N inside one transaction.atomic()", _timed(atomic_calls))

    async def sequential() -> None:
        for _ in range(n):
            await task.defer()

    record("await task.defer(), sequential", _timed_async(sequential, bench, task))

    async def concurrent() -> None:
        async def share(count: int) -> None:
            for _ in range(count):
                await task.defer()

        shares = [n // width + (1 if i < n % width else 0) for i in range(width)]
        await asyncio.gather(*(share(count) for count in shares))

    record(f"await task.defer(), {width} coroutines at once", _timed_async(concurrent, bench, task))

    record("task.enqueue_many(N calls): one statement", _timed(lambda: task.enqueue_many([()] * n)))

    async def bulk() -> None:
        await task.defer_many([()] * n)

    record("await task.defer_many(N calls): one statement", _timed_async(bulk, bench, task))

    seconds = bench.bulk_insert(task.name, task.queue, task.retries + 1, n)
    record("reference: one INSERT ... SELECT generate_series", seconds)
    return results


# -- 6. memory over many runs ----------------------------------------------------------------


def _rss_bytes() -> int:
    """This process's resident set size now (Linux: /proc/self/statm's second field)."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def memory(
    bench: BenchDB, task: Task[..., Any], n: int, batch: int, limit: float
) -> dict[str, Any]:
    """``n`` runs through one runtime in batches of ``batch`` (each enqueued with
    ``enqueue_many`` once the one before has drained), this process's RSS after each: a runtime
    that keeps something per run grows with ``n``; one that does not stays flat after warm-up."""
    _fresh(bench)
    runtime.start()
    samples: list[int] = []
    done = 0
    started = time.perf_counter()
    try:
        while done < n:
            size = min(batch, n - done)
            task.enqueue_many([()] * size)
            left = _wait_until_finished(bench, time.perf_counter(), limit)
            if left:
                break
            bench.truncate()  # the table stays small: only the runtime's memory is measured
            done += size
            samples.append(_rss_bytes())
    finally:
        runtime.stop()
    return {
        "task": task.name,
        "n": n,
        "done": done,
        "batch": batch,
        "seconds": time.perf_counter() - started,
        "rss_after_first_batch": samples[0] if samples else None,
        "rss_at_end": samples[-1] if samples else None,
        "rss_max": max(samples) if samples else None,
        "samples": samples,
    }


# -- 4. duplicates under several processes ---------------------------------------------------


def _spawn_worker() -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.benchmarks.worker_process"],
        cwd=ROOT,
        env=os.environ.copy(),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


def _read_line(child: subprocess.Popen[str], deadline: float) -> str:
    assert child.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(child.stdout, selectors.EVENT_READ)
        if not selector.select(timeout=max(0.0, deadline - time.perf_counter())):
            raise TimeoutError(f"worker process {child.pid} did not report in time")
    line = child.stdout.readline()
    if not line:
        raise RuntimeError(f"worker process {child.pid} exited with code {child.wait()}")
    return line.strip()


def _stop_workers(children: list[subprocess.Popen[str]]) -> None:
    for child in children:
        if child.poll() is None and child.stdin is not None:
            try:
                child.stdin.write("stop\n")
                child.stdin.flush()
            except BrokenPipeError:
                pass
    for child in children:
        try:
            child.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            child.kill()
            child.communicate()


def duplicates(bench: BenchDB, n: int, processes: int, limit: float) -> dict[str, Any]:
    """``n`` runs of ``record(key)`` raced for by ``processes`` processes with a runtime each."""
    table = Execution._meta.db_table
    _fresh(bench, table)
    task = app_tasks.record
    children: list[subprocess.Popen[str]] = []
    try:
        spawned = time.perf_counter()
        children = [_spawn_worker() for _ in range(processes)]
        deadline = time.perf_counter() + 60
        for child in children:
            _read_line(child, deadline)
        ready_seconds = time.perf_counter() - spawned
        started = time.perf_counter()
        insert_seconds = bench.bulk_insert(task.name, task.queue, task.retries + 1, n, keyed=True)
        left = _wait_until_finished(bench, started, limit)
        wall = time.perf_counter() - started
        per_process = bench.runs_per_worker()  # before the workers delete their rows
        span = bench.span()
        statuses = bench.statuses()
    finally:
        _stop_workers(children)
    return {
        "n": n,
        "processes": processes,
        "ready_seconds": ready_seconds,
        "insert_seconds": insert_seconds,
        "wall_seconds": wall,
        "unfinished": left,
        "statuses": statuses,
        "per_process": per_process,
        **span,
        **bench.executions(table, n),
    }
