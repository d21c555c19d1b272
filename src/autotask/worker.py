"""The worker: wake -> claim -> run -> finish, on the runtime's event loop.

It only orchestrates: SQL comes from ``sql.py``, connections from ``db.py``, wake-ups from the
shared ``Listener``, and how a function is called from ``invoke.py``. Each claimed run is an
asyncio task on this loop; ``async def`` functions run right there, plain ones in threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import os
import socket
import traceback
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import psycopg
import psycopg.errors

from . import conf, db, invoke, registry, serialize, sql
from .listener import Listener
from .tasks import Task

logger = logging.getLogger("autotask")
T = TypeVar("T")

# Pause after a database error in the claim loop, so an outage is not a busy loop.
_ERROR_PAUSE = 1.0
# Wait when something is due but locked by another transaction: it is about to change hands.
_LOCKED_PAUSE = 0.05
_FINISH_ATTEMPTS = 5


@dataclass(frozen=True, slots=True)
class _Claimed:
    id: int
    name: str
    args: list[Any]
    kwargs: dict[str, Any]
    attempts: int
    max_attempts: int


def _error_json(exc: BaseException) -> str:
    cls = type(exc)
    error = {
        "type": f"{cls.__module__}.{cls.__qualname__}",
        "message": str(exc),
        "traceback": "".join(traceback.format_exception(exc)),
    }
    return json.dumps({key: _storable_text(text) for key, text in error.items()})


def _storable_text(text: str) -> str:
    """An error must always be storable: jsonb refuses NUL and lone surrogates, so both are
    written out as escapes instead."""
    text = text.replace("\x00", "\\x00")
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


class TaskNotRegistered(LookupError):
    """A row names a task this process does not know; nothing is imported to find it."""


class ResultNotStored(ValueError):
    """PostgreSQL refused to store a task's result (or error); the run ends in ERROR instead."""


# SQLSTATEs of trouble that may pass (lost connection, shutdown, conflicts, lock timeouts);
# any other error from the server is about the statement or its data and would recur.
_TRANSIENT_SQLSTATES = frozenset({"57P01", "57P02", "57P03", "40001", "40P01", "55P03", "57014"})


def _is_transient(exc: psycopg.Error) -> bool:
    if exc.sqlstate is None:  # raised by the client: connection lost, pool timeout
        return isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError)
    return exc.sqlstate.startswith("08") or exc.sqlstate in _TRANSIENT_SQLSTATES


class Worker:
    """Claims and runs due runs while started; one per runtime."""

    def __init__(self, listener: Listener, settings: conf.Settings) -> None:
        self.id = uuid.uuid4()
        self._listener = listener
        self._settings = settings
        self._queues = list(settings.queues) if settings.queues is not None else None
        self._slots = settings.workers
        self._running: dict[int, asyncio.Task[None]] = {}
        self._wake = asyncio.Event()
        self._slot_freed = asyncio.Event()
        self._stopping = False
        self._threads: invoke.DaemonThreadPool | None = None
        self._background: list[asyncio.Task[None]] = []
        self._done: list[tuple[int, str, float, asyncio.Future[None]]] = []
        self._done_writer: asyncio.Task[None] | None = None
        self._unsubscribe: Callable[[], None] | None = None

    async def start(self) -> None:
        try:
            await db.execute(
                sql.INSERT_WORKER,
                [self.id, socket.gethostname(), os.getpid(), json.dumps(self._queues), self._slots],
            )
        except psycopg.errors.UndefinedTable as exc:
            raise RuntimeError(db.MISSING_TABLES) from exc
        self._threads = invoke.DaemonThreadPool(self._slots)
        invoke.track_async_connections()
        self._unsubscribe = self._listener.on_wake(self._on_wake)
        self._background = [
            asyncio.create_task(self._serve(), name="autotask serve"),
            asyncio.create_task(self._beat(), name="autotask heartbeat"),
        ]
        logger.info("autotask: worker %s serving %s", self.id, self._queues or "every queue")

    async def stop(self, timeout: float) -> None:
        """Stop claiming, let running tasks finish for ``timeout`` seconds, requeue the rest."""
        self._stopping = True
        self._wake.set()
        self._slot_freed.set()
        if self._unsubscribe is not None:
            self._unsubscribe()
        serve, beat = self._background
        # Not cancelled: a claim cut off mid-statement could commit runs nobody starts.
        await asyncio.gather(serve, return_exceptions=True)
        beat.cancel()
        if self._running:
            await asyncio.wait(list(self._running.values()), timeout=timeout)
        for run_task in self._running.values():
            run_task.cancel()
        await asyncio.gather(beat, *self._running.values(), return_exceptions=True)
        if self._done_writer is not None:
            # Write what finished before requeueing, or finished runs would run again.
            await asyncio.gather(self._done_writer, return_exceptions=True)
        if self._threads is not None:
            self._threads.shutdown(wait=False)
        try:
            requeued = await db.execute(sql.SET_WAITING_IF_RUNNING_ON_WORKER, [self.id])
            if requeued:
                logger.warning("autotask: put %d unfinished run(s) back to waiting", requeued)
        finally:
            await db.execute(sql.DELETE_WORKER, [self.id])

    def _on_wake(self, queue_name: str | None) -> None:
        if queue_name is None or self._queues is None or queue_name in self._queues:
            self._wake.set()

    async def _serve(self) -> None:
        while not self._stopping:
            free = self._slots - len(self._running)
            if free <= 0:
                self._slot_freed.clear()
                await self._slot_freed.wait()
                continue
            self._wake.clear()
            try:
                claimed = await self._claim(free)
                for row in claimed:
                    self._start(row)
                if len(claimed) == free:
                    continue
                pause = await self._seconds_until_due()
            except psycopg.Error as exc:
                logger.warning("autotask: claim failed (%s); retrying", exc)
                pause = _ERROR_PAUSE
            except Exception:
                # Never let the claim loop die quietly while the heartbeat says all is well.
                logger.exception("autotask: unexpected error in the claim loop; retrying")
                pause = _ERROR_PAUSE
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), pause)

    async def _claim(self, limit: int) -> list[_Claimed]:
        params: dict[str, Any] = {"limit": limit, "worker_id": self.id, "queues": self._queues}
        statement = sql.CLAIM_RUNS_ANY_QUEUE if self._queues is None else sql.CLAIM_RUNS_IN_QUEUES
        return [_Claimed(*row) for row in await db.fetchall(statement, params)]

    async def _seconds_until_due(self) -> float:
        """The fallback poll, cut short by the earliest waiting run's ``run_at``."""
        if self._queues is None:
            statement, params = sql.SECONDS_UNTIL_DUE_ANY_QUEUE, []
        else:
            statement, params = sql.SECONDS_UNTIL_DUE_IN_QUEUES, [self._queues]
        row = await db.fetchone(statement, params)
        seconds = None if row is None or row[0] is None else float(row[0])
        if seconds is None:
            return self._settings.idle_time
        if seconds <= 0:
            return _LOCKED_PAUSE
        return min(seconds, self._settings.idle_time)

    def _start(self, run: _Claimed) -> None:
        run_task = asyncio.create_task(self._run(run), name=f"autotask run {run.id}")
        self._running[run.id] = run_task

        def release(_: asyncio.Task[None]) -> None:
            self._running.pop(run.id, None)
            self._slot_freed.set()

        run_task.add_done_callback(release)

    async def _run(self, run: _Claimed) -> None:
        task = registry.get(run.name)
        try:
            if task is None:
                raise TaskNotRegistered(
                    f"No task named {run.name!r} is registered in this process; "
                    "is its module imported (an app's tasks.py is found automatically)?"
                )
            if task.is_async:
                value = await invoke.call_async(task, run.args, run.kwargs)
            else:
                loop = asyncio.get_running_loop()
                value = await loop.run_in_executor(
                    self._threads, invoke.call_sync, task, run.args, run.kwargs
                )
            result = serialize.dump_result(task.name, value)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            await self._fail(run, task, exc)
            return
        await self._finish_done(run, result, task.ttl)

    async def _fail(self, run: _Claimed, task: Task[..., Any] | None, exc: BaseException) -> None:
        error = _error_json(exc)
        ttl = task.ttl if task is not None else Task.ttl
        if task is not None and run.attempts < run.max_attempts:
            params = [error, self._settings.retry_delay, run.id, self.id]
            statement = sql.SET_RETRY_IF_RUNNING
        else:
            logger.error("autotask: run %s of %s failed: %r", run.id, run.name, exc)
            params, statement = [error, ttl, run.id, self.id], sql.SET_ERROR_IF_RUNNING
        if not await self._finish(statement, params, run.id):
            # Refused for its data: end the run all the same, saying where the details are.
            error = _error_json(ResultNotStored("the error could not be stored; see the log"))
            await self._finish(sql.SET_ERROR_IF_RUNNING, [error, ttl, run.id, self.id], run.id)

    async def _finish(self, statement: str, params: list[Any], run_id: int) -> bool:
        """Write one run's outcome (an error or a retry); False if refused for its data."""
        write = functools.partial(db.execute, statement, params)
        try:
            rowcount = await self._retrying(f"run {run_id}", write)
        except Exception:
            logger.exception("autotask: could not finish run %s", run_id)
            return False
        if rowcount == 0:
            logger.warning("autotask: run %s was no longer ours to finish", run_id)
        return True

    async def _finish_done(self, run: _Claimed, result: str, ttl: float) -> None:
        """Queue a DONE for the batch writer and wait until it is written."""
        written: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._done.append((run.id, result, ttl, written))
        if self._done_writer is None or self._done_writer.done():
            self._done_writer = asyncio.create_task(self._write_done(), name="autotask done")
        await written

    async def _write_done(self) -> None:
        """Write queued DONEs in batches: what queues up during one write goes in the next."""
        while self._done:
            batch, self._done = self._done, []
            try:
                await self._write_done_batch([(run_id, r, ttl) for run_id, r, ttl, _ in batch])
            except Exception:
                logger.exception("autotask: could not finish runs %s", [b[0] for b in batch])
            for *_, written in batch:
                if not written.done():
                    written.set_result(None)

    async def _write_done_batch(self, batch: list[tuple[int, str, float]]) -> None:
        ids = [run_id for run_id, _, _ in batch]
        params = [ids, [result for _, result, _ in batch], [ttl for *_, ttl in batch], self.id]
        write = functools.partial(db.fetchall, sql.SET_DONE_IF_RUNNING, params)
        try:
            ours = await self._retrying(f"runs {ids}", write)
        except psycopg.Error as exc:
            # Refused for its data (PostgreSQL is pickier than json.dumps): find the culprit
            # alone, so the other runs of the batch are not held back by it.
            if len(batch) > 1:
                for one in batch:
                    await self._write_done_batch([one])
                return
            run_id, _, ttl = batch[0]
            error = _error_json(ResultNotStored(f"PostgreSQL refused the result: {exc}"))
            await self._finish(sql.SET_ERROR_IF_RUNNING, [error, ttl, run_id, self.id], run_id)
            return
        if ours is None:  # gave up, and said so
            return
        for run_id in set(ids) - {row[0] for row in ours}:
            logger.warning("autotask: run %s was no longer ours to finish", run_id)

    async def _retrying(self, what: str, write: Callable[[], Awaitable[T]]) -> T | None:
        """Run a status write, retrying through short database outages; None if it never went.

        Only connection trouble is retried: an error about the data would fail every time.
        """
        for attempt in range(_FINISH_ATTEMPTS):
            try:
                return await write()
            except psycopg.Error as exc:
                if not _is_transient(exc):
                    raise
                logger.warning("autotask: could not finish %s (%s)", what, exc)
                await asyncio.sleep(_ERROR_PAUSE * (attempt + 1))
        logger.error("autotask: gave up finishing %s; it stays 'running'", what)
        return None

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(self._settings.heartbeat_interval)
            try:
                await db.execute(sql.UPDATE_WORKER_HEARTBEAT, [self.id])
            except psycopg.Error as exc:
                logger.warning("autotask: heartbeat failed (%s)", exc)
