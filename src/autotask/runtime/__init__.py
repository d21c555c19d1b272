"""The per-process runtime: one event-loop thread and the services that run on it.

Two groups of services, each started in order and stopped in reverse:

- the connection services, up whenever the loop runs (a handle waiting on a run needs the
  listener even in a process that runs no worker): ``Pool`` -> ``Listener``; code on any other
  event loop talks to PostgreSQL through that loop's own connections (loop_connections.py);
- the worker services, from ``start()`` to ``stop()``:
  ``Heartbeat`` (joins autotask_worker) -> ``ScheduleSync`` (records this process's schedules)
  -> ``Completer`` (writes outcomes) -> ``Executor`` (runs claimed runs) -> ``Worker`` (the
  claim loop) -> ``Elector`` (competes to lead; the leader also runs ``Rescuer``, ``Pruner``
  and ``Scheduler``).

Stopping in reverse is what makes shutdown lose nothing: claiming stops first, running tasks get
the grace period, their outcomes are written, and only then is whatever is left put back to
waiting. This package never touches Django's ORM (Django forbids sync database calls inside a
running loop, and its connections are per thread); it talks to PostgreSQL through psycopg only.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import threading
import uuid
from collections.abc import Coroutine, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any, TypeVar

from .. import conf
from .completer import Completer
from .database import Params, Pool
from .executor import Executor
from .heartbeat import Heartbeat
from .leader import Elector
from .listener import Listener, StatusCallback
from .loop_connections import LoopConnections
from .pruner import Pruner
from .rescuer import Rescuer
from .scheduler import Scheduler, ScheduleSync
from .service import Service, start_all, stop_all
from .worker import Worker

T = TypeVar("T")

# How long starting the worker waits for the LISTEN connection before failing loudly.
_CONNECT_TIMEOUT = 15.0


class Runtime:
    def __init__(self) -> None:
        self._lock = threading.Lock()  # guards creating and forgetting the loop
        self._lifecycle = threading.Lock()  # one start() or stop() at a time
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._pool = Pool()
        self._listener = Listener()
        self._worker: Worker | None = None
        self._elector: Elector | None = None
        self._executor: Executor | None = None
        self._ended_before = 0  # attempts ended by worker services stopped since
        self._completer: Completer | None = None
        self._worker_services: list[Service] = []
        # Per event loop other than the runtime's: its connections, forgotten once it is closed.
        self._loop_connections: dict[asyncio.AbstractEventLoop, LoopConnections] = {}

    @property
    def worker(self) -> Worker | None:
        """The claim loop while the worker services run, else None."""
        return self._worker

    @property
    def is_leader(self) -> bool:
        """Whether this process's runtime leads (runs the schedules, rescue and pruning)."""
        return self._elector is not None and self._elector.is_leader

    @property
    def attempts_ended(self) -> int:
        """How many claimed runs this process has ended (an outcome written: done, failed,
        retried, postponed...) since it began: what ``autotask_worker --max-tasks`` counts."""
        completer = self._completer
        return self._ended_before + (completer.written if completer is not None else 0)

    def _connection_services(self) -> list[Service]:
        return [self._pool, self._listener]

    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                started: concurrent.futures.Future[None] = concurrent.futures.Future()
                thread = threading.Thread(
                    target=self._run_loop,
                    args=(loop, started),
                    name="autotask-runtime",
                    daemon=True,
                )
                thread.start()
                try:
                    started.result()
                except BaseException:
                    thread.join()
                    loop.close()
                    raise
                self._loop, self._thread = loop, thread
            return self._loop

    def _run_loop(
        self, loop: asyncio.AbstractEventLoop, started: concurrent.futures.Future[None]
    ) -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(start_all(self._connection_services()))
        except BaseException as exc:
            started.set_exception(exc)
            return
        started.set_result(None)
        loop.run_forever()

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Run a coroutine on the runtime's loop from any other thread."""
        try:
            loop = self._ensure_loop()
        except BaseException:
            coro.close()
            raise
        if _running_loop() is loop:
            coro.close()
            raise RuntimeError("submit() was called from the runtime's own loop")
        return asyncio.run_coroutine_threadsafe(coro, loop)

    async def fetchone(self, statement: str, params: Params) -> tuple[Any, ...] | None:
        """One statement from any event loop: on the runtime's own, through its pool; on any
        other, through that loop's connections (no hop between threads)."""
        return await self._connections().fetchone(statement, params)

    async def fetchall(self, statement: str, params: Params) -> list[tuple[Any, ...]]:
        return await self._connections().fetchall(statement, params)

    def _connections(self) -> Pool | LoopConnections:
        loop = asyncio.get_running_loop()
        if loop is self._loop:
            return self._pool
        with self._lock:
            # An entry keeps its loop alive (the generator that closes it refers to the loop),
            # so a closed loop's entry goes here, not by garbage collection.
            for closed in [other for other in self._loop_connections if other.is_closed()]:
                self._loop_connections.pop(closed).abandon()
            connections = self._loop_connections.get(loop)
            if connections is None:
                connections = LoopConnections(conf.get().pool_size)
                self._loop_connections[loop] = connections
        return connections

    @contextmanager
    def watch(self, run_id: int, callback: StatusCallback) -> Iterator[None]:
        """Call ``callback(status)`` from the runtime's thread on each status change of a run."""
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
        worker_id = uuid.uuid4()
        completer = Completer(self._pool, worker_id)
        self._completer = completer
        executor = Executor(
            completer,
            self._listener,
            concurrency=settings.concurrency,
            retry_delay=settings.retry_delay,
            timeout=settings.timeout,
            unregistered_grace=settings.unregistered_grace,
        )
        worker = Worker(
            self._pool,
            self._listener,
            executor,
            worker_id,
            queues=settings.queues,
            poll_interval=settings.poll_interval,
        )
        heartbeat = Heartbeat(
            self._pool,
            worker_id,
            queues=settings.queues,
            concurrency=settings.concurrency,
            interval=settings.heartbeat_interval,
        )
        pool = self._pool

        def leader_services() -> list[Service]:
            return [
                Rescuer(
                    pool,
                    worker_id,
                    timeout=settings.worker_timeout,
                    interval=settings.heartbeat_interval,
                ),
                Pruner(pool, interval=settings.clean_interval),
                Scheduler(pool, poll_interval=settings.poll_interval),
            ]

        elector = Elector(pool, worker_id, leader_services)
        self._executor = executor
        services: list[Service] = [
            heartbeat,
            ScheduleSync(pool),
            completer,
            executor,
            worker,
            elector,
        ]
        await start_all(services)
        self._worker_services, self._worker, self._elector = services, worker, elector

    async def _stop(self, timeout: float | None) -> None:
        grace = conf.get().shutdown_timeout if timeout is None else timeout
        deadline = asyncio.get_running_loop().time() + grace
        services, self._worker_services = self._worker_services, []
        self._worker = self._elector = None
        try:
            await stop_all(services, deadline)  # hurry() reaches the executor meanwhile
        finally:
            self._executor = None
            if self._completer is not None:
                self._ended_before += self._completer.written
                self._completer = None
            await stop_all(self._connection_services(), deadline)

    def start(self) -> None:
        """Start the worker in this process (idempotent); returns once it is registered."""
        with self._lifecycle:
            self.submit(self._start_worker()).result()

    async def astart(self) -> None:
        await asyncio.to_thread(self.start)

    def stop(self, timeout: float | None = None) -> None:
        """Stop the worker services gracefully, then the connection services and the loop.

        Running tasks get ``timeout`` seconds (default ``AUTOTASK_SHUTDOWN_TIMEOUT``) to finish;
        what is still running then is put back to waiting, its attempt not counted.
        """
        with self._lifecycle:
            if self._loop is None:
                return
            try:
                self.submit(self._stop(timeout)).result()
            finally:
                self._halt_loop()

    def hurry(self) -> None:
        """During ``stop()``, from any thread (a second signal): stop waiting for running tasks;
        they are cancelled and their runs still put back to waiting."""
        loop, executor = self._loop, self._executor
        if loop is not None and executor is not None:
            loop.call_soon_threadsafe(executor.hurry)

    async def astop(self, timeout: float | None = None) -> None:
        await asyncio.to_thread(self.stop, timeout)

    def _halt_loop(self) -> None:
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
            self._pool, self._listener = Pool(), Listener()
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
