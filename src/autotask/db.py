"""Connections to PostgreSQL for code that must not use Django's: the runtime and async enqueue.

Parameters come from Django's own database settings, read when first needed: under the test
runner the database name has been swapped to the test database by then. A psycopg async pool
belongs to the loop that opened it; autotask opens one, on the runtime's loop, and other loops
borrow it through ``Runtime.call()``.
"""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import weakref
from collections.abc import Mapping, Sequence
from typing import Any

import psycopg.errors
from django.db import connections
from psycopg_pool import AsyncConnectionPool

from . import conf

# Django puts objects in its parameters that only its own connection wrapper can use.
_DJANGO_ONLY = ("cursor_factory", "context")

_pools: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, AsyncConnectionPool] = (
    weakref.WeakKeyDictionary()
)
_opening: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
    weakref.WeakKeyDictionary()
)
_pools_lock = threading.Lock()


MISSING_TABLES = "autotask's tables are missing from the database: run `manage.py migrate`."


def is_missing_table(exc: BaseException) -> bool:
    """Whether ``exc`` (psycopg's, or Django's wrapping it) says an autotask table is missing."""
    cause = exc if isinstance(exc, psycopg.errors.UndefinedTable) else exc.__cause__
    return isinstance(cause, psycopg.errors.UndefinedTable) and "autotask_" in str(cause)


def connection_kwargs(*, purpose: str = "pool") -> dict[str, Any]:
    """psycopg keyword arguments for the database named by ``AUTOTASK_DATABASE``."""
    # A wrapper of our own: ``connections[alias]`` would register one in the calling context,
    # which on the runtime's loop every task would then inherit.
    params = dict(connections.create_connection(conf.database()).get_connection_params())
    for key in _DJANGO_ONLY:
        params.pop(key, None)
    params.setdefault(
        "application_name", f"autotask {purpose} {socket.gethostname()}:{os.getpid()}"
    )
    return params


def listener_kwargs() -> dict[str, Any]:
    """Parameters for the dedicated LISTEN connection: autocommit, with TCP keepalives so a
    dead socket is noticed instead of waiting forever for a notification."""
    params = connection_kwargs(purpose="listener")
    params.update(autocommit=True)
    for key, value in (
        ("keepalives", 1),
        ("keepalives_idle", 10),
        ("keepalives_interval", 5),
        ("keepalives_count", 3),
    ):
        params.setdefault(key, value)
    return params


async def async_pool() -> AsyncConnectionPool:
    """The pool of the running event loop, created on first use (autotask uses the runtime's).

    Opened without waiting for connections: if the database is down, each use fails on its
    own (PoolTimeout) and the pool keeps trying in the background, instead of the pool being
    closed for good by a failed first open.
    """
    loop = asyncio.get_running_loop()
    pool = _pools.get(loop)
    if pool is not None and not pool.closed:
        return pool
    with _pools_lock:
        lock = _opening.setdefault(loop, asyncio.Lock())
    async with lock:
        pool = _pools.get(loop)
        if pool is None or pool.closed:
            pool = AsyncConnectionPool(
                # Every statement autotask sends through a pool stands alone: autocommit saves
                # the BEGIN and COMMIT round trips around each (a third of throughput).
                kwargs={**connection_kwargs(), "autocommit": True},
                min_size=1,
                max_size=conf.get().pool_size,
                open=False,
                name=f"autotask-{id(loop):x}",
            )
            await pool.open(wait=False)
            _pools[loop] = pool
    return pool


Params = Sequence[Any] | Mapping[str, Any]


async def fetchone(statement: str, params: Params) -> tuple[Any, ...] | None:
    """One statement through the running loop's pool; its first row, if any."""
    pool = await async_pool()
    async with pool.connection() as conn:
        cursor = await conn.execute(statement, params)
        return await cursor.fetchone()


async def fetchall(statement: str, params: Params) -> list[tuple[Any, ...]]:
    pool = await async_pool()
    async with pool.connection() as conn:
        cursor = await conn.execute(statement, params)
        return await cursor.fetchall()


async def execute(statement: str, params: Params) -> int:
    """One statement through the running loop's pool; the number of rows it touched."""
    pool = await async_pool()
    async with pool.connection() as conn:
        cursor = await conn.execute(statement, params)
        return cursor.rowcount


async def close_async_pool() -> None:
    """Close the running loop's pool, if it has one (at runtime shutdown)."""
    with _pools_lock:
        pool = _pools.pop(asyncio.get_running_loop(), None)
    if pool is not None:
        await pool.close()
