"""How a task's function is called: the conventions Django's request handling would apply.

Plain functions run in daemon threads, each call wrapped in ``close_old_connections()`` as a
request is; daemon, because ``ThreadPoolExecutor`` threads are joined at exit and a task stuck
past the shutdown timeout must not keep the process alive (its run is back to waiting by then).
``async def`` functions run on the caller's loop, each in a ThreadSensitiveContext of its own,
as Django runs an async view.
"""

from __future__ import annotations

import concurrent.futures
import contextvars
import queue
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from asgiref.sync import ThreadSensitiveContext, sync_to_async
from django.db import close_old_connections, connections
from django.db.backends.signals import connection_created

if TYPE_CHECKING:
    from .tasks import Task


class DaemonThreadPool(concurrent.futures.Executor):
    """A fixed set of daemon threads; ``ThreadPoolExecutor`` threads are joined at exit."""

    def __init__(self, size: int) -> None:
        self._jobs: queue.SimpleQueue[
            tuple[concurrent.futures.Future[Any], Callable[[], Any]] | None
        ]
        self._jobs = queue.SimpleQueue()
        self._threads = [
            threading.Thread(target=self._work, name=f"autotask-sync-{n}", daemon=True)
            for n in range(size)
        ]
        for thread in self._threads:
            thread.start()

    def submit(
        self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any
    ) -> concurrent.futures.Future[Any]:
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self._jobs.put((future, lambda: fn(*args, **kwargs)))
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        for _ in self._threads:
            self._jobs.put(None)
        if wait:
            for thread in self._threads:
                thread.join()

    def _work(self) -> None:
        while (job := self._jobs.get()) is not None:
            future, call = job
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(call())
            except BaseException as exc:
                future.set_exception(exc)


def call_sync(task: Task[..., Any], args: list[Any], kwargs: dict[str, Any]) -> Any:
    """Run a plain task in a worker thread, as Django runs a request: connections checked around."""
    close_old_connections()
    try:
        return task.func(*args, **kwargs)
    finally:
        close_old_connections()


# Set (in the task's context) when Django opens a connection for an ``async def`` task's ORM call.
_connected: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "autotask_connected", default=False
)


def _note_connection_created(**kwargs: Any) -> None:
    _connected.set(True)


async def call_async(task: Task[..., Any], args: list[Any], kwargs: dict[str, Any]) -> Any:
    """Run an ``async def`` task as Django's ASGI handler runs a request.

    In a ThreadSensitiveContext of its own, its async ORM calls get a sync thread, and so a
    connection, of their own, instead of sharing (and closing under each other) the one
    process-wide thread. The connection is closed at the end, if the task opened one: the
    thread goes away with the context.
    """
    async with ThreadSensitiveContext():
        try:
            return await task.func(*args, **kwargs)
        finally:
            if _connected.get():
                await sync_to_async(connections.close_all)()


def track_async_connections() -> None:
    """Let ``call_async`` know when a task's ORM calls opened a connection (idempotent)."""
    connection_created.connect(_note_connection_created, dispatch_uid="autotask")
