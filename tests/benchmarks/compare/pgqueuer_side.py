"""pgqueuer under the compare's workloads, configured as its README shows: a PgQueuer over an
asyncpg connection (AsyncpgDriver), jobs enqueued through Queries on a connection of their own.

pgqueuer deletes a job from its queue table when it logs the job's end, so "unfinished" is
simply what is left in that table.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import psycopg
from pgqueuer import PgQueuer
from pgqueuer.db import AsyncpgDriver, SyncPsycopgDriver
from pgqueuer.models import Job
from pgqueuer.queries import Queries, SyncQueries

from . import common
from .probes import async_starts, calls
from .systems import PGQUEUER_BATCH, PGQUEUER_MAX_TASKS, SPECS

DATABASE = SPECS["pgqueuer"].database
UNFINISHED = "SELECT count(*) FROM pgqueuer"
DONE = "SELECT count(*) FROM pgqueuer_log WHERE status = 'successful'"
ENTRYPOINTS = {"async": "async_noop", "sync": "sync_noop"}


def sync_noop() -> None:
    calls.hit()


def build(connection: asyncpg.Connection) -> PgQueuer:
    """A PgQueuer with the compare's entrypoints (they are registered per instance)."""
    pgq = PgQueuer(AsyncpgDriver(connection))

    @pgq.entrypoint("async_noop")
    async def async_noop(job: Job) -> None:
        calls.hit()

    @pgq.entrypoint("sync_noop")
    async def sync_in_thread(job: Job) -> None:  # pgqueuer 1.6 has no sync entrypoints
        await asyncio.to_thread(sync_noop)

    @pgq.entrypoint("probe")
    async def probe(job: Job) -> None:
        async_starts.mark(int(job.payload or b"0"))

    return pgq


async def connect() -> asyncpg.Connection:
    return await asyncpg.connect(common.dsn(DATABASE))


def start(pgq: PgQueuer) -> asyncio.Task[None]:
    return asyncio.create_task(
        pgq.run(batch_size=PGQUEUER_BATCH, max_concurrent_tasks=PGQUEUER_MAX_TASKS)
    )


async def stop(pgq: PgQueuer, running: asyncio.Task[None]) -> None:
    pgq.shutdown.set()
    await asyncio.wait_for(running, 30)


def setup() -> None:
    common.ensure_database(DATABASE)

    async def install() -> None:
        connection = await connect()
        try:
            queries = Queries(AsyncpgDriver(connection))
            if not await queries.schema_is_installed():
                await queries.install()
        finally:
            await connection.close()

    asyncio.run(install())


def reset() -> None:
    common.execute(DATABASE, "TRUNCATE pgqueuer, pgqueuer_log, pgqueuer_statistics")


def insert_backlog(n: int, kind: str) -> None:
    async def insert() -> None:
        connection = await connect()
        try:
            await Queries(AsyncpgDriver(connection)).enqueue(
                [ENTRYPOINTS[kind]] * n, [None] * n, [0] * n
            )
        finally:
            await connection.close()

    asyncio.run(insert())


def drain(n: int, kind: str, budget: float) -> dict[str, Any]:
    insert_backlog(n, kind)

    async def consume() -> dict[str, Any]:
        unfinished = common.Counter(DATABASE, UNFINISHED)
        pgq = build(await connect())
        calls.reset()
        try:
            cpu = common.CpuMeter()
            began = time.perf_counter()
            running = start(pgq)
            started = time.perf_counter()
            left = await asyncio.to_thread(common.wait_drained, unfinished, began + budget)
            finished = time.perf_counter()
            cpu.stop()
            await stop(pgq, running)
        finally:
            unfinished.close()
        return common.drain_figures(n, left, began, started, finished, calls.last, calls.count, cpu)

    figures = asyncio.run(consume())
    return {**figures, "done_rows": common.count(DATABASE, DONE)}


def serve(kind: str) -> None:
    async def consume() -> None:
        pgq = build(await connect())
        common.ChildProtocol.ready()
        await asyncio.to_thread(common.ChildProtocol.wait, "go")
        running = start(pgq)
        await asyncio.to_thread(common.ChildProtocol.wait, "stop")
        await stop(pgq, running)

    asyncio.run(consume())
    common.ChildProtocol.stopped(calls.count)


def enqueue_single(n: int, budget: float) -> dict[str, Any]:
    """pgqueuer's sync path: SyncQueries over psycopg (its consumers need the async driver)."""
    with psycopg.connect(common.conninfo(DATABASE), autocommit=True) as connection:
        queries = SyncQueries(SyncPsycopgDriver(connection))
        for _ in range(common.WARMUP):
            queries.enqueue("async_noop", None)
        reset()
        done, seconds = common.timed_series(lambda: queries.enqueue("async_noop", None), n, budget)
    return common.rate_figures(n, done, seconds, common.count(DATABASE, UNFINISHED))


async def _with_queries(action: Callable[[Queries], Awaitable[tuple[int, float]]]) -> Any:
    """``action`` on Queries over a fresh asyncpg connection, after a warm-up and a reset."""
    connection = await connect()
    try:
        queries = Queries(AsyncpgDriver(connection))
        for _ in range(common.WARMUP):
            await queries.enqueue("async_noop", None)
        await asyncio.to_thread(reset)
        return await action(queries)
    finally:
        await connection.close()


def enqueue_single_async(n: int, budget: float) -> dict[str, Any]:
    async def series(queries: Queries) -> tuple[int, float]:
        return await common.timed_series_async(
            lambda: queries.enqueue("async_noop", None), n, budget
        )

    done, seconds = asyncio.run(_with_queries(series))
    return common.rate_figures(n, done, seconds, common.count(DATABASE, UNFINISHED))


def enqueue_bulk(n: int) -> dict[str, Any]:
    async def bulk(queries: Queries) -> tuple[int, float]:
        began = time.perf_counter()
        await queries.enqueue(["async_noop"] * n, [None] * n, [0] * n)
        return n, time.perf_counter() - began

    done, seconds = asyncio.run(_with_queries(bulk))
    return common.rate_figures(n, done, seconds, common.count(DATABASE, UNFINISHED))


def latency(n: int, budget: float) -> dict[str, Any]:
    async def series() -> dict[str, Any]:
        pgq = build(await connect())
        producer = await connect()
        queries = Queries(AsyncpgDriver(producer))
        running = start(pgq)
        await asyncio.sleep(common.SETTLE)  # idle and listening
        try:
            return await common.probe_series_async(
                lambda i: queries.enqueue("probe", str(i).encode()),
                n,
                budget,
            )
        finally:
            await stop(pgq, running)
            await producer.close()

    result: dict[str, Any] = asyncio.run(series())
    return result
