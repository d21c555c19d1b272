"""Run statuses and the handles that follow one run (the seed's import path).

``TaskHandle`` and ``AsyncTaskHandle`` are twins in the psycopg manner: the same attribute and
method names, plain methods on one and coroutines on the other, sharing their state in
``_HandleState``. Sync handles read through Django's connection, so inside
``transaction.atomic()`` they see the run their own transaction enqueued; async handles read
through a psycopg async pool and never block the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import queue as _queue
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Self

from django.db import connections

from . import conf, db, sql


class Status(StrEnum):
    WAITING = "waiting"
    RUNNING = "running"
    DONE = "done"
    ERROR = "error"
    CANCELLED = "cancelled"

    @classmethod
    def choices(cls) -> list[tuple[str, str]]:
        return [(s.value, s.name.title()) for s in cls]


WAITING = Status.WAITING
RUNNING = Status.RUNNING
DONE = Status.DONE
ERROR = Status.ERROR
CANCELLED = Status.CANCELLED
FINAL_STATUSES = frozenset({DONE, ERROR, CANCELLED})


@dataclass(frozen=True, kw_only=True)
class TaskError:
    """Why a run failed: the exception's class path, its message and traceback."""

    exception_class_path: str
    message: str
    traceback: str

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> TaskError | None:
        if not data:
            return None
        return cls(
            exception_class_path=str(data.get("type", "")),
            message=str(data.get("message", "")),
            traceback=str(data.get("traceback", "")),
        )


class _HandleState:
    """What a handle knows of its run, filled from a row of ``sql.RUN_COLUMNS``."""

    id: int
    name: str
    queue: str
    status: Status
    priority: int
    attempts: int
    max_attempts: int
    run_at: datetime
    enqueued_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    result: Any
    error: TaskError | None
    # Set when enqueued inside a transaction that may still be open (sync enqueue only).
    _enqueued_by: int | None = None

    def __init__(self, row: tuple[Any, ...]) -> None:
        self._apply(row)

    def _apply(self, row: tuple[Any, ...]) -> None:
        (
            self.id,
            self.name,
            self.queue,
            status,
            self.priority,
            self.attempts,
            self.max_attempts,
            self.run_at,
            self.enqueued_at,
            self.started_at,
            self.finished_at,
            result,
            error,
        ) = row
        self.status = Status(status)
        self.result = None if result is None else json.loads(result)
        self.error = TaskError.from_json(None if error is None else json.loads(error))

    @property
    def ready(self) -> bool:
        """True once the run is finished (DONE, ERROR or CANCELLED)."""
        return self.status in FINAL_STATUSES

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} #{self.id} {self.status}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _HandleState) and type(other) is type(self) and other.id == self.id

    def __hash__(self) -> int:
        return hash((type(self), self.id))


def _missing(run_id: int) -> LookupError:
    return LookupError(f"No task run with id {run_id} (it may have been pruned).")


def _deadline(timeout: float | None) -> float | None:
    if timeout is None:
        return None
    if timeout < 0:
        raise ValueError(f"timeout must be >= 0 seconds, not {timeout!r}")
    return time.monotonic() + timeout


def _wait_time(deadline: float | None, handle: _HandleState) -> float:
    """Seconds to wait for the next notification: the poll interval, cut by the deadline."""
    poll = conf.get().idle_time
    if deadline is None:
        return poll
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise TimeoutError(f"Task run #{handle.id} ({handle.name}) is still {handle.status}.")
    return min(poll, remaining)


def _digest(current: Status, pending: list[Status | None]) -> tuple[list[Status], bool]:
    """Split notified statuses into those to report now and whether to re-read the row.

    A final status is never reported from a notification alone: the row is read first, so the
    handle holds the result or error when the caller sees DONE or ERROR. ``None`` stands for
    "something may have changed" (a poll timeout, or the listener reconnected).
    """
    report: list[Status] = []
    for status in pending:
        if status is None or status in FINAL_STATUSES:
            return report, True
        if status != current:
            report.append(status)
            current = status
    return report, False


class TaskHandle(_HandleState):
    """Follows one run from sync code."""

    @classmethod
    def get(cls, run_id: int) -> TaskHandle:
        """Rebuild a handle from a run id; LookupError if there is no such run."""
        row = _fetch_sync(run_id)
        if row is None:
            raise _missing(run_id)
        return cls(row)

    def refresh(self) -> Self:
        row = _fetch_sync(self.id)
        if row is None:
            raise _missing(self.id)
        self._apply(row)
        return self

    def updates(self, timeout: float | None = None) -> Iterator[Status]:
        """Yield each status the run takes, starting with the one this handle holds, until a
        final one.

        Driven by the process's shared LISTEN connection; a poll every
        ``AUTOTASK_HANDLE_TASK_IDLE_TIME`` seconds covers a lost notification. The row is re-read
        before a final status is yielded, so ``result`` and ``error`` are there with it; for an
        intermediate status only ``status`` is updated (call ``refresh()`` for the rest).
        Raises TimeoutError if the run is not finished after ``timeout`` seconds.
        """
        from . import runtime

        self._check_visible()
        inbox: _queue.SimpleQueue[Status | None] = _queue.SimpleQueue()
        deadline = _deadline(timeout)
        with runtime.watch(self.id, inbox.put):
            if not self.ready:
                yield self.status
            previous = self.status
            self.refresh()
            if self.status != previous or self.ready:
                yield self.status
            while not self.ready:
                wait = _wait_time(deadline, self)
                try:
                    pending = [inbox.get(timeout=wait)]
                except _queue.Empty:
                    pending = [None]
                while not inbox.empty():
                    pending.append(inbox.get_nowait())
                report, stale = _digest(self.status, pending)
                for status in report:
                    self.status = status
                    yield status
                if stale:
                    previous = self.status
                    self.refresh()
                    if self.status != previous:
                        yield self.status

    def _check_visible(self) -> None:
        """Waiting on a run inside the still-open transaction that enqueued it cannot end."""
        if self._enqueued_by is None:
            return
        connection = connections[conf.database()]
        if connection.in_atomic_block:
            with connection.cursor() as cursor:
                cursor.execute(sql.CURRENT_TRANSACTION)
                if cursor.fetchone()[0] == self._enqueued_by:
                    raise RuntimeError(
                        f"Task run #{self.id} was enqueued in the transaction that is still "
                        "open, so no worker can see it yet: wait for it after the "
                        "transaction.atomic() block. (In tests, use transactional_db.)"
                    )
        else:
            self._enqueued_by = None

    def wait(self, timeout: float | None = None) -> Self:
        """Block until the run is finished; TimeoutError after ``timeout`` seconds."""
        for _ in self.updates(timeout):
            pass
        return self


class AsyncTaskHandle(_HandleState):
    """Follows one run from async code; the I/O methods are coroutines."""

    @classmethod
    async def get(cls, run_id: int) -> AsyncTaskHandle:
        """Rebuild a handle from a run id; LookupError if there is no such run."""
        row = await _fetch_async(run_id)
        if row is None:
            raise _missing(run_id)
        return cls(row)

    async def refresh(self) -> Self:
        row = await _fetch_async(self.id)
        if row is None:
            raise _missing(self.id)
        self._apply(row)
        return self

    async def updates(self, timeout: float | None = None) -> AsyncIterator[Status]:
        """Yield each status the run takes, starting with the current one, until a final one.

        The same contract as ``TaskHandle.updates``, awaited.
        """
        from . import runtime

        loop = asyncio.get_running_loop()
        inbox: asyncio.Queue[Status | None] = asyncio.Queue()

        def deliver(status: Status | None) -> None:
            # The caller's loop may be gone while this generator still waits to be closed.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(inbox.put_nowait, status)

        deadline = _deadline(timeout)
        with runtime.watch(self.id, deliver):
            if not self.ready:
                yield self.status
            previous = self.status
            await self.refresh()
            if self.status != previous or self.ready:
                yield self.status
            while not self.ready:
                wait = _wait_time(deadline, self)
                try:
                    pending = [await asyncio.wait_for(inbox.get(), wait)]
                except TimeoutError:
                    pending = [None]
                while not inbox.empty():
                    pending.append(inbox.get_nowait())
                report, stale = _digest(self.status, pending)
                for status in report:
                    self.status = status
                    yield status
                if stale:
                    previous = self.status
                    await self.refresh()
                    if self.status != previous:
                        yield self.status

    async def wait(self, timeout: float | None = None) -> Self:
        """Wait until the run is finished; TimeoutError after ``timeout`` seconds."""
        async for _ in self.updates(timeout):
            pass
        return self


def _fetch_sync(run_id: int) -> tuple[Any, ...] | None:
    with connections[conf.database()].cursor() as cursor:
        cursor.execute(sql.SELECT_RUN, [run_id])
        row: tuple[Any, ...] | None = cursor.fetchone()
        return row


async def _fetch_async(run_id: int) -> tuple[Any, ...] | None:
    from . import runtime  # runtime -> listener -> this module

    return await runtime.get().call(db.fetchone(sql.SELECT_RUN, [run_id]))
