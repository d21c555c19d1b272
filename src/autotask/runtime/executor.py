"""The executor: runs claimed runs, each in a slot of its own, and hands their outcomes on.

How a function is called follows what Django's request handling would do. Plain functions run in
daemon threads, each call wrapped in ``close_old_connections()`` as a request is; daemon, because
``ThreadPoolExecutor`` threads are joined at exit and a task stuck past the shutdown timeout
must not keep the process alive (its run is back to waiting by then). ``async def`` functions
run on the runtime's loop, each in a ThreadSensitiveContext of its own, as Django runs an async
view.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import queue
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from asgiref.sync import ThreadSensitiveContext, sync_to_async
from django.db import close_old_connections, connections
from django.db.backends.signals import connection_created

from .. import registry, serialize
from ..conf import DEFAULT_TTL
from ..exceptions import TaskNotRegistered
from . import runs
from .completer import Completer
from .runs import ClaimedRun, Outcome

if TYPE_CHECKING:
    from ..tasks import Task


class Executor:
    """``concurrency`` slots; a run holds one from its start until its outcome is written."""

    def __init__(self, completer: Completer, *, concurrency: int, retry_delay: float) -> None:
        self._completer = completer
        self._concurrency = concurrency
        self._retry_delay = retry_delay
        self._running: dict[int, asyncio.Task[None]] = {}
        self._threads: DaemonThreadPool | None = None
        self._slot_freed: list[Callable[[], None]] = []

    @property
    def free_slots(self) -> int:
        return self._concurrency - len(self._running)

    def on_slot_freed(self, callback: Callable[[], None]) -> Callable[[], None]:
        self._slot_freed.append(callback)
        return lambda: self._slot_freed.remove(callback)

    async def start(self) -> None:
        self._threads = DaemonThreadPool(self._concurrency)
        connection_created.connect(_note_connection_created, dispatch_uid="autotask")

    async def stop(self, deadline: float) -> None:
        """Let running tasks finish until ``deadline``, then cancel what is left.

        A sync task cannot be cancelled: its thread runs on, but its run is given up here and
        put back to waiting by the heartbeat's stop.
        """
        if self._running:
            timeout = max(0.0, deadline - asyncio.get_running_loop().time())
            await asyncio.wait(list(self._running.values()), timeout=timeout)
        for run_task in self._running.values():
            run_task.cancel()
        await asyncio.gather(*self._running.values(), return_exceptions=True)
        if self._threads is not None:
            self._threads.shutdown(wait=False)

    def submit(self, run: ClaimedRun) -> None:
        run_task = asyncio.create_task(self._run(run), name=f"autotask run {run.id}")
        self._running[run.id] = run_task
        run_task.add_done_callback(lambda _: self._release(run.id))

    def _release(self, run_id: int) -> None:
        self._running.pop(run_id, None)
        for callback in list(self._slot_freed):
            callback()

    async def _run(self, run: ClaimedRun) -> None:
        outcome = await self._outcome(run)
        await self._completer.finish(outcome)

    async def _outcome(self, run: ClaimedRun) -> Outcome:
        task = registry.get(run.name)
        try:
            if task is None:
                raise TaskNotRegistered(
                    f"No task named {run.name!r} is registered in this process; "
                    "is its module imported (an app's tasks.py is found automatically)?"
                )
            if task.is_async:
                value = await _call_async(task, run.args, run.kwargs)
            else:
                loop = asyncio.get_running_loop()
                value = await loop.run_in_executor(
                    self._threads, _call_sync, task, run.args, run.kwargs
                )
            return runs.done(run, serialize.dump_result(task.name, value), task.ttl)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            if task is None:
                return runs.failed(run, exc, ttl=DEFAULT_TTL, retry_delay=None)
            return runs.failed(run, exc, ttl=task.ttl, retry_delay=self._retry_delay)


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


def _call_sync(task: Task[..., Any], args: list[Any], kwargs: dict[str, Any]) -> Any:
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


async def _call_async(task: Task[..., Any], args: list[Any], kwargs: dict[str, Any]) -> Any:
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
