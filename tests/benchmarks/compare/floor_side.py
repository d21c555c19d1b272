"""The floor: what plain psycopg 3 does with a minimal job table and no library at all.

It has none of a queue's bookkeeping (attempts, results, heartbeats, retries), so its figures
are a bound the systems cannot beat on this machine, not a competitor.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from . import common
from .probes import calls, starts
from .systems import FLOOR_CLAIM, SPECS

DATABASE = SPECS["floor"].database
UNFINISHED = "SELECT count(*) FROM job WHERE status <> 'done'"
DONE = "SELECT count(*) FROM job WHERE status = 'done'"
ROWS = "SELECT count(*) FROM job"
SCHEMA = (
    """
    CREATE TABLE IF NOT EXISTS job (
        id bigserial PRIMARY KEY,
        payload jsonb NOT NULL DEFAULT '{}'::jsonb,
        status text NOT NULL DEFAULT 'waiting',
        enqueued_at timestamptz NOT NULL DEFAULT now(),
        finished_at timestamptz
    )
    """,
    "CREATE INDEX IF NOT EXISTS job_waiting ON job (id) WHERE status = 'waiting'",
    """
    CREATE OR REPLACE FUNCTION job_notify() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        PERFORM pg_notify('job', '');
        RETURN NULL;
    END
    $$
    """,
    """
    CREATE OR REPLACE TRIGGER job_notify AFTER INSERT ON job
    FOR EACH STATEMENT EXECUTE FUNCTION job_notify()
    """,
)
INSERT = "INSERT INTO job (payload) VALUES (%s)"
CLAIM = """
    UPDATE job SET status = 'running'
    WHERE id IN (
        SELECT id FROM job WHERE status = 'waiting' ORDER BY id
        FOR UPDATE SKIP LOCKED LIMIT %s
    )
    RETURNING id, payload
"""
FINISH = "UPDATE job SET status = 'done', finished_at = now() WHERE id = ANY(%s)"


def setup() -> None:
    common.ensure_database(DATABASE)
    common.execute(DATABASE, *SCHEMA)


def reset() -> None:
    common.execute(DATABASE, "TRUNCATE job RESTART IDENTITY")


def insert_backlog(n: int, kind: str) -> None:
    with psycopg.connect(common.conninfo(DATABASE), autocommit=True) as conn:
        conn.execute(
            "INSERT INTO job (payload) SELECT '{}'::jsonb FROM generate_series(1, %s)", [n]
        )


async def noop() -> None:
    calls.hit()


async def drain_all() -> None:
    """Claim FLOOR_CLAIM rows per statement, run a no-op for each, finish them in one."""
    conn = await psycopg.AsyncConnection.connect(common.conninfo(DATABASE), autocommit=True)
    async with conn:
        while True:
            rows = await (await conn.execute(CLAIM, [FLOOR_CLAIM])).fetchall()
            if not rows:
                return
            for _ in rows:
                await noop()
            await conn.execute(FINISH, [[row[0] for row in rows]])


def drain(n: int, kind: str, budget: float) -> dict[str, Any]:
    insert_backlog(n, kind)
    calls.reset()
    cpu = common.CpuMeter()
    began = time.perf_counter()
    with contextlib.suppress(TimeoutError):
        asyncio.run(asyncio.wait_for(drain_all(), budget))
    finished = time.perf_counter()
    cpu.stop()
    left = common.count(DATABASE, UNFINISHED)
    figures = common.drain_figures(n, left, began, began, finished, calls.last, calls.count, cpu)
    return {**figures, "done_rows": common.count(DATABASE, DONE)}


def serve(kind: str) -> None:
    common.ChildProtocol.ready()
    common.ChildProtocol.wait("go")
    asyncio.run(drain_all())
    common.ChildProtocol.wait("stop")
    common.ChildProtocol.stopped(calls.count)


def enqueue_single(n: int, budget: float) -> dict[str, Any]:
    with psycopg.connect(common.conninfo(DATABASE), autocommit=True) as conn:
        for _ in range(common.WARMUP):
            conn.execute(INSERT, [Jsonb({})])
        reset()
        done, seconds = common.timed_series(lambda: conn.execute(INSERT, [Jsonb({})]), n, budget)
    return common.rate_figures(n, done, seconds, common.count(DATABASE, ROWS))


def enqueue_single_async(n: int, budget: float) -> dict[str, Any]:
    async def series() -> tuple[int, float]:
        conn = await psycopg.AsyncConnection.connect(common.conninfo(DATABASE), autocommit=True)
        async with conn:
            for _ in range(common.WARMUP):
                await conn.execute(INSERT, [Jsonb({})])
            await asyncio.to_thread(reset)
            return await common.timed_series_async(
                lambda: conn.execute(INSERT, [Jsonb({})]), n, budget
            )

    done, seconds = asyncio.run(series())
    return common.rate_figures(n, done, seconds, common.count(DATABASE, ROWS))


def enqueue_bulk(n: int) -> dict[str, Any]:
    bulk = "INSERT INTO job (payload) SELECT * FROM unnest(%s::jsonb[])"
    with psycopg.connect(common.conninfo(DATABASE), autocommit=True) as conn:
        conn.execute(bulk, [[Jsonb({})] * common.WARMUP])
        reset()
        began = time.perf_counter()
        conn.execute(bulk, [[Jsonb({}) for _ in range(n)]])
        seconds = time.perf_counter() - began
    return common.rate_figures(n, n, seconds, common.count(DATABASE, ROWS))


class Listener(threading.Thread):
    """A LISTEN connection in its own thread: a notification "starts" the probe whose number
    the claimed row carries (the notification time goes to ``starts``, the claim's to
    ``claims``)."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.conn = psycopg.connect(common.conninfo(DATABASE), autocommit=True)
        self.conn.execute("LISTEN job")
        self.claims: dict[int, float] = {}
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            # Out of the generator before the next query: it holds the connection meanwhile.
            if not list(self.conn.notifies(timeout=0.2, stop_after=1)):
                continue
            noticed = time.perf_counter()
            rows = self.conn.execute(CLAIM, [FLOOR_CLAIM]).fetchall()
            claimed = time.perf_counter()
            for _, payload in rows:
                self.claims[payload["i"]] = claimed - noticed
                starts.mark_at(payload["i"], noticed)
            self.conn.execute(FINISH, [[row[0] for row in rows]])

    def stop(self) -> None:
        self.stopping.set()
        self.join(5)
        self.conn.close()


def latency(n: int, budget: float) -> dict[str, Any]:
    """INSERT from this thread (the statement trigger NOTIFYs) -> the listener thread hears it."""
    listener = Listener()
    listener.start()
    time.sleep(common.SETTLE)
    try:
        with psycopg.connect(common.conninfo(DATABASE), autocommit=True) as conn:
            figures = common.probe_series(
                lambda i: conn.execute(INSERT, [Jsonb({"i": i})]),
                n,
                budget,
            )
    finally:
        listener.stop()
    claims = [seconds for i, seconds in listener.claims.items() if i >= 0]
    return {**figures, **common.ms_distribution("claim_", claims)}
