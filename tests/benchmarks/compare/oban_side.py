"""oban (the Python port) under the compare's workloads, embedded as its README shows:
``Oban(pool=pool, queues={"default": 10})`` used as an async context manager.

Oban keeps finished jobs (state ``completed``), so "unfinished" is every state a job passes
through before it ends.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import psycopg
from oban import Job, Oban, job, worker
from oban.schema import install

from . import common
from .probes import async_starts, calls
from .systems import CONCURRENCY, SPECS

DATABASE = SPECS["oban"].database
UNFINISHED = (
    "SELECT count(*) FROM oban_jobs WHERE state IN ('available', 'scheduled', 'executing', "
    "'retryable')"
)
DONE = "SELECT count(*) FROM oban_jobs WHERE state = 'completed'"
ROWS = "SELECT count(*) FROM oban_jobs"


@worker(queue="default")
class AsyncNoop:
    async def process(self, job: Job) -> None:
        calls.hit()


@job(queue="default")
def sync_noop() -> None:
    """A plain function: oban's @job calls it on the event loop (it awaits only awaitables)."""
    calls.hit()


@worker(queue="default")
class Probe:
    async def process(self, job: Job) -> None:
        async_starts.mark(int(job.args["i"]))


WORKERS: dict[str, Any] = {"async": AsyncNoop, "sync": sync_noop}


async def pool() -> Any:
    return await Oban.create_pool(common.dsn(DATABASE))


def setup() -> None:
    common.ensure_database(DATABASE)

    async def install_schema() -> None:
        connections = await pool()
        try:
            async with connections.connection() as conn:
                found = await (await conn.execute("SELECT to_regclass('oban_jobs')")).fetchone()
            if not found or found[0] is None:
                await install(connections)
        finally:
            await connections.close()

    asyncio.run(install_schema())


def reset() -> None:
    common.execute(DATABASE, "TRUNCATE oban_jobs, oban_producers, oban_leaders")


async def _client(action: Callable[[Oban], Awaitable[Any]]) -> Any:
    """``action`` with an Oban in client mode (no queues: it only enqueues)."""
    connections = await pool()
    try:
        async with Oban(pool=connections) as oban:
            return await action(oban)
    finally:
        await connections.close()


def insert_backlog(n: int, kind: str) -> None:
    """One raw INSERT (oban's open-source enqueue_many inserts row by row: seconds for a
    backlog, untimed but slow); the row is what enqueue_many would write for ``new()``."""
    new = WORKERS[kind].new()
    with psycopg.connect(common.conninfo(DATABASE), autocommit=True) as conn:
        conn.execute(
            "INSERT INTO oban_jobs (worker, queue, max_attempts, priority) "
            "SELECT %s, %s, %s, %s FROM generate_series(1, %s)",
            [new.worker, new.queue, new.max_attempts, new.priority, n],
        )


def consumer(connections: Any) -> Oban:
    return Oban(pool=connections, queues={"default": CONCURRENCY})


def drain(n: int, kind: str, budget: float) -> dict[str, Any]:
    insert_backlog(n, kind)

    async def consume() -> dict[str, Any]:
        unfinished = common.Counter(DATABASE, UNFINISHED)
        connections = await pool()
        calls.reset()
        try:
            oban = consumer(connections)
            cpu = common.CpuMeter()
            began = time.perf_counter()
            await oban.start()
            started = time.perf_counter()
            try:
                left = await asyncio.to_thread(common.wait_drained, unfinished, began + budget)
                finished = time.perf_counter()
                cpu.stop()
            finally:
                await oban.stop()
        finally:
            unfinished.close()
            await connections.close()
        return common.drain_figures(n, left, began, started, finished, calls.last, calls.count, cpu)

    figures = asyncio.run(consume())
    return {**figures, "done_rows": common.count(DATABASE, DONE)}


def serve(kind: str) -> None:
    async def consume() -> None:
        connections = await pool()
        try:
            oban = consumer(connections)
            common.ChildProtocol.ready()
            await asyncio.to_thread(common.ChildProtocol.wait, "go")
            await oban.start()
            try:
                await asyncio.to_thread(common.ChildProtocol.wait, "stop")
            finally:
                await oban.stop()
        finally:
            await connections.close()

    asyncio.run(consume())
    common.ChildProtocol.stopped(calls.count)


def _client_timed(action: Callable[[], Awaitable[tuple[int, float]]]) -> tuple[int, float]:
    """``action`` with an Oban client, after a warm-up (opens the pool) and a reset."""

    async def run(oban: Oban) -> tuple[int, float]:
        for _ in range(common.WARMUP):
            await AsyncNoop.enqueue({})
        await asyncio.to_thread(reset)
        return await action()

    result: tuple[int, float] = asyncio.run(_client(run))
    return result


def enqueue_single(n: int, budget: float) -> dict[str, Any]:
    """Oban has no sync enqueue: the async call, as in enqueue_single_async."""
    return enqueue_single_async(n, budget)


def enqueue_single_async(n: int, budget: float) -> dict[str, Any]:
    async def series() -> tuple[int, float]:
        return await common.timed_series_async(lambda: AsyncNoop.enqueue({}), n, budget)

    done, seconds = _client_timed(series)
    return common.rate_figures(n, done, seconds, common.count(DATABASE, ROWS))


def enqueue_bulk(n: int) -> dict[str, Any]:
    async def bulk() -> tuple[int, float]:
        began = time.perf_counter()
        await Oban.get_instance().enqueue_many([AsyncNoop.new() for _ in range(n)])
        return n, time.perf_counter() - began

    done, seconds = _client_timed(bulk)
    return common.rate_figures(n, done, seconds, common.count(DATABASE, ROWS))


def latency(n: int, budget: float) -> dict[str, Any]:
    async def series() -> dict[str, Any]:
        connections = await pool()
        try:
            async with consumer(connections):
                await asyncio.sleep(common.SETTLE)  # idle and listening
                return await common.probe_series_async(lambda i: Probe.enqueue({"i": i}), n, budget)
        finally:
            await connections.close()

    result: dict[str, Any] = asyncio.run(series())
    return result
