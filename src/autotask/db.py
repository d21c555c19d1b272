"""Connections to PostgreSQL for code that must not use Django's: the runtime and async enqueue.

Parameters come from Django's own database settings, read when first needed: under the test
runner the database name has been swapped to the test database by then. Pools are per event
loop, since a psycopg async pool belongs to the loop that opened it (the runtime's loop, and in
an ASGI server the server's loop).
"""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import weakref
from typing import Any

from django.db import connections
from psycopg_pool import AsyncConnectionPool

from . import conf

# Django puts objects in its parameters that only its own connection wrapper can use.
_DJANGO_ONLY = ("cursor_factory", "context")

_pools: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, AsyncConnectionPool] = (
    weakref.WeakKeyDictionary()
)
_pools_lock = threading.Lock()


def connection_kwargs(*, purpose: str = "pool") -> dict[str, Any]:
    """psycopg keyword arguments for the database named by ``AUTOTASK_DATABASE``."""
    params = dict(connections[conf.database()].get_connection_params())
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
    """The open pool of the running event loop, created on first use."""
    loop = asyncio.get_running_loop()
    with _pools_lock:
        pool = _pools.get(loop)
        if pool is None:
            pool = AsyncConnectionPool(
                # Every statement autotask sends through a pool stands alone: autocommit saves
                # the BEGIN and COMMIT round trips around each (a third of throughput).
                kwargs={**connection_kwargs(), "autocommit": True},
                min_size=1,
                max_size=conf.get().pool_size,
                open=False,
                name=f"autotask-{id(loop):x}",
            )
            _pools[loop] = pool
    if pool.closed:
        await pool.open(wait=True)
    return pool


async def close_async_pool() -> None:
    """Close the running loop's pool, if it has one (at lifespan or runtime shutdown)."""
    with _pools_lock:
        pool = _pools.pop(asyncio.get_running_loop(), None)
    if pool is not None:
        await pool.close()
