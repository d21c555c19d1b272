"""The per-process runtime: one event-loop thread with the listener and, once started, the worker.

The loop never touches Django's ORM (Django forbids sync database calls inside a running loop, and
its connections are per thread); it talks to PostgreSQL through psycopg only. The loop starts
lazily: a handle waiting on a run needs the listener even in a process that runs no worker.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import threading
from collections.abc import Coroutine, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any, TypeVar

from . import conf, db
from .listener import Listener, StatusCallback
from .worker import Worker

logger = logging.getLogger("autotask")
T = TypeVar("T")

# How long starting the worker waits for the LISTEN connection before failing loudly.
_CONNECT_TIMEOUT = 15.0


class Runtime:
    def __init__(self) -> None:
        self._lock = threading.Lock()  # guards creating and forgetting the loop
        self._lifecycle = threading.Lock()  # one start() or stop() at a time
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._listener = Listener()
        self._listening: asyncio.Task[None] | None = None
        self._worker: Worker | None = None

    @property
    def worker(self) -> Worker | None:
        return self._worker

    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                ready = threading.Event()
                self._thread = threading.Thread(
                    target=self._run_loop, args=(loop, ready), name="autotask-runtime", daemon=True
                )
                self._thread.start()
                ready.wait()
                self._loop = loop
            return self._loop

    def _run_loop(self, loop: asyncio.AbstractEventLoop, ready: threading.Event) -> None:
        asyncio.set_event_loop(loop)
        self._listening = loop.create_task(self._listener.run(), name="autotask listener")
        loop.call_soon(ready.set)
        loop.run_forever()

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Run a coroutine on the runtime's loop from any other thread."""
        loop = self._ensure_loop()
        if _running_loop() is loop:
            coro.close()
            raise RuntimeError("submit() was called from the runtime's own loop")
        return asyncio.run_coroutine_threadsafe(coro, loop)

    async def call(self, coro: Coroutine[Any, Any, T]) -> T:
        """Await ``coro`` on the runtime's loop, from any event loop.

        The process's one async pool lives on the runtime's loop; other loops (the ASGI
        server's, ``asyncio.run`` in a script) borrow it rather than each opening their own.
        """
        loop = self._ensure_loop()
        if _running_loop() is loop:
            return await coro
        future = asyncio.run_coroutine_threadsafe(coro, loop)
        try:
            return await asyncio.wrap_future(future)
        except asyncio.CancelledError:
            caller = asyncio.current_task()
            if future.cancelled() and not (caller and caller.cancelling()):
                raise RuntimeError("autotask's runtime stopped during the call") from None
            raise

    @contextmanager
    def watch(self, run_id: int, callback: StatusCallback) -> Iterator[None]:
        self._ensure_loop()
        unwatch = self._listener.watch(run_id, callback)
        try:
            yield
        finally:
            unwatch()

    async def _start_worker(self) -> None:
        if self._worker is not None:
            return
        settings = conf.get()
        await self._listener.wait_connected(timeout=_CONNECT_TIMEOUT)
        worker = Worker(self._listener, settings)
        await worker.start()
        self._worker = worker

    async def _stop(self, timeout: float | None) -> None:
        worker, self._worker = self._worker, None
        try:
            if worker is not None:
                await worker.stop(conf.get().shutdown_timeout if timeout is None else timeout)
        finally:
            await db.close_async_pool()
            # The listener, and calls from other loops still in flight, end now (RuntimeError
            # for their callers), so that nothing waits on a loop that is about to stop.
            others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for other in others:
                other.cancel()
            await asyncio.gather(*others, return_exceptions=True)

    def start(self) -> None:
        """Start the worker in this process (idempotent); returns once it is registered."""
        with self._lifecycle:
            self.submit(self._start_worker()).result()

    async def astart(self) -> None:
        await asyncio.to_thread(self.start)

    def stop(self, timeout: float | None = None) -> None:
        """Stop the worker gracefully (see ``Worker.stop``), then the listener and the loop."""
        with self._lifecycle:
            if self._loop is None:
                return
            try:
                self.submit(self._stop(timeout)).result()
            finally:
                self._halt_loop()

    async def astop(self, timeout: float | None = None) -> None:
        await asyncio.to_thread(self.stop, timeout)

    def _halt_loop(self) -> None:
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = self._listening = self._worker = None
            self._listener = Listener()
        if loop is None or thread is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.close()


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


_runtime = Runtime()


def _reset_after_fork() -> None:
    """A forked child has no runtime thread: forget the parent's so the child starts its own."""
    global _runtime
    _runtime = Runtime()


os.register_at_fork(after_in_child=_reset_after_fork)


def get() -> Runtime:
    return _runtime


def start() -> None:
    _runtime.start()


async def astart() -> None:
    await _runtime.astart()


def stop(timeout: float | None = None) -> None:
    _runtime.stop(timeout)


async def astop(timeout: float | None = None) -> None:
    await _runtime.astop(timeout)


def watch(run_id: int, callback: StatusCallback) -> AbstractContextManager[None]:
    return _runtime.watch(run_id, callback)
