"""autotask under the compare's workloads: the in-process runtime, as the README recommends.

The settings come from environment variables that this module sets before Django starts, so a
run started by hand (``python -m tests.benchmarks.compare.run autotask latency``) is configured
exactly as one started by the orchestrator.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from .systems import CONCURRENCY

os.environ["DJANGO_SETTINGS_MODULE"] = "tests.benchmarks.compare.autotask_settings"
os.environ["AUTOTASK_BENCH_WORKERS"] = str(CONCURRENCY)
os.environ["AUTOTASK_BENCH_CONN_MAX_AGE"] = "600"  # sync tasks keep Django's connection
os.environ.pop("AUTOTASK_BENCH_IDLE_TIME", None)  # autotask's default fallback poll (10 s)
os.environ.pop("AUTOTASK_BENCH_POOL_SIZE", None)  # autotask's default pool

import django

django.setup()

from autotask import runtime  # noqa: E402
from autotask.tasks import Task  # noqa: E402
from tests.benchmarks.database import BENCH_DATABASE, ensure_bench_database  # noqa: E402

from . import common, tasks  # noqa: E402
from .probes import calls  # noqa: E402

DATABASE = BENCH_DATABASE
UNFINISHED = "SELECT count(*) FROM autotask_task WHERE status IN ('waiting', 'running')"
DONE = "SELECT count(*) FROM autotask_task WHERE status = 'done'"
ROWS = "SELECT count(*) FROM autotask_task"
TASKS: dict[str, Task[..., Any]] = {"async": tasks.async_noop, "sync": tasks.sync_noop}


def setup() -> None:
    from django.core.management import call_command

    ensure_bench_database()
    call_command("migrate", verbosity=0, interactive=False)


def reset() -> None:
    """Empty the task table (and its dependency table, which references it); forget the worker
    rows a killed run may have left."""
    runtime.stop()
    common.execute(
        DATABASE, "TRUNCATE autotask_task, autotask_dependency", "DELETE FROM autotask_worker"
    )


def insert_backlog(n: int, kind: str) -> None:
    TASKS[kind].enqueue_many([()] * n)


def drain(n: int, kind: str, budget: float) -> dict[str, Any]:
    insert_backlog(n, kind)
    unfinished = common.Counter(DATABASE, UNFINISHED)
    calls.reset()
    try:
        cpu = common.CpuMeter()
        began = time.perf_counter()
        runtime.start()
        started = time.perf_counter()
        left = common.wait_drained(unfinished, began + budget)
        finished = time.perf_counter()
        cpu.stop()
    finally:
        runtime.stop()
        unfinished.close()
    figures = common.drain_figures(n, left, began, started, finished, calls.last, calls.count, cpu)
    return {**figures, "done_rows": common.count(DATABASE, DONE)}


def serve(kind: str) -> None:
    """One consumer of a two-process drain (see common.ChildProtocol)."""
    common.ChildProtocol.ready()
    common.ChildProtocol.wait("go")
    runtime.start()
    try:
        common.ChildProtocol.wait("stop")
    finally:
        runtime.stop()
    common.ChildProtocol.stopped(calls.count)


def enqueue_single(n: int, budget: float) -> dict[str, Any]:
    task = tasks.async_noop
    for _ in range(common.WARMUP):  # opens Django's connection
        task()
    reset()
    done, seconds = common.timed_series(task, n, budget)
    return common.rate_figures(n, done, seconds, common.count(DATABASE, ROWS))


def enqueue_single_async(n: int, budget: float) -> dict[str, Any]:
    task = tasks.async_noop

    async def series() -> tuple[int, float]:
        for _ in range(common.WARMUP):  # opens this loop's connections
            await task.defer()
        await asyncio.to_thread(reset)
        return await common.timed_series_async(task.defer, n, budget)

    done, seconds = asyncio.run(series())
    return common.rate_figures(n, done, seconds, common.count(DATABASE, ROWS))


def enqueue_bulk(n: int) -> dict[str, Any]:
    task = tasks.async_noop
    task.enqueue_many([()] * common.WARMUP)
    reset()
    began = time.perf_counter()
    task.enqueue_many([()] * n)
    seconds = time.perf_counter() - began
    return common.rate_figures(n, n, seconds, common.count(DATABASE, ROWS))


def latency(n: int, budget: float) -> dict[str, Any]:
    """Sequential sync enqueues from this (main) thread while the runtime runs in its own."""
    runtime.start()
    time.sleep(common.SETTLE)  # idle and listening, as every system's series begins
    try:
        return common.probe_series(tasks.probe, n, budget)
    finally:
        runtime.stop()
