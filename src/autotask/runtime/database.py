"""The runtime's own connections to PostgreSQL: its async pool, and the parameters of them all.

Parameters come from Django's own database settings, read when the runtime starts: under the
test runner the database name has been swapped to the test database by then. The pool lives on
the runtime's loop and nowhere else; other loops have connections of their own
(loop_connections.py).
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import select
import socket
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar

import psycopg
from django.db import connections
from psycopg_pool import AsyncConnectionPool

from .. import conf
from ..exceptions import RuntimeStopped
from .service import time_left

# Django puts objects in its parameters that only its own connection wrapper can use.
_DJANGO_ONLY = ("cursor_factory", "context")

# SQLSTATEs of trouble that may pass (lost connection, shutdown, conflicts, lock timeouts);
# any other error from the server is about the statement or its data and would recur.
_TRANSIENT_SQLSTATES = frozenset({"57P01", "57P02", "57P03", "40001", "40P01", "55P03", "57014"})

Params = Sequence[Any] | Mapping[str, Any]
T = TypeVar("T")

# A statement sent while stopping: how long its first try on the pool may take (waiting for a
# connection included), and the pause between tries.
_STOP_POOL_TRY = 1.0
_STOP_RETRY_PAUSE = 0.2

# The server ended the session (admin shutdown, crash shutdown, cannot connect now).
_SESSION_ENDED = frozenset({"57P01", "57P02", "57P03"})


def connection_kwargs(*, purpose: str = "pool", alias: str | None = None) -> dict[str, Any]:
    """psycopg keyword arguments for the database named by ``AUTOTASK_DATABASE`` (or ``alias``)."""
    # A wrapper of our own: ``connections[alias]`` would register one in the calling context,
    # which on the runtime's loop every task would then inherit.
    alias = conf.database() if alias is None else alias
    params = dict(connections.create_connection(alias).get_connection_params())
    for key in _DJANGO_ONLY:
        params.pop(key, None)
    params.setdefault(
        "application_name", f"autotask {purpose} {socket.gethostname()}:{os.getpid()}"
    )
    return params


def dedicated_kwargs(purpose: str) -> dict[str, Any]:
    """Parameters for a connection of its own (the listener's, the leader's): autocommit, with
    TCP keepalives, so that a dead server is noticed within about 25 s instead of the system's
    two hours. (The server's end is set by ``sql.SESSION_KEEPALIVES`` once connected.)"""
    params = connection_kwargs(purpose=purpose, alias=conf.direct_database())
    params.update(autocommit=True)
    for key, value in (
        ("keepalives", 1),
        ("keepalives_idle", 10),
        ("keepalives_interval", 5),
        ("keepalives_count", 3),
    ):
        params.setdefault(key, value)
    return params


def listener_kwargs() -> dict[str, Any]:
    return dedicated_kwargs("listener")


def is_transient(exc: psycopg.Error) -> bool:
    """Whether a database error may pass if the statement is sent again (connection trouble)."""
    if exc.sqlstate is None:  # raised by the client: connection lost, pool timeout
        return isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError)
    return exc.sqlstate.startswith("08") or exc.sqlstate in _TRANSIENT_SQLSTATES


class _ReconnectWarnings(logging.Filter):
    """psycopg's pool warns at every failed reconnect (several a second as an outage begins);
    of those about autotask's pool, one a minute says enough."""

    every = 60.0

    def __init__(self) -> None:
        super().__init__()
        self._last = -math.inf

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.getMessage().startswith("error connecting in 'autotask'"):
            return True
        now = time.monotonic()
        if now - self._last < self.every:
            return False
        self._last = now
        return True


_RECONNECT_WARNINGS = _ReconnectWarnings()


class Pool:
    """The runtime's psycopg async pool, as a service; every statement stands alone.

    Opened without waiting for connections: if the database is down, each use fails on its own
    (PoolTimeout) and the pool keeps trying in the background, instead of being closed for good
    by a failed first open. A pool found closed (by anyone) is opened anew at its next use.
    """

    def __init__(self) -> None:
        self._pool: AsyncConnectionPool | None = None
        self._size = 1
        self._stopped = False

    async def start(self) -> None:
        logging.getLogger("psycopg.pool").addFilter(_RECONNECT_WARNINGS)  # added once
        await self._open()

    async def stop(self, deadline: float) -> None:
        self._stopped = True
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    async def _open(self) -> AsyncConnectionPool:
        self._size = conf.get().pool_size
        pool = AsyncConnectionPool(
            # Autocommit saves the BEGIN and COMMIT round trips around each statement (about a
            # third of throughput): nothing the runtime sends needs a transaction of its own.
            kwargs={**connection_kwargs(), "autocommit": True},
            min_size=1,
            max_size=self._size,
            open=False,
            name="autotask",
            check=still_open,
        )
        await pool.open(wait=False)
        self._pool = pool
        return pool

    async def _ready(self) -> AsyncConnectionPool:
        if self._stopped:
            raise RuntimeStopped("autotask's runtime has stopped")
        pool = self._pool
        if pool is None or pool.closed:
            pool = await self._open()
        return pool

    async def fetchone(self, statement: str, params: Params) -> tuple[Any, ...] | None:
        """One statement; its first row, if any."""
        return await self._run(statement, params, first_row)

    async def fetchall(self, statement: str, params: Params) -> list[tuple[Any, ...]]:
        return await self._run(statement, params, every_row)

    async def fetchall_under(
        self, settings: str, statement: str, params: Params
    ) -> list[tuple[Any, ...]]:
        """``fetchall`` under ``settings`` (``SET LOCAL`` commands) for this statement
        only: both go in one message, so they cost no round trip and run as one implicit
        transaction, which an error rolls back whole (the session is left as it was, as a
        pooler in transaction mode needs). A message of two commands cannot be prepared, so it
        is bound client-side."""
        return await self._run(f"{settings}; {statement}", params, _last_rows, client_side=True)

    async def execute(self, statement: str, params: Params) -> int:
        """One statement; the number of rows it touched."""
        return await self._run(statement, params, _count)

    async def execute_by(self, deadline: float, statement: str, params: Params) -> int:
        """For a stop: ``execute``, sent again on connection trouble until ``deadline`` (a
        ``loop.time()``; at least ``STOP_GRACE`` from now), and cut off then even if the server
        is still waiting on a lock, so that shutdown ends in about the time it was given.

        Tried first on the pool, then each time on a connection of its own: after a failover
        the pool may wait seconds before it connects again. Only for statements that may be
        sent twice (one cut off may have been written).
        """
        loop = asyncio.get_running_loop()
        cutoff = loop.time() + time_left(deadline)
        attempt, bound = self.execute(statement, params), _STOP_POOL_TRY
        while True:
            try:
                return await asyncio.wait_for(attempt, min(bound, cutoff - loop.time()))
            except (psycopg.Error, TimeoutError) as exc:
                if isinstance(exc, psycopg.Error) and not is_transient(exc):
                    raise
                if loop.time() + _STOP_RETRY_PAUSE >= cutoff:
                    raise
            await asyncio.sleep(_STOP_RETRY_PAUSE)
            attempt, bound = _execute_alone(statement, params), cutoff

    async def _run(
        self,
        statement: str,
        params: Params,
        read: Callable[[psycopg.AsyncCursor[Any]], Awaitable[T]],
        *,
        client_side: bool = False,
    ) -> T:
        """The statement on a pooled connection, and what ``read`` takes from its cursor.

        A pooled connection whose session the server ended while it sat idle (a failover,
        ``pg_terminate_backend``) fails at its next use with the server's word that it ended it
        (SQLSTATE 57P01-57P03): that statement never ran, so it is sent again, on another
        connection, instead of failing whoever sent it.
        """
        # Each ended session fails once and is dropped by the pool: at most every pooled
        # connection can be such a one.
        return await sent_again_if_ended(
            self._size, lambda: self._run_once(statement, params, read, client_side)
        )

    async def _run_once(
        self,
        statement: str,
        params: Params,
        read: Callable[[psycopg.AsyncCursor[Any]], Awaitable[T]],
        client_side: bool,
    ) -> T:
        async with (await self._ready()).connection() as conn:
            if not client_side:
                return await read(await conn.execute(statement, params))
            async with psycopg.AsyncClientCursor(conn) as cursor:
                return await read(await cursor.execute(statement, params))


async def sent_again_if_ended(kept: int, send: Callable[[], Awaitable[T]]) -> T:
    """``send()``, again as often as ``kept`` connections may have had their sessions ended
    while idle (SQLSTATE 57P01-57P03: the statement never ran), and once more."""
    for _ in range(kept):
        try:
            return await send()
        except psycopg.OperationalError as exc:
            if (exc.sqlstate or "") not in _SESSION_ENDED:
                raise
    return await send()


async def _execute_alone(statement: str, params: Params) -> int:
    kwargs = {**connection_kwargs(purpose="stop"), "autocommit": True}
    async with await psycopg.AsyncConnection.connect(**kwargs) as conn:
        return (await conn.execute(statement, params)).rowcount


async def still_open(conn: psycopg.AsyncConnection[Any]) -> None:
    """The pool's check when a connection is handed out, without a round trip: an idle
    connection has nothing to read, so one whose socket is readable has been ended by the
    server (a failover, ``pg_terminate_backend``) and is replaced before anyone uses it."""
    if conn.closed or conn.broken:
        raise psycopg.OperationalError("the connection is closed")
    readable, _, _ = select.select([conn.fileno()], [], [], 0)
    if readable:
        await conn.close()  # or the pool would take it back as it is, and hand it out again
        raise psycopg.OperationalError("the server ended this idle session")


async def first_row(cursor: psycopg.AsyncCursor[Any]) -> tuple[Any, ...] | None:
    return await cursor.fetchone()


async def every_row(cursor: psycopg.AsyncCursor[Any]) -> list[tuple[Any, ...]]:
    return await cursor.fetchall()


async def _last_rows(cursor: psycopg.AsyncCursor[Any]) -> list[tuple[Any, ...]]:
    while cursor.nextset():
        pass
    return await cursor.fetchall()


async def _count(cursor: psycopg.AsyncCursor[Any]) -> int:
    return cursor.rowcount
