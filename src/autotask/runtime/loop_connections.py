"""Connections of their own for the event loops of callers (the ASGI server's, a script's).

``await task.defer()`` and async handles used to borrow the runtime's pool: two thread hops per
statement, to the runtime's thread and back, each waiting for that thread to wake and for the
GIL. Measured, the hops cost as much as the statement (``defer()`` 1,285 us a call, the same
INSERT on a connection of the caller's loop 618 us). So each loop other than the runtime's gets
up to ``AUTOTASK_POOL_SIZE`` connections of its own, opened on first use, kept between calls,
and closed when the loop shuts down: ``asyncio.run()`` and uvicorn end with
``loop.shutdown_asyncgens()``, which finalizes the generator holding them.

No background task is involved (psycopg's pool has several), so a loop that ends leaves nothing
pending behind. Like the runtime's pool, a connection whose session the server ended while it
sat idle is replaced, and a statement it failed is sent again on another.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Any, TypeVar

import psycopg
from psycopg import pq

from .database import (
    Params,
    connection_kwargs,
    every_row,
    first_row,
    sent_again_if_ended,
    still_open,
)

T = TypeVar("T")


class LoopConnections:
    def __init__(self, size: int) -> None:
        self._size = size
        self._idle: list[psycopg.AsyncConnection[Any]] = []
        self._slots: asyncio.Semaphore | None = None
        self._closer: AsyncGenerator[None, None] | None = None
        self._closed = False

    async def fetchone(self, statement: str, params: Params) -> tuple[Any, ...] | None:
        return await self._run(statement, params, first_row)

    async def fetchall(self, statement: str, params: Params) -> list[tuple[Any, ...]]:
        return await self._run(statement, params, every_row)

    async def _run(
        self,
        statement: str,
        params: Params,
        read: Callable[[psycopg.AsyncCursor[Any]], Awaitable[T]],
    ) -> T:
        if self._slots is None:
            self._slots = asyncio.Semaphore(self._size)
            closer = self._close_at_shutdown()
            await anext(closer)  # now the loop knows it, and closes it at shutdown_asyncgens()
            self._closer = closer
        async with self._slots:
            send = functools.partial(self._run_once, statement, params, read)
            return await sent_again_if_ended(len(self._idle), send)

    async def _run_once(
        self,
        statement: str,
        params: Params,
        read: Callable[[psycopg.AsyncCursor[Any]], Awaitable[T]],
    ) -> T:
        conn = await self._connection()
        try:
            result = await read(await conn.execute(statement, params))
        finally:
            await self._give_back(conn)
        return result

    async def _connection(self) -> psycopg.AsyncConnection[Any]:
        while self._idle:
            conn = self._idle.pop()
            try:
                await still_open(conn)
            except psycopg.OperationalError:
                await conn.close()
                continue
            return conn
        kwargs = {**connection_kwargs(purpose="caller"), "autocommit": True}
        return await psycopg.AsyncConnection.connect(**kwargs)

    async def _give_back(self, conn: psycopg.AsyncConnection[Any]) -> None:
        """Kept if it is idle and sound; closed if a statement was cut off in it (its caller was
        cancelled) or it broke, or if the loop is shutting down."""
        idle = conn.info.transaction_status == pq.TransactionStatus.IDLE
        if idle and not conn.broken and not self._closed:
            self._idle.append(conn)
        else:
            await conn.close()

    def abandon(self) -> None:
        """Its loop is closed without having shut its async generators down (a hand-run loop):
        close what it kept without that loop, which can no longer run a coroutine."""
        self._closed = True
        idle, self._idle = self._idle, []
        for conn in idle:
            conn.pgconn.finish()

    async def _close_at_shutdown(self) -> AsyncGenerator[None, None]:
        try:
            yield
        finally:
            self._closed = True
            idle, self._idle = self._idle, []
            for conn in idle:
                await conn.close()
