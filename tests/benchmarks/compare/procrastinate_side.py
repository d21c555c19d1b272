"""procrastinate under the compare's workloads, as its README recommends: an App over its
psycopg connector (``PsycopgConnector``), the worker run with ``run_worker_async``.

Sync enqueues open the app synchronously before anything async, so procrastinate picks its
``SyncPsycopgConnector`` (its documented sync path). Finished jobs stay (``delete_jobs``
defaults to never), so "unfinished" is ``todo`` or ``doing``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

import procrastinate

from . import common
from .probes import async_starts, calls
from .systems import CONCURRENCY, SPECS

DATABASE = SPECS["procrastinate"].database
UNFINISHED = "SELECT count(*) FROM procrastinate_jobs WHERE status IN ('todo', 'doing')"
DONE = "SELECT count(*) FROM procrastinate_jobs WHERE status = 'succeeded'"
ROWS = "SELECT count(*) FROM procrastinate_jobs"

app = procrastinate.App(
    connector=procrastinate.PsycopgConnector(conninfo=common.conninfo(DATABASE))
)
logging.getLogger("procrastinate").setLevel(logging.WARNING)


@app.task(name="async_noop")
async def async_noop() -> None:
    calls.hit()


@app.task(name="sync_noop")
def sync_noop() -> None:
    calls.hit()


@app.task(name="probe")
async def probe(i: int) -> None:
    async_starts.mark(i)


TASKS: dict[str, Any] = {"async": async_noop, "sync": sync_noop}


def setup() -> None:
    common.ensure_database(DATABASE)
    found = common.count(
        DATABASE, "SELECT count(*) FROM pg_tables WHERE tablename = 'procrastinate_jobs'"
    )
    if not found:

        async def apply() -> None:
            async with app.open_async():
                await app.schema_manager.apply_schema_async()

        asyncio.run(apply())


def reset() -> None:
    common.execute(DATABASE, "TRUNCATE procrastinate_jobs, procrastinate_workers CASCADE")


def insert_backlog(n: int, kind: str) -> None:
    async def insert() -> None:
        async with app.open_async():
            await TASKS[kind].batch_defer_async(*({} for _ in range(n)))

    asyncio.run(insert())


def start_worker() -> asyncio.Task[None]:
    return asyncio.create_task(
        app.run_worker_async(concurrency=CONCURRENCY, install_signal_handlers=False)
    )


async def stop_worker(worker: asyncio.Task[None]) -> None:
    """Cancelling run_worker_async is its graceful stop (running jobs finish first)."""
    worker.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.wait_for(worker, 30)


def drain(n: int, kind: str, budget: float) -> dict[str, Any]:
    insert_backlog(n, kind)

    async def consume() -> dict[str, Any]:
        unfinished = common.Counter(DATABASE, UNFINISHED)
        calls.reset()
        try:
            async with app.open_async():
                cpu = common.CpuMeter()
                began = time.perf_counter()
                worker = start_worker()
                started = time.perf_counter()
                try:
                    until = began + budget
                    left = await asyncio.to_thread(common.wait_drained, unfinished, until)
                    finished = time.perf_counter()
                    cpu.stop()
                finally:
                    await stop_worker(worker)
        finally:
            unfinished.close()
        return common.drain_figures(n, left, began, started, finished, calls.last, calls.count, cpu)

    figures = asyncio.run(consume())
    return {**figures, "done_rows": common.count(DATABASE, DONE)}


def serve(kind: str) -> None:
    async def consume() -> None:
        async with app.open_async():
            common.ChildProtocol.ready()
            await asyncio.to_thread(common.ChildProtocol.wait, "go")
            worker = start_worker()
            try:
                await asyncio.to_thread(common.ChildProtocol.wait, "stop")
            finally:
                await stop_worker(worker)

    asyncio.run(consume())
    common.ChildProtocol.stopped(calls.count)


def _sync_timed(action: Callable[[], tuple[int, float]]) -> tuple[int, float]:
    with app.open():  # before any async use: procrastinate's SyncPsycopgConnector
        for _ in range(common.WARMUP):
            async_noop.defer()
        reset()
        return action()


def enqueue_single(n: int, budget: float) -> dict[str, Any]:
    done, seconds = _sync_timed(lambda: common.timed_series(async_noop.defer, n, budget))
    return common.rate_figures(n, done, seconds, common.count(DATABASE, ROWS))


def enqueue_bulk(n: int) -> dict[str, Any]:
    def bulk() -> tuple[int, float]:
        began = time.perf_counter()
        async_noop.batch_defer(*({} for _ in range(n)))
        return n, time.perf_counter() - began

    done, seconds = _sync_timed(bulk)
    return common.rate_figures(n, done, seconds, common.count(DATABASE, ROWS))


def enqueue_single_async(n: int, budget: float) -> dict[str, Any]:
    async def series() -> tuple[int, float]:
        async with app.open_async():
            for _ in range(common.WARMUP):
                await async_noop.defer_async()
            await asyncio.to_thread(reset)
            return await common.timed_series_async(async_noop.defer_async, n, budget)

    done, seconds = asyncio.run(series())
    return common.rate_figures(n, done, seconds, common.count(DATABASE, ROWS))


def latency(n: int, budget: float) -> dict[str, Any]:
    async def series() -> dict[str, Any]:
        async with app.open_async():
            worker = start_worker()
            await asyncio.sleep(common.SETTLE)  # idle and listening
            try:
                return await common.probe_series_async(lambda i: probe.defer_async(i=i), n, budget)
            finally:
                await stop_worker(worker)

    result: dict[str, Any] = asyncio.run(series())
    return result
